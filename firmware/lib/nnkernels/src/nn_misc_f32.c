/* Plain float32 kernels (no optimised twin: they are their own reference). */
#include "nn_runtime.h"

void nn_lut_u8_f32(const uint8_t *x, const float *lut, float *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = lut[x[i]];
}

void nn_conv2d_f32(const float *x, const float *w, const float *b, float *y, int C, int H, int W, int M,
                   int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl, int relu)
{
    for (int m = 0; m < M; m++) {
        const float *wm = w + (long)m * C * KH * KW;
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                float acc = b[m];
                const int iy0 = oy * sh - pt, ix0 = ox * sw - pl;
                for (int c = 0; c < C; c++) {
                    const float *xc = x + (long)c * H * W;
                    const float *wc = wm + (long)c * KH * KW;
                    for (int ky = 0; ky < KH; ky++) {
                        const int iy = iy0 + ky;
                        if (iy < 0 || iy >= H)
                            continue;
                        for (int kx = 0; kx < KW; kx++) {
                            const int ix = ix0 + kx;
                            if (ix < 0 || ix >= W)
                                continue;
                            acc = acc + wc[ky * KW + kx] * xc[iy * W + ix];
                        }
                    }
                }
                *y++ = (relu && acc < 0.0f) ? 0.0f : acc;
            }
        }
    }
}

void nn_maxpool2d_f32(const float *x, float *y, int C, int H, int W, int KH, int KW, int OH, int OW, int sh,
                      int sw, int pt, int pl)
{
    for (int c = 0; c < C; c++, x += (long)H * W) {
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                float m = 0.0f;
                int any = 0;
                for (int ky = 0; ky < KH; ky++) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= H)
                        continue;
                    for (int kx = 0; kx < KW; kx++) {
                        const int ix = ox * sw - pl + kx;
                        if (ix < 0 || ix >= W)
                            continue;
                        const float v = x[iy * W + ix];
                        if (!any || v > m) {
                            m = v;
                            any = 1;
                        }
                    }
                }
                *y++ = m;
            }
        }
    }
}

void nn_relu_f32(const float *x, float *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void nn_add_f32(const float *a, const float *b, float *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void nn_matmul_f32(const float *a, const float *b, float *y, int m, int k, int n)
{
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) {
            float acc = 0.0f;
            for (int i = 0; i < k; i++)
                acc = acc + a[(long)r * k + i] * b[(long)i * n + c];
            y[(long)r * n + c] = acc;
        }
}
