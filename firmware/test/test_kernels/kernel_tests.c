/* Every optimised kernel of nnkernels against its reference twin, on the same
 * vectors (TFLM style): odd and tail sizes, all-zero and all-nonzero inputs,
 * saturation extremes.  Vectors come from a fixed xorshift generator, so the host
 * and the Cortex-M4 run exactly the same cases and must print the same hashes. */
#include <stdint.h>
#include <string.h>

#include "kernel_tests.h"
#include "nn_runtime.h"

static const int SIZES[] = {1, 2, 3, 5, 7, 17, 31, 100};
#define N_SIZES ((int)(sizeof SIZES / sizeof SIZES[0]))
#define MAX_IN 784
#define MAX_OUT 100
#define MAX_W 10000 /* largest weight matrix: 100 x 100 (784 x 7 also fits) */

enum { ALL_ZERO, ALL_NONZERO, SPARSE, FEW, EXTREME, N_PATTERNS };

/* ---- harness --------------------------------------------------------------- */

static void (*out_line)(const char *);
static int n_pass, n_fail;
static uint32_t hash;
static char fail_msg[96];

static uint32_t rng = 2463534242u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
/* a signed value of random magnitude (one generator call at a time: a fixed order) */
static int32_t rnd_acc(int max_shift)
{
    const int32_t v = (int32_t)rnd();
    return v >> rnd_in(0, max_shift);
}

static void hash_bytes(const void *p, int n)
{
    const uint8_t *b = (const uint8_t *)p;
    for (int i = 0; i < n; i++)
        hash = (hash ^ b[i]) * 16777619u;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}
