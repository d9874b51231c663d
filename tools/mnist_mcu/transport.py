"""A `Device` client over any pyserial URL (socket:// for QEMU, /dev/tty* or rfc2217:// for boards).

Requests carry a sequence number; replies are matched by it. Every request gets a
deadline; a request whose reply does not come (or that the device reports as
damaged in transit: bad CRC, malformed, too long) is sent again up to `retries`
times. ERROR replies to our requests and FAULT reports become exceptions;
ERROR replies that match no request of ours (answers to line noise) are counted
in `stray_errors`.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import serial

from . import protocol as P
from .errors import UserError

# Sequence numbers 1..255 (0 is the device's "frame unreadable"): the most requests in flight.
MAX_IN_FLIGHT = 255
ENCODE_CHUNK = 64  # images encoded together by infer_many (one vectorised call each)

# Errors that mean "your frame arrived damaged": worth sending again.
TRANSIENT_ERRORS = (P.ERR_BAD_CRC, P.ERR_MALFORMED, P.ERR_TOO_LONG)


class DeviceError(UserError):
    """The device misbehaved or is unreachable (one-line message)."""


class DeviceTimeout(DeviceError):
    pass


class ConnectionLost(DeviceError):
    pass


class DeviceErrorReply(DeviceError):
    def __init__(self, message, error: P.ErrorReply, seq: int):
        super().__init__(message)
        self.error = error
        self.seq = seq


class DeviceFault(DeviceError):
    def __init__(self, message, fault: P.FaultReport | None):
        # None when the FAULT frame itself could not be parsed
        super().__init__(message)
        self.fault = fault


def open_serial(url: str, baudrate: int = 115200, timeout: float = 0.05):
    """Open a pyserial URL or port; a missing port is a one-line UserError."""
    try:
        # pyserial's RFC 2217 client (what ser2net gives a labgrid exporter) has no write timeout
        extra = {} if url.startswith("rfc2217://") else {"write_timeout": 10}
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, **extra)
    except (serial.SerialException, OSError, ValueError) as exc:
        if "://" not in url and not os.path.exists(url):
            raise UserError(
                f"serial port {url} not found; plug in the board or pass the right --port "
                "(e.g. /dev/ttyACM0, socket://HOST:PORT, rfc2217://HOST:PORT)") from None
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot open serial port {url}: {msg}") from None


class UnixSocketSerial:
    """The few pyserial calls Device makes, over a connected Unix stream socket (QEMU's
    `-serial unix:PATH`). Raises OSError when nothing listens at `path` yet."""

    def __init__(self, path, write_timeout: float = 10.0):
        self.port = f"unix:{path}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._socket.connect(str(path))
        except OSError:
            self._socket.close()
            raise
        self._socket.settimeout(write_timeout)  # reads select first, so only writes can wait

    def write(self, data: bytes) -> int:
        self._socket.sendall(data)
        return len(data)

    def close(self):
        self._socket.close()


def _is_raw_socket(ser) -> bool:
    if isinstance(ser, UnixSocketSerial):
        return True
    try:
        from serial.urlhandler.protocol_socket import Serial as SocketSerial
    except ImportError:
        return False
    return isinstance(ser, SocketSerial)


class Device:
    """Client for the firmware's protocol. Use as a context manager or call close()."""

    def __init__(self, port, timeout: float = 5.0, retries: int = 2, encoding: int = P.ENC_DEFAULT,
                 baudrate: int = 115200, name: str | None = None,
                 diagnose: Callable[[], str | None] | None = None):
        if isinstance(port, str):
            self.url = port
            self.ser = open_serial(port, baudrate=baudrate)
        else:  # an already open pyserial-like object
            self.url = getattr(port, "port", None) or repr(port)
            self.ser = port
        self.name = name or self.url
        self.timeout = timeout
        self.retries = retries
        self.encoding = encoding
        self.diagnose = diagnose  # returns extra context (e.g. QEMU's stderr) for error messages
        self.elf = None  # path of the firmware ELF, if known: FAULT reports are symbolised against it
        self._decoder = P.FrameDecoder()
        self._inbox: deque = deque()
        self._seq = 0
        self.stray_errors: list[tuple[int, P.ErrorReply]] = []
        self.stray_replies = 0
        self.bad_frames = 0  # frames from the device that failed to decode
        self.resends = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        # socket:// fast path only: an RFC 2217 port also has a _socket, but its bytes must go
        # through telnet escaping (0xFF doubled), so it keeps pyserial's own read/write
        self._sock = getattr(self.ser, "_socket", None) if _is_raw_socket(self.ser) else None
        if self._sock is not None:
            # small frames both ways: without TCP_NODELAY, Nagle + delayed ACK stall each reply ~40 ms
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.info_cache: P.Info | None = None

    # ------------------------------------------------------------ plumbing
    def close(self):
        try:
            self.ser.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_seq(self) -> int:
        # 1..255: seq 0 is never used, so the device's ERROR replies to undecodable
        # frames (which carry seq 0) can never be mistaken for an answer to us.
        self._seq = self._seq % 255 + 1
        return self._seq

    def _context(self) -> str:
        extra = None
        if self.diagnose:
            try:
                extra = self.diagnose()
            except Exception:
                extra = None
        return f" ({extra})" if extra else ""

    def write_raw(self, data: bytes):
        """Send bytes as they are (tests use it to inject garbage)."""
        try:
            self.ser.write(data)
            if self._sock is None:
                self.ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: connection lost while sending: {exc}{self._context()}") from None
        self.bytes_sent += len(data)

    def _read_some(self, wait: float) -> bytes:
        try:
            if self._sock is not None:
                ready, _, _ = select.select([self._sock], [], [], max(0.0, wait))
                if not ready:
                    return b""
                data = self._sock.recv(65536)
                if not data:
                    raise serial.SerialException("socket disconnected")
            else:
                n = self.ser.in_waiting
                data = self.ser.read(n if n else 1)
            self.bytes_received += len(data)
            return data
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: connection to the device lost ({exc}){self._context()}") from None

    def _pump(self, wait: float):
        """Read what arrives within `wait` seconds and queue decoded frames."""
        data = self._read_some(wait)
        if not data:
            return
        for item in self._decoder.feed(data):
            if isinstance(item, P.Frame):
                self._inbox.append(item)
            else:
                self.bad_frames += 1

    def reset_input(self):
        """Drop whatever is buffered (e.g. after opening a board that printed something)."""
        while True:
            data = self._read_some(0.0)
            if not data:
                break
        self._decoder = P.FrameDecoder()
        self._inbox.clear()

    def _check_unsolicited(self, frame: P.Frame, pending: dict) -> bool:
        """Handle FAULT and stray frames; returns True when the frame was consumed."""
        if frame.type == P.FAULT:
            try:
                fault = P.parse_fault(frame.payload)
                text = fault.describe(self.elf)
            except P.ProtocolError:
                fault, text = None, frame.payload.hex()
            raise DeviceFault(f"{self.name}: the device crashed (FAULT {text}){self._context()}", fault)
        if frame.seq not in pending:
            if frame.type == P.ERROR:
                try:
                    self.stray_errors.append((frame.seq, P.parse_error(frame.payload)))
                except P.ProtocolError:
                    self.bad_frames += 1
            else:
                self.stray_replies += 1
            return True
        return False

    def drain(self, seconds: float = 0.1) -> list:
        """Read for `seconds` with no request in flight; returns the frames that came
        (stray ERROR replies are also recorded in stray_errors; FAULT raises)."""
        end = time.monotonic() + seconds
        got = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            self._pump(min(left, 0.05))
            while self._inbox:
                frame = self._inbox.popleft()
                self._check_unsolicited(frame, {})
                got.append(frame)
        return got

    # ------------------------------------------------------------ requests
    def request(self, type_: int, payload: bytes = b"", timeout: float | None = None) -> P.Frame:
        """Send one request and return its reply frame (retrying on timeout / transit errors)."""
        results = list(self._run_requests(iter([(None, type_, payload)]), window=1, timeout=timeout))
        return results[0][1]

    def _run_requests(self, requests: Iterator, window: int = 1, timeout: float | None = None):
        """Pipeline requests (key, type, payload); yield (key, reply Frame) as replies come.

        At most `window` requests are in flight (1..255: one per free sequence number).
        Order of yields follows replies.
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        window = min(window, MAX_IN_FLIGHT)  # more would leave no free sequence number
        timeout = self.timeout if timeout is None else timeout
        # seq -> [key, type, wire, attempts, deadline, indices answered (INFER_BATCH: key is
        # the images' keys, one reply each)]
        pending: dict[int, list] = {}
        exhausted = sent = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    key, type_, payload = next(requests)
                except StopIteration:
                    exhausted = True
                    break
                seq = self.next_seq()
                while seq in pending:
                    seq = self.next_seq()
                # a leading 0x00 ends any partial frame the device holds (line noise, a
                # half-sent frame from an earlier session); the firmware ignores empty frames.
                # Only the first frame needs it: each frame ends with 0x00, so the next one
                # starts on a boundary (1 byte less per image, and bytes are what an emulated
                # UART costs); a resend, after an error or a timeout, always has it.
                wire = P.encode_frame(type_, seq, payload)
                pending[seq] = [key, type_, wire, 0, time.monotonic() + timeout, set()]
                self.write_raw(wire if sent else b"\x00" + wire)
                sent = True
            if not pending:
                return
            # consume queued frames
            while self._inbox:
                frame = self._inbox.popleft()
                if self._check_unsolicited(frame, pending):
                    continue
                entry = pending[frame.seq]
                key, type_, wire, attempts, _, answered = entry
                if frame.type == P.ERROR:
                    try:
                        err = P.parse_error(frame.payload)
                    except P.ProtocolError:
                        self.bad_frames += 1
                        continue
                    if err.code in TRANSIENT_ERRORS and attempts < self.retries:
                        self._resend(frame.seq, entry, timeout)
                        continue
                    del pending[frame.seq]
                    raise DeviceErrorReply(
                        f"{self.name}: the device answered request type {type_:#04x} with ERROR "
                        f"{err.describe()}", err, frame.seq)
                if frame.type != (type_ | P.REPLY_BIT):
                    self.stray_replies += 1
                    continue
                if type_ == P.INFER_BATCH:
                    index = frame.payload[0] if frame.payload else len(key)
                    if index >= len(key) or index in answered:  # a resent batch answers from 0 again
                        self.stray_replies += 1
                        continue
                    answered.add(index)
                    entry[4] = time.monotonic() + timeout  # it works through the batch: wait on
                    if len(answered) == len(key):
                        del pending[frame.seq]
                    yield key[index], P.Frame(frame.type, frame.seq, frame.payload[1:])
                    continue
                del pending[frame.seq]
                yield key, frame
            if not pending and exhausted:
                return
            if not pending:
                continue
            now = time.monotonic()
            for seq, entry in list(pending.items()):
                if now >= entry[4]:
                    if entry[3] >= self.retries:
                        raise DeviceTimeout(
                            f"{self.name}: no reply to request type {entry[1]:#04x} within {timeout:g} s "
                            f"({entry[3] + 1} attempts){self._context()}")
                    self._resend(seq, entry, timeout)
            wait = min(e[4] for e in pending.values()) - time.monotonic()
            self._pump(min(max(wait, 0.0), 0.5))

    def _resend(self, seq, entry, timeout):
        entry[3] += 1
        entry[4] = time.monotonic() + timeout
        self.resends += 1
        self.write_raw(b"\x00" + entry[2])

    def info(self, timeout: float | None = None) -> P.Info:
        frame = self.request(P.INFO, b"", timeout=timeout)
        try:
            info = P.parse_info(frame.payload)
        except P.VersionMismatch as exc:
            side = "rebuild and flash the firmware" if exc.version < P.VERSION else "update the host tools"
            raise DeviceError(f"{self.name}: the firmware speaks protocol version {exc.version}, "
                              f"this host speaks {P.VERSION}; {side}") from None
        except P.ProtocolError as exc:
            raise DeviceError(f"{self.name}: unreadable INFO reply: {exc}") from None
        self.info_cache = info
        return info

    def profile(self, timeout: float | None = None) -> list[P.LayerProfile]:
        """The per-layer profile (PROFILE, one request per layer; the first reply gives the count)."""
        layers: list[P.LayerProfile] = []
        while True:
            layer = self._profile_request(len(layers), False, timeout)
            if layer.index >= layer.count:
                return layers
            layers.append(layer)

    def clear_profile(self, timeout: float | None = None):
        """Zero the device's per-layer statistics: one request past any layer (the count is a
        u8, so index 255 never names one) carrying the CLEAR flag."""
        self._profile_request(255, True, timeout)

    def _profile_request(self, index: int, clear: bool, timeout: float | None) -> P.LayerProfile:
        frame = self.request(P.PROFILE, P.profile_payload(index, clear), timeout=timeout)
        try:
            return P.parse_profile_reply(frame.payload)
        except P.ProtocolError as exc:
            raise DeviceError(f"{self.name}: unreadable PROFILE reply: {exc}") from None

    def infer(self, pixels, encoding: int | None = None, timeout: float | None = None) -> P.InferResult:
        enc = self.encoding if encoding is None else encoding
        frame = self.request(P.INFER, P.encode_image(pixels, enc), timeout=timeout)
        return self._parse_infer(frame)

    def _parse_infer(self, frame):
        try:
            return P.parse_infer_reply(frame.payload)
        except P.ProtocolError as exc:
            raise DeviceError(f"{self.name}: unreadable INFER reply: {exc}") from None

    def infer_many(self, items: Iterable, window: int = 1, encoding: int | None = None,
                   timeout: float | None = None, batch: int = 1) -> Iterator[tuple[object, P.InferResult]]:
        """items: iterable of (key, pixels). Yields (key, InferResult) as replies arrive.

        window > 1 keeps several requests in flight, which hides the device's compute time;
        use it only where the link buffers bytes while the device is busy (QEMU does).
        batch > 1 sends up to that many images per frame (INFER_BATCH).
        """
        enc = self.encoding if encoding is None else encoding

        def encoded():  # a few images at a time: encoding 3 is vectorised over images
            it = iter(items)
            while chunk := list(itertools.islice(it, ENCODE_CHUNK)):
                yield from zip((key for key, _ in chunk), P.encode_images([px for _, px in chunk], enc))

        return self.infer_payloads(encoded(), window=window, timeout=timeout, batch=batch)

    def infer_payloads(self, items: Iterable, window: int = 1, timeout: float | None = None,
                       batch: int = 1) -> Iterator[tuple[object, P.InferResult]]:
        """infer_many for images already encoded: items of (key, INFER payload). batch > 1:
        up to that many images per INFER_BATCH frame (window then counts frames)."""
        if batch > 1:
            requests = ((keys, P.INFER_BATCH, payload) for keys, payload in P.batches(items, batch))
        else:
            requests = ((key, P.INFER, payload) for key, payload in items)
        for key, frame in self._run_requests(requests, window=window, timeout=timeout):
            yield key, self._parse_infer(frame)

    def wait_ready(self, total: float = 10.0, attempt_timeout: float = 1.0) -> P.Info:
        """Ask INFO until it answers (a board may still be booting; an emulated UART drops
        bytes until the firmware has enabled it). Attempts back off from 0.1 s to
        attempt_timeout; the counters are reset afterwards so they describe the run only."""
        deadline = time.monotonic() + total
        wait = min(0.1, attempt_timeout)
        retries, self.retries = self.retries, 0
        last: DeviceError | None = None
        try:
            while True:
                try:
                    info = self.info(timeout=wait)
                    break
                except DeviceTimeout as exc:
                    last = exc
                except DeviceErrorReply as exc:  # our first frame arrived half-received
                    if exc.error.code not in TRANSIENT_ERRORS:
                        raise
                    last = exc
                if time.monotonic() >= deadline:
                    raise DeviceTimeout(f"{self.name}: the device did not answer INFO within {total:g} s "
                                        f"(is the firmware flashed and the port right?){self._context()}") from last
                wait = min(wait * 2, attempt_timeout)
        finally:
            self.retries = retries
        self.resends = self.bytes_sent = self.bytes_received = self.stray_replies = self.bad_frames = 0
        self.stray_errors.clear()
        return info
