"""Protocol unit tests: COBS, CRC, frames, messages, zero-run image encoding."""

import random
import struct

import numpy as np
import pytest
from mnist_mcu import protocol as P


def _random_bytes(rng, n, zero_prob=0.3):
    return bytes(0 if rng.random() < zero_prob else rng.randrange(1, 256) for _ in range(n))


# ------------------------------------------------------------------ CRC

def test_crc16_ccitt_false_check_value():
    # the catalogue check value of CRC-16/CCITT-FALSE
    assert P.crc16(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF


def test_crc16_incremental():
    data = b"hello, device"
    assert P.crc16(data[5:], P.crc16(data[:5])) == P.crc16(data)


# ------------------------------------------------------------------ COBS

@pytest.mark.parametrize("data,encoded", [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
])
def test_cobs_known_vectors(data, encoded):
    assert P.cobs_encode(data) == encoded
    assert P.cobs_decode(encoded) == data


@pytest.mark.parametrize("seed", range(40))
def test_cobs_round_trip_random(seed):
    rng = random.Random(seed)
    n = rng.choice([0, 1, 2, 253, 254, 255, 256, 508, 509, 510, rng.randrange(0, 1100)])
    data = _random_bytes(rng, n, zero_prob=rng.choice([0.0, 0.01, 0.3, 0.9]))
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert P.cobs_decode(enc) == data


def test_cobs_full_block_followed_by_zero():
    data = b"\x07" * 254 + b"\x00" + b"a"
    assert P.cobs_decode(P.cobs_encode(data)) == data


@pytest.mark.parametrize("bad", [b"", b"\x05\x11\x22", b"\x03\x11\x00", b"\x00"])
def test_cobs_decode_errors(bad):
    with pytest.raises(P.CobsError):
        P.cobs_decode(bad)


# ------------------------------------------------------------------ frames

@pytest.mark.parametrize("seed", range(30))
def test_frame_round_trip(seed):
    rng = random.Random(seed)
    payload = _random_bytes(rng, rng.randrange(0, P.MAX_BODY - 4 + 1))
    type_, seq = rng.randrange(256), rng.randrange(256)
    wire = P.encode_frame(type_, seq, payload)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    frame = P.decode_frame(wire)
    assert frame == P.Frame(type_, seq, payload)


def test_frame_layout():
    body = P.encode_body(0x02, 7, b"\x01\x02")
    assert body[:4] == b"\x02\x07\x01\x02"
    assert struct.unpack("<H", body[4:])[0] == P.crc16(b"\x02\x07\x01\x02")


def test_frame_too_long_rejected():
    with pytest.raises(P.ProtocolError):
        P.encode_frame(1, 1, bytes(P.MAX_BODY - 3))
    P.encode_frame(1, 1, bytes(P.MAX_BODY - 4))  # the largest body fits


def test_bad_crc_detected():
    body = bytearray(P.encode_body(0x01, 3, b"abc"))
    body[2] ^= 0x40
    with pytest.raises(P.CrcError):
        P.decode_frame(P.cobs_encode(bytes(body)))


def test_every_single_bit_flip_is_detected():
    wire = P.encode_frame(0x82, 9, bytes(range(1, 60)))
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            try:
                frames = list(P.FrameDecoder().feed(bytes(bad)))
            except Exception as exc:  # pragma: no cover - decoder must not raise
                pytest.fail(f"decoder raised {exc!r}")
            # a flipped bit never yields a valid frame
            assert not [f for f in frames if isinstance(f, P.Frame)], (i, bit)


def test_truncated_frame():
    wire = P.encode_frame(0x81, 1, b"payload")
    with pytest.raises(P.ProtocolError):
        P.decode_frame(wire[:-4])
    with pytest.raises(P.ProtocolError):
        P.decode_body(b"\x01\x02\x03")


def test_decoder_resync_after_garbage():
    good = [P.encode_frame(0x81, i, bytes([i]) * i) for i in range(1, 6)]
    garbage = bytes([0x55, 0x13, 0x99, 0x07])  # no delimiter: merges with the next frame
    stream = good[0] + garbage + b"\x00" + good[1] + b"\xff\xfe\x00" + good[2] + bytes(3000) + good[3] + good[4]
    dec = P.FrameDecoder()
    items = []
    rng = random.Random(1)
    pos = 0
    while pos < len(stream):  # feed in random chunks
        n = rng.randrange(1, 40)
        items.extend(dec.feed(stream[pos:pos + n]))
        pos += n
    frames = [i for i in items if isinstance(i, P.Frame)]
    errors = [i for i in items if not isinstance(i, P.Frame)]
    assert [f.seq for f in frames] == [1, 2, 3, 4, 5]
    assert len(errors) == 2
    assert dec.pending == 0


def test_decoder_drops_overlong_frame_then_recovers():
    dec = P.FrameDecoder()
    items = list(dec.feed(b"\x01" * 5000 + b"\x00" + P.encode_frame(0x81, 2, b"ok")))
    assert isinstance(items[0], P.ProtocolError)
    assert items[1] == P.Frame(0x81, 2, b"ok")


# ------------------------------------------------------------------ zero-run images

@pytest.mark.parametrize("seed", range(40))
def test_zero_run_round_trip(seed):
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:
        px = np.zeros(784, np.uint8)
    elif kind == 1:
        px = rng.integers(1, 256, 784).astype(np.uint8)
    else:
        px = rng.integers(0, 256, 784).astype(np.uint8)
        px[rng.random(784) < (0.8 if kind == 2 else 0.995)] = 0
    enc = P.zero_run_encode(px)
    assert P.zero_run_decode(enc, 784) == px.tobytes()
    payload = P.encode_image(px)
    assert P.decode_image(payload, 784) == px.tobytes()
    assert P.decode_image(P.encode_image(px, P.ENC_RAW), 784) == px.tobytes()


def test_zero_run_long_runs_split_at_255():
    px = np.zeros(784, np.uint8)
    assert P.zero_run_encode(px) == b"\x00\xff\x00\xff\x00\xff\x00\x13"
    px[0] = 5
    assert P.zero_run_encode(px)[:3] == b"\x05\x00\xff"


def test_zero_run_on_mnist_like_digit_is_small():
    px = np.zeros((28, 28), np.uint8)
    px[6:22, 12:16] = 200  # a "1"
    enc = P.encode_image(px)
    assert len(enc) < 784 // 3
    assert len(P.encode_frame(P.INFER, 1, enc)) < len(P.encode_frame(P.INFER, 1, P.encode_image(px, P.ENC_RAW))) // 3


@pytest.mark.parametrize("bad", [b"\x00", b"\x00\x00", b"\x05" * 783, b"\x00\xff\x00\xff\x00\xff\x00\x14"])
def test_zero_run_decode_errors(bad):
    with pytest.raises(P.ProtocolError):
        P.zero_run_decode(bad, 784)


# ------------------------------------------------------------------ messages

def _info(tick_unit=P.TICK_EMULATED):
    return P.Info(P.VERSION, 784, 10, 168_000_000, 168_000_000, 300_000, 9000, 0, 1500, 8192,
                  "mlp", "native", "int8", "netduinoplus2", tick_unit)


@pytest.mark.parametrize("unit", [P.TICK_CYCLES, P.TICK_EMULATED])
def test_info_round_trip(unit):
    info = _info(unit)
    assert P.parse_info(P.pack_info(info)) == info
    assert P.parse_info(P.pack_info(info)).tick_unit == unit
    assert info.ram_bytes == 9000 + 0 + 1500


def test_info_of_another_version_is_named_before_parsing():
    """A version-1 firmware's INFO (no tick_unit byte) must say 'version', not 'too short'."""
    v1 = bytes([1]) + P.pack_info(_info())[1:-1]
    with pytest.raises(P.VersionMismatch) as err:
        P.parse_info(v1)
    assert err.value.version == 1


def test_info_unknown_tick_unit_is_rejected():
    data = bytearray(P.pack_info(_info()))
    data[-1] = 9
    with pytest.raises(P.ProtocolError, match="tick_unit"):
        P.parse_info(bytes(data))


@pytest.mark.parametrize("cut", [1, 10, 34, 36])
def test_info_truncated(cut):
    data = P.pack_info(_info())
    with pytest.raises(P.ProtocolError):
        P.parse_info(data[:-cut])


def test_infer_reply_round_trip():
    out = np.linspace(0, 1, 10, dtype=np.float32)
    res = P.parse_infer_reply(P.pack_infer_reply(7, out, 123456))
    assert res.cls == 7 and res.ticks == 123456
    assert np.array_equal(res.outputs, out)
    with pytest.raises(P.ProtocolError):
        P.parse_infer_reply(P.pack_infer_reply(7, out, 1)[:-1])


def _layer(**kw):
    base = dict(index=1, count=3, runs=500, kept=True, last=4321, total=2_000_000, max=5000, macs=78_400,
                op="Gemm+Relu", name="/0/0.1/Gemm")
    return P.LayerProfile(**{**base, **kw})


def test_profile_reply_round_trip():
    for layer in (_layer(), _layer(kept=False, total=0, max=0), _layer(name="", op="x" * 32),
                  _layer(total=2**40 + 7)):   # the sum is 64-bit: a board's cycles overflow 32
        assert P.parse_profile_reply(P.pack_profile_reply(layer)) == layer
    past = P.LayerProfile(index=3, count=3, runs=9)
    assert P.pack_profile_reply(past) == bytes((3, 3, 9, 0, 0, 0))
    assert P.parse_profile_reply(P.pack_profile_reply(past)) == past


@pytest.mark.parametrize("damage", ["cut header", "cut layer", "cut string", "trailing", "trailing past end"])
def test_profile_reply_damage_is_named(damage):
    good = P.pack_profile_reply(_layer())
    bad = {"cut header": good[:5], "cut layer": good[:20], "cut string": good[:-1], "trailing": good + b"\0",
           "trailing past end": bytes((3, 3, 9, 0, 0, 0, 1))}[damage]
    with pytest.raises(P.ProtocolError, match="PROFILE reply"):
        P.parse_profile_reply(bad)


def test_profile_request_layout():
    f = P.decode_frame(P.build_profile_request(9, 2, clear=True))
    assert (f.type, f.seq, f.payload) == (P.PROFILE, 9, bytes((2, P.PROFILE_CLEAR)))
    assert P.decode_frame(P.build_profile_request(9, 0)).payload == b"\0\0"


def test_error_and_fault():
    assert P.parse_error(P.pack_error(4, 0x33)) == P.ErrorReply(4, 0x33)
    assert "unknown request type" in P.ErrorReply(4, 0x33).describe()
    f = P.parse_fault(P.pack_fault(0x0800_1234, 0xFFFF_FFF9, 0x100, 0x4000_0000))
    assert f.pc == 0x0800_1234 and "0xfffffff9" in f.describe()


def test_ticks_to_instructions():
    # mps2: 25 MHz SysTick at shift=0 -> one tick is 40 instructions
    assert P.ticks_to_instructions(10, 25_000_000, 0) == pytest.approx(400)
    assert P.ticks_to_instructions(10, 25_000_000, 6) == pytest.approx(6.25)


# ------------------------------------------------------------------ encoding 3: context models + rANS

def _mnist_sample(n=300):
    import os
    from pathlib import Path

    from mnist_mcu.data import load_mnist

    root = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))
    return load_mnist("test", root)[0][:n].reshape(n, -1)


