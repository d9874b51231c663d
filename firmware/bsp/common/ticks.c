/* Free-running 32-bit tick counter for bsp_ticks().
 * Real boards (BSP_TICK_DWT): the DWT cycle counter, i.e. true CPU cycles.
 * QEMU boards: DWT reads 0 there, so SysTick (24 bits, CPU clock) with its
 * wrap interrupt supplying the upper 8 bits; under -icount its counts are
 * deterministic and proportional to executed instructions. */
#include "bsp.h"
#include "bsp_internal.h"
#include "cortex_m.h"

#ifdef BSP_TICK_DWT

void ticks_init(uint32_t cpu_hz)
{
    (void)cpu_hz;
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* unlock (needed on some cores, harmless on M4) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

uint32_t bsp_ticks(void) { return DWT_CYCCNT; }

void SysTick_Handler(void) {} /* SysTick is not enabled on these boards */

void ticks_pause(void) {}
void ticks_resume(void) {}

#else

#define SYSTICK_MAX 0x00FFFFFFu

static volatile uint32_t systick_wraps;

void ticks_init(uint32_t cpu_hz)
{
    (void)cpu_hz;
    SYST_CSR = 0;
    SYST_RVR = SYSTICK_MAX;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

void SysTick_Handler(void) { systick_wraps++; }

/* Stopping SysTick freezes its count (a wrap already pending is taken by the handler once
 * the frame is read and interrupts are unmasked), so bsp_ticks() stays monotonic and time
 * spent reading frames is not counted at all: however long the host takes, the count only
 * advances with code outside the frame reads, which is the same on every run
 * (deterministic), and an idle emulator has no timer deadline to jump to. Once per frame,
 * not per byte: under QEMU each restart of the timer wakes the I/O thread (about 2 us of
 * host CPU per byte). Inference never reads bytes; its tick counts are what they were, up
 * to the timer's phase (one tick either way on some images). */
void ticks_pause(void) { SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT; }

void ticks_resume(void) { SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE; }

uint32_t bsp_ticks(void)
{
    uint32_t wraps, down;
    /* Retry if the counter wrapped between the two reads. */
    do {
        wraps = systick_wraps;
        down = SYST_CVR;
    } while (wraps != systick_wraps);
    return (wraps << 24) + (SYSTICK_MAX - down);
}

#endif

uint32_t bsp_tick_hz(void) { return bsp_cpu_hz(); } /* both count CPU clocks */
