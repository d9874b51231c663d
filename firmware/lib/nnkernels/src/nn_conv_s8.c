/* Optimised int8 convolution (NCHW, weights [M][C][KH][KW]); nn_conv_s8_ref.c holds its
 * reference twin, which this must match integer for integer.
 *
 * CMSIS-NN style, without a layout change or scratch memory: the taps of two
 * neighbouring output pixels are gathered on the stack as int16 (x - zx, 0 outside the
 * input: padding is a real 0), and two output channels at a time take their dot
 * products with SMLAD, four weights per word (SXTB16 splits a word into lanes 0/2 and
 * 1/3, so the gathered taps are stored in that order).  A pixel pair whose taps are all
 * zero (background) costs no MACs: its outputs are the requantised biases.  Kernels
 * with more than NN_CONV_MAX_TAPS taps per pixel (C*KH*KW) use the reference path. */
#include <string.h>

#include "nn_internal.h"

#define NN_CONV_MAX_TAPS 256 /* beyond: the reference path (stack use grows with the taps) */
#define ZOUT_MAX 64          /* output channels whose background output is kept on the stack */

#if NN_USE_DSP
/* nn_conv_s8_m4.S: acc[0..1] (row wa) and acc[2..3] (row wb) += nwords weight words times
 * the taps of pixels 0 and 1 (col: per weight word, two words of pixel 0, two of pixel 1) */
void nn_dot2x2_s8(const int8_t *wa, const int8_t *wb, const uint32_t *col, int nwords, int32_t *acc);
#endif

#if NN_USE_DSP
#define SX02(w) ((int32_t)__sxtb16(w))
#define SX13(w) sxtb16_ror8(w)
#define SMLAD(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
#else
static inline int32_t lanes(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16));
}
#define SX02(w) lanes((int8_t)(w), (int8_t)((w) >> 16))
#define SX13(w) lanes((int8_t)((w) >> 8), (int8_t)((w) >> 24))
#define SMLAD(a, b, acc) ((acc) + (int16_t)(a) * (int16_t)(b) + ((int32_t)(a) >> 16) * ((int32_t)(b) >> 16))
#endif

/* Tap k of a pixel goes to int16 slot (k & ~3) | {0, 2, 1, 3}[k & 3] of its column, so
 * word 2j holds taps (4j, 4j+2) and word 2j+1 taps (4j+1, 4j+3): the lanes SXTB16 makes
 * of weight word j.  Slots from K up to the next multiple of 4 are zero. */
static inline int slot_of(int k) { return (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1); }

/* Per slot s of a column: where its tap sits relative to the window's top-left input
 * (off), and its row and column in the window (ty, tx); a padding slot beyond K has
 * off 0 and ty = -128, so it always reads as outside. */
typedef struct {
    int16_t *off;
    int8_t *ty, *tx;
} taps_t;

static void tap_table(int C, int H, int W, int KH, int KW, const taps_t *tb)
{
    int k = 0;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++, k++) {
                const int s = slot_of(k);
                tb->off[s] = (int16_t)((c * H + ky) * W + kx);
                tb->ty[s] = (int8_t)ky;
                tb->tx[s] = (int8_t)kx;
            }
    for (; k & 3; k++) {
        const int s = slot_of(k);
        tb->off[s] = 0;
        tb->ty[s] = -128;
        tb->tx[s] = 0;
    }
}

#define NOT_UNIFORM (-0x10000)

/* One output pixel's taps (x - zx, and 0 outside the input: padding is a real 0) in
 * slot order, two per word.  Returns the common value of the taps if the window lies
 * inside the input and all its taps are equal (background: the output is then the bias
 * plus that value times the weight sum), else NOT_UNIFORM. */
