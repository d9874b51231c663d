/* Waiting for a UART byte without spinning.
 *
 * Under QEMU a busy-polling guest keeps a host core at 100 %, so two emulators
 * on a 2-core machine starve each other. Here the core sleeps in WFI until the
 * UART's interrupt is pending. PRIMASK stays set, so no handler runs (WFI still
 * wakes on a pending interrupt), and the NVIC line is enabled only meanwhile.
 * A SysTick wrap that falls in the wait is counted by hand so bsp_ticks()
 * stays monotonic.
 *
 * The link stops SysTick while it reads a frame (bsp_uart_rx_begin/end): under
 * QEMU -icount sleep=off a WFI jumps virtual time to the next timer deadline,
 * so a running SysTick made an idle guest wake every 2^24 ticks and spin. With
 * it stopped, nothing but the UART wakes the guest (idle QEMU ~0 % CPU).
 *
 * ready() is asked only once the line has gone pending: under QEMU every read of the
 * STM32 USART's SR wakes the emulator's I/O thread (qemu_chr_fe_accept_input), which
 * costs more host CPU than the byte itself. QEMU latches pending on the line's rising
 * edge, silicon whenever the line is high; clearing pending before asking ready() is
 * right for both: a byte that arrives after the clear raises the line (again). */
#include "bsp_internal.h"
#include "cortex_m.h"

void wait_for_irq(unsigned irq, int (*ready)(void))
{
    const unsigned n = irq >> 5;
    const uint32_t bit = 1u << (irq & 31u);

    __asm__ volatile("cpsid i" ::: "memory");
    NVIC_ISER(n) = bit;
    for (;;) {
        if (NVIC_ISPR(n) & bit) {
            NVIC_ICPR(n) = bit; /* clear first: a byte arriving after this re-pends it */
            dsb_isb();
            if (ready())
                break;
        }
        ticks_poll_masked();
        __asm__ volatile("dsb\n\twfi" ::: "memory");
    }
    NVIC_ICER(n) = bit;
    dsb_isb();
    __asm__ volatile("cpsie i" ::: "memory");
}
