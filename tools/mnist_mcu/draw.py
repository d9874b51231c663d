"""`mnist-mcu draw`: draw a digit in the browser and see what the device says.

A small local web server: the page sends the drawing, the server turns it into an
MNIST-like 28x28 image (crop, fit into 20x20, centre by mass, as MNIST was made),
asks the device (QEMU or a board, same protocol as the evaluation) and the host
reference, and shows both answers. The server is threaded with socket timeouts, so
one slow or idle client cannot freeze it; it answers only its own page (Host and
Origin checks); every bad request gets a JSON 4xx and a device failure a JSON 503.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from .errors import UserError
from .paths import MODEL_DIR

if TYPE_CHECKING:
    from .transport import Device

MAX_SIDE = 1024
MAX_BODY = (MAX_SIDE * MAX_SIDE * 4) // 3 + 4096  # base64 of the largest drawing plus the JSON around it
SOCKET_TIMEOUT = 10.0  # seconds a client may stay idle or stall mid-request
MAX_CONNECTIONS = 32
INK_LEVEL = 20  # ink bytes above this count as drawn
STATIC = {"/": ("draw.html", "text/html; charset=utf-8"), "/index.html": ("draw.html", "text/html; charset=utf-8"),
          "/draw.js": ("draw.js", "text/javascript; charset=utf-8"),
          "/draw.css": ("draw.css", "text/css; charset=utf-8")}


class BadRequest(Exception):
    """A request the server refuses; `code` is the HTTP status."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class DeviceUnavailable(Exception):
    """The device cannot answer now (HTTP 503); `retry` tells the page to offer a retry."""


# ---------------------------------------------------------------------- the image

def preprocess_steps(alpha) -> tuple[np.ndarray, dict]:
    """Ink image (H x W, 0 = background) -> (MNIST-like uint8 [28, 28], what was done)."""
    from PIL import Image

    alpha = np.asarray(alpha, dtype=np.uint8)
    ys, xs = np.nonzero(alpha > INK_LEVEL)
    if len(ys) == 0:
        return np.zeros((28, 28), np.uint8), {}
    box = [int(ys.min()), int(xs.min()), int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)]
    crop = alpha[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    out = np.zeros((28, 28), np.float32)
    total = small.sum()
    rows, cols = np.indices(small.shape)
    cy, cx = (rows * small).sum() / total, (cols * small).sum() / total
    top = min(max(round(float(14 - cy)), 0), 28 - small.shape[0])
    left = min(max(round(float(14 - cx)), 0), 28 - small.shape[1])
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    fitted = np.clip(small, 0, 255).astype(np.uint8)
    steps = {"box": box, "scale": round(scale, 4), "fitted_shape": list(fitted.shape),
             "fitted": fitted.reshape(-1).tolist(), "offset": [top, left]}
    return np.clip(out, 0, 255).astype(np.uint8), steps


def preprocess(alpha) -> np.ndarray:
    """Ink image (H x W, 0 = background, 255 = ink) -> MNIST-like uint8 [28, 28]."""
    return preprocess_steps(alpha)[0]


def too_little_ink(alpha) -> bool:
    """An empty canvas, a dot or a speck: nothing a digit could be read from."""
    alpha = np.asarray(alpha)
    ink = alpha > INK_LEVEL
    n = int(ink.sum())
    if n == 0:
        return True
    ys, xs = np.nonzero(ink)
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    return extent < 0.1 * min(alpha.shape) or n < 0.002 * alpha.size


def _reject_constant(name):
    raise ValueError(f"{name} is not a number")


def _int_field(msg: dict, name: str) -> int:
    v = msg.get(name)
    if type(v) is not int:  # bool, float, inf, strings are all refused
        raise UserError(f"malformed drawing request: {name} must be an integer, got {json.dumps(v)[:40]}")
    return v


def decode_drawing(body: bytes) -> np.ndarray:
    """{"width", "height", "pixels": base64 of width*height ink bytes} -> array; UserError if malformed."""
    try:
        msg = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise UserError("malformed drawing request: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"malformed drawing request: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(msg, dict):
        raise UserError("malformed drawing request: expected a JSON object")
    w, h, pixels = _int_field(msg, "width"), _int_field(msg, "height"), msg.get("pixels")
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise UserError(f"drawing sides must be 1..{MAX_SIDE}; got {w}x{h}")
    if not isinstance(pixels, str):
        raise UserError("malformed drawing request: pixels must be a base64 string")
    try:
        raw = base64.b64decode(pixels, validate=True)
    except ValueError as exc:
        raise UserError(f"malformed drawing request: pixels are not base64 ({exc})") from None
    if len(raw) != w * h:
        raise UserError(f"drawing must be width*height bytes; got {len(raw)} bytes for {w}x{h}")
    return np.frombuffer(raw, np.uint8).reshape(h, w)


# ---------------------------------------------------------------------- the host side

def _as_probabilities(v: np.ndarray) -> np.ndarray:
    """Show probabilities even for a model that ends in logits."""
    v = np.asarray(v, np.float64)
    if np.all(np.isfinite(v)) and v.min() >= 0 and abs(v.sum() - 1) < 1e-3:
        return v
    e = np.exp(v - np.max(v))
    return e / e.sum()


class HostModel:
    """The float ONNX model in onnxruntime; the input name and shape are read from the model."""

    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise UserError(f"model {onnx_path} not found; run `mnist-mcu train` or pass --model")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own exception types)
            raise UserError(f"onnxruntime cannot load {onnx_path}: {str(exc).splitlines()[0]}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise UserError(f"{onnx_path} has {len(inputs)} inputs; the draw page needs one image input")
        self.input_name = inputs[0].name
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in inputs[0].shape]
        if int(np.prod(dims)) != 784:
            raise UserError(f"{onnx_path} input {self.input_name!r} has shape {inputs[0].shape}; "
                            "the draw page sends one 28x28 image")
        self.shape = dims

    def outputs(self, image: np.ndarray) -> np.ndarray:
        from .data import normalise

        x = normalise(image).astype(np.float32).reshape(self.shape)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32).reshape(-1)