static inline __attribute__((always_inline)) int gather_taps(const int8_t *x, int zx, int H, int W, int KH,
                                                             int KW, int iy0, int ix0, const taps_t *tb,
                                                             int n_slots, int K, uint32_t *col, int pix)
{
    /* slots 4j..4j+3 of this pixel: words 4j + 2 pix, 4j + 2 pix + 1 (lane order as slot order) */
#define WORD_OF(s) (((s) >> 2) * 4 + 2 * pix + (((s) >> 1) & 1))
    const int8_t *base = x + (long)iy0 * W + ix0;
    if (iy0 >= 0 && ix0 >= 0 && iy0 + KH <= H && ix0 + KW <= W) { /* inside: by the offset table */
        const int16_t *off = tb->off;
        const int32_t v0 = base[0] - zx; /* tap 0 is the window's top-left */
        const uint32_t vv = (uint16_t)v0 | ((uint32_t)v0 << 16);
        uint32_t diff = 0;
        for (int s = 0; s < n_slots; s += 2) {
            const uint32_t v = (uint16_t)(base[off[s]] - zx) | ((uint32_t)(base[off[s + 1]] - zx) << 16);
            col[WORD_OF(s)] = v;
            diff |= v ^ vv; /* padding slots read tap 0 here */
        }
        if (n_slots != K) /* padding slots are zero */
            for (int s = n_slots - 4; s < n_slots; s++)
                if (tb->ty[s] < 0)
                    ((int16_t *)col)[2 * WORD_OF(s) + (s & 1)] = 0;
        return diff ? NOT_UNIFORM : (int)v0;
    }
    for (int s = 0; s < n_slots; s++) { /* at the border: every tap tested */
        const unsigned iy = (unsigned)(iy0 + tb->ty[s]), ix = (unsigned)(ix0 + tb->tx[s]);
        const int32_t v = (iy < (unsigned)H && ix < (unsigned)W) ? base[tb->off[s]] - zx : 0;
        ((int16_t *)col)[2 * WORD_OF(s) + (s & 1)] = (int16_t)v;
    }
    return NOT_UNIFORM;
#undef WORD_OF
}

/* weight word j of a channel row of K bytes; the bytes past K (a last partial word) read as 0 */
static inline uint32_t weight_word(const int8_t *w, int j, int K)
{
    uint32_t u = 0;
    const int n = K - 4 * j;
    if (n >= 4) {
        memcpy(&u, w + 4 * j, 4);
        return u;
    }
    for (int b = 0; b < n; b++)
        u |= (uint32_t)(uint8_t)w[4 * j + b] << (8 * b);
    return u;
}

typedef struct {
    const int32_t *mult;
    const int8_t *shift;
    int zy, lo, hi, fast;
    const float *dq;
    int relu;
} epi_t;

/* channel m's outputs of the pixel pair: y[at] (and y[at + 1] if two) */
static inline __attribute__((always_inline)) void store_pair(const epi_t *e, int m, int32_t r0, int32_t r1,
                                                             int two, int8_t *y, float *yf, long at)
{
    if (yf) {
        yf[at] = dequant_f32(r0, e->dq[m], e->relu);
        if (two)
            yf[at + 1] = dequant_f32(r1, e->dq[m], e->relu);
        return;
    }
    const int32_t mu = e->mult[m];
    const int s = e->shift[m];
    if (e->fast && s >= 33) {
        y[at] = requant_hi(r0, mu, s, e->zy, e->lo, e->hi);
        if (two)
            y[at + 1] = requant_hi(r1, mu, s, e->zy, e->lo, e->hi);
    } else {
        y[at] = requant_s8(r0, mu, s, e->zy, e->lo, e->hi);
        if (two)
            y[at + 1] = requant_s8(r1, mu, s, e->zy, e->lo, e->hi);
    }
}

