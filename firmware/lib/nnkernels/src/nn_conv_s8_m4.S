/* Inner loop of nn_conv2d_s8 (nn_conv_s8.c) on cores with the DSP extension: it needs
 * 14 registers, more than GCC can give an inline asm statement.
 *
 * void nn_dot2x2_s8(const int8_t *wa, const int8_t *wb, const uint32_t *col, int nwords,
 *                   int32_t acc[4]);
 * acc[0], acc[1] (channel row wa; pixels 0, 1) and acc[2], acc[3] (row wb) += the dot
 * products of nwords weight words with the gathered taps: col holds four words per
 * weight word j, taps (4j, 4j+2) and (4j+1, 4j+3) of pixel 0, then the same of pixel 1,
 * as int16 lanes: the lanes SXTB16 makes of weight word j.  nwords >= 1.
 * 17 instructions per 16 MACs. */
#if defined(__ARM_FEATURE_DSP)
    .syntax unified
    .thumb
    .text
    .global nn_dot2x2_s8
    .type   nn_dot2x2_s8, %function
    .align  2
    .thumb_func
nn_dot2x2_s8:
    push    {r4-r11, lr}
    ldr     r12, [sp, #36]          @ acc (5th argument, above the 9 saved registers)
    ldm     r12, {r4-r7}
1:
    ldm     r2!, {r10, r11, r12, lr} @ pixel 0: taps (4j, 4j+2), (4j+1, 4j+3); pixel 1: the same
    ldr     r8, [r0], #4            @ four weights of row a
    sxtb16  r9, r8
    sxtb16  r8, r8, ror #8
    smlad   r4, r9, r10, r4
    smlad   r5, r9, r12, r5
    smlad   r4, r8, r11, r4
    smlad   r5, r8, lr, r5
    ldr     r8, [r1], #4            @ four weights of row b
    sxtb16  r9, r8
    sxtb16  r8, r8, ror #8
    smlad   r6, r9, r10, r6
    smlad   r7, r9, r12, r7
    smlad   r6, r8, r11, r6
    smlad   r7, r8, lr, r7
    subs    r3, r3, #1
    bne     1b
    ldr     r12, [sp, #36]
    stm     r12, {r4-r7}
    pop     {r4-r11, pc}
    .size   nn_dot2x2_s8, . - nn_dot2x2_s8
#endif
