/* Waiting for a UART byte without spinning.
 *
 * Under QEMU a busy-polling guest keeps a host core at 100 %, so two emulators
 * on a 2-core machine starve each other. Here the core sleeps in WFI until the
 * UART's interrupt is pending. For a whole frame (bsp_uart_rx_begin/end) PRIMASK
 * stays set, so no handler runs (WFI still wakes on a pending interrupt), and
 * the UART's NVIC line is enabled only meanwhile. The link also stops SysTick
 * for the frame (ticks.c): under QEMU -icount sleep=off a WFI jumps virtual time
 * to the next timer deadline, so a running SysTick made an idle guest wake every
 * 2^24 ticks and spin. With it stopped, nothing but the UART wakes the guest
 * (idle QEMU ~0 % CPU), and no SysTick wrap can fall in a wait.
 *
 * Per byte the wait touches as few registers as it can: under QEMU -icount every
 * device access costs the emulator host CPU, and the UART's bytes are what the
 * harness spends its time on. So the line is enabled and PRIMASK set once per
 * frame, not per byte, and WFI comes first (it returns at once when the line is
 * already pending): a byte costs WFI, one NVIC write and the UART's status and
 * data reads (measured on qemu_f405_int8: 4.4 instead of 4.8 ms of emulator CPU
 * per image, about 136 request bytes).
 *
 * Pending is cleared before ready() is asked: QEMU latches pending on the line's
 * rising edge, silicon whenever the line is high, and a byte that arrives after the
 * clear raises the line (again), so no byte is slept through. ready() (the status
 * register) is still needed on silicon: there the line is high until the data
 * register is read, so the clear can leave a stale pending behind that wakes the
 * next wait with no byte yet. */
#include "bsp_internal.h"
#include "cortex_m.h"

void irq_wait_begin(unsigned irq)
{
    __asm__ volatile("cpsid i" ::: "memory");
    NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

void irq_wait_end(unsigned irq)
{
    NVIC_ICER(irq >> 5) = 1u << (irq & 31u);
    dsb_isb();
    __asm__ volatile("cpsie i" ::: "memory");
}

void wait_for_irq(unsigned irq, int (*ready)(void))
{
    const unsigned n = irq >> 5;
    const uint32_t bit = 1u << (irq & 31u);

    for (;;) {
        __asm__ volatile("dsb\n\twfi" ::: "memory");
        NVIC_ICPR(n) = bit; /* clear first: a byte arriving after this re-pends it */
        dsb_isb();
        if (ready())
            return;
    }
}
