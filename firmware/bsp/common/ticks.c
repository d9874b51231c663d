/* Free-running 32-bit tick counter for bsp_ticks().
 * Real boards (BSP_TICK_DWT): the DWT cycle counter, i.e. true CPU cycles.
 * QEMU boards: DWT reads 0 there, so SysTick (24 bits, CPU clock), its wraps
 * counted by bsp_ticks() itself; under -icount its counts are deterministic
 * and proportional to executed instructions. */
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

void ticks_pause(void) {}
void ticks_resume(void) {}

#else

#define SYSTICK_MAX 0x00FFFFFFu
#define SYSTICK_RUN (SYST_CSR_CLKSOURCE | SYST_CSR_ENABLE)

/* No wrap interrupt: an exception in the middle of an inference added its entry, exit and
 * handler to that image's ticks, and its frame (104 bytes with the FPU context) to the stack
 * high-water mark whenever it happened to fall at the deepest point, so the reported RAM
 * depended on timing. bsp_ticks() counts a wrap when the down-counter reads higher than at its
 * last call; SysTick runs only while a request is handled (ticks_pause/resume), and no
 * request comes near 2^24 ticks (0.1 s at 168 MHz) between two calls, so no wrap is missed
 * inside the inferences that are timed. Only bsp_ticks() (thread mode) touches these. */
static uint32_t systick_wraps;
static uint32_t systick_last; /* set by ticks_init (.bss, not .data) */

void ticks_init(uint32_t cpu_hz)
{
    (void)cpu_hz;
    SYST_CSR = 0;
    SYST_RVR = SYSTICK_MAX;
    SYST_CVR = 0;
    systick_last = SYSTICK_MAX;
    SYST_CSR = SYSTICK_RUN;
}

/* Stopping SysTick freezes its count, so bsp_ticks() stays monotonic and time spent reading
 * frames is not counted at all: however long the host takes, the count only advances with
 * code outside the frame reads, which is the same on every run (deterministic), and an idle
 * emulator has no timer deadline to jump to. Once per frame, not per byte: under QEMU each
 * restart of the timer wakes the I/O thread (about 2 us of host CPU per byte). Inference never
 * reads bytes; its tick counts are what they were, up to the timer's phase (one tick either
 * way on some images). */
void ticks_pause(void) { SYST_CSR = SYST_CSR_CLKSOURCE; }

void ticks_resume(void) { SYST_CSR = SYSTICK_RUN; }

uint32_t bsp_ticks(void)
{
    const uint32_t down = SYST_CVR;
    if (down > systick_last) /* reloaded since the last call */
        systick_wraps++;
    systick_last = down;
    return (systick_wraps << 24) + (SYSTICK_MAX - down);
}

#endif

/* SysTick is off on boards and runs without its wrap interrupt on the QEMU twins. */
void SysTick_Handler(void) {}

uint32_t bsp_tick_hz(void) { return bsp_cpu_hz(); } /* both count CPU clocks */
