/* float32 dense kernels, sparse: only nonzero inputs are visited.  Summation order is
 * fixed (bias first, then inputs in ascending index, one rounding per multiply and per
 * add), so they give the same bits as nn_dense_ref_f32 (nn_dense_f32_ref.c) apart from
 * the sign of an exact zero: skipped zero inputs would only have added +-0.
 *
 * Nonzero inputs are gathered four at a time on the stack (no scratch memory); their
 * weight rows (wt is input-major) are added to the outputs in blocks of 16/8/4.  On an
 * FPv4 core the blocks are VLDM/VMLA/VSTM assembly: VMLA is the unfused multiply-add
 * (product rounded, then sum rounded), so it gives the same bits as the C `a + w * v`
 * built with -ffp-contract=off, which is what the host runs.
 *
 * With -DNN_REFERENCE_KERNELS these functions are plain dense loops instead (no zero
 * skipping, no assembly): the in-run speed baseline (env qemu_f405_ref_f32). */
#include <stdint.h>
#include <string.h>

#include "nn_runtime.h"

#if defined(NN_REFERENCE_KERNELS)

/* the plain loops for the input-major layout: every input, every output, in place */
void nn_dense_f32(const float *x, const float *wt, const float *b, float *y, int n_in, int n_out, int relu)
{
    for (int o = 0; o < n_out; o++)
        y[o] = b[o];
    for (int i = 0; i < n_in; i++) {
        const float v = x[i];
        const float *w = wt + (long)i * n_out;
        for (int o = 0; o < n_out; o++)
            y[o] = y[o] + w[o] * v;
    }
    for (int o = 0; o < n_out; o++)
        if (relu && y[o] < 0.0f)
            y[o] = 0.0f;
}

void nn_dense_u8_f32(const uint8_t *x, const float *wt, const float *b, float *y, int n_in, int n_out,
                     int relu)
{
    for (int o = 0; o < n_out; o++)
        y[o] = b[o];
    for (int i = 0; i < n_in; i++) {
        const float v = (float)x[i];
        const float *w = wt + (long)i * n_out;
        for (int o = 0; o < n_out; o++)
            y[o] = y[o] + w[o] * v;
    }
    for (int o = 0; o < n_out; o++)
        if (relu && y[o] < 0.0f)
            y[o] = 0.0f;
}

#else

#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__thumb2__) && !defined(NN_NO_ASM)
#define NN_F32_ASM 1
#else
#define NN_F32_ASM 0
#endif

#if NN_F32_ASM
/* Input values s0..s7 (one per input row), weights s8..s19, accumulators s20..s31:
 * one VLDM of 12 weights feeds 12 VMLAs. */
#define MLA1(v) "vmla.f32 s20, s8, " v "\n\t"
#define MLA2(v) MLA1(v) "vmla.f32 s21, s9, " v "\n\t"
#define MLA4(v) MLA2(v) "vmla.f32 s22, s10, " v "\n\tvmla.f32 s23, s11, " v "\n\t"
#define MLA8(v)                                                                                              \
    MLA4(v)                                                                                                  \
    "vmla.f32 s24, s12, " v "\n\tvmla.f32 s25, s13, " v "\n\tvmla.f32 s26, s14, " v                          \
    "\n\tvmla.f32 s27, s15, " v "\n\t"
#define MLA12(v)                                                                                             \
    MLA8(v)                                                                                                  \
    "vmla.f32 s28, s16, " v "\n\tvmla.f32 s29, s17, " v "\n\tvmla.f32 s30, s18, " v                          \
    "\n\tvmla.f32 s31, s19, " v "\n\t"
