/* int8 dense kernels, sparse: only input pairs that are not both zero are visited,
 * with SMLAD on the DSP extension.  Same integers as nn_dense_s8_ref.c.
 *
 * The bytes of even outputs are stored offset by +128 (bit 7 flipped, nn_runtime.h), so a
 * 16-bit lane of a raw weight word, byte 2j unsigned + 256 * byte 2j+1 signed, is exact.
 * SMLAD on the raw word accumulates  S_even + 128 * sum(x) + 256 * S_odd  (mod 2^32) and
 * only the odd bytes need SXTB16; the even sums are recovered once at the end
 * (fix_even).  Wrapping arithmetic is exact here because the true sums fit in int32. */
#include <string.h>

#include "nn_internal.h"

#define EVEN_FLIP 0x00800080u /* the +128 offset of the even-output bytes */

/* acc[0 .. 4*nq) += the contributions of two input pairs: values v0, v1 (packed
 * int16 lanes), weight rows w0, w1 (2 words = 4 outputs per step). */
static inline void mac_2pairs_x4(const uint32_t *w0, const uint32_t *w1, int32_t v0, int32_t v1, int32_t *acc,
                                 int nq)
{
    if (nq <= 0)
        return;
#if NN_USE_DSP
    /* 4 accumulators by LDM/STM (pinned to r8-r11: a register list must ascend), the
     * weights of each pair by LDRD: 16 instructions per 16 MACs + the loop's 2 per 16 outputs;
     * a0/a2 take the raw words (even outputs, fixed up by fix_even) */
    register int32_t a0 __asm__("r8"), a1 __asm__("r9"), a2 __asm__("r10"), a3 __asm__("r11");
    uint32_t p, q, t;
#define PAIR4(w, v)                                                                                          \
    "ldrd   %[p], %[q], [%[" w "]], #8\n\t"                                                                  \
    "sxtb16 %[t], %[p], ror #8\n\t"                                                                          \
    "smlad  %[a0], %[p], %[" v "], %[a0]\n\t"                                                                \
    "smlad  %[a1], %[t], %[" v "], %[a1]\n\t"                                                                \
    "sxtb16 %[t], %[q], ror #8\n\t"                                                                          \
    "smlad  %[a2], %[q], %[" v "], %[a2]\n\t"                                                                \
    "smlad  %[a3], %[t], %[" v "], %[a3]\n\t"
#define QUAD                                                                                                 \
    "ldm    %[acc], {%[a0], %[a1], %[a2], %[a3]}\n\t" PAIR4("w0", "v0")                                      \
        PAIR4("w1", "v1") "stm    %[acc]!, {%[a0], %[a1], %[a2], %[a3]}\n\t"
    int n4 = nq >> 2; /* 16 outputs per loop; then 8 and 4 without a loop */
    if (n4)
        __asm__ volatile(
            "1:\n\t" QUAD QUAD QUAD QUAD "subs   %[n], %[n], #1\n\t"
            "bne    1b\n\t"
            : [w0] "+r"(w0), [w1] "+r"(w1), [acc] "+r"(acc), [n] "+r"(n4), [a0] "=&r"(a0), [a1] "=&r"(a1),
              [a2] "=&r"(a2), [a3] "=&r"(a3), [p] "=&r"(p), [q] "=&r"(q), [t] "=&r"(t)
            : [v0] "r"(v0), [v1] "r"(v1)
            : "cc", "memory");
    if (nq & 2)
        __asm__ volatile(QUAD QUAD
                         : [w0] "+r"(w0), [w1] "+r"(w1), [acc] "+r"(acc), [a0] "=&r"(a0), [a1] "=&r"(a1),
                           [a2] "=&r"(a2), [a3] "=&r"(a3), [p] "=&r"(p), [q] "=&r"(q), [t] "=&r"(t)
                         : [v0] "r"(v0), [v1] "r"(v1)
                         : "memory");
    if (nq & 1)
        __asm__ volatile(QUAD
                         : [w0] "+r"(w0), [w1] "+r"(w1), [acc] "+r"(acc), [a0] "=&r"(a0), [a1] "=&r"(a1),
                           [a2] "=&r"(a2), [a3] "=&r"(a3), [p] "=&r"(p), [q] "=&r"(q), [t] "=&r"(t)
                         : [v0] "r"(v0), [v1] "r"(v1)
                         : "memory");
#undef QUAD
#undef PAIR4
#else
    for (; nq > 0; nq--, w0 += 2, w1 += 2, acc += 4) {
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        MAC_LO(a0, w0[0] ^ EVEN_FLIP, v0);
        MAC_HI(a1, w0[0], v0);
        MAC_LO(a2, w0[1] ^ EVEN_FLIP, v0);
        MAC_HI(a3, w0[1], v0);
        MAC_LO(a0, w1[0] ^ EVEN_FLIP, v1);
        MAC_HI(a1, w1[0], v1);
        MAC_LO(a2, w1[1] ^ EVEN_FLIP, v1);
        MAC_HI(a3, w1[1], v1);
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
    }
#endif
}

/* acc += the contributions of input pairs k0 and k1 (values v0, v1);
 * w: words [n_pairs][nw], nw = ceil(n_out / 2).  The rows of one pair are
 * contiguous, so the weights are streamed in order. */