void nn_conv2d_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int C, int H, int W, int M,
                  int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl, const int32_t *mult,
                  const int8_t *shift, int zy, int lo, int hi, int8_t *y, const float *dq_scale, float *yf,
                  int relu)
{
    const int K = C * KH * KW;
    if (K > NN_CONV_MAX_TAPS || KH > 127 || KW > 127) {
        nn_conv2d_ref_s8(x, zx, w, bias, C, H, W, M, KH, KW, OH, OW, sh, sw, pt, pl, mult, shift, zy, lo, hi,
                         y, dq_scale, yf, relu);
        return;
    }
    const int n_slots = (K + 3) & ~3;
    uint32_t col[n_slots]; /* two pixels' taps as int16 pairs (n_slots / 2 words each), interleaved */
    int16_t off[n_slots];
    int8_t ty[n_slots], tx[n_slots];
    const taps_t tb = {off, ty, tx};
    const int nw = n_slots >> 2; /* weight words per channel, the last one maybe partial */
    const epi_t e = {mult, shift, zy, lo, hi, lo >= -128 && hi <= 127, dq_scale, relu};
    const long OHW = (long)OH * OW;
    tap_table(C, H, W, KH, KW, &tb);
    /* Uniform windows (all taps the same value u, e.g. the background) need no MACs: the
     * outputs are requant(bias + u * weight sum), kept for the last u seen. */
    int32_t wsum[M <= ZOUT_MAX ? M : 1];
    int8_t zout[M <= ZOUT_MAX ? M : 1];
    int zval = NOT_UNIFORM;
    const int use_uniform = !yf && M <= ZOUT_MAX;
    for (int m = 0; use_uniform && m < M; m++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++)
            s += w[(long)m * K + k];
        wsum[m] = s;
    }
    for (int oy = 0; oy < OH; oy++) {
        const int iy0 = oy * sh - pt;
        for (int ox = 0; ox < OW; ox += 2) {
            const int two = ox + 1 < OW;
            const int ix0 = ox * sw - pl;
            int u = gather_taps(x, zx, H, W, KH, KW, iy0, ix0, &tb, n_slots, K, col, 0);
            if (two) {
                const int u1 = gather_taps(x, zx, H, W, KH, KW, iy0, ix0 + sw, &tb, n_slots, K, col, 1);
                u = u1 == u ? u : NOT_UNIFORM;
            } else
                for (int j = 0; j < n_slots / 4; j++)
                    col[4 * j + 2] = col[4 * j + 3] = 0;
            const long o0 = oy * (long)OW + ox;
            if (u != NOT_UNIFORM && use_uniform) {
                if (u != zval) {
                    zval = u;
                    for (int m = 0; m < M; m++)
                        zout[m] = requant_s8(bias[m] + u * wsum[m], mult[m], shift[m], zy, lo, hi);
                }
                for (int m = 0; m < M; m++) {
                    y[m * OHW + o0] = zout[m];
                    if (two)
                        y[m * OHW + o0 + 1] = zout[m];
                }
                continue;
            }
            for (int m = 0; m < M; m += 2) {
                const int pair = m + 1 < M;
                const int8_t *wa = w + (long)m * K, *wb = pair ? wa + K : wa;
                int32_t acc[4] = {bias[m], bias[m], bias[m + pair], bias[m + pair]};
                {
#if NN_USE_DSP
                    /* whole words; the last partial word reads up to 3 bytes past the row
                     * (the next row, or the constants after the weights): they meet zero slots */
                    nn_dot2x2_s8(wa, wb, col, nw, acc);
#else
                    for (int j = 0; j < nw; j++) {
                        const uint32_t ua = weight_word(wa, j, K), ub = weight_word(wb, j, K);
                        const int32_t a02 = SX02(ua), a13 = SX13(ua), b02 = SX02(ub), b13 = SX13(ub);
                        const int32_t p02 = (int32_t)col[4 * j], p13 = (int32_t)col[4 * j + 1],
                                      q02 = (int32_t)col[4 * j + 2], q13 = (int32_t)col[4 * j + 3];
                        acc[0] = SMLAD(a13, p13, SMLAD(a02, p02, acc[0]));
                        acc[1] = SMLAD(a13, q13, SMLAD(a02, q02, acc[1]));
                        acc[2] = SMLAD(b13, p13, SMLAD(b02, p02, acc[2]));
                        acc[3] = SMLAD(b13, q13, SMLAD(b02, q02, acc[3]));
                    }
#endif
                }
                store_pair(&e, m, acc[0], acc[1], two, y, yf, m * OHW + o0);
                if (pair)
                    store_pair(&e, m + 1, acc[2], acc[3], two, y, yf, (m + 1) * OHW + o0);
            }
        }
    }
}
