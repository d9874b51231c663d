/* Reference requantisation: the contract of nn_requant (nn_runtime.h), one output at a time. */
#include "nn_internal.h"

void nn_requant_ch_s8_ref(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                          const int8_t *shift, int zp, int lo, int hi)
{
    for (int c = 0; c < n_ch; c++) {
        const int32_t m = mult[c];
        const int s = shift[c];
        for (int i = 0; i < inner; i++, acc++, y++)
            *y = requant_s8(*acc, m, s, zp, lo, hi);
    }
}
