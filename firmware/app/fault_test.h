/* Debug request of the fault-test firmware (-DFAULT_TEST only; see fault_test.c). */
#ifndef FAULT_TEST_H
#define FAULT_TEST_H

#include "link.h"

#define MSG_FAULT_TEST 0x70u /* payload: one byte, which failure to cause */

/* Returns 1 if the frame was a fault-test request (and was handled). */
int fault_test_handle(const frame_t *f);

#endif