static char *put_int(char *p, long v)
{
    char tmp[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}
static char *put_hex(char *p, uint32_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = "0123456789abcdef"[(v >> (4 * i)) & 15u];
    return p;
}

/* first mismatch of a case: "<what> n_in=.. n_out=.. i=.." (later ones keep the first) */
static void mismatch(const char *what, int a, int b, int i)
{
    if (fail_msg[0])
        return;
    char *p = put_str(fail_msg, what);
    p = put_str(p, " a=");
    p = put_int(p, a);
    p = put_str(p, " b=");
    p = put_int(p, b);
    p = put_str(p, " i=");
    p = put_int(p, i);
    *p = 0;
}

static void check_bytes(const char *what, const void *x, const void *y, int n, int a, int b)
{
    const uint8_t *p = (const uint8_t *)x, *q = (const uint8_t *)y;
    for (int i = 0; i < n; i++)
        if (p[i] != q[i]) {
            mismatch(what, a, b, i);
            return;
        }
}

static void begin(void)
{
    hash = 2166136261u;
    fail_msg[0] = 0;
}

static void end(const char *name)
{
    char line[160];
    char *p = put_str(line, fail_msg[0] ? "FAIL " : "PASS ");
    p = put_str(p, name);
    *p++ = ' ';
    if (fail_msg[0]) {
        p = put_str(p, fail_msg);
        n_fail++;
    } else {
        p = put_hex(p, hash);
        n_pass++;
    }
    *p = 0;
    out_line(line);
}

/* ---- vectors ----------------------------------------------------------------- */

/* one arena (80 KB of the F405's 128 KB), carved differently by each test */
static float arena[2 * MAX_W];
#define WA_F arena                          /* f32 weights, output-major */
#define WB_F (arena + MAX_W)                /* f32 weights, input-major */
#define WA_B ((int8_t *)arena)              /* int8 weights, output-major */
#define WORDS ((uint32_t *)(arena + MAX_W)) /* int8 weights, packed */
static float xf[MAX_IN], bf[MAX_OUT], yref[MAX_OUT], yopt[MAX_OUT];
static uint8_t px_buf[MAX_IN + 4];
static int8_t xs[MAX_IN];
static int32_t bias[MAX_OUT], aref[MAX_OUT], aopt[MAX_OUT];

/* a nonzero float with few mantissa bits, or 0 according to the pattern */
static float rnd_float(int pattern)
{
    const int zero =
        pattern == ALL_ZERO || (pattern == SPARSE && rnd() % 10 < 7) || (pattern == FEW && rnd() % 32);
    if (zero)
        return 0.0f;
    int v = rnd_in(-1000, 999);
    if (v >= 0)
        v++;
    return (float)v / (pattern == EXTREME ? 1.0f : 512.0f);
}

static uint8_t rnd_pixel(int pattern)
{
    const int zero =
        pattern == ALL_ZERO || (pattern == SPARSE && rnd() % 10 < 7) || (pattern == FEW && rnd() % 32);
    if (zero)
        return 0;
    return pattern == EXTREME ? 255 : (uint8_t)rnd_in(1, 255);
}

/* ---- float32 dense --------------------------------------------------------------- */

static void dense_f32_case(int n_in, int n_out, int pattern, int relu)
{
    for (int o = 0; o < n_out; o++) {
        bf[o] = rnd_float(ALL_NONZERO);
        for (int i = 0; i < n_in; i++)
            WA_F[o * n_in + i] = WB_F[i * n_out + o] = rnd_float(ALL_NONZERO);
    }
    for (int i = 0; i < n_in; i++)
        xf[i] = rnd_float(pattern);
    nn_dense_ref_f32(xf, WA_F, bf, yref, n_in, n_out, relu);
    memset(yopt, 0xff, sizeof yopt);
    nn_dense_f32(xf, WB_F, bf, yopt, n_in, n_out, relu);
    check_bytes("nn_dense_f32", yref, yopt, 4 * n_out, n_in, n_out);
    hash_bytes(yopt, 4 * n_out);

    uint8_t *px = px_buf + 1; /* odd address: the 4-pixel zero test must not need alignment */
    for (int i = 0; i < n_in; i++)
        xf[i] = px[i] = rnd_pixel(pattern);
    nn_dense_ref_f32(xf, WA_F, bf, yref, n_in, n_out, relu);
    memset(yopt, 0xff, sizeof yopt);
    nn_dense_u8_f32(px, WB_F, bf, yopt, n_in, n_out, relu);
    check_bytes("nn_dense_u8_f32", yref, yopt, 4 * n_out, n_in, n_out);
    hash_bytes(yopt, 4 * n_out);
}

static void test_dense_f32(void)
{
    begin();
    for (int a = 0; a < N_SIZES; a++)
        for (int b = 0; b < N_SIZES; b++)
            for (int pattern = 0; pattern < N_PATTERNS; pattern++)
                dense_f32_case(SIZES[a], SIZES[b], pattern, (a + b + pattern) & 1);
    for (int pattern = 0; pattern < N_PATTERNS; pattern++) /* the MLP's first layer width */
        dense_f32_case(MAX_IN, 7, pattern, pattern & 1);
    end("dense_f32");
}

/* ---- int8 dense ------------------------------------------------------------------ */

/* int8 [n_out][n_in] -> one row of words per input pair (nn_runtime.h):
 * word[k*nw + j] = w[2j][2k], w[2j+1][2k], w[2j][2k+1], w[2j+1][2k+1] (bytes, low first) */
static int pack_pairs(const int8_t *w, int n_in, int n_out, uint32_t *out)
{
    const int nw = (n_out + 1) / 2, nk = (n_in + 1) / 2;
    for (int k = 0; k < nk; k++)
        for (int j = 0; j < nw; j++) {
            uint32_t v = 0;
            for (int t = 0; t < 4; t++) {
                const int o = 2 * j + (t & 1), i = 2 * k + (t >> 1);
                uint8_t byte = (o < n_out && i < n_in) ? (uint8_t)w[o * n_in + i] : 0;
                if (!(o & 1))
                    byte ^= 0x80; /* even outputs are stored + 128 (nn_runtime.h) */
                v |= (uint32_t)byte << (8 * t);
            }
            out[k * nw + j] = v;
        }
    return nw;
}

static int8_t rnd_weight(int pattern)
{
    if (pattern == EXTREME)
        return (rnd() & 1) ? 127 : -128;
    return (int8_t)rnd_in(-128, 127);
}

/* independent int64 sums, so a reference kernel that is wrong is caught too */
static void dense_s8_expect(const int8_t *w, const int32_t *x, int n_in, int n_out, int32_t *acc)
{
    for (int o = 0; o < n_out; o++) {
        int64_t a = bias[o];
        for (int i = 0; i < n_in; i++)
            a += (int64_t)w[o * n_in + i] * x[i];
        acc[o] = (int32_t)a;
    }
}

static void dense_s8_case(int n_in, int n_out, int pattern)
{
    static int32_t xv[MAX_IN], want[MAX_OUT];
    for (int o = 0; o < n_out; o++) {
        bias[o] = pattern == EXTREME ? ((o & 1) ? (1 << 30) : -(1 << 30)) : rnd_in(-50000, 50000);
        for (int i = 0; i < n_in; i++)
            WA_B[o * n_in + i] = rnd_weight(pattern);
    }
    if (pattern == EXTREME) /* every weight of a row the same sign: the largest accumulators */
        for (int o = 0; o < n_out; o++)
            for (int i = 0; i < n_in; i++)
                WA_B[o * n_in + i] = (o & 1) ? 127 : -128;
    const int nw = pack_pairs(WA_B, n_in, n_out, WORDS);

    uint8_t *px = px_buf + 1;
    for (int i = 0; i < n_in; i++)
        xv[i] = px[i] = rnd_pixel(pattern);
    dense_s8_expect(WA_B, xv, n_in, n_out, want);
    nn_dense_ref_u8(px, WA_B, bias, aref, n_in, n_out);
    memset(aopt, 0x55, sizeof aopt);
    nn_dense_pairs_u8(px, n_in, WORDS, nw, bias, aopt, n_out);
    check_bytes("nn_dense_ref_u8", want, aref, 4 * n_out, n_in, n_out);
    check_bytes("nn_dense_pairs_u8", want, aopt, 4 * n_out, n_in, n_out);
    hash_bytes(aopt, 4 * n_out);
    /* word-aligned pixels (the firmware's buffer): the assembly scan, sixteen at a time */
    static uint32_t px_words[(MAX_IN + 3) / 4];
    memcpy(px_words, px, (size_t)n_in);
    memset(aopt, 0x55, sizeof aopt);
    nn_dense_pairs_u8((const uint8_t *)px_words, n_in, WORDS, nw, bias, aopt, n_out);
    check_bytes("nn_dense_pairs_u8 aligned", want, aopt, 4 * n_out, n_in, n_out);

    static const int ZX[] = {-128, -1, 0, 5, 127};
    for (int z = 0; z < 5; z++) {
        const int zx = ZX[z];
        for (int i = 0; i < n_in; i++) {
            int v;
            if (pattern == ALL_ZERO || (pattern == SPARSE && rnd() % 10 < 7) ||
                (pattern == FEW && rnd() % 32))
                v = zx;
            else if (pattern == EXTREME)
                v = zx < 0 ? 127 : -128; /* |x - zx| up to 255 */
            else
                do
                    v = rnd_in(-128, 127);
                while (v == zx);
            xs[i] = (int8_t)v;
            xv[i] = v - zx;
        }
        dense_s8_expect(WA_B, xv, n_in, n_out, want);
        nn_dense_ref_s8(xs, zx, WA_B, bias, aref, n_in, n_out);
        memset(aopt, 0x55, sizeof aopt);
        nn_dense_pairs_s8(xs, zx, n_in, WORDS, nw, bias, aopt, n_out);
        check_bytes("nn_dense_ref_s8", want, aref, 4 * n_out, n_in, n_out);
        check_bytes("nn_dense_pairs_s8", want, aopt, 4 * n_out, n_in, n_out);
        hash_bytes(aopt, 4 * n_out);
    }
}

static void test_dense_s8(void)
{
    begin();
    for (int a = 0; a < N_SIZES; a++)
        for (int b = 0; b < N_SIZES; b++)
            for (int pattern = 0; pattern < N_PATTERNS; pattern++)
                dense_s8_case(SIZES[a], SIZES[b], pattern);
    for (int pattern = 0; pattern < N_PATTERNS; pattern++)
        dense_s8_case(MAX_IN, 7, pattern);
    /* widths for the assembly's blocks: n_out / 6 = 0..16 (every Duff entry: n6 % 8), n_out % 6 = 0..5;
     * as many inputs as fit (odd and even counts): the pair list is flushed many times */
    static const int OUTS[] = {4, 10, 10, 6, 12, 18, 22, 24, 29, 40, 47, 64, 99}; /* 10: nn_dense10_m4 */
    for (int k = 0; k < (int)(sizeof OUTS / sizeof OUTS[0]); k++) {
        const int n_in = (MAX_W / OUTS[k] < MAX_IN ? MAX_W / OUTS[k] : MAX_IN) - (k & 1);
        for (int pattern = 0; pattern < N_PATTERNS; pattern++)
            dense_s8_case(n_in, OUTS[k], pattern);
    }
    for (int a = 0; a < N_SIZES; a++) /* the ten-output head with few inputs (one pair, odd counts) */
        for (int pattern = 0; pattern < N_PATTERNS; pattern++)
            dense_s8_case(SIZES[a], 10, pattern);
    end("dense_s8");
}

/* ---- requantisation ------------------------------------------------------------------ */

/* the contract of nn_requant (nn_runtime.h), in int64, then the int8 clamps */
static int8_t requant_expect(int32_t acc, int32_t mult, int shift, int zp, int lo, int hi)
{
    int64_t p = ((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift;
    p += zp;
    return (int8_t)(p < lo ? lo : (p > hi ? hi : p));
}

static void test_requant(void)
{
    static int32_t acc[64], mult[64];
    static int8_t shift[64], want[64 * 4], got[64 * 4], ref[64];
    static const int32_t EDGE[] = {0, 1, -1, 2147483647, -2147483647 - 1, 65536, -65536, 1 << 24};
    begin();
    for (int s = 1; s <= 62; s++) {
        for (int trial = 0; trial < 4; trial++) {
            const int n_ch = trial == 0 ? 1 : rnd_in(1, 64);
            const int zp = trial == 1 ? -128 : (trial == 2 ? 127 : rnd_in(-128, 127));
            const int lo = trial == 3 ? zp : -128, hi = 127; /* lo = zp: a fused ReLU */
            for (int c = 0; c < n_ch; c++) {
                mult[c] = c == 0 ? (1 << 30) : (c == 1 ? 2147483647 : rnd_in(1 << 30, 2147483647));
                shift[c] = (int8_t)s;
                acc[c] = c < 8 ? EDGE[c] : rnd_acc(24);
                want[c] = requant_expect(acc[c], mult[c], s, zp, lo, hi);
            }
            nn_requant_ch_s8_ref(acc, ref, n_ch, 1, mult, shift, zp, lo, hi);
            nn_requant_ch_s8(acc, got, n_ch, 1, mult, shift, zp, lo, hi);
            check_bytes("nn_requant_ch_s8_ref", want, ref, n_ch, s, trial);
            check_bytes("nn_requant_ch_s8", want, got, n_ch, s, trial);
            hash_bytes(got, n_ch);
        }
    }
    /* dense, shifts above and below 33 mixed: the assembly hands a channel back mid-way */
    for (int trial = 0; trial < 8; trial++) {
        const int n_ch = rnd_in(1, 64), zp = rnd_in(-128, 127);
        for (int c = 0; c < n_ch; c++) {
            mult[c] = rnd_in(1 << 30, 2147483647);
            shift[c] = (int8_t)(rnd() % 4 == 0 ? rnd_in(20, 32) : rnd_in(33, 45));
            acc[c] = rnd_acc(24);
            want[c] = requant_expect(acc[c], mult[c], shift[c], zp, -128, 127);
        }
        nn_requant_ch_s8(acc, got, n_ch, 1, mult, shift, zp, -128, 127);
        check_bytes("nn_requant_ch_s8 mixed shifts", want, got, n_ch, n_ch, trial);
        hash_bytes(got, n_ch);
    }
    /* inner > 1 (conv channels), in place over the accumulators */
    for (int c = 0; c < 4; c++) {
        mult[c] = rnd_in(1 << 30, 2147483647);
        shift[c] = (int8_t)rnd_in(20, 45);
    }
    static int32_t buf[64];
    for (int i = 0; i < 64; i++) {
        buf[i] = (int32_t)rnd() >> 8;
        want[i] = requant_expect(buf[i], mult[i / 16], shift[i / 16], -3, -128, 127);
    }
    nn_requant_ch_s8(buf, (int8_t *)buf, 4, 16, mult, shift, -3, -128, 127);
    check_bytes("nn_requant_ch_s8 in place", want, buf, 64, 4, 16);
    hash_bytes(buf, 64);
    end("requant");
}

static void test_dequant(void)
{
    static int32_t acc[37];
    static float scale[37], want[37], got[37];
    begin();
    for (int relu = 0; relu < 2; relu++) {
        for (int i = 0; i < 37; i++) {
            acc[i] = i < 2 ? (i ? 2147483647 : -2147483647 - 1) : rnd_acc(20);
            scale[i] = (float)rnd_in(1, 1 << 20) / (float)(1 << 24);
            const int32_t a = (relu && acc[i] < 0) ? 0 : acc[i];
            want[i] = (float)a * scale[i];
        }
        nn_dequant_ch_f32(acc, got, 37, 1, scale, relu);
        check_bytes("nn_dequant_ch_f32", want, got, 4 * 37, relu, 0);
        hash_bytes(got, 4 * 37);
        nn_dequant_ch_f32(acc, (float *)acc, 37, 1, scale, relu); /* in place */
        check_bytes("nn_dequant_ch_f32 in place", want, acc, 4 * 37, relu, 1);
    }
    end("dequant");
}

/* ---- int8 convolution -------------------------------------------------------------- */

typedef struct {
    int C, H, W, M, KH, KW, sh, sw, pt, pb, pl, pr;
} conv_geom;

/* the CNN's layers, 5x5 and 1x1 kernels, strides, asymmetric and large padding
 * (windows that see no input at all), odd channel counts */
static const conv_geom CONVS[] = {
    {1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1}, {8, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 7, 5, 4, 2, 3, 1, 1, 0, 1, 1, 1},   {4, 11, 9, 5, 3, 3, 2, 2, 0, 1, 1, 0},
    {2, 5, 6, 3, 5, 4, 2, 3, 3, 2, 4, 3},   {5, 4, 4, 2, 1, 1, 1, 1, 0, 0, 0, 0},
    {2, 3, 3, 3, 3, 5, 1, 1, 2, 2, 2, 2},   {1, 12, 12, 5, 5, 5, 1, 1, 2, 2, 2, 2},
    {7, 9, 9, 3, 5, 5, 2, 2, 0, 0, 0, 0},   {3, 1, 1, 2, 3, 3, 1, 1, 1, 1, 1, 1},
};
#define N_CONVS ((int)(sizeof CONVS / sizeof CONVS[0]))
#define MAX_ACT 6400
/* conv weights (<= 2 KB), input, int8 outputs, float outputs in the arena */
#define CX ((int8_t *)(arena + 512))
#define CY_REF ((int8_t *)(arena + 512 + MAX_ACT / 4))
#define CY_OPT ((int8_t *)(arena + 512 + 2 * MAX_ACT / 4))
#define CF_REF (arena + 512 + 3 * MAX_ACT / 4)
#define CF_OPT (arena + 512 + 3 * MAX_ACT / 4 + MAX_ACT)

static void test_conv_s8(void)
{
    static int32_t mult[16];
    static int8_t shift[16];
    static float dq[16];
    static const int ZX[] = {-128, -95, 0, 37, 127};
    begin();
    for (int g = 0; g < N_CONVS; g++) {
        const conv_geom *q = &CONVS[g];
        const int OH = (q->H + q->pt + q->pb - q->KH) / q->sh + 1,
                  OW = (q->W + q->pl + q->pr - q->KW) / q->sw + 1;
        const int n_w = q->M * q->C * q->KH * q->KW, n_x = q->C * q->H * q->W, n_y = q->M * OH * OW;
        for (int pattern = 0; pattern <= N_PATTERNS; pattern++) { /* N_PATTERNS: a uniform background */
            for (int i = 0; i < n_w; i++)
                WA_B[i] = pattern == EXTREME ? ((i & 1) ? -128 : 127) : rnd_weight(pattern);
            for (int m = 0; m < q->M; m++) {
                bias[m] = pattern == EXTREME ? (1 << 29) : rnd_in(-50000, 50000);
                mult[m] = rnd_in(1 << 30, 2147483647);
                shift[m] = (int8_t)rnd_in(12, 24);
                dq[m] = (float)rnd_in(1, 1 << 16) / 65536.0f;
            }
            for (int z = 0; z < 5; z++) {
                const int zx = ZX[z];
                for (int i = 0; i < n_x; i++) {
                    int v = rnd_in(-128, 127);
                    if (pattern == ALL_ZERO || (pattern == SPARSE && rnd() % 10 < 7) ||
                        (pattern == FEW && rnd() % 32))
                        v = zx;
                    else if (pattern == EXTREME)
                        v = (i & 1) ? 127 : -128;
                    else if (pattern == N_PATTERNS && rnd() % 16) /* one value with a few strokes */
                        v = zx > 0 ? zx - 77 : zx + 77;
                    CX[i] = (int8_t)v;
                }
                const int zy = rnd_in(-128, 127), lo = (z & 1) ? zy : -128;
                memset(CY_OPT, 0x5a, (size_t)n_y);
                nn_conv2d_ref_s8(CX, zx, WA_B, bias, q->C, q->H, q->W, q->M, q->KH, q->KW, OH, OW, q->sh,
                                 q->sw, q->pt, q->pl, mult, shift, zy, lo, 127, CY_REF, 0, 0, 0);
                nn_conv2d_s8(CX, zx, WA_B, bias, q->C, q->H, q->W, q->M, q->KH, q->KW, OH, OW, q->sh, q->sw,
                             q->pt, q->pl, mult, shift, zy, lo, 127, CY_OPT, 0, 0, 0);
                check_bytes("nn_conv2d_s8", CY_REF, CY_OPT, n_y, g, z);
                hash_bytes(CY_OPT, n_y);
                const int relu = z & 1; /* dequantised float output (a conv feeding a float op) */
                memset(CF_OPT, 0x5a, sizeof(float) * (size_t)n_y);
                nn_conv2d_ref_s8(CX, zx, WA_B, bias, q->C, q->H, q->W, q->M, q->KH, q->KW, OH, OW, q->sh,
                                 q->sw, q->pt, q->pl, 0, 0, 0, -128, 127, 0, dq, CF_REF, relu);
                nn_conv2d_s8(CX, zx, WA_B, bias, q->C, q->H, q->W, q->M, q->KH, q->KW, OH, OW, q->sh, q->sw,
                             q->pt, q->pl, 0, 0, 0, -128, 127, 0, dq, CF_OPT, relu);
                check_bytes("nn_conv2d_s8 float out", CF_REF, CF_OPT, 4 * n_y, g, z);
                hash_bytes(CF_OPT, 4 * n_y);
            }
        }
    }
    end("conv_s8");
}

/* ---- pooling, ReLU, softmax: plain kernels; checked against the definition ---------- */

static void test_maxpool_s8(void)
{
    begin();
    for (int t = 0; t < 60; t++) {
        /* the CNN's 2x2/2 pools, then random windows, strides and paddings (odd sizes, tails) */
        const int C = rnd_in(1, 5), H = t < 4 ? 28 >> (t & 1) : rnd_in(1, 31), W = t < 4 ? H : rnd_in(1, 31);
        const int KH = t < 4 ? 2 : rnd_in(1, 3), KW = t < 4 ? 2 : rnd_in(1, 3);
        const int sh = t < 4 ? 2 : rnd_in(1, 3), sw = t < 4 ? 2 : rnd_in(1, 3);
        const int pt = t < 8 ? 0 : rnd_in(0, KH - 1), pl = t < 8 ? 0 : rnd_in(0, KW - 1);
        if (H + pt < KH || W + pl < KW)
            continue;
        const int OH = (H + pt - KH) / sh + 1, OW = (W + pl - KW) / sw + 1;
        for (int i = 0; i < C * H * W; i++)
            CX[i] = (int8_t)((t & 3) == 0 ? -128 : ((t & 3) == 1 ? 127 : rnd_in(-128, 127)));
        nn_maxpool2d_s8_ref(CX, CY_REF, C, H, W, KH, KW, OH, OW, sh, sw, pt, pl);
        nn_maxpool2d_s8(CX, CY_OPT, C, H, W, KH, KW, OH, OW, sh, sw, pt, pl);
        check_bytes("nn_maxpool2d_s8", CY_REF, CY_OPT, C * OH * OW, t, H);
        for (int c = 0; c < C && !pt && !pl; c++) /* the reference against the definition */
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    int m = -128;
                    for (int ky = 0; ky < KH; ky++)
                        for (int kx = 0; kx < KW; kx++) {
                            const int v = CX[(c * H + oy * sh + ky) * W + ox * sw + kx];
                            m = v > m ? v : m;
                        }
                    const int i = (c * OH + oy) * OW + ox;
                    if (CY_REF[i] != m)
                        mismatch("nn_maxpool2d_s8_ref", t, m, i);
                }
        hash_bytes(CY_OPT, C * OH * OW);
    }
    end("maxpool_s8");
}

static void test_softmax(void)
{
    static float x[11], y[11];
    begin();
    for (int t = 0; t < 50; t++) {
        for (int i = 0; i < 11; i++)
            x[i] = (float)rnd_in(-4000, 4000) / 64.0f;
        nn_softmax_f32(x, y, 1, 11);
        float s = 0.0f;
        for (int i = 0; i < 11; i++)
            s += y[i];
        if (s < 0.9999f || s > 1.0001f)
            mismatch("nn_softmax_f32 sum", t, (int)(s * 1e6f), 0);
        hash_bytes(y, sizeof y);
        nn_logsoftmax_f32(x, y, 1, 11);
        hash_bytes(y, sizeof y);
        nn_softmax_f32(x, x, 1, 11); /* in place */
        hash_bytes(x, sizeof x);
    }
    for (int i = -870; i <= 880; i += 7) {
        const float e = nn_expf((float)i / 10.0f), l = nn_logf((float)(i + 871));
        hash_bytes(&e, 4);
        hash_bytes(&l, 4);
    }
    end("softmax_expf_logf");
}

int nn_kernel_tests(void (*put_line)(const char *line))
{
    out_line = put_line;
    n_pass = n_fail = 0;
    test_dense_f32();
    test_dense_s8();
    test_requant();
    test_dequant();
    test_conv_s8();
    test_maxpool_s8();
    test_softmax();
    char line[48];
    char *p = put_str(line, "DONE ");
    p = put_int(p, n_pass);
    *p++ = ' ';
    p = put_int(p, n_fail);
    *p = 0;
    out_line(line);
    return n_fail;
}
