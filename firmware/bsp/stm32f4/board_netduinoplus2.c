/* Netduino Plus 2 under QEMU (netduinoplus2): STM32F405 whose clock tree QEMU
 * does not model; the core and SysTick run at a fixed 168 MHz. USART1 is the
 * first -serial. Nothing here may poll a clock-ready bit: QEMU's RCC reads 0. */
#ifdef BOARD_NETDUINOPLUS2

#include "bsp.h"
#include "../common/bsp_internal.h"
#include "stm32f4.h"

#define CPU_HZ 168000000u
#define PCLK2_HZ 84000000u

void board_init(void)
{
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    usart_init(USART1_BASE, USART1_IRQ, PCLK2_HZ, 115200u);
}

uint32_t bsp_cpu_hz(void) { return CPU_HZ; }
const char *bsp_board_name(void) { return "netduinoplus2"; }

#endif
