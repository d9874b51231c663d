/* Board support interface used by the application. One implementation per
 * board family under firmware/bsp/. */
#ifndef BSP_H
#define BSP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void bsp_init(void); /* clocks, FPU, UART, timer */
void bsp_uart_write(const uint8_t *buf, size_t len);
int bsp_uart_getc(void); /* blocking; returns 0..255; only between the two calls below */
/* Bracket every run of bsp_uart_getc() calls (a whole frame): waiting for the host is not
 * counted by bsp_ticks(), and an emulator with nothing to do has no timer to spin on. */
void bsp_uart_rx_begin(void);
void bsp_uart_rx_end(void);
uint32_t bsp_ticks(void);   /* free-running timer, wraps */
uint32_t bsp_tick_hz(void); /* frequency of bsp_ticks */
uint32_t bsp_cpu_hz(void);
const char *bsp_board_name(void);

/* Memory figures from the linker script and run time. */
uint32_t bsp_flash_used(void); /* text + rodata + data init image */
uint32_t bsp_static_ram(void); /* data + bss */
uint32_t bsp_heap_peak(void);  /* high-water mark of _sbrk */
uint32_t bsp_stack_peak(void); /* painted-stack high-water mark */
uint32_t bsp_stack_size(void);

#ifdef __cplusplus
}
#endif

#endif /* BSP_H */
