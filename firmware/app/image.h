#ifndef IMAGE_H
#define IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Decodes an INFER image (encoding byte already removed) into exactly size pixels and
 * sets *used to the bytes it took. The image may be followed by more data (INFER_BATCH:
 * the next image): every encoding is self-delimiting (raw: size bytes; zero-run: up to the
 * size-th pixel; context: up to the last decision, where the rANS state is back at 2^23).
 * A caller that wants the image to fill len checks *used == len.
 * Returns 0, or a DETAIL_* code for an ERR_BAD_PAYLOAD reply. */
int image_decode(uint8_t encoding, const uint8_t *src, size_t len, size_t *used, uint8_t *pixels,
                 size_t size);

#endif
