/* Reference int8 convolution. */
#include "nn_internal.h"

/* the plain reference: one tap at a time, bounds tested per tap */
void nn_conv2d_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int C, int H, int W,
                      int M, int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl,
                      const int32_t *mult, const int8_t *shift, int zy, int lo, int hi, int8_t *y,
                      const float *dq_scale, float *yf, int relu)
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
                        if (iy < 0 || iy >= H)
                            continue; /* padding is real 0 */
                        for (int kx = 0; kx < KW; kx++) {
                            const int ix = ix0 + kx;
                            if (ix < 0 || ix >= W)
                                continue;
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
