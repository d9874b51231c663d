#include "image.h"

#include <string.h>

#include "protocol.h"

/* Zero-run: a non-zero byte is a pixel; 0x00 n (n >= 1) is n zero pixels. */
static int decode_zero_run(const uint8_t *src, size_t len, uint8_t *pixels, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = src[i++];
        if (b != 0) {
            if (o == size)
                return DETAIL_BAD_IMAGE;
            pixels[o++] = b;
            continue;
        }
        if (i == len || src[i] == 0 || src[i] > size - o)
            return DETAIL_BAD_IMAGE;
        memset(pixels + o, 0, src[i]);
        o += src[i++];
    }
    return o == size ? 0 : DETAIL_BAD_IMAGE;
}

int image_decode(uint8_t encoding, const uint8_t *src, size_t len,
                 uint8_t *pixels, size_t size)
{
    switch (encoding) {
    case ENC_RAW:
        if (len != size)
            return DETAIL_BAD_IMAGE;
        memcpy(pixels, src, size);
        return 0;
    case ENC_ZERO_RUN:
        return decode_zero_run(src, len, pixels, size);
    default:
        return DETAIL_BAD_ENCODING;
    }
}
