/* int8 kernels of the native backend: int8 weights (per-output-channel symmetric),
 * int8 asymmetric activations, int32 accumulation, fixed-point requantisation.
 * On cores with the DSP extension (Cortex-M4/M7/M33) the dense kernel uses
 * SXTB16 + SMLAD (two 16-bit MACs per instruction); elsewhere a portable C path
 * computes the identical integers. */
#include <string.h>

#include "nn_runtime.h"

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(NN_NO_DSP)
#include <arm_acle.h>
#define NN_USE_DSP 1
#else
#define NN_USE_DSP 0
#endif

void nn_lut_u8_s8(const uint8_t *x, const int8_t *lut, int8_t *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = lut[x[i]];
}

static inline int32_t pack16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16));
}

#if NN_USE_DSP
#define MAC_LO(acc, wd, v) acc = __smlad(__sxtb16(wd), v, acc)
/* SXTB16 with its built-in ROR #8 (GCC 12's ACLE has no __ror to fold) */
static inline int32_t sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#define MAC_HI(acc, wd, v) acc = __smlad(sxtb16_ror8(wd), v, acc)
#else
/* v.lo * byte0 + v.hi * byte2  /  v.lo * byte1 + v.hi * byte3 */
#define VLO(v) ((int32_t)(int16_t)((uint32_t)(v) & 0xffffu))
#define VHI(v) ((int32_t)(int16_t)((uint32_t)(v) >> 16))
#define MAC_LO(acc, wd, v) acc += (int32_t)(int8_t)(wd) * VLO(v) + (int32_t)(int8_t)((wd) >> 16) * VHI(v)
#define MAC_HI(acc, wd, v) acc += (int32_t)(int8_t)((wd) >> 8) * VLO(v) + (int32_t)(int8_t)((wd) >> 24) * VHI(v)
#endif

/* acc[0 .. 4*nq) += the contributions of two input pairs: values v0, v1 (packed
 * int16 lanes), weight rows w0, w1 (2 words = 4 outputs per step). */