/* one input row times its value, added to 12/8/4/2/1 accumulators */
#define ROW12(w, v) "vldm %[" w "]!, {s8-s19}\n\t" MLA12(v)
#define ROW8(w, v) "vldm %[" w "]!, {s8-s15}\n\t" MLA8(v)
#define ROW4(w, v) "vldm %[" w "]!, {s8-s11}\n\t" MLA4(v)
#define ROW2(w, v) "vldm %[" w "]!, {s8-s9}\n\t" MLA2(v)
#define ROW1(w, v) "vldm %[" w "]!, {s8}\n\t" MLA1(v)
#define ROWS8(R)                                                                                             \
    R("w0", "s0")                                                                                            \
    R("w1", "s1") R("w2", "s2") R("w3", "s3") R("w4", "s4") R("w5", "s5") R("w6", "s6") R("w7", "s7")
#define ROWS4(R) R("w0", "s0") R("w1", "s1") R("w2", "s2") R("w3", "s3")
#define ROWS1(R) R("w0", "s0")
/* y[0..B) = src[0..B) + the rows; src, y and the row pointers advance by B floats */
#define BLOCK(vregs, acc, ROWS, R)                                                                           \
    "vldm %[v], {" vregs "}\n\tvldm %[src]!, {" acc "}\n\t" ROWS(R) "vstm %[y]!, {" acc "}\n\t"
#define LOOP12(vregs, ROWS)                                                                                  \
    "vldm %[v], {" vregs "}\n\t"                                                                             \
    "1:\n\tvldm %[src]!, {s20-s31}\n\t" ROWS(                                                                \
        ROW12) "vstm %[y]!, {s20-s31}\n\tsubs %[n], %[n], #1\n\tbne 1b\n\t"
#define VCLOBBER                                                                                             \
    "cc", "memory", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",  \
        "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27",    \
        "s28", "s29", "s30", "s31"
/* the 12-loop and the 8/4/2/1 tail blocks for K input rows */
#define COLS_BODY(vregs, ROWS, ...)                                                                          \
    int n = n_out / 12;                                                                                      \
    const int rest = n_out - 12 * n;                                                                         \
    if (n)                                                                                                   \
        __asm__ volatile(LOOP12(vregs, ROWS)                                                                 \
                         : [y] "+r"(y), [src] "+r"(src), [n] "+r"(n), __VA_ARGS__                            \
                         : [v] "r"(v)                                                                        \
                         : VCLOBBER);                                                                        \
    if (rest & 8)                                                                                            \
        __asm__ volatile(BLOCK(vregs, "s20-s27", ROWS, ROW8)                                                 \
                         : [y] "+r"(y), [src] "+r"(src), __VA_ARGS__                                         \
                         : [v] "r"(v)                                                                        \
                         : VCLOBBER);                                                                        \
    if (rest & 4)                                                                                            \
        __asm__ volatile(BLOCK(vregs, "s20-s23", ROWS, ROW4)                                                 \
                         : [y] "+r"(y), [src] "+r"(src), __VA_ARGS__                                         \
                         : [v] "r"(v)                                                                        \
                         : VCLOBBER);                                                                        \
    if (rest & 2)                                                                                            \
        __asm__ volatile(BLOCK(vregs, "s20-s21", ROWS, ROW2)                                                 \
                         : [y] "+r"(y), [src] "+r"(src), __VA_ARGS__                                         \
                         : [v] "r"(v)                                                                        \
                         : VCLOBBER);                                                                        \
    if (rest & 1)                                                                                            \
    __asm__ volatile(BLOCK(vregs, "s20", ROWS, ROW1)                                                         \
                     : [y] "+r"(y), [src] "+r"(src), __VA_ARGS__                                             \
                     : [v] "r"(v)                                                                            \
                     : VCLOBBER)
#endif

/* y[o] = src[o] + w[0][o]*v[0] + ... + w[K-1][o]*v[K-1], added left to right, K = 8, 4, 1 */
static void cols8(float *y, const float *src, int n_out, const float *const *w, const float *v)
{
#if NN_F32_ASM
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5], *w6 = w[6],
                *w7 = w[7];
    COLS_BODY("s0-s7", ROWS8, [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [w4] "+r"(w4),
              [w5] "+r"(w5), [w6] "+r"(w6), [w7] "+r"(w7));
#else
    for (int o = 0; o < n_out; o++) {
        float a = src[o];
        for (int k = 0; k < 8; k++)
            a = a + w[k][o] * v[k];
        y[o] = a;
    }
#endif
}

