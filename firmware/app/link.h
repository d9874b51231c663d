/* Frame layer: COBS framing, CRC check, length limits, resynchronisation. */
#ifndef LINK_H
#define LINK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t type;
    uint8_t seq;
    const uint8_t *payload; /* valid until the next link_receive() */
    size_t len;
} frame_t;

typedef struct {
    uint8_t code; /* 0: a good frame; else an err_code for the ERROR reply */
    uint8_t detail;
} link_status_t;

/* Blocks until a frame ends (or overflows). Broken frames return their error
 * at once; the receiver then drops bytes up to the next 0x00. */
link_status_t link_receive(frame_t *frame);

void link_send(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len);
void link_send_error(uint8_t seq, uint8_t code, uint8_t detail);

#endif
