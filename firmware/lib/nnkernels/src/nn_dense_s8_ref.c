/* Reference int8 dense kernels: plain loops over output-major int8 weights. */
#include "nn_runtime.h"

void nn_dense_ref_u8(const uint8_t *x, const int8_t *w, const int32_t *bias, int32_t *acc, int n_in,
                     int n_out)
{
    for (int o = 0; o < n_out; o++) {
        int32_t a = bias[o];
        for (int i = 0; i < n_in; i++)
            a += (int32_t)w[(long)o * n_in + i] * (int32_t)x[i];
        acc[o] = a;
    }
}

void nn_dense_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int32_t *acc, int n_in,
                     int n_out)
{
    for (int o = 0; o < n_out; o++) {
        int32_t a = bias[o];
        for (int i = 0; i < n_in; i++)
            a += (int32_t)w[(long)o * n_in + i] * ((int32_t)x[i] - zx);
        acc[o] = a;
    }
}
