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

#define NN_CONV_MAX_TAPS 128

#if NN_USE_DSP
#define SX02(w) ((int32_t)__sxtb16(w))
#define SX13(w) sxtb16_ror8(w)
#define SMLAD(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
#else
static inline int32_t lanes(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16)); }
#define SX02(w) lanes((int8_t)(w), (int8_t)((w) >> 16))
#define SX13(w) lanes((int8_t)((w) >> 8), (int8_t)((w) >> 24))
#define SMLAD(a, b, acc) ((acc) + (int16_t)(a) * (int16_t)(b) + ((int32_t)(a) >> 16) * ((int32_t)(b) >> 16))
#endif

/* Tap k of a pixel goes to int16 slot (k & ~3) | {0, 2, 1, 3}[k & 3] of its column, so
 * word 2j holds taps (4j, 4j+2) and word 2j+1 taps (4j+1, 4j+3): the lanes SXTB16 makes
 * of weight word j.  Slots from K up to the next multiple of 4 are zero. */
static inline int slot_of(int k) { return (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1); }

/* off[s]: where the tap in slot s sits relative to the window's top-left input, for
 * windows wholly inside the input (-1: a padding slot beyond K) */
static void tap_offsets(int C, int H, int W, int KH, int KW, int16_t *off)
{
    const int K = C * KH * KW;
    int k = 0;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++, k++)
                off[slot_of(k)] = (int16_t)((c * H + ky) * W + kx);
    for (; k & 3; k++)
        off[slot_of(k)] = -1;
}

/* One output pixel's taps (x - zx, and 0 outside the input: padding is a real 0) in
 * slot order; returns whether any is nonzero. */
static int gather_taps(const int8_t *x, int zx, int C, int H, int W, int KH, int KW, int iy0, int ix0,
                       const int16_t *off, int n_slots, int16_t *col)
{
    int32_t any = 0;
    if (iy0 >= 0 && ix0 >= 0 && iy0 + KH <= H && ix0 + KW <= W) { /* inside: by the offset table */
        const int8_t *base = x + (long)iy0 * W + ix0;
        for (int s = 0; s < n_slots; s++) {
            const int o = off[s];
            const int32_t v = o >= 0 ? base[o] - zx : 0;
            col[s] = (int16_t)v;
            any |= v;
        }
        return any != 0;
    }
    int k = 0;
    const long HW = (long)H * W;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < KH; ky++) {
            const int iy = iy0 + ky;
            const int8_t *row = x + c * HW + (long)iy * W;
            const int row_ok = iy >= 0 && iy < H;
            for (int kx = 0; kx < KW; kx++, k++) {
                const int ix = ix0 + kx;
                const int32_t v = (row_ok && ix >= 0 && ix < W) ? row[ix] - zx : 0;
                col[slot_of(k)] = (int16_t)v;
                any |= v;
            }
        }
    for (; k & 3; k++)
        col[slot_of(k)] = 0;
    return any != 0;
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

static inline int8_t requant_out(int32_t acc, int32_t m, int s, int zp, int lo, int hi, int fast)
{
    return (fast && s >= 33) ? requant_hi(acc, m, s, zp, lo, hi) : requant_s8(acc, m, s, zp, lo, hi);
}

void nn_conv2d_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int C, int H, int W, int M,
                  int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl, const int32_t *mult,
                  const int8_t *shift, int zy, int lo, int hi, int8_t *y, const float *dq_scale, float *yf,
                  int relu)
{
    const int K = C * KH * KW;
    if (K > NN_CONV_MAX_TAPS) {
        nn_conv2d_ref_s8(x, zx, w, bias, C, H, W, M, KH, KW, OH, OW, sh, sw, pt, pl, mult, shift, zy, lo, hi, y,
                         dq_scale, yf, relu);
        return;
    }
    uint32_t col0[NN_CONV_MAX_TAPS / 2], col1[NN_CONV_MAX_TAPS / 2]; /* two pixels' taps, int16 pairs */
    int16_t off[NN_CONV_MAX_TAPS];
    const int n_slots = (K + 3) & ~3;
    const int nw = n_slots >> 2; /* weight words per channel, the last one maybe partial */
    const int nfull = K >> 2;
    tap_offsets(C, H, W, KH, KW, off);
    const int fast = lo >= -128 && hi <= 127;
    const long OHW = (long)OH * OW;
    for (int oy = 0; oy < OH; oy++) {
        const int iy0 = oy * sh - pt;
        for (int ox = 0; ox < OW; ox += 2) {
            const int two = ox + 1 < OW;
            const int ix0 = ox * sw - pl;
            int nz = gather_taps(x, zx, C, H, W, KH, KW, iy0, ix0, off, n_slots, (int16_t *)col0);
            if (two)
                nz |= gather_taps(x, zx, C, H, W, KH, KW, iy0, ix0 + sw, off, n_slots, (int16_t *)col1);
            else
                memset(col1, 0, sizeof(int16_t) * (size_t)n_slots);
            const long o0 = oy * (long)OW + ox;
            for (int m = 0; m < M; m += 2) {
                const int pair = m + 1 < M;
                const int8_t *wa = w + (long)m * K, *wb = pair ? wa + K : wa;
                int32_t a0 = bias[m], a1 = bias[m], b0 = bias[m + pair], b1 = bias[m + pair];
                if (nz) {
                    const uint32_t *p = col0, *q = col1;
                    for (int j = 0; j < nw; j++, p += 2, q += 2) {
                        uint32_t ua, ub;
                        if (j < nfull) {
                            memcpy(&ua, wa + 4 * j, 4);
                            memcpy(&ub, wb + 4 * j, 4);
                        } else { /* the last partial word: its missing taps are zero slots */
                            ua = weight_word(wa, j, K);
                            ub = weight_word(wb, j, K);
                        }
                        const int32_t a02 = SX02(ua), a13 = SX13(ua), b02 = SX02(ub), b13 = SX13(ub);
                        const int32_t p02 = (int32_t)p[0], p13 = (int32_t)p[1], q02 = (int32_t)q[0],
                                      q13 = (int32_t)q[1];
                        a0 = SMLAD(a02, p02, a0);
                        a0 = SMLAD(a13, p13, a0);
                        a1 = SMLAD(a02, q02, a1);
                        a1 = SMLAD(a13, q13, a1);
                        b0 = SMLAD(b02, p02, b0);
                        b0 = SMLAD(b13, p13, b0);
                        b1 = SMLAD(b02, q02, b1);
                        b1 = SMLAD(b13, q13, b1);
                    }
                }
                for (int t = 0; t <= pair; t++) {
                    const int mm = m + t;
                    const int32_t r0 = t ? b0 : a0, r1 = t ? b1 : a1;
                    const long at = mm * OHW + o0;
                    if (yf) {
                        yf[at] = dequant_f32(r0, dq_scale[mm], relu);
                        if (two)
                            yf[at + 1] = dequant_f32(r1, dq_scale[mm], relu);
                    } else {
                        y[at] = requant_out(r0, mult[mm], shift[mm], zy, lo, hi, fast);
                        if (two)
                            y[at + 1] = requant_out(r1, mult[mm], shift[mm], zy, lo, hi, fast);
                    }
                }
            }
        }
    }
}
