/* Cortex-M4 reset and exception vectors. Reset_Handler brings up the C
 * run-time (FPU, stack paint, .data/.bss, static constructors) and calls main. */
#include <stdint.h>

#include "bsp_internal.h"
#include "cortex_m.h"

extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Fault_Handler(void);   /* fault.c */
void SysTick_Handler(void); /* ticks.c */

#define N_IRQ 97 /* STM32F446 has the most external interrupts of our parts */

/* None of our drivers enable an external interrupt, so every entry except
 * reset and SysTick reports a fault: an unexpected interrupt is a bug. */
__attribute__((section(".isr_vector"), used)) void (*const vector_table[16 + N_IRQ])(void) = {
    [0] = (void (*)(void))__stack_top,
    [1] = Reset_Handler,
    [2 ... 14] = Fault_Handler, /* NMI, HardFault, MemManage, BusFault, UsageFault, ... */
    [15] = SysTick_Handler,
    [16 ... 16 + N_IRQ - 1] = Fault_Handler,
};

void Reset_Handler(void)
{
    /* Full access to CP10/CP11 before any code can touch a float register. */
    SCB_CPACR |= 0xFu << 20;
    dsb_isb();

    stack_paint();

    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;

    __libc_init_array(); /* C++ static constructors (deepC, libstdc++) */
    main();
    for (;;) {
    }
}

/* __libc_init_array calls these; crti/crtn are not linked (-nostartfiles). */
void _init(void) {}
void _fini(void) {}