def _edge_images():
    full = np.full(784, 255, np.uint8)
    tail = np.zeros(784, np.uint8)
    tail[-40:] = np.arange(1, 41)  # the image ends inside a non-zero run
    one = np.zeros(784, np.uint8)
    one[0] = 7
    rng = np.random.default_rng(5)
    noisy = (rng.integers(0, 256, 784) * (rng.random(784) < 0.5)).astype(np.uint8)
    ones = np.ones(784, np.uint8)  # value 1 everywhere: the least likely value in the tables
    return [np.zeros(784, np.uint8), full, tail, one, noisy, ones]


def test_context_round_trip_on_mnist_and_edge_cases():
    from mnist_mcu import image_codec as C

    images = list(_mnist_sample()) + _edge_images()
    sizes = []
    for px in images:
        payload = P.encode_image(px, P.ENC_CONTEXT)
        assert payload[0] == P.ENC_CONTEXT
        assert P.decode_image(payload, 784) == px.tobytes()
        sizes.append(len(payload))
    zero_run = [len(P.encode_image(px, P.ENC_ZERO_RUN)) for px in images[:300]]
    # the point of encoding 3: about two thirds of zero-run's bytes on real digits (the retired
    # Huffman code of version 3 took 140 bytes per image on these 300, this takes 123)
    assert np.mean(sizes[:300]) < 0.7 * np.mean(zero_run), (np.mean(sizes[:300]), np.mean(zero_run))
    assert np.mean(sizes[:300]) < 130
    assert len(C.encode(np.zeros(784, np.uint8))) <= 6  # the 4-byte state and little else


