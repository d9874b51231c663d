/* Kernel tests of firmware/lib/nnkernels, shared by the Cortex-M4 build (pio test under
 * QEMU) and the host build (pytest compiles the same file with gcc).
 *
 * Output, one line per test:  "PASS <name> <hash>"  or  "FAIL <name> <what>",
 * then "DONE <passed> <failed>".  <hash> is an FNV-1a hash of the outputs, so the
 * host can check the device computes the same bits as the host build. */
#ifndef KERNEL_TESTS_H
#define KERNEL_TESTS_H

/* Runs every test, writing lines through put_line (without '\n'); returns the failures. */
int nn_kernel_tests(void (*put_line)(const char *line));

#endif
