/* Fault-test firmware only (-DFAULT_TEST, env qemu_f405_faulttest): a debug request that
 * makes the device fail on purpose, so tests can check under QEMU that real faults end in a
 * FAULT frame the host can symbolise, and that an oversized reply becomes an ERROR.
 * Never compiled into the product firmware. */
#ifdef FAULT_TEST

#include "fault_test.h"

#include "link.h"
#include "protocol.h"

enum {
    FT_BAD_ADDRESS = 1,    /* load from unmapped memory: BusFault (precise, BFAR) */
    FT_DIV_ZERO = 2,       /* integer division by zero with CCR.DIV_0_TRP: UsageFault */
    FT_STACK_OVERFLOW = 3, /* unbounded recursion into the MPU guard: MemManage */
    FT_BIG_REPLY = 4,      /* a reply larger than BODY_MAX: must become an ERROR */
    FT_UNDEFINED = 5,      /* an undefined instruction: UsageFault */
};

static uint8_t big[BODY_MAX];

/* volatile operands: the compiler may not fold or drop the faulting operations */
static volatile uint32_t bad_address = 0x90000000u; /* FSMC bank 3: nothing there */
static volatile int divisor;

__attribute__((noinline)) static int fault_test_load(void) { return *(volatile int *)bad_address; }

__attribute__((noinline)) static int fault_test_divide(int n) { return n / divisor; }

#pragma GCC diagnostic ignored "-Winfinite-recursion" /* on purpose: it ends in the stack guard */
__attribute__((noinline)) static int fault_test_recurse(int depth)
{
    volatile uint8_t frame[64];
    frame[depth & 63] = (uint8_t)depth;
    return fault_test_recurse(depth + 1) + frame[(depth * 7) & 63]; /* not a tail call */
}

int fault_test_handle(const frame_t *f)
{
    if (f->type != MSG_FAULT_TEST)
        return 0;
    int rc = 0;
    switch (f->len ? f->payload[0] : 0) {
    case FT_BAD_ADDRESS:
        rc = fault_test_load();
        break;
    case FT_DIV_ZERO:
        rc = fault_test_divide(7);
        break;
    case FT_STACK_OVERFLOW:
        rc = fault_test_recurse(0);
        break;
    case FT_BIG_REPLY:
        link_send(MSG_FAULT_TEST | MSG_REPLY, f->seq, big, sizeof big);
        return 1;
    case FT_UNDEFINED:
        __asm__ volatile("udf #0");
        break;
    default:
        link_send_error(f->seq, ERR_BAD_PAYLOAD, DETAIL_BAD_LENGTH);
        return 1;
    }
    uint8_t out = (uint8_t)rc; /* only reached if the fault did not happen */
    link_send(MSG_FAULT_TEST | MSG_REPLY, f->seq, &out, 1);
    return 1;
}

#endif