def test_context_encodes_the_same_alone_and_in_batches():
    from mnist_mcu import image_codec as C

    images = np.concatenate([_mnist_sample(70), np.stack(_edge_images())])
    alone = [C.encode(px) for px in images]
    assert C.encode_many(images, chunk=16) == alone
    assert P.encode_images(images, P.ENC_CONTEXT) == [bytes([P.ENC_CONTEXT]) + a for a in alone]


def test_best_encoding_is_never_longer_than_any():
    for px in list(_mnist_sample(100)) + _edge_images():
        best = P.encode_image(px)
        assert best[0] in P.ENCODINGS
        assert len(best) <= min(len(P.encode_image(px, e)) for e in P.ENCODINGS)
        assert P.decode_image(best, 784) == px.tobytes()
    # other input sizes: encoding 3 is for 28x28 digits only
    assert P.encode_image(np.zeros(100, np.uint8))[0] in (P.ENC_RAW, P.ENC_ZERO_RUN)
    with pytest.raises(ValueError):
        P.encode_image(np.zeros(100, np.uint8), P.ENC_CONTEXT)


def _damaged(data: bytes, damage: str) -> tuple[bytes, int]:
    size = 784
    if damage == "truncate":
        return data[:-3], size
    if damage == "trailing byte":
        return data + b"\x00", size
    if damage == "flipped bit":
        return data[:20] + bytes([data[20] ^ 0x10]) + data[21:], size
    if damage == "bad state":
        return bytes([data[0] ^ 1]) + data[1:], size
    if damage == "empty":
        return b"", size
    if damage == "under 4 bytes":
        return data[:3], size
    return data, 700  # "wrong size": the tables are for 28x28 only


