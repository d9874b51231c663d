/* Waiting for a UART byte without spinning.
 *
 * Under QEMU a busy-polling guest keeps a host core at 100 %, so two emulators
 * on a 2-core machine starve each other. Here the core sleeps in WFI until the
 * UART's interrupt is pending. For a whole frame (bsp_uart_rx_begin/end) PRIMASK
 * stays set, so no handler runs (WFI still wakes on a pending interrupt), and
 * the UART's NVIC line is enabled only meanwhile. irq_wait_begin also stops SysTick
 * for the frame (ticks.c): under QEMU -icount sleep=off a WFI jumps virtual time
 * to the next timer deadline, so a running SysTick made an idle guest wake every
 * 2^24 ticks and spin. With it stopped, nothing but the UART wakes the guest
 * (idle QEMU ~0 % CPU), and no SysTick wrap can fall in a wait.
 *
 * Per byte the wait touches as few registers as it can: under QEMU -icount every
 * device access costs the emulator host CPU, and the UART's bytes are what the
 * harness spends its time on. So the line is enabled and PRIMASK set once per
 * frame, not per byte; a byte costs WFI, a read of the NVIC's pending bit, the
 * UART's data read and the clear of the pending bit, and no status-register read
 * (QEMU's STM32 USART wakes its I/O thread on every status read).
 *
 * The pending bit is cleared after the data read, never before: silicon, and
 * QEMU's NVIC (7.2 here; the Arm ARM's rule R_CVJS), keep it while the line is high,
 * so a clear before the read is a no-op and the next wait would wake at once for
 * nothing (it did: two wake-ups and two status reads per byte, 16 % of the
 * emulator's CPU per image on qemu_f405_int8). After the read the line is low
 * unless the next byte is already in, and then the clear is refused and that byte
 * wakes the next wait at once: none is slept through. */
#include "bsp_internal.h"
#include "cortex_m.h"

void irq_wait_begin(unsigned irq)
{
    ticks_pause();
    __asm__ volatile("cpsid i" ::: "memory");
    NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

void irq_wait_end(unsigned irq)
{
    NVIC_ICER(irq >> 5) = 1u << (irq & 31u);
    dsb_isb();
    __asm__ volatile("cpsie i" ::: "memory");
    ticks_resume();
}

void wait_for_irq(unsigned irq)
{
    for (;;) {
        __asm__ volatile("dsb\n\twfi" ::: "memory");
        if (NVIC_ISPR(irq >> 5) & (1u << (irq & 31u)))
            return; /* WFI may also wake for nothing (debug, events) */
    }
}

void irq_clear(unsigned irq)
{
    NVIC_ICPR(irq >> 5) = 1u << (irq & 31u);
    dsb_isb();
}
