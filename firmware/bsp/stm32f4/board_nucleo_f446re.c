/* NUCLEO-F446RE: 180 MHz from the internal 16 MHz HSI through the PLL (no
 * dependence on the ST-LINK's MCO clock), USART2 on PA2/PA3 = the ST-LINK
 * virtual COM port, 115200 8N1. */
#ifdef BOARD_NUCLEO_F446RE

#include "bsp.h"
#include "../common/bsp_internal.h"
#include "stm32f4.h"

#define CPU_HZ   180000000u
#define PCLK1_HZ (CPU_HZ / 4)  /* APB1 max 45 MHz */

/* HSI 16 MHz / M 8 = 2 MHz; x N 180 = 360 MHz VCO; / P 2 = 180 MHz. */
#define PLL_M 8u
#define PLL_N 180u
#define PLL_P 2u
#define PLL_Q 8u  /* 45 MHz: USB is unused */
#define PLL_R 2u

#define CFGR_PPRE1_DIV4 (5u << 10)
#define CFGR_PPRE2_DIV2 (4u << 13)
#define FLASH_LATENCY_5WS 5u  /* 150-180 MHz at 2.7-3.6 V */

static void clock_init(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;  /* the write must land before PWR is touched */
    PWR_CR |= PWR_CR_VOS_SCALE1;

    RCC_PLLCFGR = PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) | (PLL_Q << 24) |
                  (PLL_R << 28);  /* source HSI: bit 22 clear */
    RCC_CR |= RCC_CR_PLLON;

    /* 180 MHz needs the regulator's over-drive mode (RM0390 5.1.4). */
    PWR_CR |= PWR_CR_ODEN;
    while (!(PWR_CSR & PWR_CSR_ODRDY)) {
    }
    PWR_CR |= PWR_CR_ODSWEN;
    while (!(PWR_CSR & PWR_CSR_ODSWRDY)) {
    }

    FLASH_ACR = FLASH_LATENCY_5WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    while ((FLASH_ACR & 0xFu) != FLASH_LATENCY_5WS) {
    }
    RCC_CFGR = CFGR_PPRE1_DIV4 | CFGR_PPRE2_DIV2;

    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    RCC_CFGR |= RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

static void uart_pins_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    (void)RCC_AHB1ENR;
    /* PA2 (TX), PA3 (RX): alternate function 7, pull-up on RX. */
    GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(0xFu << 4)) | (0xAu << 4);
    GPIO_PUPDR(GPIOA_BASE) = (GPIO_PUPDR(GPIOA_BASE) & ~(0x3u << 6)) | (0x1u << 6);
    GPIO_AFRL(GPIOA_BASE) = (GPIO_AFRL(GPIOA_BASE) & ~(0xFFu << 8)) | (0x77u << 8);
}

void board_init(void)
{
    clock_init();
    uart_pins_init();
    RCC_APB1ENR |= RCC_APB1ENR_USART2EN;
    (void)RCC_APB1ENR;
    usart_init(USART2_BASE, USART2_IRQ, PCLK1_HZ, 115200u);
}

uint32_t bsp_cpu_hz(void) { return CPU_HZ; }
const char *bsp_board_name(void) { return "nucleo_f446re"; }

#endif
