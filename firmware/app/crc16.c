#include "crc16.h"

/* Bitwise: the frames are short and a 512-byte table would cost flash for
 * no measurable gain next to the UART. */
uint16_t crc16_ccitt_update(uint16_t crc, const uint8_t *data, size_t len)
{
    while (len--) {
        crc ^= (uint16_t)(*data++ << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t crc16_ccitt(const uint8_t *data, size_t len) { return crc16_ccitt_update(0xFFFFu, data, len); }
