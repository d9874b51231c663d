/* Stack overflow guard: the lowest STACK_GUARD_BYTES of the reserved stack become an MPU
 * no-access region, so a stack that grows past its reservation faults at once (MemManage,
 * reported in a FAULT frame) instead of silently overwriting the heap and .bss below it.
 * Everything else keeps the default memory map (PRIVDEFENA). */
#include "bsp_internal.h"
#include "cortex_m.h"

extern uint32_t __stack_start[];

void stack_guard_init(void)
{
    if (((MPU_TYPE >> 8) & 0xFFu) == 0)
        return; /* a core without an MPU: no guard */
    MPU_CTRL = 0;
    dsb_isb();
    MPU_RNR = 0;
    MPU_RBAR = (uint32_t)__stack_start; /* 32-byte aligned: the stack size is a multiple of 1 KB */
    /* SIZE = log2(bytes) - 1; AP = 000 (no access, privileged or not); execute never. */
    MPU_RASR = MPU_RASR_XN | ((STACK_GUARD_LOG2 - 1u) << 1) | MPU_RASR_ENABLE;
    MPU_CTRL = MPU_CTRL_ENABLE | MPU_CTRL_PRIVDEFENA;
    dsb_isb();
}

int stack_guard_hit(uint32_t sp)
{
    /* A frame stacked below the guard's top overlaps it (or lies beyond the stack): its
     * stores faulted, so it holds no registers. */
    return sp < (uint32_t)__stack_start + STACK_GUARD_BYTES;
}
