/* Fault handler: tells the host why the device died with an unsolicited FAULT
 * frame (protocol.md, type 0x7E), then halts.
 *
 * It frames the message itself (CRC + COBS) instead of using the
 * application's link layer: after a crash the application's buffers and
 * state cannot be trusted, and the board support must not depend on the app.
 * It runs on its own small stack: the fault may be a stack overflow. */
#include <stddef.h>
#include <stdint.h>

#include "bsp.h"
#include "bsp_internal.h"
#include "cortex_m.h"

#define FAULT_TYPE 0x7Eu
#define FAULT_WORDS 9u                          /* pc lr xpsr ipsr cfsr hfsr bfar mmfar sp */
#define FAULT_BODY (2u + 4u * FAULT_WORDS + 2u) /* type, seq, words, crc16 */
#define CFSR_MSTKERR (1u << 4)
#define CFSR_STKERR (1u << 12)

void Fault_Handler(void) __attribute__((naked));
void fault_report(const uint32_t *frame) __attribute__((used, noreturn));

static uint32_t fault_stack[64] __attribute__((aligned(8)));
uint32_t *const fault_stack_top = fault_stack + 64;

/* Hands the stacked exception frame (r0-r3, r12, lr, pc, xpsr) to C, on the fault stack. */
void Fault_Handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "ldr r1, =fault_stack_top\n\t"
                     "ldr r1, [r1]\n\t"
                     "mov sp, r1\n\t"
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
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    const uint32_t cfsr = SCB_CFSR;
    const uint32_t sp = (uint32_t)frame;
    /* A frame that could not be stacked (stack overflow into the guard) holds no registers:
     * send 0 for pc, lr and xpsr rather than read the guard and fault again. */
    const int stacked = !(cfsr & (CFSR_MSTKERR | CFSR_STKERR)) && !stack_guard_hit(sp);
    const uint32_t words[FAULT_WORDS] = {
        stacked ? frame[6] : 0u,
        stacked ? frame[5] : 0u,
        stacked ? frame[7] : 0u,
        ipsr & 0x1FFu,
        cfsr,
        SCB_HFSR,
        SCB_BFAR,
        SCB_MMFAR,
        sp,
    };
    uint8_t body[FAULT_BODY];
    body[0] = FAULT_TYPE;
    body[1] = 0; /* unsolicited: no request sequence */
    for (unsigned i = 0; i < FAULT_WORDS; i++)
        put_u32(body + 2 + 4 * i, words[i]);
    uint16_t crc = crc16(body, FAULT_BODY - 2);
    body[FAULT_BODY - 2] = (uint8_t)crc;
    body[FAULT_BODY - 1] = (uint8_t)(crc >> 8);
    static const uint8_t resync = 0; /* end whatever frame the app was sending */
    bsp_uart_write(&resync, 1);
    send_cobs(body, FAULT_BODY);
    for (;;) {
    }
}
