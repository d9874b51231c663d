"""Transport unit tests against an in-process fake device on a local TCP socket.

The fake speaks the device side of docs/protocol.md; end-to-end behaviour against the
real firmware is in test_qemu_e2e.py and test_faults.py.
"""

import socket
import threading
import time

import numpy as np
import pytest
from mnist_mcu import protocol as P
from mnist_mcu.errors import UserError
from mnist_mcu.transport import (
    ConnectionLost,
    Device,
    DeviceErrorReply,
    DeviceFault,
    DeviceTimeout,
    open_serial,
)

INFO = P.Info(P.VERSION, 784, 10, 25_000_000, 25_000_000, 100_000, 4000, 100, 800, 4096,
              "mlp", "native", "f32", "fake", P.TICK_CYCLES)


def fake_outputs(pixels: bytes) -> np.ndarray:
    s = sum(pixels)
    out = np.zeros(10, np.float32)
    out[s % 10] = 0.75
    out[(s + 1) % 10] = 0.25
    return out


class FakeDevice:
    """Device side of the protocol in a thread. Knobs simulate a lossy or broken device."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.drop_replies = set()      # request counts (1-based) whose reply is dropped
        self.corrupt_replies = set()   # ... whose reply gets a bad CRC
        self.crc_error_for = set()     # ... answered with ERROR bad CRC (as if damaged in transit)
        self.fault_on = None           # request count that makes the device "crash"
        self.die_on = None             # request count at which the connection is closed
        self.silent = False
        self.delay = 0.0
        self.requests = 0
        self.wire = bytearray()   # every byte the host sent
        self.inferences = []
        self.profile_runs = 0     # inferences since the last PROFILE_CLEAR
        self.conn = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, type_, seq, payload):
        self.conn.sendall(P.encode_frame(type_, seq, payload))

    def _run(self):
        self.conn, _ = self.srv.accept()
        dec = P.FrameDecoder()
        while True:
            try:
                data = self.conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.wire += data
            for item in dec.feed(data):
                if not isinstance(item, P.Frame):
                    code = P.ERR_BAD_CRC if isinstance(item, P.CrcError) else P.ERR_MALFORMED
                    self._send(P.ERROR, 0, P.pack_error(code))
                    continue
                self.requests += 1
                n = self.requests
                if self.silent:
                    continue
                if n == self.die_on:
                    self.conn.close()
                    return
                if n == self.fault_on:
                    self._send(P.FAULT, 0, P.pack_fault(0x08000123, 0xFFFFFFF9, 0x82, 0x40000000))
                    continue
                if self.delay:
                    time.sleep(self.delay)
                if n in self.crc_error_for:
                    self._send(P.ERROR, item.seq, P.pack_error(P.ERR_BAD_CRC))
                    continue
                replies = self._replies(item)
                for reply in replies[:-1]:
                    self._send(*reply)
                if n in self.drop_replies:  # the last reply (of a batch: the batch is half answered)
                    continue
                if n in self.corrupt_replies:
                    wire = bytearray(P.encode_frame(*replies[-1]))
                    wire[3] ^= 0x01 if wire[3] != 0x01 else 0x02
                    self.conn.sendall(bytes(wire))
                    continue
                self._send(*replies[-1])

    def _infer(self, px):
        self.inferences.append(px)
        self.profile_runs += 1
        out = fake_outputs(px)
        return int(out.argmax()), out, 1234

    def _replies(self, frame):
        if frame.type == P.INFO:
            return [(P.INFO_REPLY, frame.seq, P.pack_info(INFO))]
        if frame.type == P.INFER:
            try:
                px = P.decode_image(frame.payload, 784)
            except P.ProtocolError:
                return [(P.ERROR, frame.seq, P.pack_error(P.ERR_BAD_PAYLOAD))]
            return [(P.INFER_REPLY, frame.seq, P.pack_infer_reply(*self._infer(px)))]
        if frame.type == P.INFER_BATCH:  # one reply per image; a bad image ends the batch
            replies = []
            try:
                for i, px in enumerate(P.batch_images(frame.payload, 784)):
                    replies.append((P.INFER_BATCH_REPLY, frame.seq, P.pack_infer_batch_reply(i, *self._infer(px))))
            except P.ProtocolError:
                replies.append((P.ERROR, frame.seq, P.pack_error(P.ERR_BAD_PAYLOAD)))
            return replies
        if frame.type == P.PROFILE:
            return [(P.PROFILE_REPLY, frame.seq, self._profile(frame.payload))]
        return [(P.ERROR, frame.seq, P.pack_error(P.ERR_UNKNOWN_TYPE, frame.type))]

    def _profile(self, payload):
        """Two layers: 1000 and 200 ticks per inference, the second's max 250."""
        index, flags = payload
        runs = self.profile_runs
        if flags & P.PROFILE_CLEAR:
            self.profile_runs = 0
        if index >= 2:
            return P.pack_profile_reply(P.LayerProfile(index, 2, runs))
        last, mx, macs = ((1000, 1000, 7840), (200, 250, 0))[index]
        return P.pack_profile_reply(P.LayerProfile(index, 2, runs, True, last, last * runs, mx, macs,
                                                   "Gemm" if macs else "Softmax", f"layer{index}"))

    def close(self):
        for s in (self.conn, self.srv):
            try:
                s.close()
            except Exception:
                pass