DAMAGE = ["truncate", "trailing byte", "flipped bit", "bad state", "empty", "under 4 bytes", "wrong size"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_context_decoder_rejects_damaged_images(damage):
    from mnist_mcu import image_codec as C

    bad, size = _damaged(C.encode(_mnist_sample(1)[0]), damage)
    with pytest.raises(P.ProtocolError):
        P.decode_image(bytes([P.ENC_CONTEXT]) + bad, size)


@pytest.fixture(scope="module")
def firmware_decoder():
    """firmware/app/image.c built for the host: the device's own decoder, not the Python mirror."""
    import ctypes

    from mnist_mcu.native.host import build_shared
    from mnist_mcu.paths import FIRMWARE_DIR

    lib = ctypes.CDLL(str(build_shared([FIRMWARE_DIR / "app" / "image.c"], [FIRMWARE_DIR / "app"])))
    lib.image_decode.restype = ctypes.c_int
    lib.image_decode.argtypes = [ctypes.c_uint8, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                                 ctypes.c_char_p, ctypes.c_size_t]

    def decode(payload: bytes, size: int = 784, prefix: bool = False):
        """(rc, pixels), as INFER sees it (the image must fill the payload; trailing bytes are
        detail 2); prefix: (rc, pixels, bytes taken with the encoding byte), as INFER_BATCH."""
        out, used = ctypes.create_string_buffer(size), ctypes.c_size_t(0)
        rc = lib.image_decode(payload[0], payload[1:], len(payload) - 1, ctypes.byref(used), out, size)
        if prefix:
            return rc, out.raw, 1 + used.value
        return (2 if rc == 0 and 1 + used.value != len(payload) else rc), out.raw

    return decode


def test_firmware_decoder_reads_every_encoding_of_the_host(firmware_decoder):
    images = list(_mnist_sample(400)) + _edge_images()
    for enc in P.ENCODINGS:
        for px, payload in zip(images, P.encode_images(images, enc)):
            assert firmware_decoder(payload) == (0, px.tobytes()), (enc, payload[:8])


@pytest.mark.parametrize("damage", DAMAGE)
def test_firmware_decoder_rejects_damaged_images(firmware_decoder, damage):
    from mnist_mcu import image_codec as C

    bad, size = _damaged(C.encode(_mnist_sample(1)[0]), damage)
    rc, _ = firmware_decoder(bytes([P.ENC_CONTEXT]) + bad, size)
    assert rc == (1 if damage == "wrong size" else 2)  # DETAIL_BAD_ENCODING, DETAIL_BAD_IMAGE


def test_firmware_decoder_rejects_single_bit_flips(firmware_decoder):
    """The decoder must end with every byte read and the rANS state back at 2^23: without that
    final check about 14 % of single-bit flips decode to some other image, with it 0.04 %."""
    from mnist_mcu import image_codec as C

    accepted = total = 0
    for px in _mnist_sample(10):
        data = bytes([P.ENC_CONTEXT]) + C.encode(px)
        for i in range(1, len(data)):
            for bit in (0x01, 0x80):
                rc, _ = firmware_decoder(data[:i] + bytes([data[i] ^ bit]) + data[i + 1:])
                accepted += rc == 0
                total += 1
    assert accepted <= total // 100, (accepted, total)


def test_firmware_decoder_survives_random_payloads(firmware_decoder):
    """Fuzz: random bytes after encoding 3 never crash the decoder and are (almost) never an image."""
    rng = np.random.default_rng(11)
    accepted = 0
    for n in list(range(0, 40)) + list(rng.integers(40, 1000, 300)):
        rc, _ = firmware_decoder(bytes([P.ENC_CONTEXT]) + rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert rc in (0, 2)
        accepted += rc == 0
    assert accepted <= 1  # the final-state check rejects ~all but 2^-31 of random data


def test_context_tables_in_the_firmware_are_current():
    """firmware/app/image_tables.h is generated from image_codec_tables.json (never by hand)."""
    from mnist_mcu import image_codec as C

    assert C.HEADER.read_text() == C.c_header(), "run `python -m mnist_mcu.image_codec --write`"


@pytest.mark.slow
def test_context_tables_are_rebuilt_from_the_training_set():
    import os
    from pathlib import Path

    from mnist_mcu import image_codec as C
    from mnist_mcu.data import load_mnist

    root = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))
    images, _ = load_mnist("train", root)
    assert C.build_tables(images.reshape(len(images), -1)) == C.tables()