class Recogniser:
    """Asks the device and the host reference about one drawing.

    `link` has infer(pixels) -> (InferResult, notice or None) and describe() -> dict.
    For an int8 env the host reference is the same generated C built for the host
    (bit-exact with the device); the float ONNX model is shown beside it.
    """

    def __init__(self, link, onnx_path=MODEL_DIR / "mlp.onnx", int8_dir: Path | None = None,
                 reject_threshold: float | None = None):
        self.link = link
        self.float_model = HostModel(onnx_path)
        self.int8 = None
        if int8_dir is not None:
            from .native.host import HostModel as Int8Host

            self.int8 = Int8Host(int8_dir)
        self.reject_threshold = reject_threshold

    @property
    def host_label(self) -> str:
        return "the same int8 C on the host" if self.int8 else "the ONNX model on the host"

    def predict(self, alpha) -> dict:
        image, steps = preprocess_steps(alpha)
        base = {"image": image.reshape(-1).tolist(), "steps": steps}
        if too_little_ink(alpha):
            return {**base, "status": "empty", "message": "draw a digit"}
        res, notice = self.link.infer(image.reshape(-1))
        float_out = self.float_model.outputs(image)
        host_out = np.asarray(self.int8.run(image.reshape(1, -1))[0]) if self.int8 else float_out
        dev_probs = _as_probabilities(res.outputs)
        out = {**base, "status": "ok", "message": "",
               "device_class": int(res.cls), "device_outputs": [float(v) for v in res.outputs],
               "device_probabilities": [float(v) for v in dev_probs],
               "host_class": int(np.argmax(host_out)), "host_outputs": [float(v) for v in host_out],
               "host_probabilities": [float(v) for v in _as_probabilities(host_out)],
               "host_label": self.host_label,
               "float_class": int(np.argmax(float_out)),
               "float_probabilities": [float(v) for v in _as_probabilities(float_out)],
               "ticks": int(res.ticks), "latency": self.link.latency(int(res.ticks)), "notice": notice}
        if self.reject_threshold is not None and dev_probs.max() < self.reject_threshold:
            out.update(status="reject", message="not a digit")
        return out