static void cols4(float *y, const float *src, int n_out, const float *const *w, const float *v)
{
#if NN_F32_ASM
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    COLS_BODY("s0-s3", ROWS4, [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3));
#else
    for (int o = 0; o < n_out; o++) {
        float a = src[o];
        for (int k = 0; k < 4; k++)
            a = a + w[k][o] * v[k];
        y[o] = a;
    }
#endif
}

static void cols1(float *y, const float *src, int n_out, const float *const *w, const float *v)
{
#if NN_F32_ASM
    const float *w0 = w[0];
    COLS_BODY("s0", ROWS1, [w0] "+r"(w0));
#else
    for (int o = 0; o < n_out; o++)
        y[o] = src[o] + w[0][o] * v[0];
#endif
}

/* Nonzero inputs are gathered (weight row, value) into a small stack batch, added
 * eight at a time.  The first pass reads the bias as its source, so y needs no
 * separate initialisation. */
#define BATCH 32

typedef struct {
    const float *src;
    float *y;
    int n_out;
    int n; /* gathered so far */
    const float *rows[BATCH];
    float vals[BATCH];
} batch_t;

/* adds the gathered inputs (all of them if last, else a multiple of 8); the rest moves to the front */
static void flush(batch_t *b, int last)
{
    int k = 0;
    for (; k + 8 <= b->n; k += 8, b->src = b->y)
        cols8(b->y, b->src, b->n_out, b->rows + k, b->vals + k);
    if (last) {
        for (; k + 4 <= b->n; k += 4, b->src = b->y)
            cols4(b->y, b->src, b->n_out, b->rows + k, b->vals + k);
        for (; k < b->n; k++, b->src = b->y)
            cols1(b->y, b->src, b->n_out, b->rows + k, b->vals + k);
    }
    for (int j = 0; k + j < b->n; j++) {
        b->rows[j] = b->rows[k + j];
        b->vals[j] = b->vals[k + j];
    }
    b->n -= k;
}

/* the rest of the inputs, then the fused ReLU on the bits: above 0x80000000 is a
 * negative float (-0 itself stays, as `acc < 0.0f` leaves it) */
static void finish(batch_t *b, int relu)
{
    flush(b, 1);
    if (b->src != b->y) /* no nonzero input at all */
        memcpy(b->y, b->src, sizeof(float) * (size_t)b->n_out);
    if (relu) {
        uint32_t *u = (uint32_t *)b->y;
        int o = 0;
        for (; o + 4 <= b->n_out; o += 4, u += 4) {
            uint32_t a0 = u[0], a1 = u[1], a2 = u[2], a3 = u[3];
            u[0] = a0 > 0x80000000u ? 0 : a0;
            u[1] = a1 > 0x80000000u ? 0 : a1;
            u[2] = a2 > 0x80000000u ? 0 : a2;
            u[3] = a3 > 0x80000000u ? 0 : a3;
        }
        for (; o < b->n_out; o++, u++)
            if (*u > 0x80000000u)
                *u = 0;
    }
}

void nn_dense_f32(const float *x, const float *wt, const float *b, float *y, int n_in, int n_out, int relu)
{
    batch_t g;
    g.src = b, g.y = y, g.n_out = n_out, g.n = 0;
    const uint32_t *u = (const uint32_t *)x;
    int i = 0;
    for (; i + 4 <= n_in; i += 4) {
        /* +-0 test on the bits: no FPU compare and flag transfer; four zeros: one test */
        const uint32_t u0 = u[i] << 1, u1 = u[i + 1] << 1, u2 = u[i + 2] << 1, u3 = u[i + 3] << 1;
        if ((u0 | u1 | u2 | u3) == 0)
            continue;
        if (g.n > BATCH - 4)
            flush(&g, 0);
        const float *row = wt + (long)i * n_out;
        int n = g.n;
        if (u0)
            g.rows[n] = row, g.vals[n++] = x[i];
        row += n_out;
        if (u1)
            g.rows[n] = row, g.vals[n++] = x[i + 1];
        row += n_out;
        if (u2)
            g.rows[n] = row, g.vals[n++] = x[i + 2];
        row += n_out;
        if (u3)
            g.rows[n] = row, g.vals[n++] = x[i + 3];
        g.n = n;
    }
    for (; i < n_in; i++) {
        if (u[i] << 1) {
            if (g.n == BATCH)
                flush(&g, 0);
            g.rows[g.n] = wt + (long)i * n_out;
            g.vals[g.n++] = x[i];
        }
    }
    finish(&g, relu);
}

