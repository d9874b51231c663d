/* Arm MPS2 AN386 (QEMU mps2-an386): Cortex-M4F at 25 MHz, CMSDK APB UART0. */
#include "bsp.h"
#include "../common/bsp_internal.h"
#include "../common/cortex_m.h"

#define CPU_HZ 25000000u
#define BAUD 115200u

#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_INTCLR REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)

#define STATE_TX_FULL (1u << 0)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)
#define CTRL_RX_INT (1u << 3)
#define INT_RX (1u << 1)
#define UART0_RX_IRQ 0u

void board_init(void)
{
    /* QEMU's model refuses to move bytes while the divider is below 16. */
    UART_BAUDDIV = CPU_HZ / BAUD;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT; /* RX interrupt only wakes WFI */
}

void bsp_uart_write(const uint8_t *buf, size_t len)
{
    while (len--) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = *buf++;
    }
}

void bsp_uart_rx_begin(void) { irq_wait_begin(UART0_RX_IRQ); }

void bsp_uart_rx_end(void) { irq_wait_end(UART0_RX_IRQ); }

int bsp_uart_getc(void)
{
    wait_for_irq(UART0_RX_IRQ);
    /* The RX interrupt is latched until INTCLR, so the line is high until then; the
     * clear of the pending bit comes after DATA is read (idle.c). Refused, it means
     * the next byte is already in. */
    UART_INTCLR = INT_RX;
    int c = (int)(UART_DATA & 0xFFu);
    irq_clear(UART0_RX_IRQ);
    return c;
}

uint32_t bsp_cpu_hz(void) { return CPU_HZ; }
const char *bsp_board_name(void) { return "mps2_an386"; }
