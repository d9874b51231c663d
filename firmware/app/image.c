#include "image.h"

#include "image_tables.h"
#include "protocol.h"

/* Zero-run: a non-zero byte is a pixel; 0x00 n (n >= 1) is n zero pixels. */
static int decode_zero_run(const uint8_t *src, size_t len, uint8_t *pixels, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = src[i++];
        if (b != 0) {
            if (o == size)
                return DETAIL_BAD_IMAGE;
            pixels[o++] = b;
            continue;
        }
        if (i == len || src[i] == 0 || src[i] > size - o)
            return DETAIL_BAD_IMAGE;
        for (size_t end = o + src[i++]; o < end;)
            pixels[o++] = 0;
    }
    return o == size ? 0 : DETAIL_BAD_IMAGE;
}

/* Huffman (encoding 2, docs/protocol.md): static canonical codes, MSB-first bits. */
typedef struct {
    const uint8_t *src;
    size_t len;
    size_t pos; /* in bits */
} bits_t;

static int get_bit(bits_t *b)
{
    if ((b->pos >> 3) >= b->len)
        return -1;
    int bit = (b->src[b->pos >> 3] >> (7u - (b->pos & 7u))) & 1;
    b->pos++;
    return bit;
}

static int get_bits(bits_t *b, unsigned n)
{
    int v = 0;
    while (n--) {
        int bit = get_bit(b);
        if (bit < 0)
            return -1;
        v = (v << 1) | bit;
    }
    return v;
}

/* Canonical decoding as in zlib's puff.c: codes of one length are consecutive. */
static int get_symbol(bits_t *b, const uint16_t *count, const uint8_t *symbol)
{
    int code = 0, first = 0, index = 0;
    for (unsigned n = 1; n <= HUFF_MAX_BITS; n++) {
        int bit = get_bit(b);
        if (bit < 0)
            return -1;
        code |= bit;
        if (code - first < (int)count[n])
            return symbol[index + code - first];
        index += count[n];
        first = (first + count[n]) << 1;
        code <<= 1;
    }
    return -1;
}

static int get_length(bits_t *b, const uint16_t *count, const uint8_t *symbol, int esc)
{
    int v = get_symbol(b, count, symbol);
    return v == esc ? get_bits(b, HUFF_ESC_BITS) : v;
}

static int decode_huffman(const uint8_t *src, size_t len, uint8_t *pixels, size_t size)
{
    bits_t b = {src, len, 0};
    size_t o = 0;
    for (;;) {
        int z = get_length(&b, huff_zero_count, huff_zero_symbol, HUFF_ZERO_ESC);
        if (z < 0 || (size_t)z > size - o)
            return DETAIL_BAD_IMAGE;
        for (size_t end = o + (size_t)z; o < end;)
            pixels[o++] = 0;
        if (o == size)
            break;
        int span = get_length(&b, huff_span_count, huff_span_symbol, HUFF_SPAN_ESC);
        if (span <= 0 || (size_t)span > size - o)
            return DETAIL_BAD_IMAGE;
        for (int k = 0; k < span; k++) {
            int edge = k == 0 || k == span - 1;
            int v = edge ? get_symbol(&b, huff_edge_count, huff_edge_symbol)
                         : get_symbol(&b, huff_inner_count, huff_inner_symbol);
            if (v <= 0)
                return DETAIL_BAD_IMAGE;
            pixels[o++] = (uint8_t)v;
        }
        if (o == size) /* the image ended inside a non-zero run */
            break;
    }
    /* only zero padding bits may follow, within the last byte */
    size_t rest = len * 8u - b.pos;
    if (rest >= 8u || (rest && (src[len - 1] & ((1u << rest) - 1u))))
        return DETAIL_BAD_IMAGE;
    return 0;
}

int image_decode(uint8_t encoding, const uint8_t *src, size_t len, uint8_t *pixels, size_t size)
{
    switch (encoding) {
    case ENC_RAW:
        if (len != size)
            return DETAIL_BAD_IMAGE;
        for (size_t i = 0; i < size; i++)
            pixels[i] = src[i];
        return 0;
    case ENC_ZERO_RUN:
        return decode_zero_run(src, len, pixels, size);
    case ENC_HUFFMAN:
        return decode_huffman(src, len, pixels, size);
    default:
        return DETAIL_BAD_ENCODING;
    }
}
