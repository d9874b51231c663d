/* Minimal newlib system calls for a bare-metal target. malloc (used by the
 * deepC runtime and libstdc++) grows the heap through _sbrk, which records the
 * high-water mark for INFO and refuses to grow into the stack.
 * stdout/stderr are discarded: the UART carries protocol frames only, and a
 * stray print from a library would corrupt them. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "bsp.h"

extern char __heap_start[], __heap_limit[];

static char *heap_end = __heap_start;
static uint32_t heap_peak; /* newlib may trim the heap: keep the maximum */

void *_sbrk(ptrdiff_t incr)
{
    char *prev = heap_end;
    if (incr > __heap_limit - heap_end || -incr > heap_end - __heap_start) {
        errno = ENOMEM;
        return (void *)-1;
    }
    heap_end += incr;
    if ((uint32_t)(heap_end - __heap_start) > heap_peak)
        heap_peak = (uint32_t)(heap_end - __heap_start);
    return prev;
}

uint32_t bsp_heap_peak(void) { return heap_peak; }

#define WEAK __attribute__((weak))

WEAK int _write(int fd, const void *buf, size_t len)
{
    (void)fd;
    (void)buf;
    return (int)len;
}
WEAK int _read(int fd, void *buf, size_t len)
{
    (void)fd;
    (void)buf;
    (void)len;
    return 0;
}
WEAK int _close(int fd)
{
    (void)fd;
    return -1;
}
WEAK int _isatty(int fd)
{
    (void)fd;
    return 1;
}
WEAK int _lseek(int fd, int off, int whence)
{
    (void)fd;
    (void)off;
    (void)whence;
    return 0;
}
WEAK int _getpid(void) { return 1; }

WEAK int _fstat(int fd, struct stat *st)
{
    (void)fd;
    st->st_mode = S_IFCHR;
    return 0;
}

WEAK int _kill(int pid, int sig)
{
    (void)pid;
    (void)sig;
    errno = EINVAL;
    return -1;
}

WEAK void _exit(int status)
{
    (void)status;
    for (;;) {
    }
}

/* libstdc++'s random_device and Eigen's random helpers link against these. */
WEAK int getentropy(void *buf, size_t len)
{
    (void)buf;
    (void)len;
    errno = ENOSYS;
    return -1;
}

struct timeval;
WEAK int _gettimeofday(struct timeval *tv, void *tz)
{
    (void)tv;
    (void)tz;
    errno = ENOSYS;
    return -1;
}
