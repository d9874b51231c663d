/* float32 kernels of the native backend.  Summation order is fixed (bias first,
 * then inputs in ascending index), so the optimised kernels give the same bits as
 * the reference kernels (zero inputs only ever add +-0). */
#include <string.h>

#include "nn_runtime.h"

void nn_lut_u8_f32(const uint8_t *x, const float *lut, float *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = lut[x[i]];
}

void nn_dense_ref_f32(const float *x, const float *w, const float *b, float *y,
                      int n_in, int n_out, int relu)
{
    for (int o = 0; o < n_out; o++) {
        float acc = b[o];
        const float *wr = w + (long)o * n_in;
        for (int i = 0; i < n_in; i++) acc = acc + wr[i] * x[i];
        y[o] = (relu && acc < 0.0f) ? 0.0f : acc;
    }
}

/* y += the columns of 4 nonzero inputs (wt rows i0..i3 scaled by v0..v3), one
 * rounding step per input in ascending input order. */
static void dense_cols4(const float *wt, int n_out, float *y, const int *idx, const float *val)
{
    const float *w0 = wt + (long)idx[0] * n_out;
    const float *w1 = wt + (long)idx[1] * n_out;
    const float *w2 = wt + (long)idx[2] * n_out;
    const float *w3 = wt + (long)idx[3] * n_out;
    const float v0 = val[0], v1 = val[1], v2 = val[2], v3 = val[3];
    for (int o = 0; o < n_out; o++) {
        float a = y[o];
        a = a + w0[o] * v0;
        a = a + w1[o] * v1;
        a = a + w2[o] * v2;
        a = a + w3[o] * v3;
        y[o] = a;
    }
}

/* the last 0..3 gathered inputs, then the fused ReLU */
static void dense_finish(const float *wt, int n_out, float *y, const int *idx, const float *val,
                         int n, int relu)
{
    for (int j = 0; j < n; j++) {
        const float *w0 = wt + (long)idx[j] * n_out;
        const float v0 = val[j];
        for (int o = 0; o < n_out; o++) y[o] = y[o] + w0[o] * v0;
    }
    if (relu)
        for (int o = 0; o < n_out; o++) if (y[o] < 0.0f) y[o] = 0.0f;
}

/* The input is scanned once; nonzero inputs are gathered four at a time in a
 * tiny local batch (no scratch buffer) and their weight columns are added. */
void nn_dense_f32(const float *x, const float *wt, const float *b, float *y,
                  int n_in, int n_out, int relu)
{
    int idx[4];
    float val[4];
    int n = 0;
    for (int o = 0; o < n_out; o++) y[o] = b[o];
    for (int i = 0; i < n_in; i++) {
        const float v = x[i];
        if (v != 0.0f) {
            idx[n] = i;
            val[n] = v;
            if (++n == 4) { dense_cols4(wt, n_out, y, idx, val); n = 0; }
        }
    }
    dense_finish(wt, n_out, y, idx, val, n, relu);
}

void nn_dense_u8_f32(const uint8_t *x, const float *wt, const float *b, float *y,
                     int n_in, int n_out, int relu)
{
    int idx[4];
    float val[4];
    int n = 0, i = 0;
    for (int o = 0; o < n_out; o++) y[o] = b[o];
    for (; i + 4 <= n_in; i += 4) {
        uint32_t quad;   /* four zero pixels (most of an MNIST image): one test */
        memcpy(&quad, x + i, 4);
        if (quad == 0) continue;
        for (int j = i; j < i + 4; j++) {
            if (x[j]) {
                idx[n] = j;
                val[n] = (float)x[j];
                if (++n == 4) { dense_cols4(wt, n_out, y, idx, val); n = 0; }
            }
        }
    }
    for (; i < n_in; i++) {
        if (x[i]) {
            idx[n] = i;
            val[n] = (float)x[i];
            if (++n == 4) { dense_cols4(wt, n_out, y, idx, val); n = 0; }
        }
    }
    dense_finish(wt, n_out, y, idx, val, n, relu);
}

void nn_conv2d_f32(const float *x, const float *w, const float *b, float *y,
                   int C, int H, int W, int M, int KH, int KW, int OH, int OW,
                   int sh, int sw, int pt, int pl, int relu)
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
                        if (iy < 0 || iy >= H) continue;
                        for (int kx = 0; kx < KW; kx++) {
                            const int ix = ix0 + kx;
                            if (ix < 0 || ix >= W) continue;
                            acc = acc + wc[ky * KW + kx] * xc[iy * W + ix];
                        }
                    }
                }
                *y++ = (relu && acc < 0.0f) ? 0.0f : acc;
            }
        }
    }
}

void nn_maxpool2d_f32(const float *x, float *y, int C, int H, int W, int KH, int KW,
                      int OH, int OW, int sh, int sw, int pt, int pl)
{
    for (int c = 0; c < C; c++, x += (long)H * W) {
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                float m = 0.0f;
                int any = 0;
                for (int ky = 0; ky < KH; ky++) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < KW; kx++) {
                        const int ix = ox * sw - pl + kx;
                        if (ix < 0 || ix >= W) continue;
                        const float v = x[iy * W + ix];
                        if (!any || v > m) { m = v; any = 1; }
                    }
                }
                *y++ = m;
            }
        }
    }
}

void nn_relu_f32(const float *x, float *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void nn_add_f32(const float *a, const float *b, float *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void nn_matmul_f32(const float *a, const float *b, float *y, int m, int k, int n)
{
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) {
            float acc = 0.0f;
            for (int i = 0; i < k; i++) acc = acc + a[(long)r * k + i] * b[(long)i * n + c];
            y[(long)r * n + c] = acc;
        }
}
