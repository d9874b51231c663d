/* float32 dense kernels, sparse: only nonzero inputs are visited.  Summation order is
 * fixed (bias first, then inputs in ascending index), so they give the same bits as
 * nn_dense_ref_f32 (nn_dense_f32_ref.c): zero inputs only ever add +-0. */
#include <string.h>

#include "nn_runtime.h"


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
