/* NUCLEO-F446RE: 180 MHz from the internal 16 MHz HSI through the PLL (no
 * dependence on the ST-LINK's MCO clock), USART2 on PA2/PA3 = the ST-LINK
 * virtual COM port, 115200 8N1. */
#ifdef BOARD_NUCLEO_F446RE

#include "bsp.h"
#include "../common/bsp_internal.h"
#include "stm32f4.h"

#define HSI_HZ 16000000u
#define HSE_HZ 8000000u /* the ST-LINK's MCO, if a later set-up chose it */

/* HSI 16 MHz / M 8 = 2 MHz; x N 180 = 360 MHz VCO; / P 2 = 180 MHz. */
#define PLL_M 8u
#define PLL_N 180u
#define PLL_P 2u
#define PLL_Q 8u /* 45 MHz: USB is unused */
#define PLL_R 2u

#define CFGR_PPRE1_DIV4 (5u << 10) /* APB1 max 45 MHz */
#define CFGR_PPRE2_DIV2 (4u << 13)
#define FLASH_LATENCY_5WS 5u /* 150-180 MHz at 2.7-3.6 V */

/* From whatever state the clocks are in (reset, or a debugger's reset-init that left the PLL
 * running at 64 MHz, where writing PLLCFGR is ignored): back to the HSI, PLL off, then the
 * 180 MHz configuration. */
static void clock_init(void)
{
    RCC_CR |= RCC_CR_HSION;
    while (!(RCC_CR & RCC_CR_HSIRDY)) {
    }
    RCC_CFGR = 0; /* SYSCLK = HSI, AHB/APB prescalers 1 */
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_HSI) {
    }
    RCC_CR &= ~RCC_CR_PLLON; /* PLLCFGR can only be written with the PLL off */
    while (RCC_CR & RCC_CR_PLLRDY) {
    }

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* the write must land before PWR is touched */
    PWR_CR |= PWR_CR_VOS_SCALE1;

    RCC_PLLCFGR = PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) | (PLL_Q << 24) |
        (PLL_R << 28); /* source HSI: bit 22 clear */
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

/* The clocks as the hardware reports them (RM0390 6.3.2-6.3.3), not as we meant to set
 * them: INFO, the tick rate and the baud rate all follow what is really running. */
static uint32_t sysclk_hz(void)
{
    const uint32_t cfgr = RCC_CFGR;
    if ((cfgr & RCC_CFGR_SWS_MASK) == RCC_CFGR_SWS_HSI)
        return HSI_HZ;
    if ((cfgr & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL)
        return HSE_HZ;
    const uint32_t pll = RCC_PLLCFGR;
    const uint32_t m = pll & 0x3Fu, n = (pll >> 6) & 0x1FFu, p = (((pll >> 16) & 3u) + 1u) * 2u;
    const uint32_t src = (pll & (1u << 22)) ? HSE_HZ : HSI_HZ;
    return m ? (uint32_t)((uint64_t)src * n / m / p) : 0u;
}

uint32_t bsp_cpu_hz(void)
{
    static const uint16_t ahb_div[8] = {2, 4, 8, 16, 64, 128, 256, 512};
    const uint32_t hpre = (RCC_CFGR >> 4) & 0xFu;
    return sysclk_hz() / (hpre & 8u ? ahb_div[hpre & 7u] : 1u);
}

static uint32_t apb1_hz(void)
{
    const uint32_t ppre1 = (RCC_CFGR >> 10) & 7u;
    return bsp_cpu_hz() >> (ppre1 & 4u ? (ppre1 & 3u) + 1u : 0u);
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
    usart_init(USART2_BASE, USART2_IRQ, apb1_hz(), 115200u);
}

const char *bsp_board_name(void) { return "nucleo_f446re"; }

#endif
