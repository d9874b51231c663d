#ifndef CRC16_H
#define CRC16_H

#include <stddef.h>
#include <stdint.h>

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0. */
uint16_t crc16_ccitt(const uint8_t *data, size_t len);

/* Continues a CRC over more bytes: crc16_ccitt(a|b) ==
 * crc16_ccitt_update(crc16_ccitt(a), b). */
uint16_t crc16_ccitt_update(uint16_t crc, const uint8_t *data, size_t len);

#endif
