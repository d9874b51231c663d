/* Optimised int8 max-pool; nn_pool_s8_ref.c holds its reference twin.  Windows wholly
 * inside the input need no bounds tests; the common 2x2 / stride 2 pool takes four
 * outputs per two words of each row with the byte-wise signed max of SSUB8 + SEL. */
#include <string.h>

#include "nn_internal.h"

#if NN_USE_DSP
static inline uint32_t max8(uint32_t a, uint32_t b)
{
    (void)__ssub8(a, b); /* GE bits: a >= b, byte by byte */
    return __sel(a, b);
}

/* one output row of a 2x2 / stride 2 pool: rows r0, r1 of the input, n outputs */
static void pool2x2_row(const int8_t *r0, const int8_t *r1, int8_t *y, int n)
{
    int ox = 0;
    for (; ox + 4 <= n; ox += 4, r0 += 8, r1 += 8, y += 4) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, r0, 4);
        memcpy(&a1, r0 + 4, 4);
        memcpy(&b0, r1, 4);
        memcpy(&b1, r1 + 4, 4);
        const uint32_t v0 = max8(a0, b0), v1 = max8(a1, b1);           /* vertical */
        const uint32_t h0 = max8(v0, v0 >> 8), h1 = max8(v1, v1 >> 8); /* bytes 0 and 2: the outputs */
        const uint32_t out =
            (h0 & 0xffu) | ((h0 >> 8) & 0xff00u) | ((h1 & 0xffu) << 16) | ((h1 << 8) & 0xff000000u);
        memcpy(y, &out, 4);
    }
    for (; ox < n; ox++, r0 += 2, r1 += 2) {
        int m = r0[0] > r0[1] ? r0[0] : r0[1];
        m = r1[0] > m ? r1[0] : m;
        *y++ = (int8_t)(r1[1] > m ? r1[1] : m);
    }
}
#endif

void nn_maxpool2d_s8(const int8_t *x, int8_t *y, int C, int H, int W, int KH, int KW, int OH, int OW, int sh,
                     int sw, int pt, int pl)
{
    const int inside = pt == 0 && pl == 0 && (OH - 1) * sh + KH <= H && (OW - 1) * sw + KW <= W;
    if (!inside) {
        nn_maxpool2d_s8_ref(x, y, C, H, W, KH, KW, OH, OW, sh, sw, pt, pl);
        return;
    }
    for (int c = 0; c < C; c++, x += (long)H * W) {
        for (int oy = 0; oy < OH; oy++) {
            const int8_t *row = x + (long)oy * sh * W;
#if NN_USE_DSP
            if (KH == 2 && KW == 2 && sh == 2 && sw == 2) {
                pool2x2_row(row, row + W, y, OW);
                y += OW;
                continue;
            }
#endif
            for (int ox = 0; ox < OW; ox++) {
                const int8_t *win = row + ox * sw;
                int m = -128;
                for (int ky = 0; ky < KH; ky++, win += W)
                    for (int kx = 0; kx < KW; kx++)
                        m = win[kx] > m ? win[kx] : m;
                *y++ = (int8_t)m;
            }
        }
    }
}
