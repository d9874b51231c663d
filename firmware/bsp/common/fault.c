/* Fault handler: tells the host why the device died with an unsolicited FAULT
 * frame (protocol.md, type 0x7E), then halts.
 *
 * It frames the message itself (CRC + COBS) instead of using the
 * application's link layer: after a crash the application's buffers and
 * state cannot be trusted, and the board support must not depend on the app. */
#include <stddef.h>
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"

#define FAULT_TYPE 0x7Eu
#define FAULT_BODY 20u  /* type, seq, 4 x u32, crc16 */

void Fault_Handler(void) __attribute__((naked));
void fault_report(const uint32_t *frame) __attribute__((used, noreturn));

/* Hands the stacked exception frame (r0-r3, r12, lr, pc, xpsr) to C. */
void Fault_Handler(void)
{
    __asm__ volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "b fault_report\n\t");
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFFu;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* COBS for a short body (< 254 bytes): one code byte per zero-terminated run. */
static void send_cobs(const uint8_t *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == 0) {
            uint8_t code = (uint8_t)(i - start + 1);
            bsp_uart_write(&code, 1);
            bsp_uart_write(p + start, i - start);
            start = i + 1;
        }
    }
    static const uint8_t end = 0;
    bsp_uart_write(&end, 1);
}

void fault_report(const uint32_t *frame)
{
    uint8_t body[FAULT_BODY];
    body[0] = FAULT_TYPE;
    body[1] = 0;  /* unsolicited: no request sequence */
    put_u32(body + 2, frame[6]);   /* stacked pc */
    put_u32(body + 6, frame[5]);   /* stacked lr */
    put_u32(body + 10, SCB_CFSR);
    put_u32(body + 14, SCB_HFSR);
    uint16_t crc = crc16(body, FAULT_BODY - 2);
    body[18] = (uint8_t)crc;
    body[19] = (uint8_t)(crc >> 8);
    send_cobs(body, FAULT_BODY);
    for (;;) {
    }
}