@pytest.fixture
def fake():
    f = FakeDevice()
    yield f
    f.close()


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 784)).astype(np.uint8)
    imgs[rng.random((n, 784)) < 0.8] = 0
    return imgs


def test_info_and_infer(fake):
    with Device(fake.url, timeout=2) as dev:
        info = dev.info()
        assert info == INFO
        img = _images(1)[0]
        res = dev.infer(img)
        assert res.cls == int(fake_outputs(img.tobytes()).argmax())
        assert np.array_equal(res.outputs, fake_outputs(img.tobytes()))
        assert res.ticks == 1234
        assert fake.inferences[0] == img.tobytes()


@pytest.mark.parametrize("window", [1, 2, 4])
def test_infer_many_every_image_once(fake, window):
    imgs = _images(60)
    with Device(fake.url, timeout=2) as dev:
        got = dict(dev.infer_many(enumerate(imgs), window=window))
    assert sorted(got) == list(range(60))
    for i, img in enumerate(imgs):
        assert got[i].cls == int(fake_outputs(img.tobytes()).argmax())
    assert len(fake.inferences) == 60


def test_lost_reply_is_retried(fake):
    fake.drop_replies = {3}
    imgs = _images(6)
    with Device(fake.url, timeout=0.3, retries=2) as dev:
        got = dict(dev.infer_many(enumerate(imgs), window=2))
        assert dev.resends == 1
    assert sorted(got) == list(range(6))


def test_only_the_first_frame_and_resends_lead_with_a_delimiter(fake):
    """Every frame ends with 0x00, so only a stream's first frame needs a leading one (to end
    whatever the device holds), and a resend, after a timeout or an error: a byte per image less."""
    fake.drop_replies = {3}
    imgs = _images(5)
    with Device(fake.url, timeout=0.3, retries=2) as dev:
        got = dict(dev.infer_many(enumerate(imgs), window=1))
        assert dev.resends == 1 and sorted(got) == list(range(5))
        sent = dev.bytes_sent
    parts = bytes(fake.wire).split(b"\x00")  # 00 F1 00 F2 00 F3 00 | 00 F3 00 F4 00 F5 00
    assert [len(p) > 0 for p in parts] == [False, True, True, True, False, True, True, True, False]
    assert parts[3] == parts[5] and sent == len(fake.wire)


def test_corrupted_reply_is_retried(fake):
    fake.corrupt_replies = {2}
    with Device(fake.url, timeout=0.3, retries=2) as dev:
        dev.info()
        info = dev.info()
        assert info == INFO
        assert dev.bad_frames == 1 and dev.resends == 1


def test_transit_error_is_retried(fake):
    fake.crc_error_for = {1}
    with Device(fake.url, timeout=1, retries=1) as dev:
        assert dev.info() == INFO
        assert dev.resends == 1


def test_error_reply_raises(fake):
    with Device(fake.url, timeout=1) as dev:
        with pytest.raises(DeviceErrorReply) as exc:
            dev.request(0x33)
        assert exc.value.error.code == P.ERR_UNKNOWN_TYPE
        assert "unknown request type" in str(exc.value)
        assert dev.info() == INFO  # still usable


def test_bad_payload_error(fake):
    with Device(fake.url, timeout=1) as dev:
        with pytest.raises(DeviceErrorReply) as exc:
            dev.request(P.INFER, b"\x01\x05\x05")
        assert exc.value.error.code == P.ERR_BAD_PAYLOAD


def test_timeout_is_bounded(fake):
    fake.silent = True
    with Device(fake.url, timeout=0.2, retries=2) as dev:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout) as exc:
            dev.info()
        assert time.monotonic() - t0 < 1.5
    assert "no reply" in str(exc.value) and "\n" not in str(exc.value)
    assert isinstance(exc.value, UserError)


