#ifndef IMAGE_H
#define IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Decodes an INFER image (encoding byte already removed) into exactly size
 * pixels. Returns 0, or a DETAIL_* code for an ERR_BAD_PAYLOAD reply. */
int image_decode(uint8_t encoding, const uint8_t *src, size_t len, uint8_t *pixels, size_t size);

#endif
