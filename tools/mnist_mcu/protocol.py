"""Serial protocol version 5 (docs/protocol.md): framing, messages, image encodings.

wire  := COBS(body) 0x00
body  := type:u8 seq:u8 payload crc:u16le   (CRC-16/CCITT-FALSE over type, seq, payload)

Pure functions and small dataclasses only; no I/O (that is transport.py).
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 5  # 2: INFO says what its ticks count (tick_unit); 3: PROFILE (per-layer ticks);
#             4: image encoding 3 (context) replaces 2 (Huffman); 5: INFER_BATCH
MAX_BODY = 1024

# Message types
INFO = 0x01
INFER = 0x02
PROFILE = 0x03
INFER_BATCH = 0x04  # several images in one frame, one reply each (version 5)
REPLY_BIT = 0x80
INFO_REPLY = INFO | REPLY_BIT
INFER_REPLY = INFER | REPLY_BIT
PROFILE_REPLY = PROFILE | REPLY_BIT
INFER_BATCH_REPLY = INFER_BATCH | REPLY_BIT
MAX_PAYLOAD = MAX_BODY - 4  # type, seq and the CRC take the rest of a body
PROFILE_CLEAR = 0x01  # PROFILE request flag: zero the statistics after answering
ERROR = 0x7F
FAULT = 0x7E

# Image encodings
ENC_RAW = 0
ENC_ZERO_RUN = 1
ENC_CONTEXT = 3  # context models + rANS (image_codec.py), ~128 bytes per MNIST image; 2 (Huffman) is retired
ENC_BEST = -1    # host side only: per image the shortest of the encodings above
ENC_DEFAULT = ENC_BEST
ENCODINGS = (ENC_RAW, ENC_ZERO_RUN, ENC_CONTEXT)
ENCODING_NAMES = {ENC_RAW: "raw", ENC_ZERO_RUN: "zero-run", ENC_CONTEXT: "context", ENC_BEST: "best"}

# What the INFER reply's ticks count (INFO's tick_unit)
TICK_CYCLES = 1    # CPU cycles of a real core (DWT cycle counter)
TICK_EMULATED = 2  # an emulator's virtual clock: under QEMU -icount, proportional to instructions
TICK_UNIT_NAMES = {TICK_CYCLES: "cpu cycles", TICK_EMULATED: "emulated clock (instructions under -icount)"}

# Error codes
ERR_BAD_CRC = 1
ERR_MALFORMED = 2
ERR_TOO_LONG = 3
ERR_UNKNOWN_TYPE = 4
ERR_BAD_PAYLOAD = 5
ERR_MODEL = 6
ERR_REPLY_TOO_LONG = 7  # the device built a reply over MAX_BODY (detail: its type): a firmware bug
ERROR_NAMES = {
    ERR_BAD_CRC: "bad CRC",
    ERR_MALFORMED: "malformed frame",
    ERR_TOO_LONG: "frame too long",
    ERR_UNKNOWN_TYPE: "unknown request type",
    ERR_BAD_PAYLOAD: "bad payload",
    ERR_MODEL: "model failed",
    ERR_REPLY_TOO_LONG: "reply too long (device bug)",
}


class ProtocolError(ValueError):
    """A frame or message that does not follow the protocol."""


class CobsError(ProtocolError):
    pass


class CrcError(ProtocolError):
    pass


# ---------------------------------------------------------------- CRC-16/CCITT-FALSE

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (binascii's
    crc_hqx is this CRC, in C: ~0.4 instead of ~12 µs for a 135-byte request)."""
    return binascii.crc_hqx(data, crc)


# ---------------------------------------------------------------- COBS