def reject_threshold_for(onnx_path: Path) -> float | None:
    """The model's calibrated "not a digit" threshold (key reject_threshold in <model>.json), if any."""
    meta = Path(onnx_path).with_suffix(".json")
    try:
        value = json.loads(meta.read_text()).get("reject_threshold")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and 0 < value < 1 else None


# ---------------------------------------------------------------------- the device side

def tick_unit(info, target: str) -> str:
    """What the device's ticks count: the INFO reply says so (newer firmware); else by target."""
    for attr in ("tick_unit", "ticks_unit", "ticks_count"):
        value = getattr(info, attr, None)
        if isinstance(value, str) and value:
            return value
    if target == "qemu":
        return "instructions"
    return "cycles" if info.tick_hz and info.tick_hz == info.cpu_hz else "timer ticks"


def latency(ticks: int, info, target: str) -> dict:
    """One inference's ticks in the unit that means something on the target."""
    from .protocol import ticks_to_instructions
    from .qemu import ICOUNT_SHIFT

    unit = tick_unit(info, target)
    if target == "qemu" or "instruction" in unit:
        n = round(float(ticks_to_instructions(ticks, info.tick_hz, ICOUNT_SHIFT))) if info.tick_hz else ticks
        return {"instructions": n, "text": f"{n:,} instructions (emulator)"}
    us = ticks / info.tick_hz * 1e6 if info.tick_hz else None
    cycles = round(ticks * info.cpu_hz / info.tick_hz) if info.tick_hz and info.cpu_hz else None
    parts = [f"{us:,.0f} µs" if us is not None else None, f"{cycles:,} cycles" if cycles is not None else None]
    return {"us": us, "cycles": cycles, "text": ", ".join(p for p in parts if p) or f"{ticks} ticks"}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


class _Link:
    target = "qemu"

    def __init__(self):
        self.lock = threading.Lock()
        self.info = None
        self.restarts = 0
        self.status = "ready"

    def latency(self, ticks: int) -> dict:
        return latency(ticks, self.info, self.target)

    def describe(self) -> dict:
        i = self.info
        return {"board": i.board, "backend": i.backend, "dtype": i.dtype, "model": i.model,
                "target": self.target, "tick_hz": i.tick_hz, "cpu_hz": i.cpu_hz,
                "ticks_count": tick_unit(i, self.target), "restarts": self.restarts, "status": self.status}


