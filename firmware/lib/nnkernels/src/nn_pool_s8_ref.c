/* Reference int8 max-pool: one tap at a time, bounds tested per tap (padding never wins). */
#include "nn_runtime.h"

void nn_maxpool2d_s8_ref(const int8_t *x, int8_t *y, int C, int H, int W, int KH, int KW, int OH, int OW,
                         int sh, int sw, int pt, int pl)
{
    for (int c = 0; c < C; c++, x += (long)H * W) {
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                int m = -128;
                for (int ky = 0; ky < KH; ky++) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= H)
                        continue;
                    for (int kx = 0; kx < KW; kx++) {
                        const int ix = ox * sw - pl + kx;
                        if (ix < 0 || ix >= W)
                            continue;
                        if (x[iy * W + ix] > m)
                            m = x[iy * W + ix];
                    }
                }
                *y++ = (int8_t)m;
            }
        }
    }
}
