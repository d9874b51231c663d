/* Interfaces between the common Cortex-M support and a board family folder. */
#ifndef BSP_INTERNAL_H
#define BSP_INTERNAL_H

#include <stdint.h>

/* Board family: clocks, UART pins and peripheral set-up (bsp/<family>/). */
void board_init(void);

/* Common: tick timer set-up, from the CPU clock (ticks.c). */
void ticks_init(uint32_t cpu_hz);

/* Common: paint the unused stack so bsp_stack_peak() can find the high-water
 * mark (memstats.c). Called first thing from Reset_Handler. */
void stack_paint(void);

/* Common: sleep until interrupt `irq` is pending (idle.c). Lets an emulator stop
 * spinning while the host sends bytes. Only between irq_wait_begin(irq) and
 * irq_wait_end(irq), which bracket a frame's reception: they mask interrupts,
 * enable the line and stop the tick timer (ticks_pause/resume), and undo it.
 * After taking the byte the driver calls irq_clear(); the NVIC refuses it while
 * the line is still high (the next byte is already in). */
void irq_wait_begin(unsigned irq);
void wait_for_irq(unsigned irq);
void irq_clear(unsigned irq);
void irq_wait_end(unsigned irq);

/* Common: stop and restart the tick timer around a frame's reception (ticks.c):
 * waiting for the host is not counted, and an idle emulator has no timer to
 * spin on; no-ops with the DWT counter. Called by irq_wait_begin/end. */
void ticks_pause(void);
void ticks_resume(void);

/* Common: the MPU guard at the bottom of the stack (stack_guard.c). */
#define STACK_GUARD_LOG2 5u
#define STACK_GUARD_BYTES (1u << STACK_GUARD_LOG2)
void stack_guard_init(void);
int stack_guard_hit(uint32_t sp); /* an exception frame at sp would overlap the guard */

#endif /* BSP_INTERNAL_H */