class QemuLink(_Link):
    """The firmware under QEMU. A dead or hung emulator is restarted (by the next request,
    or within a second by the watchdog), and the page is told."""

    target = "qemu"

    def __init__(self, elf, machine: str, timeout: float = 2.0, watch_interval: float = 0.5):
        super().__init__()
        elf = Path(elf)
        if not elf.is_file():
            raise UserError(f"firmware {elf} not found; build it first (pio run -e <env>)")
        # restart the firmware the page started with, even if the build folder changes meanwhile
        self._dir = tempfile.mkdtemp(prefix="mnist-mcu-draw-")
        self.elf = Path(shutil.copy2(elf, Path(self._dir) / elf.name))
        self.machine, self.timeout = machine, timeout
        self.qemu = None
        self._notice: str | None = None
        self._stop = threading.Event()
        self.watch_interval = watch_interval

    def start(self):
        from .qemu import Qemu

        q = Qemu(self.elf, self.machine, timeout=self.timeout, retries=1, name=f"qemu {self.machine}")
        q.start()
        self.qemu, self.info = q, q.info
        return self.info

    def _restart(self, why: str):
        """Call with the lock held."""
        if self.qemu is not None:
            self.qemu.stop()
        try:
            self.start()
        except UserError as exc:
            self.status = f"the emulator stopped ({why}) and could not be restarted: {_one_line(exc)}"
            raise DeviceUnavailable(self.status) from None
        self.restarts += 1
        self.status = f"the emulator stopped ({why}); restarted at {time.strftime('%H:%M:%S')}"
        self._notice = self.status

    def _why(self) -> str:
        why = (self.qemu.diagnose() if self.qemu else None) or "it stopped answering"
        return why.split(": qemu-system-arm: warning")[0]  # QEMU's routine warnings are no reason

    def infer(self, pixels):
        from .transport import DeviceError

        with self.lock:
            try:
                if self.qemu is None or not self.qemu.alive():
                    self._restart(self._why())
                res = self.qemu.device.infer(pixels)
            except DeviceError as exc:
                self._restart(self._why() if not self.qemu.alive() else _one_line(exc))
                try:
                    res = self.qemu.device.infer(pixels)
                except DeviceError as exc2:
                    raise DeviceUnavailable(f"the emulator does not answer even after a restart: "
                                            f"{_one_line(exc2)}") from None
            notice, self._notice = self._notice, None
            return res, notice

    def watch(self):
        """Restart a dead emulator in the background, so the next drawing is answered at once."""
        def loop():
            while not self._stop.wait(self.watch_interval):
                with self.lock:
                    if self.qemu is not None and not self.qemu.alive():
                        try:
                            self._restart(self._why())
                        except DeviceUnavailable:
                            pass

        threading.Thread(target=loop, daemon=True, name="qemu-watchdog").start()

    def close(self):
        self._stop.set()
        with self.lock:
            if self.qemu is not None:
                self.qemu.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class SerialLink(_Link):
    """A board on a serial port. Nothing can restart a board from here: a failure is a 503
    with a clear message, and the next request (the page's Retry) reopens the port."""

    target = "serial"

    def __init__(self, port: str, timeout: float = 2.0):
        super().__init__()
        self.port, self.timeout = port, timeout
        self.device: Device | None = None

    def start(self, total: float = 10.0):
        from .transport import Device

        self.device = Device(self.port, timeout=self.timeout, retries=1)
        try:
            self.info = self.device.wait_ready(total=total, attempt_timeout=min(1.0, self.timeout))
        except BaseException:
            self.device.close()
            self.device = None
            raise
        return self.info

    def infer(self, pixels):
        from .transport import DeviceError

        with self.lock:
            try:
                if self.device is None:
                    self.start(total=3.0)
                res = self.device.infer(pixels)
            except UserError as exc:  # DeviceError, or the port cannot be reopened
                if self.device is not None:
                    self.device.close()
                    self.device = None
                what = "does not answer" if isinstance(exc, DeviceError) else "cannot be reached"
                self.status = (f"the board on {self.port} {what}: {_one_line(exc)}. "
                               "Check the cable and the firmware, then retry")
                raise DeviceUnavailable(self.status) from None
            self.status = "ready"
            return res, None

    def close(self):
        with self.lock:
            if self.device is not None:
                self.device.close()


