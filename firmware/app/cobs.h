#ifndef COBS_H
#define COBS_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one COBS frame (without its 0x00 terminator) into out.
 * Returns the decoded length, or -1 if the input is not valid COBS or does
 * not fit in cap bytes. */
int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* Encodes data and writes it through put(), without the 0x00 terminator.
 * Streaming avoids a second frame-sized buffer. */
void cobs_encode_to(const uint8_t *data, size_t len,
                    void (*put)(const uint8_t *buf, size_t n));

#endif