static void pairs_acc2(const uint32_t *w, int nw, int32_t *acc, int n_out, int k0, int32_t v0, int k1,
                       int32_t v1)
{
    const uint32_t *w0 = w + (long)k0 * nw;
    const uint32_t *w1 = w + (long)k1 * nw;
    const int nq = n_out >> 2;
    mac_2pairs_x4(w0, w1, v0, v1, acc, nq);
    for (int o = 4 * nq; o < n_out; o += 2) { /* last 1..3 outputs */
        const uint32_t p = w0[o >> 1], q = w1[o >> 1];
        int32_t a = acc[o];
        MAC_LO(a, p ^ EVEN_FLIP, v0);
        MAC_LO(a, q ^ EVEN_FLIP, v1);
        acc[o] = a;
        if (o + 1 < n_out) { /* else the word's second row is padding */
            int32_t b = acc[o + 1];
            MAC_HI(b, p, v0);
            MAC_HI(b, q, v1);
            acc[o + 1] = b;
        }
    }
}

/* Outputs below 4 * (n_out / 4) go through the SMLAD blocks.  On the DSP path their even
 * accumulators start at bias[o] + 256 * bias[o+1] and end as the raw-word sums; fix_even
 * subtracts 256 * (the odd neighbour) + 128 * sum(x).  Elsewhere: plain bias, no fix. */
static void init_acc(const int32_t *bias, int32_t *acc, int n_out)
{
    int o = 0;
#if NN_USE_DSP
    o = n_out & ~3;
    for (const int32_t *b = bias, *end = bias + o; b < end; b += 2, acc += 2) { /* LDRD/STRD */
        const uint32_t b0 = (uint32_t)b[0], b1 = (uint32_t)b[1];
        acc[0] = (int32_t)(b0 + (b1 << 8));
        acc[1] = (int32_t)b1;
    }
    acc -= o;
#endif
    for (; o < n_out; o++)
        acc[o] = bias[o];
}

static void fix_even(int32_t *acc, int n_out, uint32_t sum_x)
{
#if NN_USE_DSP
    const uint32_t off = sum_x << 7;
    for (int32_t *end = acc + (n_out & ~3); acc < end; acc += 2)
        acc[0] = (int32_t)((uint32_t)acc[0] - ((uint32_t)acc[1] << 8) - off);
#else
    (void)acc, (void)n_out, (void)sum_x;
#endif
}

/* nonzero pairs are accumulated two at a time; pk/pv hold the pending one */
#define PUSH_PAIR(k, v)                                                                                      \
    do {                                                                                                     \
        if (pk < 0) {                                                                                        \
            pk = (k);                                                                                        \
            pv = (v);                                                                                        \
        } else {                                                                                             \
            pairs_acc2(w, nw, acc, n_out, pk, pv, (k), (v));                                                 \
            pk = -1;                                                                                         \
        }                                                                                                    \
    } while (0)
/* a last odd pair goes with a zero partner (adds exactly 0) */
#define FLUSH_PAIR()                                                                                         \
    do {                                                                                                     \
        if (pk >= 0)                                                                                         \
            pairs_acc2(w, nw, acc, n_out, pk, pv, pk, 0);                                                    \
    } while (0)

void nn_dense_pairs_u8(const uint8_t *x, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out)
{
    int pk = -1, i = 0;
    int32_t pv = 0;
    uint32_t sum_x = 0;
    init_acc(bias, acc, n_out);
    for (; i + 8 <= n_in; i += 8) {
        uint32_t q0, q1; /* eight zero pixels (most of an MNIST image): one test */
        memcpy(&q0, x + i, 4);
        memcpy(&q1, x + i + 4, 4);
        if ((q0 | q1) == 0)
            continue;
#if NN_USE_DSP
        sum_x = __usada8(q1, 0u, __usada8(q0, 0u, sum_x));
#endif
        /* the pixel pair (b0, b1) of a half word -> lanes b0 | b1 << 16 */
        if (q0 & 0xffffu)
            PUSH_PAIR(i >> 1, (int32_t)((q0 & 0xffu) | ((q0 & 0xff00u) << 8)));
        if (q0 >> 16)
            PUSH_PAIR((i >> 1) + 1, (int32_t)(((q0 >> 16) & 0xffu) | ((q0 >> 24) << 16)));
        if (q1 & 0xffffu)
            PUSH_PAIR((i >> 1) + 2, (int32_t)((q1 & 0xffu) | ((q1 & 0xff00u) << 8)));
        if (q1 >> 16)
            PUSH_PAIR((i >> 1) + 3, (int32_t)(((q1 >> 16) & 0xffu) | ((q1 >> 24) << 16)));
    }
    for (; i + 1 < n_in; i += 2) {
        const uint32_t a = x[i], b = x[i + 1];
        sum_x += a + b;
        if (a | b)
            PUSH_PAIR(i >> 1, (int32_t)(a | (b << 16)));
    }
    if (i < n_in && x[i]) {
        sum_x += x[i];
        PUSH_PAIR(i >> 1, (int32_t)x[i]);
    }
    FLUSH_PAIR();
    fix_even(acc, n_out, sum_x);
}

void nn_dense_pairs_s8(const int8_t *x, int zx, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out)
{
    int pk = -1, i = 0;
    int32_t pv = 0;
    uint32_t sum_x = 0;
    init_acc(bias, acc, n_out);
    for (; i + 1 < n_in; i += 2) {
        const int32_t a = x[i] - zx, b = x[i + 1] - zx;
        sum_x += (uint32_t)(a + b);
        if (a | b)
            PUSH_PAIR(i >> 1, pack16(a, b));
    }
    if (i < n_in) {
        const int32_t a = x[i] - zx;
        sum_x += (uint32_t)a;
        if (a)
            PUSH_PAIR(i >> 1, pack16(a, 0));
    }
    FLUSH_PAIR();
    fix_even(acc, n_out, sum_x);
}

#undef PUSH_PAIR
#undef FLUSH_PAIR
