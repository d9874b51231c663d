/* MAC loop of nn_dense_pairs_u8/_s8 (nn_dense_s8.c) on cores with the DSP extension:
 * two input pairs per pass over the accumulators, six accumulators per block (14
 * registers, more than GCC can give an inline asm statement).
 *
 * void nn_pairs_list_m4(const nn_pair_t *list, int n_pairs, int32_t *acc, int n_out);
 * list: n_pairs (even, >= 2) entries {value (int16 lanes), weight row (packed words,
 * nn_runtime.h)}, taken two at a time.  acc[0 .. n_asm) += their contributions,
 * n_asm = 6 * (n_out / 6) + (4 if n_out % 6 >= 4): blocks of six outputs (three words of
 * each row), unrolled eight deep and entered Duff-style, then a block of four.  The even
 * outputs take the raw words (their bytes are stored + 128; the caller fixes the sums up),
 * the odd ones SXTB16 ROR #8.  Per block: 22 instructions for 24 MACs. */
#if defined(__ARM_FEATURE_DSP)
    .syntax unified
    .thumb
    .text

    .equ    LIST, 0                 @ stack slots: next list entry
    .equ    LEND, 4                 @ end of the list
    .equ    ACC, 8                  @ acc
    .equ    ENTRY, 12               @ where the unrolled loop is entered (8: no block of six)
    .equ    END, 16                 @ acc + 6 * (n_out / 6)
    .equ    TAILJ, 20               @ after the blocks of six: .Ltail4 or .Lnext (Thumb bit set)

@ one row (pointer \w, value \v) into accumulators r2-r7: three words, six outputs
    .macro  ROW6 w, v
    ldm     \w!, {r1, r8, r9}
    smlad   r2, r1, \v, r2
    sxtb16  r1, r1, ror #8
    smlad   r3, r1, \v, r3
    smlad   r4, r8, \v, r4
    sxtb16  r8, r8, ror #8
    smlad   r5, r8, \v, r5
    smlad   r6, r9, \v, r6
    sxtb16  r9, r9, ror #8
    smlad   r7, r9, \v, r7
    .endm

    .macro  BLOCK6
    ldm     r0, {r2-r7}
    ROW6    r11, r10
    ROW6    lr, r12
    stm     r0!, {r2-r7}
    .endm

@ the same for two words, four outputs (accumulators r2-r5)
    .macro  ROW4 w, v
    ldm     \w, {r1, r8}
    smlad   r2, r1, \v, r2
    sxtb16  r1, r1, ror #8
    smlad   r3, r1, \v, r3
    smlad   r4, r8, \v, r4
    sxtb16  r8, r8, ror #8
    smlad   r5, r8, \v, r5
    .endm

    .global nn_pairs_list_m4
    .type   nn_pairs_list_m4, %function
    .align  2
    .thumb_func