def test_fault_raises(fake):
    fake.fault_on = 2
    with Device(fake.url, timeout=1) as dev:
        dev.info()
        with pytest.raises(DeviceFault) as exc:
            dev.infer(_images(1)[0])
        assert exc.value.fault.pc == 0x08000123
        assert "crashed" in str(exc.value)


def test_connection_lost(fake):
    fake.die_on = 3
    with Device(fake.url, timeout=2) as dev:
        dev.diagnose = lambda: "QEMU died, exit code 1: boom"
        with pytest.raises(ConnectionLost) as exc:
            list(dev.infer_many(enumerate(_images(5)), window=1))
        assert "boom" in str(exc.value)


def test_stray_error_replies_are_counted_not_raised(fake):
    with Device(fake.url, timeout=1) as dev:
        dev.write_raw(b"\x13\x37\x42\x00")  # garbage frame -> ERROR with seq 0
        res = dict(dev.infer_many(enumerate(_images(3)), window=2))
        assert sorted(res) == [0, 1, 2]
        if not dev.stray_errors:
            dev.drain(0.5)
        assert dev.stray_errors and dev.stray_errors[0][1].code in (P.ERR_BAD_CRC, P.ERR_MALFORMED)


def test_missing_serial_port_is_one_line_user_error():
    with pytest.raises(UserError) as exc:
        open_serial("/dev/ttyDOESNOTEXIST0")
    assert "not found" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError):
        Device("/dev/ttyDOESNOTEXIST0")