# ---------------------------------------------------------------- INFER_BATCH (version 5)

def _mixed_payloads():
    """Every encoding, in turn: batches must find each image's end whatever it is coded in."""
    images = list(_mnist_sample(30)) + _edge_images()
    encs = [P.ENC_CONTEXT, P.ENC_ZERO_RUN, P.ENC_RAW]
    return images, [P.encode_images([px], encs[i % 3])[0] for i, px in enumerate(images)]


def test_every_encoding_is_self_delimiting():
    images, payloads = _mixed_payloads()
    for px, payload in zip(images, payloads):
        assert P.decode_image_prefix(payload + b"\x03\x01\x02", 784) == (px.tobytes(), len(payload))
        with pytest.raises(P.ProtocolError):  # INFER itself still wants the image to fill the payload
            P.decode_image(payload + b"\x01", 784)


def test_batches_pack_every_image_once_in_order_within_a_frame():
    images, payloads = _mixed_payloads()
    got = list(P.batches(enumerate(payloads), 8))
    assert [k for keys, _ in got for k in keys] == list(range(len(payloads)))
    for keys, payload in got:
        assert 1 <= len(keys) <= 8 and len(payload) <= P.MAX_PAYLOAD
        assert list(P.batch_images(payload, 784)) == [images[k].tobytes() for k in keys]
    # greedy: a batch under 8 images is one the next image would have overflowed
    for (keys, payload), (nxt, _) in zip(got, got[1:]):
        assert len(keys) == 8 or len(payload) + len(payloads[nxt[0]]) > P.MAX_PAYLOAD
    small = P.encode_images(_mnist_sample(30), P.ENC_CONTEXT)  # ~128 bytes each
    assert max(len(keys) for keys, _ in P.batches(enumerate(small), 8)) == 8
    pulled = []  # a full batch goes at once: it takes no image from a shared queue for later
    first = next(P.batches((pulled.append(i) or (i, b"\x01\x00\xff") for i in range(20)), 8))
    assert first[0] == list(range(8)) and pulled == list(range(8))
    assert [len(keys) for keys, _ in P.batches(enumerate(payloads), 1)] == [1] * len(payloads)
    with pytest.raises(ValueError):
        list(P.batches(enumerate(payloads), 256))


def test_firmware_decoder_finds_where_each_image_ends(firmware_decoder):
    """image.c's *used is what INFER_BATCH steps by: back to back, every image decodes to its
    pixels and ends where the Python decoder says."""
    images, payloads = _mixed_payloads()
    stream = b"".join(payloads)
    pos = 0
    for px, payload in zip(images, payloads):
        rc, out, used = firmware_decoder(stream[pos:], prefix=True)
        assert (rc, out, used) == (0, px.tobytes(), len(payload))
        pos += used
    assert pos == len(stream)
    for cut in payloads[:3]:  # the batch's last image cut short: every encoding says so
        assert firmware_decoder(cut[:-2], prefix=True)[0] == 2
