/* int8 dense kernels, sparse: only input pairs that are not both zero are visited,
 * with SMLAD on the DSP extension.  Same integers as nn_dense_s8_ref.c.
 *
 * The bytes of even outputs are stored offset by +128 (bit 7 flipped, nn_runtime.h), so a
 * 16-bit lane of a raw weight word, byte 2j unsigned + 256 * byte 2j+1 signed, is exact.
 * SMLAD on the raw word accumulates  S_even + 128 * sum(x) + 256 * S_odd  (mod 2^32) and
 * only the odd bytes need SXTB16; the even sums are recovered once at the end
 * (fix_even).  Wrapping arithmetic is exact here because the true sums fit in int32. */
#include <stdint.h>
#include <string.h>

#include "nn_internal.h"

#define EVEN_FLIP 0x00800080u /* the +128 offset of the even-output bytes */

/* nonzero input pairs are gathered on the stack, then accumulated two at a time in one
 * pass over the accumulators: value (int16 lanes) and weight row of each */
typedef struct {
    int32_t v;
    const uint32_t *w;
} pair_t;
#define LIST_MAX 96 /* 768 bytes of stack */

#if NN_USE_DSP
/* nn_dense_s8_m4.S: acc[0 .. asm_outputs(n_out)) += the n (even) pairs of list */
void nn_pairs_list_m4(const pair_t *list, int n, int32_t *acc, int n_out);
/* the same for one entry */
void nn_pair1_m4(const pair_t *p, int32_t *acc, int n_out);

/* even accumulators around the raw-word sums: set-up from the bias, fix-up at the end */
void nn_init_raw_m4(int32_t *acc, const int32_t *bias, int n);
void nn_fix_even_m4(int32_t *acc, int n, uint32_t off);

/* the outputs the assembly covers (their even accumulators hold raw-word sums) */
static inline int asm_outputs(int n_out)
{
    const int n6 = n_out / 6;
    return 6 * n6 + (n_out - 6 * n6 >= 4 ? 4 : 0);
}
#else
static inline int asm_outputs(int n_out)
{
    (void)n_out;
    return 0;
}
#endif

/* acc += the contributions of list[0 .. n): the assembly, then plain sums for the
 * outputs it does not cover (all of them without the DSP extension) */
static void run_list(const pair_t *list, int n, int32_t *acc, int n_out)
{
    const int o0 = asm_outputs(n_out);
#if NN_USE_DSP
    if (o0 && n >= 2)
        nn_pairs_list_m4(list, n & ~1, acc, n_out);
    if (o0 && (n & 1))
        nn_pair1_m4(list + n - 1, acc, n_out);
#endif
    if (o0 == n_out)
        return;
    for (const pair_t *p = list, *end = list + n; p < end; p++) {
        const uint32_t *w = p->w;
        const int32_t v = p->v;
        for (int o = o0; o < n_out; o += 2) {
            const uint32_t a = w[o >> 1];
            MAC_LO(acc[o], a ^ EVEN_FLIP, v);
            if (o + 1 < n_out) /* else the word's second row is padding */
                MAC_HI(acc[o + 1], a, v);
        }
    }
}

/* Outputs below asm_outputs(n_out) go through the SMLAD blocks.  On the DSP path their even
 * accumulators start at bias[o] + 256 * bias[o+1] and end as the raw-word sums; fix_even
 * subtracts 256 * (the odd neighbour) + 128 * sum(x).  Elsewhere: plain bias, no fix. */
static void init_acc(const int32_t *bias, int32_t *acc, int n_out)
{
    int o = 0;
#if NN_USE_DSP
    o = asm_outputs(n_out);
    nn_init_raw_m4(acc, bias, o);
#endif
    for (; o < n_out; o++)
        acc[o] = bias[o];
}

static void fix_even(int32_t *acc, int n_out, uint32_t sum_x)
{
#if NN_USE_DSP
    nn_fix_even_m4(acc, asm_outputs(n_out), sum_x << 7);
#else
    (void)acc, (void)n_out, (void)sum_x;
#endif
}

/* a full list: run its even part, keep a last odd entry (returns the new end) */
static pair_t *flush_list(pair_t *list, pair_t *pl, int32_t *acc, int n_out)
{
    const int n = (int)(pl - list);
    run_list(list, n & ~1, acc, n_out);
    list[0] = list[n - 1];
    return list + (n & 1);
}

/* the rest of the list */
static void finish_list(pair_t *list, pair_t *pl, int32_t *acc, int n_out)
{
    if (pl > list)
        run_list(list, (int)(pl - list), acc, n_out);
}