def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing; the result contains no 0x00 (no trailing delimiter)."""
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        # a block holds at most 254 non-zero bytes
        end = start
        limit = min(n, start + 254)
        while end < limit and data[end] != 0:
            end += 1
        out.append(end - start + 1)
        out += data[start:end]
        if end >= n:
            break
        if end - start == 254:  # a full block: no implied zero
            start = end
        else:  # data[end] is a zero, implied by the block
            start = end + 1
            if start == n:  # data ends with a zero: one more (empty) block
                out.append(1)
                break
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; raises CobsError on a zero byte or a block overrunning the data."""
    out = bytearray()
    i = 0
    n = len(data)
    if n == 0:
        raise CobsError("empty COBS frame")
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"zero byte inside COBS data at {i}")
        end = i + code
        if end > n:
            raise CobsError(f"COBS block at {i} runs past the end ({code} > {n - i})")
        block = data[i + 1:end]
        if 0 in block:
            raise CobsError("zero byte inside COBS data")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- frames

@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""


def encode_body(type_: int, seq: int, payload: bytes = b"") -> bytes:
    if not (0 <= type_ <= 255 and 0 <= seq <= 255):
        raise ValueError("type and seq are bytes")
    head = bytes((type_, seq)) + bytes(payload)
    return head + struct.pack("<H", crc16(head))


def encode_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """Frame -> wire bytes (COBS + trailing 0x00)."""
    body = encode_body(type_, seq, payload)
    if len(body) > MAX_BODY:
        raise ProtocolError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    return cobs_encode(body) + b"\x00"


def decode_body(body: bytes) -> Frame:
    if len(body) < 4:
        raise ProtocolError(f"frame of {len(body)} bytes is shorter than 4")
    if len(body) > MAX_BODY:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_BODY}")
    got = struct.unpack_from("<H", body, len(body) - 2)[0]
    want = crc16(body[:-2])
    if got != want:
        raise CrcError(f"bad CRC (got {got:#06x}, computed {want:#06x})")
    return Frame(body[0], body[1], bytes(body[2:-2]))


def decode_frame(wire: bytes) -> Frame:
    """COBS data of one frame (with or without the trailing 0x00) -> Frame."""
    if wire.endswith(b"\x00"):
        wire = wire[:-1]
    return decode_body(cobs_decode(wire))


class FrameDecoder:
    """Incremental receiver: feed bytes, get decoded frames and errors.

    Bytes are collected up to each 0x00; an over-long frame is dropped up to the next
    0x00 (resynchronisation). Empty frames (two delimiters in a row) are ignored.
    """

    def __init__(self, max_wire: int | None = None):
        self.max_wire = max_wire or (MAX_BODY + MAX_BODY // 254 + 2)
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes):
        """Yield Frame or ProtocolError instances, in order."""
        for chunk_end in _iter_split(data):
            part, terminated = chunk_end
            if not self._overflow:
                self._buf += part
                if len(self._buf) > self.max_wire:
                    self._overflow = True
                    self._buf.clear()
            if terminated:
                if self._overflow:
                    self._overflow = False
                    yield ProtocolError("frame too long (dropped up to the next delimiter)")
                elif self._buf:
                    raw = bytes(self._buf)
                    self._buf.clear()
                    try:
                        yield decode_body(cobs_decode(raw))
                    except ProtocolError as exc:
                        yield exc

    @property
    def pending(self) -> int:
        return len(self._buf)


def _iter_split(data: bytes):
    start = 0
    while True:
        idx = data.find(b"\x00", start)
        if idx < 0:
            if start < len(data):
                yield data[start:], False
            return
        yield data[start:idx], True
        start = idx + 1


# ---------------------------------------------------------------- image encodings

def zero_run_encode(pixels) -> bytes:
    """Raw uint8 pixels -> zero-run encoding: non-zero byte = pixel; 0x00 n = n zeros (1..255)."""
    px = np.asarray(pixels, dtype=np.uint8).ravel()
    out = bytearray()
    data = px.tobytes()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b:
            j = data.find(b"\x00", i)
            if j < 0:
                j = n
            out += data[i:j]
            i = j
        else:
            j = i
            while j < n and data[j] == 0 and j - i < 255:
                j += 1
            out += bytes((0, j - i))
            i = j
    return bytes(out)


