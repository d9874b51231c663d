/* Constants of the serial protocol, version 5 (docs/protocol.md). */
#ifndef PROTOCOL_H
#define PROTOCOL_H

/* 2: INFO ends with tick_unit; 3: PROFILE; 4: image encoding 3 replaces 2; 5: INFER_BATCH */
#define PROTOCOL_VERSION 5u

#define BODY_MAX 1024u   /* type + seq + payload + crc */
#define BODY_OVERHEAD 4u /* type, seq, crc16 */

enum msg_type {
    MSG_INFO = 0x01,
    MSG_INFER = 0x02,
    MSG_PROFILE = 0x03,     /* per-layer ticks of the last inference and since reset */
    MSG_INFER_BATCH = 0x04, /* several images in one frame, one reply each (version 5) */
    MSG_FAULT = 0x7E,
    MSG_ERROR = 0x7F,
    MSG_REPLY = 0x80, /* reply type = request type | MSG_REPLY */
};

enum err_code {
    ERR_BAD_CRC = 1,
    ERR_MALFORMED = 2,
    ERR_TOO_LONG = 3,
    ERR_UNKNOWN_TYPE = 4,
    ERR_BAD_PAYLOAD = 5,
    ERR_MODEL = 6,
    ERR_REPLY_TOO_LONG = 7, /* the device built a reply over BODY_MAX (detail: its type); a bug */
};

/* ERROR details (the protocol leaves them free; these help debugging). */
enum err_detail {
    DETAIL_NONE = 0,
    DETAIL_COBS = 1,         /* ERR_MALFORMED: invalid COBS */
    DETAIL_SHORT = 2,        /* ERR_MALFORMED: body under 4 bytes */
    DETAIL_BAD_ENCODING = 1, /* ERR_BAD_PAYLOAD: unknown image encoding */
    DETAIL_BAD_IMAGE = 2,    /* ERR_BAD_PAYLOAD: image does not decode to input_size */
    DETAIL_BAD_LENGTH = 3,   /* ERR_BAD_PAYLOAD: payload length wrong for the type */
};

/* PROFILE request flags. */
#define PROFILE_CLEAR 0x01u /* zero the per-layer statistics after answering */

/* What the INFER reply's ticks count (INFO's last byte). */
enum tick_unit {
    TICK_CYCLES = 1,   /* CPU cycles of a real core (DWT cycle counter) */
    TICK_EMULATED = 2, /* an emulator's virtual clock (SysTick): instructions under QEMU -icount */
};

enum image_encoding {
    ENC_RAW = 0,
    ENC_ZERO_RUN = 1,
    /* 2 was static Huffman codes (protocol version 3), retired */
    ENC_CONTEXT = 3, /* context-modelled binary decisions under rANS (image.c) */
};

#endif /* PROTOCOL_H */
