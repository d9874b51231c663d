#include "cobs.h"

int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        size_t run = (size_t)code - 1;
        if (code == 0 || run > len - i || run > cap - o)
            return -1;
        /* o < i here, so copying forward in place reads before it writes. */
        for (size_t k = 0; k < run; k++) {
            if (in[i] == 0)
                return -1;
            out[o++] = in[i++];
        }
        /* A block shorter than 254 stands for a zero, except at the very end. */
        if (code != 0xFF && i < len) {
            if (o == cap)
                return -1;
            out[o++] = 0;
        }
    }
    return (int)o;
}

/* A read position in the concatenation of the parts. */
typedef struct {
    const cobs_part_t *parts;
    size_t n_parts;
    size_t k;   /* current part */
    size_t off; /* offset in it */
} cursor_t;

static void skip_empty(cursor_t *c)
{
    while (c->k < c->n_parts && c->off == c->parts[c->k].len) {
        c->k++;
        c->off = 0;
    }
}

/* Non-zero bytes from c, at most 254 (does not move c). */
static size_t count_run(cursor_t c)
{
    size_t run = 0;
    for (skip_empty(&c); run < 254 && c.k < c.n_parts; skip_empty(&c)) {
        if (c.parts[c.k].data[c.off] == 0)
            break;
        c.off++;
        run++;
    }
    return run;
}

/* Writes n bytes from c and moves past them, one put() per part touched. */
static void emit(cursor_t *c, size_t n, void (*put)(const uint8_t *, size_t))
{
    while (n > 0) {
        skip_empty(c);
        size_t avail = c->parts[c->k].len - c->off;
        size_t m = n < avail ? n : avail;
        put(c->parts[c->k].data + c->off, m);
        c->off += m;
        n -= m;
    }
}

void cobs_encode_parts(const cobs_part_t *parts, size_t n_parts, void (*put)(const uint8_t *buf, size_t n))
{
    cursor_t c = {parts, n_parts, 0, 0};
    size_t total = 0, pos = 0;
    for (size_t k = 0; k < n_parts; k++)
        total += parts[k].len;
    for (;;) {
        size_t run = count_run(c);
        uint8_t code = (uint8_t)(run + 1);
        put(&code, 1);
        emit(&c, run, put);
        pos += run;
        if (pos == total)
            return;
        if (run < 254) {
            skip_empty(&c);
            c.off++; /* the zero this block stood for */
            pos++;
        }
    }
}

void cobs_encode_to(const uint8_t *data, size_t len, void (*put)(const uint8_t *buf, size_t n))
{
    const cobs_part_t part = {data, len};
    cobs_encode_parts(&part, 1, put);
}