static inline void mac_2pairs_x4(const uint32_t *w0, const uint32_t *w1, int32_t v0, int32_t v1,
                                 int32_t *acc, int nq)
{
    if (nq <= 0) return;
#if NN_USE_DSP
    /* hand-scheduled: GCC spills in this loop; 26 instructions per 16 MACs */
    int32_t a0, a1, a2, a3;
    uint32_t p, t;
    __asm__ volatile(
        "1:\n\t"
        "ldrd   %[a0], %[a1], [%[acc]]\n\t"
        "ldrd   %[a2], %[a3], [%[acc], #8]\n\t"
        "ldr    %[p], [%[w0]], #4\n\t"
        "sxtb16 %[t], %[p], ror #8\n\t"
        "sxtb16 %[p], %[p]\n\t"
        "smlad  %[a0], %[p], %[v0], %[a0]\n\t"
        "smlad  %[a1], %[t], %[v0], %[a1]\n\t"
        "ldr    %[p], [%[w0]], #4\n\t"
        "sxtb16 %[t], %[p], ror #8\n\t"
        "sxtb16 %[p], %[p]\n\t"
        "smlad  %[a2], %[p], %[v0], %[a2]\n\t"
        "smlad  %[a3], %[t], %[v0], %[a3]\n\t"
        "ldr    %[p], [%[w1]], #4\n\t"
        "sxtb16 %[t], %[p], ror #8\n\t"
        "sxtb16 %[p], %[p]\n\t"
        "smlad  %[a0], %[p], %[v1], %[a0]\n\t"
        "smlad  %[a1], %[t], %[v1], %[a1]\n\t"
        "ldr    %[p], [%[w1]], #4\n\t"
        "sxtb16 %[t], %[p], ror #8\n\t"
        "sxtb16 %[p], %[p]\n\t"
        "smlad  %[a2], %[p], %[v1], %[a2]\n\t"
        "smlad  %[a3], %[t], %[v1], %[a3]\n\t"
        "strd   %[a0], %[a1], [%[acc]], #8\n\t"
        "strd   %[a2], %[a3], [%[acc]], #8\n\t"
        "subs   %[n], %[n], #1\n\t"
        "bne    1b\n\t"
        : [w0] "+r"(w0), [w1] "+r"(w1), [acc] "+r"(acc), [n] "+r"(nq),
          [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [p] "=&r"(p), [t] "=&r"(t)
        : [v0] "r"(v0), [v1] "r"(v1)
        : "cc", "memory");
#else
    for (; nq > 0; nq--, w0 += 2, w1 += 2, acc += 4) {
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        MAC_LO(a0, w0[0], v0);
        MAC_HI(a1, w0[0], v0);
        MAC_LO(a2, w0[1], v0);
        MAC_HI(a3, w0[1], v0);
        MAC_LO(a0, w1[0], v1);
        MAC_HI(a1, w1[0], v1);
        MAC_LO(a2, w1[1], v1);
        MAC_HI(a3, w1[1], v1);
        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    }
#endif
}

/* acc += the contributions of input pairs k0 and k1 (values v0, v1);
 * w: words [n_pairs][nw], nw = ceil(n_out / 2).  The rows of one pair are
 * contiguous, so the weights are streamed in order. */
static void pairs_acc2(const uint32_t *w, int nw, int32_t *acc, int n_out,
                       int k0, int32_t v0, int k1, int32_t v1)
{
    const uint32_t *w0 = w + (long)k0 * nw;
    const uint32_t *w1 = w + (long)k1 * nw;
    const int nq = n_out >> 2;
    mac_2pairs_x4(w0, w1, v0, v1, acc, nq);
    for (int o = 4 * nq; o < n_out; o += 2) {   /* last 1..3 outputs */
        const uint32_t p = w0[o >> 1], q = w1[o >> 1];
        int32_t a = acc[o];
        MAC_LO(a, p, v0);
        MAC_LO(a, q, v1);
        acc[o] = a;
        if (o + 1 < n_out) {   /* else the word's second row is padding */
            int32_t b = acc[o + 1];
            MAC_HI(b, p, v0);
            MAC_HI(b, q, v1);
            acc[o + 1] = b;
        }
    }
}

/* nonzero pairs are accumulated two at a time; pk/pv hold the pending one */
#define PUSH_PAIR(k, v) do {                                                  \
        if (pk < 0) { pk = (k); pv = (v); }                                   \
        else { pairs_acc2(w, nw, acc, n_out, pk, pv, (k), (v)); pk = -1; }    \
    } while (0)
/* a last odd pair goes with a zero partner (adds exactly 0) */
#define FLUSH_PAIR() do { if (pk >= 0) pairs_acc2(w, nw, acc, n_out, pk, pv, pk, 0); } while (0)

void nn_dense_pairs_u8(const uint8_t *x, int n_in, const uint32_t *w, int nw,
                       const int32_t *bias, int32_t *acc, int n_out)
{
    int pk = -1, i = 0;
    int32_t pv = 0;
    for (int o = 0; o < n_out; o++) acc[o] = bias[o];
    for (; i + 4 <= n_in; i += 4) {
        uint32_t quad;   /* four zero pixels (most of an MNIST image): one test */
        memcpy(&quad, x + i, 4);
        if (quad == 0) continue;
        uint32_t a = x[i], b = x[i + 1];
        if (a | b) PUSH_PAIR(i >> 1, (int32_t)(a | (b << 16)));
        a = x[i + 2];
        b = x[i + 3];
        if (a | b) PUSH_PAIR((i >> 1) + 1, (int32_t)(a | (b << 16)));
    }
    for (; i + 1 < n_in; i += 2) {
        const uint32_t a = x[i], b = x[i + 1];
        if (a | b) PUSH_PAIR(i >> 1, (int32_t)(a | (b << 16)));
    }
    if (i < n_in && x[i]) PUSH_PAIR(i >> 1, (int32_t)x[i]);
    FLUSH_PAIR();
}

void nn_dense_pairs_s8(const int8_t *x, int zx, int n_in, const uint32_t *w, int nw,
                       const int32_t *bias, int32_t *acc, int n_out)
{
    int pk = -1, i = 0;
    int32_t pv = 0;
    for (int o = 0; o < n_out; o++) acc[o] = bias[o];
    for (; i + 1 < n_in; i += 2) {
        const int32_t a = x[i] - zx, b = x[i + 1] - zx;
        if (a | b) PUSH_PAIR(i >> 1, pack16(a, b));
    }
    if (i < n_in) {
        const int32_t a = x[i] - zx;
        if (a) PUSH_PAIR(i >> 1, pack16(a, 0));
    }
    FLUSH_PAIR();
}