def zero_run_decode(data: bytes, size: int | None = None) -> bytes:
    out, used = _zero_run_decode(data, size)
    if size is not None and used != len(data):
        raise ProtocolError(f"zero-run: {len(data) - used} bytes after the {size}-th pixel")
    return out


def _zero_run_decode(data: bytes, size: int | None) -> tuple[bytes, int]:
    """-> (pixels, bytes taken): up to the size-th pixel (all of data when size is None)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n and (size is None or len(out) < size):
        b = data[i]
        if b:
            out.append(b)
            i += 1
        else:
            if i + 1 >= n:
                raise ProtocolError("zero-run: 0x00 without a count")
            count = data[i + 1]
            if count == 0:
                raise ProtocolError("zero-run: count 0")
            out += bytes(count)
            i += 2
    if size is not None and len(out) != size:
        raise ProtocolError(f"zero-run: decoded {len(out)} pixels, expected {size}")
    return bytes(out), i


def encode_image(pixels, encoding: int = ENC_DEFAULT) -> bytes:
    """INFER payload: the encoding byte, then the image. ENC_BEST picks the shortest."""
    return encode_images(np.asarray(pixels, dtype=np.uint8).reshape(1, -1), encoding)[0]


def encode_images(images, encoding: int = ENC_DEFAULT) -> list[bytes]:
    """INFER payloads of many images [N, pixels] at once (encoding 3 is vectorised over images)."""
    px = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    if encoding == ENC_RAW:
        return [_raw_payload(row) for row in px]
    if encoding == ENC_ZERO_RUN:
        return [_zero_run_payload(row) for row in px]
    if encoding == ENC_CONTEXT:
        from .image_codec import SIZE, encode_many

        if px.shape[1] != SIZE:
            raise ValueError(f"encoding 3 is defined for {SIZE}-pixel images, not {px.shape[1]}")
        return [bytes((ENC_CONTEXT,)) + data for data in encode_many(px)]
    if encoding == ENC_BEST:
        from .image_codec import SIZE

        # encoding 3's tables are made for 28x28 digits; other sizes choose between the other two
        out = encode_images(px, ENC_CONTEXT) if px.shape[1] == SIZE else [b""] * len(px)
        for i, row in enumerate(px):
            # zero-run needs at least a byte per non-zero pixel: skip it (host CPU competes with
            # the emulators) when it cannot be shorter
            if not out[i] or len(out[i]) > np.count_nonzero(row) + 1:
                out[i] = min([p for p in (out[i], _zero_run_payload(row), _raw_payload(row)) if p], key=len)
        return out
    raise ValueError(f"unknown encoding {encoding}")


def _raw_payload(row: np.ndarray) -> bytes:
    return bytes((ENC_RAW,)) + row.tobytes()


def _zero_run_payload(row: np.ndarray) -> bytes:
    return bytes((ENC_ZERO_RUN,)) + zero_run_encode(row)


def decode_image(payload: bytes, size: int) -> bytes:
    """INFER request payload -> raw pixels (the device's side; used by tests and fakes)."""
    px, used = decode_image_prefix(payload, size)
    if used != len(payload):
        raise ProtocolError(f"{len(payload) - used} bytes after the image")
    return px


def decode_image_prefix(payload: bytes, size: int) -> tuple[bytes, int]:
    """The image at the start of `payload` (encoding byte first) -> (pixels, bytes it took,
    encoding byte included); every encoding is self-delimiting, as INFER_BATCH needs."""
    if not payload:
        raise ProtocolError("empty INFER payload")
    enc, data = payload[0], payload[1:]
    if enc == ENC_RAW:
        if len(data) < size:
            raise ProtocolError(f"raw image of {len(data)} bytes, expected {size}")
        return bytes(data[:size]), 1 + size
    if enc == ENC_ZERO_RUN:
        px, used = _zero_run_decode(data, size)
        return px, 1 + used
    if enc == ENC_CONTEXT:
        from .image_codec import CodecError, decode_prefix

        try:
            px, used = decode_prefix(data, size)
        except CodecError as exc:
            raise ProtocolError(str(exc)) from None
        return px, 1 + used
    raise ProtocolError(f"unknown encoding {enc}")


def batch_images(payload: bytes, size: int) -> Iterator[bytes]:
    """INFER_BATCH payload -> each image's pixels in turn (the device's side; tests and fakes).
    Raises ProtocolError at the first image that does not decode, after the ones before it."""
    if not payload:
        raise ProtocolError("empty INFER_BATCH payload")
    pos = 0
    while pos < len(payload):
        px, used = decode_image_prefix(payload[pos:], size)
        yield px
        pos += used


def batches(items, max_images: int, max_bytes: int = MAX_PAYLOAD):
    """(key, INFER payload) items -> (keys, INFER_BATCH payload): as many images back to back
    as fit in one frame's payload, at most max_images (1..255: the reply's index is a u8)."""
    if not 1 <= max_images <= 255:
        raise ValueError(f"a batch holds 1..255 images, not {max_images}")
    keys: list = []
    parts: list[bytes] = []
    size = 0
    for key, payload in items:
        if keys and size + len(payload) > max_bytes:
            yield keys, b"".join(parts)
            keys, parts, size = [], [], 0
        keys.append(key)
        parts.append(payload)
        size += len(payload)
        if len(keys) == max_images:  # at once: a full batch does not wait for (and take) the next image
            yield keys, b"".join(parts)
            keys, parts, size = [], [], 0
    if keys:
        yield keys, b"".join(parts)


# ---------------------------------------------------------------- messages

@dataclass(frozen=True)
class Info:
    version: int
    input_size: int
    output_size: int
    cpu_hz: int
    tick_hz: int
    flash_bytes: int
    static_ram_bytes: int
    heap_peak_bytes: int
    stack_peak_bytes: int
    stack_size_bytes: int
    model: str
    backend: str
    dtype: str
    board: str
    tick_unit: int = TICK_CYCLES

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + self.heap_peak_bytes + self.stack_peak_bytes

    @property
    def ticks_count(self) -> str:
        """What the ticks count, in words: "instructions" (emulator) or "cycles" (a real core)."""
        return "instructions" if self.tick_unit == TICK_EMULATED else "cycles"


@dataclass(frozen=True)
class InferResult:
    cls: int
    outputs: np.ndarray = field(compare=False)
    ticks: int = 0


@dataclass(frozen=True)
class ErrorReply:
    code: int
    detail: int

    def describe(self) -> str:
        name = ERROR_NAMES.get(self.code, "unknown error")
        return f"{name} (code {self.code}, detail {self.detail})"


@dataclass(frozen=True)
class FaultReport:
    pc: int
    lr: int
    cfsr: int
    hfsr: int
    # since the stack guard (docs/protocol.md); None in a 16-byte report
    xpsr: int | None = None
    ipsr: int | None = None
    bfar: int | None = None
    mmfar: int | None = None
    sp: int | None = None

    def describe(self, elf=None) -> str:
        """One line naming the fault and where it happened (symbolised if elf is given)."""
        from .fault_decode import explain

        return explain(self, elf)


_INFO_HEAD = struct.Struct("<BHHIIIIIII")


def build_info_request(seq: int) -> bytes:
    return encode_frame(INFO, seq)


def build_infer_request(seq: int, pixels, encoding: int = ENC_DEFAULT) -> bytes:
    return encode_frame(INFER, seq, encode_image(pixels, encoding))


def _pack_str(b: bytes) -> bytes:
    """A reply string: len:u8 then the bytes."""
    return bytes((len(b),)) + b


def _read_str(payload: bytes, pos: int, where: str) -> tuple[str, int]:
    """The len:u8-prefixed string at pos, and the position after it."""
    if pos >= len(payload):
        raise ProtocolError(f"{where}: missing string")
    end = pos + 1 + payload[pos]
    if end > len(payload):
        raise ProtocolError(f"{where}: string runs past the end")
    return payload[pos + 1:end].decode("utf-8", "replace"), end


def pack_info(info: Info) -> bytes:
    out = bytearray(_INFO_HEAD.pack(
        info.version, info.input_size, info.output_size, info.cpu_hz, info.tick_hz,
        info.flash_bytes, info.static_ram_bytes, info.heap_peak_bytes,
        info.stack_peak_bytes, info.stack_size_bytes))
    for s in (info.model, info.backend, info.dtype, info.board):
        out += _pack_str(s.encode())
    out.append(info.tick_unit)
    return bytes(out)


class VersionMismatch(ProtocolError):
    def __init__(self, version: int):
        super().__init__(f"protocol version {version}, expected {VERSION}")
        self.version = version


def parse_info(payload: bytes) -> Info:
    """INFO reply payload -> Info. The version byte comes first and is checked before the rest,
    so a host can say which side to update."""
    if payload and payload[0] != VERSION:
        raise VersionMismatch(payload[0])
    if len(payload) < _INFO_HEAD.size:
        raise ProtocolError(f"INFO reply of {len(payload)} bytes is too short")
    head = _INFO_HEAD.unpack_from(payload)
    pos = _INFO_HEAD.size
    strings = []
    for _ in range(4):
        text, pos = _read_str(payload, pos, "INFO reply")
        strings.append(text)
    if pos >= len(payload):
        raise ProtocolError("INFO reply: missing tick_unit")
    unit = payload[pos]
    pos += 1
    if pos != len(payload):
        raise ProtocolError(f"INFO reply: {len(payload) - pos} trailing bytes")
    if unit not in TICK_UNIT_NAMES:
        raise ProtocolError(f"INFO reply: unknown tick_unit {unit}")
    # one tuple, in field order: mypy cannot count the fields struct.unpack returns
    fields: tuple[Any, ...] = (*head, *strings, unit)
    return Info(*fields)


def pack_infer_reply(cls: int, outputs, ticks: int) -> bytes:
    out = np.asarray(outputs, dtype="<f4").ravel()
    return bytes((cls, len(out))) + out.tobytes() + struct.pack("<I", ticks)


def pack_infer_batch_reply(index: int, cls: int, outputs, ticks: int) -> bytes:
    return bytes((index,)) + pack_infer_reply(cls, outputs, ticks)


def parse_infer_reply(payload: bytes) -> InferResult:
    if len(payload) < 2:
        raise ProtocolError("INFER reply too short")
    cls, n = payload[0], payload[1]
    if len(payload) != 2 + 4 * n + 4:
        raise ProtocolError(f"INFER reply of {len(payload)} bytes does not match n={n}")
    outputs = np.frombuffer(payload, dtype="<f4", count=n, offset=2).astype(np.float32)
    ticks = struct.unpack_from("<I", payload, 2 + 4 * n)[0]
    return InferResult(cls, outputs, ticks)


@dataclass(frozen=True)
class LayerProfile:
    """One layer's line of a PROFILE reply: ticks of the last inference, and the sum and
    maximum over the `runs` inferences since reset (kept = False: the firmware keeps no
    statistics for this layer, only the last run)."""
    index: int
    count: int
    runs: int
    kept: bool = False
    last: int = 0
    total: int = 0
    max: int = 0
    macs: int = 0
    op: str = ""
    name: str = ""


_PROFILE_HEAD = struct.Struct("<BBI")
_PROFILE_LAYER = struct.Struct("<BIQII")


def profile_payload(index: int, clear: bool = False) -> bytes:
    """PROFILE request payload: the layer to read, and whether to clear the statistics after."""
    return bytes((index, PROFILE_CLEAR if clear else 0))


def build_profile_request(seq: int, index: int, clear: bool = False) -> bytes:
    return encode_frame(PROFILE, seq, profile_payload(index, clear))


def pack_profile_reply(p: LayerProfile) -> bytes:
    out = bytearray(_PROFILE_HEAD.pack(p.count, p.index, p.runs))
    if p.index < p.count:
        out += _PROFILE_LAYER.pack(int(p.kept), p.last, p.total, p.max, p.macs)
        for text in (p.op, p.name):
            out += _pack_str(text.encode()[:32])
    return bytes(out)


def parse_profile_reply(payload: bytes) -> LayerProfile:
    if len(payload) < _PROFILE_HEAD.size:
        raise ProtocolError(f"PROFILE reply of {len(payload)} bytes is too short")
    count, index, runs = _PROFILE_HEAD.unpack_from(payload)
    if index >= count:
        if len(payload) != _PROFILE_HEAD.size:
            raise ProtocolError(f"PROFILE reply past the last layer has {len(payload) - _PROFILE_HEAD.size} "
                                "extra bytes")
        return LayerProfile(index, count, runs)
    pos = _PROFILE_HEAD.size + _PROFILE_LAYER.size
    if len(payload) < pos:
        raise ProtocolError(f"PROFILE reply of {len(payload)} bytes is too short for a layer")
    kept, last, total, mx, macs = _PROFILE_LAYER.unpack_from(payload, _PROFILE_HEAD.size)
    strings = []
    for what in ("op", "name"):
        text, pos = _read_str(payload, pos, f"PROFILE reply ({what})")
        strings.append(text)
    if pos != len(payload):
        raise ProtocolError(f"PROFILE reply: {len(payload) - pos} trailing bytes")
    return LayerProfile(index, count, runs, bool(kept), last, total, mx, macs, strings[0], strings[1])


def pack_error(code: int, detail: int = 0) -> bytes:
    return bytes((code, detail))


def parse_error(payload: bytes) -> ErrorReply:
    if len(payload) != 2:
        raise ProtocolError(f"ERROR reply of {len(payload)} bytes (expected 2)")
    return ErrorReply(payload[0], payload[1])


_FAULT_FIELDS = ("pc", "lr", "xpsr", "ipsr", "cfsr", "hfsr", "bfar", "mmfar", "sp")  # wire order


def pack_fault(pc: int, lr: int, cfsr: int, hfsr: int, xpsr: int | None = None, ipsr: int = 0, bfar: int = 0,
               mmfar: int = 0, sp: int = 0) -> bytes:
    """FAULT payload: 9 words, or the older 4 (pc lr cfsr hfsr) when xpsr is None."""
    if xpsr is None:
        return struct.pack("<IIII", pc, lr, cfsr, hfsr)
    return struct.pack("<9I", pc, lr, xpsr, ipsr, cfsr, hfsr, bfar, mmfar, sp)


def parse_fault(payload: bytes) -> FaultReport:
    if len(payload) == 16:
        return FaultReport(*struct.unpack("<IIII", payload))
    if len(payload) != 4 * len(_FAULT_FIELDS):
        raise ProtocolError(f"FAULT report of {len(payload)} bytes (expected {4 * len(_FAULT_FIELDS)} or 16)")
    return FaultReport(**dict(zip(_FAULT_FIELDS, struct.unpack("<9I", payload))))


def ticks_to_instructions(ticks, tick_hz: int, shift: int = 0):
    """Under QEMU -icount shift=S: executed instructions = ticks * 1e9 / tick_hz / 2**S."""
    return np.asarray(ticks, dtype=np.float64) * 1e9 / tick_hz / (2 ** shift)