def test_refused_socket_is_user_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(UserError) as exc:
        open_serial(f"socket://127.0.0.1:{port}")
    assert "\n" not in str(exc.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("window", [255, 256, 1000])
def test_window_beyond_the_sequence_numbers_does_not_hang(fake, window):
    """Issue 13 item 2: with every seq number in flight the free-seq search never ended."""
    images = [np.full(784, i % 200, np.uint8) for i in range(300)]
    with Device(fake.url, timeout=5) as dev:
        got = dict(dev.infer_many(enumerate(images), window=window))
    assert sorted(got) == list(range(300))
    assert all(got[i].cls == int(fake_outputs(bytes(images[i])).argmax()) for i in range(300))


@pytest.mark.parametrize("window", [0, -1])
def test_window_below_one_is_refused(fake, window):
    with Device(fake.url, timeout=1) as dev, pytest.raises(ValueError, match="window"):
        list(dev.infer_many(enumerate([np.zeros(784, np.uint8)]), window=window))


def test_old_firmware_version_is_one_clear_line(fake, monkeypatch):
    old = bytes([1]) + P.pack_info(INFO)[1:-1]  # version 1: no tick_unit byte
    monkeypatch.setattr(P, "pack_info", lambda info: old)
    with Device(fake.url, timeout=2) as dev, pytest.raises(UserError) as err:
        dev.info()
    msg = str(err.value)
    assert "protocol version 1" in msg and f"speaks {P.VERSION}" in msg and "rebuild" in msg and "\n" not in msg


def test_stream_to_ports_shards_the_images_over_every_device():
    """TEAM interface 2 (farm's --target labgrid uses it): one shared queue over several URLs."""
    from mnist_mcu.evaluation.session import StreamOptions, stream_to_ports

    fakes = [FakeDevice(), FakeDevice()]
    fakes[1].delay = 0.002  # a slower device simply takes fewer images
    fakes[0].profile_runs = 50  # images it ran before: the profile must not count them
    try:
        images = np.stack([np.full(784, i % 250, np.uint8) for i in range(120)])
        run = stream_to_ports([f.url for f in fakes], images, StreamOptions(window=2, timeout=5, progress=False))
    finally:
        for f in fakes:
            f.close()
    assert run.instances == 2 and list(run.counts) == [1] * 120
    assert all(run.classes[i] == int(fake_outputs(bytes(images[i])).argmax()) for i in range(120))
    served = [len(f.inferences) for f in fakes]
    assert sum(served) == 120 and min(served) > 0, served
    assert run.bytes_sent > 0 and run.bytes_received > 0
    # the per-layer profile: cleared before the run, summed over both devices after it
    assert [(r["name"], r["runs"], r["mean_ticks"], r["max_ticks"], r["macs"]) for r in run.layers] == [
        ("layer0", 120, 1000.0, 1000, 7840), ("layer1", 120, 200.0, 250, 0)]


def test_encoded_payloads_fill_while_read_and_are_kept(monkeypatch):
    """The first run's payloads are encoded chunk by chunk in a thread while they stream; the
    finished list is kept for the next run on the same images."""
    from mnist_mcu.evaluation import session as S

    monkeypatch.setattr(S._Encoding, "FIRST", 7)
    monkeypatch.setattr(S._Encoding, "CHUNK", 50)
    S._encoded_cache.clear()
    imgs = _images(130, seed=3)
    lazy = S.encoded_payloads(imgs, P.ENC_BEST)
    assert isinstance(lazy, S._Encoding) and len(lazy) == 130
    want = P.encode_images(imgs, P.ENC_BEST)
    assert [lazy[i] for i in range(130)] == want
    again = S.encoded_payloads(imgs, P.ENC_BEST)
    assert isinstance(again, list) and again == want
    assert isinstance(S.encoded_payloads(imgs[:129], P.ENC_BEST), S._Encoding)  # other images


def test_encoding_error_reaches_the_reader():
    from mnist_mcu.evaluation import session as S

    lazy = S.encoded_payloads(_images(3), 99)
    with pytest.raises(ValueError, match="unknown encoding"):
        lazy[0]


# ---------------------------------------------------------------- INFER_BATCH (version 5)

def _sparse_images(n):
    """~110 bytes each on the wire, like MNIST digits (~128): 8 fit in one frame."""
    rng = np.random.default_rng(1)
    return (rng.integers(1, 256, (n, 784)) * (rng.random((n, 784)) < 0.04)).astype(np.uint8)


@pytest.mark.parametrize("window", [1, 3])
def test_batches_answer_every_image_once_in_fewer_bytes(window):
    """Up to 8 images per frame, one reply each: the same answers as a frame per image, ~5 bytes
    per image fewer on the wire, and fewer requests for the device to take."""
    imgs = _sparse_images(50)
    imgs[7] = np.arange(784) % 255 + 1  # no zero pixel: sent raw (785 bytes), fewer fit around it
    got, sent, requests = {}, {}, {}
    for batch in (1, 8):
        fake = FakeDevice()
        try:
            with Device(fake.url, timeout=2) as dev:
                got[batch] = dict(dev.infer_many(enumerate(imgs), window=window, batch=batch))
                sent[batch] = dev.bytes_sent
            requests[batch] = fake.requests
            assert fake.inferences == [img.tobytes() for img in imgs]
        finally:
            fake.close()
    assert sorted(got[8]) == list(range(50))
    assert all(got[8][i].cls == got[1][i].cls and np.array_equal(got[8][i].outputs, got[1][i].outputs)
               for i in range(50))
    batches = list(P.batches(enumerate(P.encode_images(imgs)), 8))
    assert requests[1] == 50 and requests[8] == len(batches) <= 50 // 8 + 3
    assert sent[8] <= sent[1] - 5 * (50 - len(batches)), (sent[1], sent[8])  # 6 frame bytes per image saved


def test_a_batch_half_answered_is_resent_and_its_repeats_dropped(fake):
    """The last reply of the 2nd batch is lost: after the timeout the whole batch goes again, the
    device answers all of it again, and the host keeps one answer per image."""
    fake.drop_replies = {2}
    imgs = _sparse_images(24)
    assert [len(k) for k, _ in P.batches(enumerate(P.encode_images(imgs)), 8)] == [8, 8, 8]
    with Device(fake.url, timeout=0.3, retries=2) as dev:
        got = dict(dev.infer_many(enumerate(imgs), window=2, batch=8))
        assert dev.resends == 1
        assert dev.stray_replies == 7  # the repeated answers of the resent batch's first 7 images
    assert sorted(got) == list(range(24))
    assert all(got[i].cls == int(fake_outputs(imgs[i].tobytes()).argmax()) for i in range(24))
    assert len(fake.inferences) == 24 + 8


def test_a_bad_image_in_a_batch_ends_it_with_an_error(fake):
    """The images before it are answered; the bad one gets ERROR bad payload, which is raised
    (a host that sends undecodable images has a bug, it is not a transit error)."""
    good = [P.encode_image(img) for img in _images(3)]
    items = [(0, good[0]), (1, good[1][:-2]), (2, good[2])]
    seen = []
    with Device(fake.url, timeout=2, retries=0) as dev:
        with pytest.raises(DeviceErrorReply) as err:
            for key, _ in dev.infer_payloads(items, window=1, batch=8):
                seen.append(key)
    assert err.value.error.code == P.ERR_BAD_PAYLOAD
    assert seen == [0]
