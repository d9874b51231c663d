/* bsp_init: the part every Cortex-M4 board shares, around the board family's
 * own set-up. */
#include "bsp.h"
#include "bsp_internal.h"
#include "cortex_m.h"

void bsp_init(void)
{
    /* Separate MemManage/BusFault/UsageFault (clearer CFSR in FAULT frames)
     * and trap integer division by zero instead of silently returning 0. */
    SCB_SHCSR |= SHCSR_FAULTS_ENA;
    SCB_CCR |= CCR_DIV_0_TRP;

    board_init();
    ticks_init(bsp_cpu_hz());
    stack_guard_init();
}
