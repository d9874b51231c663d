/* Memory figures for INFO: sizes from linker symbols, stack high-water mark
 * from a painted stack. */
#include "bsp.h"
#include "bsp_internal.h"

#define STACK_PAINT 0xC0FFEE11u

extern uint32_t __flash_start[], __flash_end[];
extern uint32_t __data_start[], __bss_end[];
extern uint32_t __stack_start[], __stack_top[];

uint32_t bsp_flash_used(void) { return (uint32_t)((char *)__flash_end - (char *)__flash_start); }
uint32_t bsp_static_ram(void) { return (uint32_t)((char *)__bss_end - (char *)__data_start); }
uint32_t bsp_stack_size(void) { return (uint32_t)((char *)__stack_top - (char *)__stack_start); }

void stack_paint(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    /* Leave a margin below the live frame of this function. */
    for (volatile uint32_t *p = __stack_start; p < sp - 16;)
        *p++ = STACK_PAINT;
}

uint32_t bsp_stack_peak(void)
{
    /* the guard (stack_guard.c) cannot be read; it is never part of a live stack */
    const uint32_t *p = __stack_start + STACK_GUARD_BYTES / sizeof(uint32_t);
    while (p < __stack_top && *p == STACK_PAINT)
        p++;
    return (uint32_t)((char *)__stack_top - (char *)p);
}
