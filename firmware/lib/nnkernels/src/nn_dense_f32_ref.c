/* Reference float32 dense kernel: the plain loop the optimised ones must match bit for bit. */
#include "nn_runtime.h"

void nn_dense_ref_f32(const float *x, const float *w, const float *b, float *y, int n_in, int n_out, int relu)
{
    for (int o = 0; o < n_out; o++) {
        float acc = b[o];
        const float *wr = w + (long)o * n_in;
        for (int i = 0; i < n_in; i++)
            acc = acc + wr[i] * x[i];
        y[o] = (relu && acc < 0.0f) ? 0.0f : acc;
    }
}
