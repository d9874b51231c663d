#include "image.h"

#include "image_tables.h"
#include "protocol.h"

/* Zero-run: a non-zero byte is a pixel; 0x00 n (n >= 1) is n zero pixels. The image
 * ends with its size-th pixel; *used gets the bytes up to there. */
static int decode_zero_run(const uint8_t *src, size_t len, size_t *used, uint8_t *pixels, size_t size)
{
    size_t o = 0, i = 0;
    while (i < len && o < size) {
        uint8_t b = src[i++];
        if (b != 0) {
            pixels[o++] = b;
            continue;
        }
        if (i == len || src[i] == 0 || src[i] > size - o)
            return DETAIL_BAD_IMAGE;
        for (size_t end = o + src[i++]; o < end;)
            pixels[o++] = 0;
    }
    *used = i;
    return o == size ? 0 : DETAIL_BAD_IMAGE;
}

/* Context (encoding 3, docs/protocol.md): binary decisions with static 8-bit probabilities
 * (image_tables.h) under a rANS coder. First the zero map, each pixel's context its 8
 * already-decoded neighbours W N NW NE WW NN NWW NEE; then each non-zero pixel's value, 8 bits
 * down a binary tree whose first levels depend on how many of its 8 neighbours are non-zero.
 * Bounded loops only: damaged data ends in DETAIL_BAD_IMAGE, never in a hang. */
#define SIDE 28
#define RANS_L (1ul << 23)

typedef struct {
    const uint8_t *src;
    size_t len, pos;
    uint32_t x;
    int bad; /* ran out of data: the final check fails */
} rans_t;

static unsigned rans_bit(rans_t *r, unsigned p1)
{
    const uint32_t slot = r->x & 0xFFu, f0 = 256u - p1;
    const unsigned bit = slot >= f0;
    r->x = bit ? p1 * (r->x >> 8) + slot - f0 : f0 * (r->x >> 8) + slot;
    if (r->x < RANS_L) {
        if (r->pos < r->len)
            r->x = (r->x << 8) | r->src[r->pos++];
        else
            r->bad = 1;
    }
    return bit;
}

static unsigned on(const uint8_t *px, int row, int col)
{
    return row >= 0 && row < SIDE && col >= 0 && col < SIDE && px[row * SIDE + col] != 0;
}

static int decode_context(const uint8_t *src, size_t len, size_t *used, uint8_t *px, size_t size)
{
    if (size != SIDE * SIDE)
        return DETAIL_BAD_ENCODING; /* the tables are for 28x28 digits */
    if (len < 4)
        return DETAIL_BAD_IMAGE;
    rans_t r = {src, len, 4,
                (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24,
                0};
    for (int i = 0; i < SIDE * SIDE; i++) {
        const int y = i / SIDE, x = i % SIDE;
        const unsigned ctx = on(px, y, x - 1) | on(px, y - 1, x) << 1 | on(px, y - 1, x - 1) << 2 |
            on(px, y - 1, x + 1) << 3 | on(px, y, x - 2) << 4 | on(px, y - 2, x) << 5 |
            on(px, y - 1, x - 2) << 6 | on(px, y - 1, x + 2) << 7;
        px[i] = (uint8_t)rans_bit(&r, img_mask_p1[ctx]);
    }
    for (int i = 0; i < SIDE * SIDE; i++) {
        if (!px[i])
            continue;
        const int y = i / SIDE, x = i % SIDE;
        unsigned count = 0;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
                count += (dy || dx) && on(px, y + dy, x + dx);
        unsigned node = 1;
        while (node < 256u) {
            const unsigned k = node <= IMG_CTX_NODES ? count * IMG_CTX_NODES + node - 1u
                                                     : 9u * IMG_CTX_NODES + node - IMG_CTX_NODES - 1u;
            node = node * 2u + rans_bit(&r, img_value_p1[k]);
        }
        if (node == 256u) /* a non-zero pixel cannot be 0 */
            return DETAIL_BAD_IMAGE;
        px[i] = (uint8_t)(node - 256u);
    }
    *used = r.pos;
    return r.bad || r.x != RANS_L ? DETAIL_BAD_IMAGE : 0;
}

int image_decode(uint8_t encoding, const uint8_t *src, size_t len, size_t *used, uint8_t *pixels, size_t size)
{
    *used = 0;
    switch (encoding) {
    case ENC_RAW:
        if (len < size)
            return DETAIL_BAD_IMAGE;
        for (size_t i = 0; i < size; i++)
            pixels[i] = src[i];
        *used = size;
        return 0;
    case ENC_ZERO_RUN:
        return decode_zero_run(src, len, used, pixels, size);
    case ENC_CONTEXT:
        return decode_context(src, len, used, pixels, size);
    default:
        return DETAIL_BAD_ENCODING;
    }
}