# ---------------------------------------------------------------------- HTTP

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class DrawServer(ThreadingHTTPServer):
    """Bound at construction (so --listen errors come before the device boots); attach() the
    recogniser, then start()."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, host: str, port: int, timeout: float = SOCKET_TIMEOUT):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.recogniser: Recogniser | None = None
        self.info: dict = {}
        self.socket_timeout = timeout
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, port), _Handler)

    def attach(self, recogniser: Recogniser, info: dict):
        self.recogniser, self.info = recogniser, info

    def start(self):
        self._serving = True
        threading.Thread(target=self.serve_forever, daemon=True, name="draw-http").start()
        return self

    def close(self):
        if getattr(self, "_serving", False):
            self.shutdown()
            self._serving = False
        self.server_close()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self) -> str:
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def allowed_hosts(self) -> set[str] | None:
        """Host headers we answer (None: any, when bound to all interfaces on purpose)."""
        host = str(self.server_address[0])
        if host in ("0.0.0.0", "::"):
            return None
        names = set(LOOPBACK_NAMES) | {f"[{host}]" if ":" in host else host}
        return {f"{n}:{self.port}".lower() for n in names}

    # one thread per connection, but not without bound
    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                body = json.dumps({"error": "too many connections; try again"}).encode()
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: DrawServer
    server_version = "mnist-mcu-draw"
    error_content_type = "application/json"
    default_request_version = "HTTP/1.0"  # answer even a broken request line with headers and JSON

    def setup(self):
        self.timeout = self.server.socket_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def log_message(self, *args):  # keep the terminal for the banner
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except TimeoutError:
            self.close_connection = True

    # -- responses
    def send_error(self, code, message=None, explain=None):
        """Every error as JSON (also the ones http.server raises for bad request lines)."""
        text = message or self.responses.get(code, ("error",))[0]
        self._json(code, {"error": text})

    def _json(self, code: int, obj: dict, headers=()):
        body = json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in headers:
                self.send_header(k, v)
            if code >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _static(self, name: str, ctype: str):
        body = resources.files("mnist_mcu.web").joinpath(name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    # -- checks
    def _check_origin(self):
        """Only our own page may talk to us: a Host we serve (stops DNS rebinding) and, when the
        browser names an Origin or says the request is cross-site, that it is ours."""
        host = (self.headers.get("Host") or "").strip().lower()
        allowed = self.server.allowed_hosts()
        if not host or (allowed is not None and host not in allowed):
            raise BadRequest(403, f"Host {host or '(none)'} is not this server; open {self.server.url()}")
        origin = self.headers.get("Origin")
        if origin is not None and origin.strip().lower() != f"http://{host}":
            raise BadRequest(403, f"cross-site request from {origin[:80]} refused")
        if (self.headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
            raise BadRequest(403, "cross-site request refused")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest(400, "chunked request bodies are not supported; send Content-Length")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest(415, "send the drawing as Content-Type: application/json")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise BadRequest(400, "Content-Length is required")
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 12:
            raise BadRequest(400, f"bad Content-Length {raw[:20]!r}")
        length = int(raw)
        if length > MAX_BODY:
            raise BadRequest(413, f"request body of {length} bytes is over the limit of {MAX_BODY}")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise BadRequest(408, f"request body not received within {self.server.socket_timeout:g} s") from None
        if len(body) != length:
            raise BadRequest(400, f"request body ended after {len(body)} of {length} bytes")
        return body

    # -- methods
    def do_GET(self):
        try:
            self._check_origin()
        except BadRequest as exc:
            return self._json(exc.code, {"error": str(exc)})
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            return self._static(*STATIC[path])
        if path == "/device":
            rec = self.server.recogniser
            extra = rec.link.describe() if rec else {}
            if rec:
                extra.update(host_label=rec.host_label, reject_threshold=rec.reject_threshold)
            return self._json(200, {**self.server.info, **extra})
        self._json(404, {"error": f"no such page: {path[:80]}"})

    do_HEAD = do_GET

    def do_POST(self):
        try:
            self._check_origin()
            if self.path.split("?", 1)[0] != "/predict":
                raise BadRequest(404, "POST goes to /predict")
            body = self._read_body()
            rec = self.server.recogniser
            if rec is None:
                raise DeviceUnavailable("the device is still starting")
            try:
                drawing = decode_drawing(body)
            except UserError as exc:
                raise BadRequest(400, str(exc)) from None
            result = rec.predict(drawing)
        except BadRequest as exc:
            return self._json(exc.code, {"error": str(exc)})
        except DeviceUnavailable as exc:
            return self._json(503, {"error": str(exc), "retry": True}, headers=[("Retry-After", "2")])
        except Exception as exc:  # noqa: BLE001 (a bug must still get an answer and a line in the terminal)
            print(f"draw: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return self._json(500, {"error": f"internal error: {type(exc).__name__}: {_one_line(exc)}"})
        self._json(200, result)

    def do_PUT(self):
        self._json(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT


def make_server(host: str = "127.0.0.1", port: int = 8000, timeout: float = SOCKET_TIMEOUT) -> DrawServer:
    try:
        return DrawServer(host, port, timeout)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --listen") from None


def serve(recogniser: Recogniser, info: dict, host: str = "127.0.0.1", port: int = 8000,
          timeout: float = SOCKET_TIMEOUT) -> DrawServer:
    """A started server (serve_forever runs in a daemon thread)."""
    server = make_server(host, port, timeout)
    server.attach(recogniser, info)
    return server.start()


def parse_listen(listen: str, host: str | None) -> tuple[str, int]:
    """'[HOST:]PORT' (IPv6 in brackets) and --host -> (host, port); one-line UserError otherwise."""
    text = listen.strip()
    if text.startswith("["):
        end = text.find("]")
        lhost, rest = (text[1:end], text[end + 1:]) if end > 0 else ("", "x")
        if not rest.startswith(":"):
            raise UserError(f"--listen {listen}: expected [HOST]:PORT")
        port_text = rest[1:]
    elif ":" in text:
        lhost, _, port_text = text.rpartition(":")
    else:
        lhost, port_text = "", text
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise UserError(f"--listen {listen}: the port must be a number from 1 to 65535, not {port_text!r}")
    if host and lhost and host != lhost:
        raise UserError(f"--host {host} and --listen {listen} name different addresses; give one")
    final = host or lhost or "127.0.0.1"
    try:
        socket.getaddrinfo(final, None)
    except (socket.gaierror, UnicodeError):
        raise UserError(f"--host {final}: not an address of this machine") from None
    return final, int(port_text)


@click.command("draw")
@click.option("--env", "env_name", default="qemu_f405_cnn_int8", show_default=True, help="PlatformIO environment")
@click.option("--target", type=click.Choice(["qemu", "serial"]), default=None,
              help="qemu (default for QEMU envs) or serial (a board)")
@click.option("--port", default=None, help="serial port URL for --target serial (/dev/ttyACM0, rfc2217://...)")
@click.option("--host", default=None, help="address to serve the page on  [default: 127.0.0.1]")
@click.option("--listen", default="8000", show_default=True, help="[HOST:]PORT of the web page")
@click.option("--no-build", is_flag=True, help="use the firmware already built")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="float ONNX model shown next to the device (default: the env's custom_model_onnx)")
def cli(env_name, target, port, host, listen, no_build, model):
    """Draw a digit in the browser and see what the device says."""
    from . import firmware as fw

    http_host, http_port = parse_listen(listen, host)
    env = fw.get_env(env_name)
    onnx_path = Path(model) if model else env.model_onnx
    target = target or ("qemu" if env.is_qemu else "serial")
    if target == "qemu" and not env.is_qemu:
        raise UserError(f"env {env.name} is for a real board; use --target serial --port PORT")
    if target == "serial" and not port:
        raise UserError("--target serial needs --port (e.g. /dev/ttyACM0)")
    server = make_server(http_host, http_port)  # bind before the device boots: a bad address fails fast
    link = None
    try:
        int8_dir = env.model_dir if env.dtype == "int8" and env.backend == "native" else None
        recogniser_args = {"onnx_path": onnx_path, "int8_dir": int8_dir,
                           "reject_threshold": reject_threshold_for(onnx_path)}
        HostModel(onnx_path)  # a bad model: one line before the build
        if target == "serial":
            link = SerialLink(port)
        else:
            link = QemuLink(fw.require_elf(env) if no_build else fw.build(env), env.qemu_machine)
        info = link.start()
        server.attach(Recogniser(link, **recogniser_args), {"env": env_name})
        if target == "qemu":
            link.watch()
        server.start()
        click.echo(f"{env_name} ({info.board}, {info.backend} {info.dtype}) is ready: "
                   f"open {server.url()} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    finally:
        server.close()
        if link is not None:
            link.close()
