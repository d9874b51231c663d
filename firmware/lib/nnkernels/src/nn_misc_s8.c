/* Plain int8 kernels (no optimised twin). */
#include "nn_runtime.h"

void nn_relu_s8(const int8_t *x, int8_t *y, int n, int zp)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] < zp ? (int8_t)zp : x[i];
}
