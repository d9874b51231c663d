/* Entry point of the kernel tests.  On the Cortex-M4 (pio test under QEMU) the lines go
 * out of the console UART and the run ends with a semihosting exit whose status says
 * whether every test passed; on the host (pytest) they go to stdout. */
#include <stddef.h>
#include <string.h>

#include "kernel_tests.h"

#if defined(__arm__)
#include "bsp.h"

static void put_line(const char *line)
{
    bsp_uart_write((const uint8_t *)line, strlen(line));
    bsp_uart_write((const uint8_t *)"\r\n", 2);
}

/* SYS_EXIT with ADP_Stopped_ApplicationExit: QEMU exits 0; any other reason: exit 1 */
static void semihosting_exit(int ok)
{
    register int r0 __asm__("r0") = 0x18;
    register int r1 __asm__("r1") = ok ? 0x20026 : 0x20023;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
}

int main(void)
{
    bsp_init();
    const int failed = nn_kernel_tests(put_line);
    semihosting_exit(failed == 0);
    for (;;) {
    }
}
#else
#include <stdio.h>

static void put_line(const char *line) { printf("%s\n", line); }

int main(void) { return nn_kernel_tests(put_line) == 0 ? 0 : 1; }
#endif