nn_pairs_list_m4:
    push    {r4-r11, lr}
    sub     sp, sp, #24
    add     r1, r0, r1, lsl #3
    strd    r0, r1, [sp, #LIST]     @ LIST, LEND
    movs    r1, #6
    udiv    r1, r3, r1              @ n6
    add     r4, r1, r1, lsl #1
    add     r5, r2, r4, lsl #3
    str     r5, [sp, #END]
    sub     r3, r3, r4, lsl #1      @ n_out % 6
    cmp     r3, #4
    ite     ge
    adrge.w r3, .Ltail4
    adrlt.w r3, .Lnext
    orr     r3, r3, #1
    str     r3, [sp, #TAILJ]
    and     r1, r1, #7              @ the first pass runs n6 % 8 blocks (8 when 0)
    cmp     r4, #0
    it      eq
    moveq   r1, #8                  @ no block of six at all
    strd    r2, r1, [sp, #ACC]      @ ACC, ENTRY
    b       .Lnext
.Ltail4:                            @ placed here so that it falls into .Lnext
    ldm     r0, {r2-r5}
    ROW4    r11, r10
    ROW4    lr, r12
    stm     r0, {r2-r5}
.Lnext:
    ldrd    r1, r2, [sp, #LIST]
    cmp     r1, r2
    beq     .Ldone
    ldm     r1!, {r10, r11, r12, lr} @ value 0, row 0, value 1, row 1
    str     r1, [sp, #LIST]
    ldrd    r0, r1, [sp, #ACC]      @ acc, entry
    tbh     [pc, r1, lsl #1]
.Ltab:
    .hword  (.Lb0 - .Ltab) / 2, (.Lb7 - .Ltab) / 2, (.Lb6 - .Ltab) / 2, (.Lb5 - .Ltab) / 2
    .hword  (.Lb4 - .Ltab) / 2, (.Lb3 - .Ltab) / 2, (.Lb2 - .Ltab) / 2, (.Lb1 - .Ltab) / 2
    .hword  (.Ltail - .Ltab) / 2, 0
.Lb0:
    BLOCK6
.Lb1:
    BLOCK6
.Lb2:
    BLOCK6
.Lb3:
    BLOCK6
.Lb4:
    BLOCK6
.Lb5:
    BLOCK6
.Lb6:
    BLOCK6
.Lb7:
    BLOCK6
    ldr     r1, [sp, #END]
    cmp     r0, r1
    bne     .Lb0
.Ltail:
    ldr     pc, [sp, #TAILJ]
.Ldone:
    add     sp, sp, #24
    pop     {r4-r11, pc}
    .size   nn_pairs_list_m4, . - nn_pairs_list_m4

/* void nn_pair1_m4(const nn_pair_t *p, int32_t *acc, int n_out);
 * the same for a single list entry (the last of an odd count): 14 instructions per block */
    .global nn_pair1_m4
    .type   nn_pair1_m4, %function
    .align  2
    .thumb_func
nn_pair1_m4:
    push    {r4-r11, lr}
    ldm     r0, {r10, r11}          @ value, row
    mov     r0, r1
    movs    r1, #6
    udiv    r1, r2, r1              @ n6
    add     r3, r1, r1, lsl #1
    add     r12, r0, r3, lsl #3     @ acc + 6 * n6
    sub     lr, r2, r3, lsl #1      @ n_out % 6
    cbz     r1, 2f
1:
    ldm     r0, {r2-r7}
    ROW6    r11, r10
    stm     r0!, {r2-r7}
    cmp     r0, r12
    bne     1b
2:
    cmp     lr, #4
    blt     3f
    ldm     r0, {r2-r5}
    ROW4    r11, r10
    stm     r0, {r2-r5}
3:
    pop     {r4-r11, pc}
    .size   nn_pair1_m4, . - nn_pair1_m4
#endif

/* Requantisation of dense outputs (nn_requant_ch_s8, inner 1, range [-128, 127]):
 *
 * int nn_requant_hi_m4(const int32_t *acc, int8_t *y, int n, const int32_t *mult,
 *                      const int8_t *shift, int zp);
 * y[c] = SSAT8((((acc[c] * mult[c]) >> 32 >> (shift[c] - 33)) + 1) >> 1) + zp), requant_hi
 * (nn_internal.h), while shift[c] >= 33; returns the number of outputs done (n, or the
 * first c with shift[c] < 33).  y may be acc (each word is read before its bytes are
 * written).  About 9 instructions per output, four at a time. */
#if defined(__ARM_FEATURE_DSP)
    .global nn_requant_hi_m4
    .type   nn_requant_hi_m4, %function
    .align  2
    .thumb_func
@ one output: accumulator \a, multiplier \m (then the shift), to y (r1)
    .macro  REQ1 a, m
    smmul   \a, \a, \m             @ high word of acc * mult
    ldrsb   \m, [r4], #1
    subs    \m, \m, #33
    bmi     4f
    asr     \a, \a, \m
    adds    \a, \a, #1
    add     \a, r5, \a, asr #1
    ssat    \a, #8, \a
    strb    \a, [r1], #1
    .endm

@ the same in a group of four: the shift - 33 is byte \b of r8
    .macro  REQ4 a, m, b
    smmul   \a, \a, \m
    uxtb    \m, r8, ror #\b
    asr     \a, \a, \m
    adds    \a, \a, #1
    add     \a, r5, \a, asr #1
    ssat    \a, #8, \a
    strb    \a, [r1], #1
    .endm

nn_requant_hi_m4:
    push    {r1, r4-r11, lr}        @ [sp]: y at the start
    ldrd    r4, r5, [sp, #40]       @ shift, zp
    adds    r2, r1, r2              @ y end
    sub     r9, r2, #3
    cmp     r1, r9
    bge     3f
1:                                  @ four outputs per pass (LDM)
    ldr     r8, [r4], #4            @ four shifts
    sub     r8, r8, #0x21212121     @ each - 33: no borrow while all are >= 33
    tst     r8, #0x80808080
    bne     5f                      @ one is below 33: one at a time up to it
    ldm     r0!, {r6, r7, r10, r11}
    ldm     r3!, {r12, lr}
    REQ4    r6, r12, 0
    REQ4    r7, lr, 8
    ldm     r3!, {r12, lr}
    REQ4    r10, r12, 16
    REQ4    r11, lr, 24
    cmp     r1, r9
    blt     1b
3:
    cmp     r1, r2                  @ one at a time (the last 0..3 outputs)
    beq     4f
    ldr     r6, [r0], #4
    ldr     r12, [r3], #4
    REQ1    r6, r12
    b       3b
5:
    sub     r4, r4, #4
    b       3b
4:
    ldr     r0, [sp]
    sub     r0, r1, r0
    pop     {r1, r4-r11, pc}
    .size   nn_requant_hi_m4, . - nn_requant_hi_m4
#endif

/* int8 dense layer with ten outputs (nn_dense_pairs_s8, n_out 10), every accumulator in a
 * register for the whole input:
 *
 * void nn_dense10_m4(const int8_t *x, int n_pairs, const uint32_t *w, int32_t *acc, uint32_t zz);
 * acc[0 .. 10) += the n_pairs (>= 1) input pairs (x[2k] - zx, x[2k+1] - zx) times their rows
 * of five packed words; zz = zx in both int16 lanes.  Pairs that are both zero are
 * skipped; even outputs take the raw words (fixed up by the caller, as for the lists).
 * Two pairs per pass: 28.5 instructions per nonzero pair, 10.5 per zero pair. */
#if defined(__ARM_FEATURE_DSP)
    .macro  WORD2 a, b
    ldr     lr, [r11], #4
    smlad   \a, lr, r12, \a
    sxtb16  lr, lr, ror #8
    smlad   \b, lr, r12, \b
    .endm

    .global nn_dense10_m4
    .type   nn_dense10_m4, %function
    .align  2
    .thumb_func
@ one input pair into r0-r9 (x r10, row r11; a zero pair jumps to \skip)
    .macro  PAIR10 skip
    ldrsb   r12, [r10], #1
    ldrsb   lr, [r10], #1
    pkhbt   r12, r12, lr, lsl #16
    ldr     lr, [sp, #4]
    ssub16  r12, r12, lr            @ (x0 - zx, x1 - zx)
    cmp     r12, #0
    beq     \skip
    WORD2   r0, r1
    WORD2   r2, r3
    WORD2   r4, r5
    WORD2   r6, r7
    WORD2   r8, r9
    .endm

nn_dense10_m4:
    push    {r4-r11, lr}
    ldr     r4, [sp, #36]           @ zz
    add     r5, r0, r1, lsl #1      @ end of x
    push    {r3, r4, r5}            @ [sp]: acc, [sp, #4]: zz, [sp, #8]: end of x
    mov     r10, r0
    mov     r11, r2
    tst     r1, #1                  @ an odd count enters at the second pair of a pass
    ldm     r3, {r0-r9}
    bne     2f
1:
    PAIR10  5f
2:
    PAIR10  6f
3:
    ldr     lr, [sp, #8]
    cmp     r10, lr
    bne     1b
    ldr     lr, [sp]
    stm     lr, {r0-r9}
    add     sp, sp, #12
    pop     {r4-r11, pc}
5:
    add     r11, r11, #20           @ a zero pair: the next row
    b       2b
6:
    add     r11, r11, #20
    b       3b
    .size   nn_dense10_m4, . - nn_dense10_m4
#endif

/* The scan of nn_dense_pairs_u8: sixteen pixels per test, the nonzero pairs appended to the
 * list.
 *
 * const uint8_t *nn_scan_u8_m4(const uint8_t *x, const uint8_t *end, nn_scan_t *st, int row_bytes,
 *                              const nn_pair_t *limit);
 * x word-aligned, end - x a multiple of 16; st = {list end, weight row of x's first pair,
 * sum of the pixels so far}.  Appends {value (b0 | b1 << 16), row} for each pixel pair that
 * is not zero and updates st; stops at end, or before a nonzero block when the list end
 * is past limit (the caller flushes the list and calls again).  Returns where it stopped.
 * 8 instructions per zero block, 12 more per nonzero word. */
#if defined(__ARM_FEATURE_DSP)
@ word \q (two pixel pairs): its pixel sum, two list entries at most; row r10 moves on two rows
    .macro  WORDP q
    cbz     \q, 7f
    usada8  r12, \q, lr, r12
    uxtb16  r8, \q
    uxtb16  r9, \q, ror #8
    pkhbt   \q, r8, r9, lsl #16     @ (b0, b1)
    pkhtb   r3, r9, r8, asr #16     @ (b2, b3)
    cbz     \q, 5f
    strd    \q, r10, [r2], #8
5:
    cbz     r3, 7f
    add     r8, r10, r11            @ the second pair's row
    strd    r3, r8, [r2], #8
7:
    add     r10, r10, r11, lsl #1
    .endm

    .global nn_scan_u8_m4
    .type   nn_scan_u8_m4, %function
    .align  2
    .thumb_func
nn_scan_u8_m4:
    push    {r2, r4-r11, lr}        @ [sp]: st
    mov     r11, r3                 @ bytes per row
    ldm     r2, {r2, r10, r12}      @ list end, row, sum
    mov     lr, #0
    cmp     r0, r1
    beq     9f
1:
    ldm     r0!, {r4-r7}
    orr     r8, r4, r5
    orr     r9, r6, r7
    orrs    r8, r8, r9
    bne     4f
    add     r10, r10, r11, lsl #3   @ eight rows
    cmp     r0, r1
    bne     1b
9:
    ldr     r8, [sp]
    stm     r8, {r2, r10, r12}
    pop     {r2, r4-r11, pc}
4:
    ldr     r3, [sp, #40]           @ limit
    cmp     r2, r3
    bhi     8f
    WORDP   r4
    WORDP   r5
    WORDP   r6
    WORDP   r7
    cmp     r0, r1
    bne     1b
    b       9b
8:
    sub     r0, r0, #16             @ this block again, after a flush
    b       9b
    .size   nn_scan_u8_m4, . - nn_scan_u8_m4
#endif

/* Set-up and fix-up of the even accumulators around the raw-word sums (nn_dense_s8.c):
 * void nn_init_raw_m4(int32_t *acc, const int32_t *bias, int n);
 *   acc[2j] = bias[2j] + (bias[2j+1] << 8), acc[2j+1] = bias[2j+1]
 * void nn_fix_even_m4(int32_t *acc, int n, uint32_t off);
 *   acc[2j] -= (acc[2j+1] << 8) + off
 * n even, >= 0; eight accumulators per LDM/STM. */
#if defined(__ARM_FEATURE_DSP)
    .global nn_init_raw_m4
    .type   nn_init_raw_m4, %function
    .align  2
    .thumb_func
nn_init_raw_m4:
    push    {r4-r11, lr}
    add     r2, r0, r2, lsl #2      @ end
    sub     r3, r2, r0
    tst     r3, #8                  @ n & 2
    beq     1f
    ldrd    r3, r4, [r1], #8
    add     r3, r3, r4, lsl #8
    strd    r3, r4, [r0], #8
1:
    sub     r3, r2, r0
    tst     r3, #16                 @ n & 4
    beq     4f
    ldm     r1!, {r3-r6}
    add     r3, r3, r4, lsl #8
    add     r5, r5, r6, lsl #8
    stm     r0!, {r3-r6}
4:
    cmp     r0, r2
    beq     2f
3:                                  @ eight per pass
    ldm     r1!, {r3-r10}
    add     r3, r3, r4, lsl #8
    add     r5, r5, r6, lsl #8
    add     r7, r7, r8, lsl #8
    add     r9, r9, r10, lsl #8
    stm     r0!, {r3-r10}
    cmp     r0, r2
    bne     3b
2:
    pop     {r4-r11, pc}
    .size   nn_init_raw_m4, . - nn_init_raw_m4

    .global nn_fix_even_m4
    .type   nn_fix_even_m4, %function
    .align  2
    .thumb_func
nn_fix_even_m4:
    push    {r4-r11, lr}
    add     r1, r0, r1, lsl #2      @ end
    sub     r3, r1, r0
    tst     r3, #8                  @ n & 2
    beq     1f
    ldrd    r3, r4, [r0]
    sub     r3, r3, r4, lsl #8
    sub     r3, r3, r2
    str     r3, [r0], #8
1:
    sub     r3, r1, r0
    tst     r3, #16                 @ n & 4
    beq     4f
    ldm     r0, {r3-r6}
    sub     r3, r3, r4, lsl #8
    sub     r3, r3, r2
    sub     r5, r5, r6, lsl #8
    sub     r5, r5, r2
    stm     r0!, {r3-r6}
4:
    cmp     r0, r1
    beq     2f
3:                                  @ eight per pass
    ldm     r0, {r3-r10}
    sub     r3, r3, r4, lsl #8
    sub     r3, r3, r2
    sub     r5, r5, r6, lsl #8
    sub     r5, r5, r2
    sub     r7, r7, r8, lsl #8
    sub     r7, r7, r2
    sub     r9, r9, r10, lsl #8
    sub     r9, r9, r2
    stm     r0!, {r3-r10}
    cmp     r0, r1
    bne     3b
2:
    pop     {r4-r11, pc}
    .size   nn_fix_even_m4, . - nn_fix_even_m4
#endif
