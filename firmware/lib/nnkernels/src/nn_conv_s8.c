/* Optimised int8 convolution; nn_conv_s8_ref.c holds its reference twin. */
#include "nn_internal.h"


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
