#include "link.h"

#include "bsp.h"
#include "cobs.h"
#include "crc16.h"
#include "protocol.h"

/* COBS adds one byte per 254 plus one; one more lets a 1025-byte body reach
 * the decoder and be reported as too long rather than overflow. */
#define WIRE_MAX (BODY_MAX + BODY_MAX / 254u + 2u)

/* The one receive buffer: wire bytes come in, COBS decodes them in place into
 * the body (the decoder never writes ahead of where it reads), and the frame's
 * payload points into it until the next link_receive(). Replies are never
 * copied into a frame-sized buffer: link_send() streams header, payload and
 * CRC through a COBS encoder straight to the UART. */
static uint8_t rx[WIRE_MAX];
static int discarding; /* after an overflow: drop bytes until the next 0x00 */

static link_status_t status(uint8_t code, uint8_t detail)
{
    link_status_t s = {code, detail};
    return s;
}

/* Collects wire bytes up to a 0x00. Returns the length, or -1 on overflow. */
static int read_wire_bytes(void)
{
    size_t n = 0;
    for (;;) {
        int c = bsp_uart_getc();
        if (discarding) {
            discarding = (c != 0);
            continue;
        }
        if (c == 0) {
            if (n > 0)
                return (int)n;
            continue; /* empty frame: an idle or resync 0x00, not a request */
        }
        if (n == WIRE_MAX) {
            discarding = 1;
            return -1;
        }
        rx[n++] = (uint8_t)c;
    }
}

static int read_wire(void)
{
    bsp_uart_rx_begin(); /* once per frame, not per byte: each start of the timer costs QEMU a wake-up */
    int n = read_wire_bytes();
    bsp_uart_rx_end();
    return n;
}

link_status_t link_receive(frame_t *frame)
{
    frame->seq = 0;
    int n = read_wire();
    if (n < 0)
        return status(ERR_TOO_LONG, DETAIL_NONE);
    int len = cobs_decode(rx, (size_t)n, rx, sizeof rx); /* in place */
    if (len < 0)
        return status(ERR_MALFORMED, DETAIL_COBS);
    if (len < (int)BODY_OVERHEAD)
        return status(ERR_MALFORMED, DETAIL_SHORT);
    frame->seq = rx[1]; /* echoed in errors below, best effort */
    if (len > (int)BODY_MAX)
        return status(ERR_TOO_LONG, DETAIL_NONE);
    uint16_t crc = (uint16_t)(rx[len - 2] | (rx[len - 1] << 8));
    if (crc16_ccitt(rx, (size_t)len - 2) != crc)
        return status(ERR_BAD_CRC, DETAIL_NONE);
    frame->type = rx[0];
    frame->payload = rx + 2;
    frame->len = (size_t)len - BODY_OVERHEAD;
    return status(0, 0);
}

void link_send(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len)
{
    if (len > BODY_MAX - BODY_OVERHEAD) {
        /* never send a broken frame, and never leave a request unanswered */
        link_send_error(seq, ERR_REPLY_TOO_LONG, type);
        return;
    }
    const uint8_t head[2] = {type, seq};
    uint16_t crc = crc16_ccitt_update(crc16_ccitt(head, sizeof head), payload, len);
    const uint8_t tail[2] = {(uint8_t)crc, (uint8_t)(crc >> 8)};
    const cobs_part_t parts[3] = {{head, sizeof head}, {payload, len}, {tail, sizeof tail}};
    cobs_encode_parts(parts, 3, bsp_uart_write);
    static const uint8_t end = 0;
    bsp_uart_write(&end, 1);
}

void link_send_error(uint8_t seq, uint8_t code, uint8_t detail)
{
    const uint8_t payload[2] = {code, detail};
    link_send(MSG_ERROR, seq, payload, sizeof payload);
}
