#include "cobs.h"

int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        size_t run = (size_t)code - 1;
        if (code == 0 || run > len - i || run > cap - o)
            return -1;
        for (size_t k = 0; k < run; k++) {
            if (in[i] == 0)
                return -1;
            out[o++] = in[i++];
        }
        /* A block shorter than 254 stands for a zero, except at the very end. */
        if (code != 0xFF && i < len) {
            if (o == cap)
                return -1;
            out[o++] = 0;
        }
    }
    return (int)o;
}

void cobs_encode_to(const uint8_t *data, size_t len,
                    void (*put)(const uint8_t *buf, size_t n))
{
    size_t i = 0;
    for (;;) {
        size_t run = 0;
        while (i + run < len && data[i + run] != 0 && run < 254)
            run++;
        uint8_t code = (uint8_t)(run + 1);
        put(&code, 1);
        put(data + i, run);
        i += run;
        if (i == len)
            return;
        if (run < 254)
            i++;  /* the zero this block stood for */
    }
}