static inline int gather_word(uint32_t q, const float *base, int n_out, const float **rows, float *vals)
{
#if NN_F32_ASM
    /* the four bytes unrolled: a zero byte costs a test, a branch and a row step;
     * a nonzero one adds a convert and two stores (no bit search) */
    const float **r = rows;
    uint32_t v;
    const uint32_t stride = (uint32_t)n_out * 4u, m255 = 255u;
#define GATHER_STORE(label)                                                                                  \
    "beq " label "f\n\t"                                                                                     \
    "vmov  s0, %[v]\n\t"                                                                                     \
    "vcvt.f32.u32 s0, s0\n\t"                                                                                \
    "str   %[b], [%[r]], #4\n\t"                                                                             \
    "vstmia %[vp]!, {s0}\n\t" label ":\n\t"
    __asm__ volatile("ands  %[v], %[q], #255\n\t" GATHER_STORE(
                         "1") "add   %[b], %[b], %[stride]\n\t"
                              "ands  %[v], %[m], %[q], lsr #8\n\t" GATHER_STORE(
                                  "2") "add   %[b], %[b], %[stride]\n\t"
                                       "ands  %[v], %[m], %[q], lsr #16\n\t" GATHER_STORE(
                                           "3") "add   %[b], %[b], %[stride]\n\t"
                                                "lsrs  %[v], %[q], #24\n\t" GATHER_STORE("4")
                     : [r] "+r"(r), [vp] "+r"(vals), [b] "+r"(base), [v] "=&r"(v)
                     : [q] "r"(q), [stride] "r"(stride), [m] "r"(m255)
                     : "cc", "memory", "s0");
#undef GATHER_STORE
    return (int)(r - rows);
#else
    int n = 0;
    while (q) {
        const int bit = __builtin_ctz(q) & 24;
        rows[n] = base + (bit >> 3) * n_out;
        vals[n++] = (float)((q >> bit) & 0xffu);
        q &= ~(0xffu << bit);
    }
    return n;
#endif
}

void nn_dense_u8_f32(const uint8_t *x, const float *wt, const float *b, float *y, int n_in, int n_out,
                     int relu)
{
    batch_t g;
    g.src = b, g.y = y, g.n_out = n_out, g.n = 0;
    int i = 0;
    for (; i + 8 <= n_in; i += 8) {
        uint32_t q0, q1; /* eight zero pixels (most of an MNIST image): one test */
        memcpy(&q0, x + i, 4);
        memcpy(&q1, x + i + 4, 4);
        if ((q0 | q1) == 0)
            continue;
        if (g.n > BATCH - 8)
            flush(&g, 0);
        const float *base = wt + (long)i * n_out;
        int n = g.n;
        if (q0)
            n += gather_word(q0, base, n_out, g.rows + n, g.vals + n);
        if (q1)
            n += gather_word(q1, base + 4 * n_out, n_out, g.rows + n, g.vals + n);
        g.n = n;
    }
    for (; i < n_in; i++)
        if (x[i]) {
            if (g.n == BATCH) /* the word loop may leave the batch full */
                flush(&g, 0);
            g.rows[g.n] = wt + (long)i * n_out;
            g.vals[g.n++] = (float)x[i];
        }
    finish(&g, relu);
}

#endif /* NN_REFERENCE_KERNELS */
