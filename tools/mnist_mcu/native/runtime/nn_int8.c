/* int8 kernels of the native backend: int8 weights (per-output-channel symmetric),
 * int8 asymmetric activations, int32 accumulation, fixed-point requantisation.
 * On cores with the DSP extension (Cortex-M4/M7/M33) the dense kernel uses
 * SXTB16 + SMLAD (two 16-bit MACs per instruction); elsewhere a portable C path
 * computes the identical integers. */
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

int nn_pairs_u8(const uint8_t *x, int n_in, uint16_t *kk, int32_t *vv)
{
    int n = 0, k = 0;
    for (; 2 * k + 1 < n_in; k++) {
        const uint32_t a = x[2 * k], b = x[2 * k + 1];
        if (a | b) { kk[n] = (uint16_t)k; vv[n] = (int32_t)(a | (b << 16)); n++; }
    }
    if (2 * k < n_in && x[2 * k]) { kk[n] = (uint16_t)k; vv[n] = (int32_t)x[2 * k]; n++; }
    return n;
}

int nn_pairs_s8(const int8_t *x, int zx, int n_in, uint16_t *kk, int32_t *vv)
{
    int n = 0, k = 0;
    for (; 2 * k + 1 < n_in; k++) {
        const int32_t a = x[2 * k] - zx, b = x[2 * k + 1] - zx;
        if (a | b) { kk[n] = (uint16_t)k; vv[n] = pack16(a, b); n++; }
    }
    if (2 * k < n_in) {
        const int32_t a = x[2 * k] - zx;
        if (a) { kk[n] = (uint16_t)k; vv[n] = pack16(a, 0); n++; }
    }
    return n;
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

void nn_dense_pairs_s8(const uint16_t *kk, const int32_t *vv, int np, const uint32_t *w,
                       int stride, const int32_t *bias, int32_t *acc, int n_out)
{
    int o = 0;
    for (; o + 4 <= n_out; o += 4) {
        const uint32_t *w0 = w + (long)(o >> 1) * stride;
        const uint32_t *w1 = w0 + stride;
        int32_t a0 = bias[o], a1 = bias[o + 1], a2 = bias[o + 2], a3 = bias[o + 3];
        for (int j = 0; j < np; j++) {
            const uint32_t k = kk[j];
            const int32_t v = vv[j];
            const uint32_t p = w0[k], q = w1[k];
            MAC_LO(a0, p, v);
            MAC_HI(a1, p, v);
            MAC_LO(a2, q, v);
            MAC_HI(a3, q, v);
        }
        acc[o] = a0; acc[o + 1] = a1; acc[o + 2] = a2; acc[o + 3] = a3;
    }
    for (; o < n_out; o += 2) {   /* rows are padded to an even count */
        const uint32_t *w0 = w + (long)(o >> 1) * stride;
        int32_t a0 = bias[o], a1 = (o + 1 < n_out) ? bias[o + 1] : 0;
        for (int j = 0; j < np; j++) {
            const uint32_t p = w0[kk[j]];
            const int32_t v = vv[j];
            MAC_LO(a0, p, v);
            MAC_HI(a1, p, v);
        }
        acc[o] = a0;
        if (o + 1 < n_out) acc[o + 1] = a1;
    }
}

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

void nn_requant_ch_s8(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                      const int8_t *shift, int zp, int lo, int hi)
{
    for (int c = 0; c < n_ch; c++) {
        const int32_t m = mult[c];
        const int s = shift[c];
        for (int i = 0; i < inner; i++, acc++, y++) {
            int32_t r = nn_requant(*acc, m, s);
            if (r > 0x10000) r = 0x10000;
            if (r < -0x10000) r = -0x10000;
            *y = clamp8(r + zp, lo, hi);
        }
    }
}

void nn_dequant_ch_f32(const int32_t *acc, float *y, int n_ch, int inner, const float *scale, int relu)
{
    for (int c = 0; c < n_ch; c++)
        for (int i = 0; i < inner; i++, acc++, y++) {
            const int32_t a = (relu && *acc < 0) ? 0 : *acc;
            *y = (float)a * scale[c];
        }
}

void nn_dequant_s8_f32(const int8_t *x, float *y, int n, float scale, int zp)
{
    for (int i = 0; i < n; i++) y[i] = (float)((int32_t)x[i] - zp) * scale;
}

void nn_conv2d_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias,
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
                if (yf) {
                    if (relu && acc < 0) acc = 0;
                    *yf++ = (float)acc * dq_scale[m];
                } else {
                    int32_t r = nn_requant(acc, mult[m], shift[m]);
                    if (r > 0x10000) r = 0x10000;
                    if (r < -0x10000) r = -0x10000;
                    *y++ = clamp8(r + zy, lo, hi);
                }
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
