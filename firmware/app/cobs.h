#ifndef COBS_H
#define COBS_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one COBS frame (without its 0x00 terminator) into out.
 * Returns the decoded length, or -1 if the input is not valid COBS or does
 * not fit in cap bytes. In place (out == in) is allowed: the decoded output
 * never gets ahead of the read position, since every block of n input bytes
 * decodes to at most n bytes. */
int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* One piece of a body that is not contiguous in memory. */
typedef struct {
    const uint8_t *data;
    size_t len;
} cobs_part_t;

/* Encodes the concatenation of parts and writes it through put(), without the
 * 0x00 terminator. Streaming from the pieces avoids assembling the body in a
 * frame-sized buffer. */
void cobs_encode_parts(const cobs_part_t *parts, size_t n_parts, void (*put)(const uint8_t *buf, size_t n));

/* The same for one contiguous buffer. */
void cobs_encode_to(const uint8_t *data, size_t len, void (*put)(const uint8_t *buf, size_t n));

#endif