#undef PUSH_PAIR
#undef FLUSH_PAIR

void nn_dense_ref_u8(const uint8_t *x, const int8_t *w, const int32_t *bias, int32_t *acc,
                     int n_in, int n_out)
{
    for (int o = 0; o < n_out; o++) {
        int32_t a = bias[o];
        for (int i = 0; i < n_in; i++) a += (int32_t)w[(long)o * n_in + i] * (int32_t)x[i];
        acc[o] = a;
    }
}

void nn_dense_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias,
                     int32_t *acc, int n_in, int n_out)
{
    for (int o = 0; o < n_out; o++) {
        int32_t a = bias[o];
        for (int i = 0; i < n_in; i++) a += (int32_t)w[(long)o * n_in + i] * ((int32_t)x[i] - zx);
        acc[o] = a;
    }
}

int32_t nn_requant(int32_t acc, int32_t mult, int shift)
{
    int64_t p = (int64_t)acc * (int64_t)mult + ((int64_t)1 << (shift - 1));
    p >>= shift;   /* arithmetic shift (two's complement targets) */
    if (p > 0x7fffffff) p = 0x7fffffff;
    if (p < -0x7fffffff - 1) p = -0x7fffffff - 1;
    return (int32_t)p;
}

static inline int8_t clamp8(int32_t v, int lo, int hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* int32 accumulator -> int8 output: requantise, bound (so adding the zero point cannot
 * overflow), add the zero point, clamp to [lo, hi] (which also applies a fused ReLU). */
static inline int8_t requant_s8(int32_t acc, int32_t mult, int shift, int zp, int lo, int hi)
{
    int32_t r = nn_requant(acc, mult, shift);
    if (r > 0x10000) r = 0x10000;
    if (r < -0x10000) r = -0x10000;
    return clamp8(r + zp, lo, hi);
}

/* int32 accumulator -> float output, with an optional fused ReLU. */
static inline float dequant_f32(int32_t acc, float scale, int relu)
{
    return (float)((relu && acc < 0) ? 0 : acc) * scale;
}

void nn_requant_ch_s8(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                      const int8_t *shift, int zp, int lo, int hi)
{
    for (int c = 0; c < n_ch; c++) {
        const int32_t m = mult[c];
        const int s = shift[c];
        for (int i = 0; i < inner; i++, acc++, y++)
            *y = requant_s8(*acc, m, s, zp, lo, hi);
    }
}

void nn_dequant_ch_f32(const int32_t *acc, float *y, int n_ch, int inner, const float *scale, int relu)
{
    for (int c = 0; c < n_ch; c++)
        for (int i = 0; i < inner; i++, acc++, y++)
            *y = dequant_f32(*acc, scale[c], relu);
}

void nn_dequant_s8_f32(const int8_t *x, float *y, int n, float scale, int zp)
{
    for (int i = 0; i < n; i++) y[i] = (float)((int32_t)x[i] - zp) * scale;
}

/* Same integers as nn_conv2d_ref_s8, faster: sum w*(x - zx) over the taps inside the
 * input is computed as sum w*x - zx * sum w (exact in int32), the valid tap range is
 * worked out once per output pixel instead of tested per tap, interior pixels use the
 * precomputed weight sum and an unrolled loop for 3-wide kernels. */
void nn_conv2d_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias,
                  int C, int H, int W, int M, int KH, int KW, int OH, int OW,
                  int sh, int sw, int pt, int pl,
                  const int32_t *mult, const int8_t *shift, int zy, int lo, int hi,
                  int8_t *y, const float *dq_scale, float *yf, int relu)
{
    const int K = KH * KW, CK = C * K;
    const long HW = (long)H * W;
    for (int m = 0; m < M; m++) {
        const int8_t *wm = w + (long)m * CK;
        int32_t wsum_all = 0;
        for (int i = 0; i < CK; i++) wsum_all += wm[i];
        for (int oy = 0; oy < OH; oy++) {
            const int iy0 = oy * sh - pt;
            const int ky0 = iy0 < 0 ? -iy0 : 0;
            const int ky1 = H - iy0 < KH ? H - iy0 : KH;
            for (int ox = 0; ox < OW; ox++) {
                const int ix0 = ox * sw - pl;
                const int kx0 = ix0 < 0 ? -ix0 : 0;
                const int kx1 = W - ix0 < KW ? W - ix0 : KW;
                int32_t acc = 0, ws;
                if (KW == 3 && ky0 == 0 && ky1 == KH && kx0 == 0 && kx1 == 3) {   /* 3-wide, inside */
                    const int8_t *xp = x + (long)iy0 * W + ix0;
                    const int8_t *wp = wm;
                    ws = wsum_all;
                    for (int c = 0; c < C; c++, xp += HW) {
                        const int8_t *r = xp;
                        for (int ky = 0; ky < KH; ky++, r += W, wp += 3)
                            acc += (int32_t)wp[0] * r[0] + (int32_t)wp[1] * r[1] + (int32_t)wp[2] * r[2];
                    }
                } else {   /* border (only the taps inside: padding is a real 0), other kernels */
                    ws = 0;
                    for (int c = 0; c < C; c++) {
                        const int8_t *xc = x + c * HW;
                        const int8_t *wc = wm + (long)c * K;
                        for (int ky = ky0; ky < ky1; ky++) {
                            const int8_t *r = xc + (long)(iy0 + ky) * W + ix0;
                            const int8_t *wr = wc + ky * KW;
                            for (int kx = kx0; kx < kx1; kx++) {
                                acc += (int32_t)wr[kx] * r[kx];
                                ws += wr[kx];
                            }
                        }
                    }
                }
                acc = bias[m] + acc - zx * ws;
                if (yf)
                    *yf++ = dequant_f32(acc, dq_scale[m], relu);
                else
                    *y++ = requant_s8(acc, mult[m], shift[m], zy, lo, hi);
            }
        }
    }
}

