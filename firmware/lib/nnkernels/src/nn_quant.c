/* Requantisation (int32 -> int8), dequantisation (-> float) and the pixel lookup. */
#include "nn_internal.h"

#if NN_USE_DSP
/* nn_dense_s8_m4.S: requant_hi over y[0 .. n) while shift >= 33; returns the count done */
int nn_requant_hi_m4(const int32_t *acc, int8_t *y, int n, const int32_t *mult, const int8_t *shift, int zp);
#endif

void nn_lut_u8_s8(const uint8_t *x, const int8_t *lut, int8_t *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = lut[x[i]];
}

int32_t nn_requant(int32_t acc, int32_t mult, int shift) { return requant32(acc, mult, shift); }

/* Same integers as nn_requant_ch_s8_ref (nn_quant_ref.c), cheaper: requant_hi (nn_internal.h). */
void nn_requant_ch_s8(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                      const int8_t *shift, int zp, int lo, int hi)
{
    if (lo < -128 || hi > 127) { /* not an int8 range: the general path */
        nn_requant_ch_s8_ref(acc, y, n_ch, inner, mult, shift, zp, lo, hi);
        return;
    }
#if NN_USE_DSP
    if (inner == 1 && lo == -128 && hi == 127) { /* dense, no clamp but the int8 range: SSAT alone */
        for (int c = 0; c < n_ch;) {             /* nn_dense_s8_m4.S, up to a channel with shift < 33 */
            c += nn_requant_hi_m4(acc + c, y + c, n_ch - c, mult + c, shift + c, zp);
            if (c < n_ch) { /* shift < 33 (no real layer has one): the reference */
                nn_requant_ch_s8_ref(acc + c, y + c, 1, 1, mult + c, shift + c, zp, lo, hi);
                c++;
            }
        }
        return;
    }
#endif
    /* shift < 33 (no real layer has one) goes through the reference, one channel at a time */
    for (int c = 0; c < n_ch; c++, acc += inner, y += inner) {
        const int32_t m = mult[c];
        const int s = shift[c];
        if (s >= 33)
            for (int i = 0; i < inner; i++)
                y[i] = requant_hi(acc[i], m, s, zp, lo, hi);
        else
            nn_requant_ch_s8_ref(acc, y, 1, inner, mult + c, shift + c, zp, lo, hi);
    }
}

void nn_dequant_ch_f32(const int32_t *acc, float *y, int n_ch, int inner, const float *scale, int relu)
{
    if (inner == 1 && !relu) { /* a dense head: the test and the inner loop hoisted */
        for (const int32_t *end = acc + n_ch; acc < end; acc++, y++, scale++)
            *y = (float)*acc * *scale;
        return;
    }
    for (int c = 0; c < n_ch; c++)
        for (int i = 0; i < inner; i++, acc++, y++)
            *y = dequant_f32(*acc, scale[c], relu);
}

void nn_dequant_s8_f32(const int8_t *x, float *y, int n, float scale, int zp)
{
    for (int i = 0; i < n; i++)
        y[i] = (float)((int32_t)x[i] - zp) * scale;
}