#if NN_USE_DSP
/* nn_dense_s8_m4.S: appends the nonzero pixel pairs of x[0 .. end) (word-aligned, sixteen at
 * a time) to the list until it passes limit; returns where it stopped */
typedef struct {
    pair_t *pl;          /* list end */
    const uint32_t *row; /* weight row of the first pair at x */
    uint32_t sum;        /* sum of the pixels */
} scan_t;
const uint8_t *nn_scan_u8_m4(const uint8_t *x, const uint8_t *end, scan_t *st, int row_bytes,
                             const pair_t *limit);
#endif

#define ADD_PAIR(row, val)                                                                                   \
    do {                                                                                                     \
        pl->v = (val);                                                                                       \
        pl->w = (row);                                                                                       \
        pl++;                                                                                                \
    } while (0)

void nn_dense_pairs_u8(const uint8_t *x, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out)
{
    pair_t list[LIST_MAX], *pl = list;
    int i = 0;
    uint32_t sum_x = 0;
    init_acc(bias, acc, n_out);
#if NN_USE_DSP
    if (((uintptr_t)x & 3) == 0) { /* LDM: sixteen pixels per test */
        scan_t st = {list, w, 0};
        const uint8_t *p = x, *const end = x + (n_in & ~15);
        while ((p = nn_scan_u8_m4(p, end, &st, 4 * nw, list + LIST_MAX - 8)) != end)
            st.pl = flush_list(list, st.pl, acc, n_out);
        pl = st.pl;
        sum_x = st.sum;
        i = n_in & ~15;
    }
#endif
    /* the rest (all of it for pixels that are not word-aligned, or without the DSP extension),
     * a pair at a time; an odd last pixel pairs with a zero */
    for (; i < n_in; i += 2) {
        const uint32_t a = x[i], b = i + 1 < n_in ? x[i + 1] : 0;
        sum_x += a + b;
        if (a | b) {
            if (pl == list + LIST_MAX)
                pl = flush_list(list, pl, acc, n_out);
            ADD_PAIR(w + (long)(i >> 1) * nw, (int32_t)(a | (b << 16)));
        }
    }
    finish_list(list, pl, acc, n_out);
    fix_even(acc, n_out, sum_x);
}

#if NN_USE_DSP
/* nn_dense_s8_m4.S: acc[0 .. 10) += n_pairs input pairs, every accumulator in a register */
void nn_dense10_m4(const int8_t *x, int n_pairs, const uint32_t *w, int32_t *acc, uint32_t zz);

/* sum(x - zx) mod 2^32, four inputs at a time */
static uint32_t sum_s8(const int8_t *x, int n, int zx)
{
    uint32_t s = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t q0, q1;
        memcpy(&q0, x + i, 4);
        memcpy(&q1, x + i + 4, 4);
        s = __usada8(q1 ^ 0x80808080u, 0u, __usada8(q0 ^ 0x80808080u, 0u, s)); /* x + 128 */
    }
    s -= 128u * (uint32_t)i;
    for (; i < n; i++)
        s += (uint32_t)(int32_t)x[i];
    return s - (uint32_t)n * (uint32_t)zx;
}
#endif

void nn_dense_pairs_s8(const int8_t *x, int zx, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out)
{
    pair_t list[LIST_MAX], *pl = list;
    int i = 0;
    uint32_t sum_x = 0;
    init_acc(bias, acc, n_out);
#if NN_USE_DSP
    if (n_out == 10 && n_in >= 2) { /* a classifier head: no list, nn_dense10_m4 */
        nn_dense10_m4(x, n_in >> 1, w, acc, (uint32_t)pack16(zx, zx));
        if (n_in & 1) { /* the last input pairs with a zero */
            const int32_t a = x[n_in - 1] - zx;
            if (a) {
                ADD_PAIR(w + (long)(n_in >> 1) * nw, pack16(a, 0));
                finish_list(list, pl, acc, n_out);
            }
        }
        fix_even(acc, n_out, sum_s8(x, n_in, zx));
        return;
    }
#endif
    for (; i < n_in; i += 2) {
        const int32_t a = x[i] - zx, b = i + 1 < n_in ? x[i + 1] - zx : 0;
        sum_x += (uint32_t)(a + b);
        if (a | b) {
            if (pl == list + LIST_MAX)
                pl = flush_list(list, pl, acc, n_out);
            ADD_PAIR(w + (long)(i >> 1) * nw, pack16(a, b));
        }
    }
    finish_list(list, pl, acc, n_out);
    fix_even(acc, n_out, sum_x);
}

#undef ADD_PAIR