/* the plain reference: one tap at a time, bounds tested per tap */
void nn_conv2d_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias,
                  int C, int H, int W, int M, int KH, int KW, int OH, int OW,
                  int sh, int sw, int pt, int pl,
                  const int32_t *mult, const int8_t *shift, int zy, int lo, int hi,
                  int8_t *y, const float *dq_scale, float *yf, int relu)
{
    for (int m = 0; m < M; m++) {
        const int8_t *wm = w + (long)m * C * KH * KW;
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                int32_t acc = bias[m];
                const int iy0 = oy * sh - pt, ix0 = ox * sw - pl;
                for (int c = 0; c < C; c++) {
                    const int8_t *xc = x + (long)c * H * W;
                    const int8_t *wc = wm + (long)c * KH * KW;
                    for (int ky = 0; ky < KH; ky++) {
                        const int iy = iy0 + ky;
                        if (iy < 0 || iy >= H) continue;   /* padding is real 0 */
                        for (int kx = 0; kx < KW; kx++) {
                            const int ix = ix0 + kx;
                            if (ix < 0 || ix >= W) continue;
                            acc += (int32_t)wc[ky * KW + kx] * ((int32_t)xc[iy * W + ix] - zx);
                        }
                    }
                }
                if (yf)
                    *yf++ = dequant_f32(acc, dq_scale[m], relu);
                else
                    *y++ = requant_s8(acc, mult[m], shift[m], zy, lo, hi);
            }
        }
    }
}

void nn_maxpool2d_s8(const int8_t *x, int8_t *y, int C, int H, int W, int KH, int KW,
                     int OH, int OW, int sh, int sw, int pt, int pl)
{
    for (int c = 0; c < C; c++, x += (long)H * W) {
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                int m = -128;
                for (int ky = 0; ky < KH; ky++) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < KW; kx++) {
                        const int ix = ox * sw - pl + kx;
                        if (ix < 0 || ix >= W) continue;
                        if (x[iy * W + ix] > m) m = x[iy * W + ix];
                    }
                }
                *y++ = (int8_t)m;
            }
        }
    }
}

void nn_relu_s8(const int8_t *x, int8_t *y, int n, int zp)
{
    for (int i = 0; i < n; i++) y[i] = x[i] < zp ? (int8_t)zp : x[i];
}
