/* STM32F4 USART driver (polled transmit, WFI-idle receive), shared by the emulated netduinoplus2 (USART1)
 * and the NUCLEO-F446RE (USART2). The board file picks the instance. */
#include "bsp.h"
#include "stm32f4.h"
#include "../common/bsp_internal.h"

#define USART_SR(b) REG32((b) + 0x00u)
#define USART_DR(b) REG32((b) + 0x04u)
#define USART_BRR(b) REG32((b) + 0x08u)
#define USART_CR1(b) REG32((b) + 0x0Cu)

#define SR_ORE (1u << 3)
#define SR_TXE (1u << 7)
#define CR1_RE (1u << 2)
#define CR1_RXNEIE (1u << 5)
#define CR1_TE (1u << 3)
#define CR1_UE (1u << 13)

static uint32_t console;
static unsigned console_irq;

void usart_init(uint32_t base, unsigned irq, uint32_t pclk_hz, uint32_t baud)
{
    console = base;
    console_irq = irq;
    USART_CR1(base) = 0;
    /* 16x oversampling: BRR holds pclk/baud in 12.4 fixed point, rounded. */
    USART_BRR(base) = (pclk_hz + baud / 2) / baud;
    /* RXNEIE only wakes WFI (see idle.c); no handler ever runs for it. */
    USART_CR1(base) = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
}

/* BSP_UART_TX_SYNC is for the QEMU twin only (its board JSON sets it): QEMU's STM32 USART
 * sends each DR write to the host at once, so TXE never reads clear there, while every SR read
 * wakes QEMU's I/O thread (qemu_chr_fe_accept_input). With several replies per request frame
 * (INFER_BATCH) that poll cost a context switch per byte sent, 7 % of the emulator's CPU per
 * image (measured on qemu_f405_int8). Silicon needs the poll: a byte takes ~87 us at 115200
 * baud, so a real board never sets it. */
void bsp_uart_write(const uint8_t *buf, size_t len)
{
    while (len--) {
#ifndef BSP_UART_TX_SYNC
        while (!(USART_SR(console) & SR_TXE)) {
        }
#endif
        USART_DR(console) = *buf++;
    }
}

void bsp_uart_rx_begin(void)
{
    irq_wait_begin(console_irq);
    /* The line is RXNEIE & (RXNE | ORE), and an overrun holds it high until SR and
     * then DR are read. Bytes that came while no frame was read (the host resent
     * while the firmware computed) may have overrun: drop the held byte, its request
     * is damaged anyway. Once per frame: the per-byte path reads no status register
     * (idle.c); a frame's bytes come one per UART character time, far slower than
     * the loop that takes them. */
    if (USART_SR(console) & SR_ORE) {
        (void)USART_DR(console);
        irq_clear(console_irq);
    }
}

void bsp_uart_rx_end(void) { irq_wait_end(console_irq); }

int bsp_uart_getc(void)
{
    wait_for_irq(console_irq);
    int c = (int)(USART_DR(console) & 0xFFu);
    irq_clear(console_irq); /* refused: the next byte is already in (idle.c) */
    return c;
}
