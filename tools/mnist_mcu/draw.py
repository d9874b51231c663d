"""`mnist-mcu draw`: draw a digit in the browser and see what the device says.

A small local web server: the page sends the drawing, the server turns it into an
MNIST-like 28x28 image (crop, fit into 20x20, centre by mass, as MNIST was made),
asks the device (QEMU or a board, same protocol as the evaluation) and the host
model, and shows both answers.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path

import click
import numpy as np

from .errors import UserError
from .paths import MODEL_DIR

MAX_SIDE = 1024


def preprocess(alpha):
    """Ink image (H x W, 0 = background, 255 = ink) -> MNIST-like uint8 [28, 28]."""
    from PIL import Image

    alpha = np.asarray(alpha, dtype=np.uint8)
    ys, xs = np.nonzero(alpha > 20)
    if len(ys) == 0:
        return np.zeros((28, 28), np.uint8)
    crop = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.LANCZOS), dtype=np.float32)
    out = np.zeros((28, 28), np.float32)
    total = small.sum()
    rows, cols = np.indices(small.shape)
    cy, cx = (rows * small).sum() / total, (cols * small).sum() / total
    top = int(round(14 - cy))
    left = int(round(14 - cx))
    top = min(max(top, 0), 28 - small.shape[0])
    left = min(max(left, 0), 28 - small.shape[1])
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.clip(out, 0, 255).astype(np.uint8)


def decode_drawing(body):
    """{"width", "height", "pixels": base64 of width*height ink bytes} -> array; UserError if malformed."""
    try:
        msg = json.loads(body)
        w, h = int(msg["width"]), int(msg["height"])
        raw = base64.b64decode(msg["pixels"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"malformed drawing request: {exc}") from None
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE) or len(raw) != w * h:
        raise UserError(f"drawing must be width*height bytes with sides up to {MAX_SIDE}; got {len(raw)} bytes for {w}x{h}")
    return np.frombuffer(raw, np.uint8).reshape(h, w)


class Recogniser:
    """The device and the host model side by side; one request at a time (one serial line)."""

    def __init__(self, device, onnx_path=MODEL_DIR / "mlp.onnx"):  # draw passes the env's custom_model_onnx
        import onnxruntime as ort

        self.device = device
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.lock = threading.Lock()

    def predict(self, alpha):
        from .data import normalise

        image = preprocess(alpha)
        with self.lock:
            res = self.device.infer(image.reshape(-1))
        host = self.session.run(None, {"input": normalise(image)[None, None]})[0][0]
        return {"device_class": int(res.cls), "device_outputs": [float(v) for v in res.outputs],
                "ticks": int(res.ticks), "host_class": int(host.argmax()),
                "host_outputs": [float(v) for v in host], "image": image.reshape(-1).tolist()}


def make_handler(recogniser, describe):
    page = resources.files("mnist_mcu.web").joinpath("draw.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the terminal for the banner
            pass

        def _send(self, code, body, ctype):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif self.path == "/device":
                self._send(200, json.dumps(describe).encode(), "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self):
            if self.path != "/predict":
                return self._send(404, b"not found", "text/plain")
            length = int(self.headers.get("Content-Length", 0))
            if length > 4 * MAX_SIDE * MAX_SIDE:
                return self._send(413, json.dumps({"error": "drawing too large"}).encode(), "application/json")
            try:
                result = recogniser.predict(decode_drawing(self.rfile.read(length)))
            except UserError as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            self._send(200, json.dumps(result).encode(), "application/json")

    return Handler


def serve(recogniser, describe, host="127.0.0.1", port=8000):
    """Return a started HTTPServer (serve_forever runs in a daemon thread)."""
    try:
        server = HTTPServer((host, port), make_handler(recogniser, describe))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --listen port") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@click.command("draw")
@click.option("--env", "env_name", default="qemu_f405_f32", show_default=True, help="PlatformIO environment")
@click.option("--target", type=click.Choice(["qemu", "serial"]), default=None,
              help="qemu (default for QEMU envs) or serial (a board)")
@click.option("--port", default=None, help="serial port URL for --target serial (/dev/ttyACM0, rfc2217://...)")
@click.option("--listen", default="127.0.0.1:8000", show_default=True, help="address of the web page")
@click.option("--no-build", is_flag=True, help="use the firmware already built")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="float ONNX model shown next to the device (default: the env's custom_model_onnx, else model/mlp.onnx)")
def cli(env_name, target, port, listen, no_build, model):
    """Draw a digit in the browser and see what the device says."""
    from . import firmware as fw
    from .qemu import Qemu
    from .transport import Device

    env = fw.get_env(env_name)
    onnx_path = Path(model) if model else env.model_onnx
    if not onnx_path.is_file():
        raise UserError(f"model {onnx_path} not found; run `mnist-mcu train` or pass --model")
    target = target or ("qemu" if env.is_qemu else "serial")
    host, _, http_port = listen.rpartition(":")
    if target == "serial":
        if not port:
            raise UserError("--target serial needs --port (e.g. /dev/ttyACM0)")
        device_cm = Device(port)
    else:
        elf = fw.require_elf(env) if no_build else fw.build(env)
        device_cm = Qemu(elf, env.qemu_machine)
    with device_cm as handle:
        device = handle.device if target == "qemu" else handle
        info = device.info()
        describe = {"env": env_name, "board": info.board, "backend": info.backend, "dtype": info.dtype}
        server = serve(Recogniser(device, onnx_path), describe, host or "127.0.0.1", int(http_port))
        click.echo(f"{env_name} ({info.board}, {info.backend} {info.dtype}) is ready: "
                   f"open http://{server.server_address[0]}:{server.server_address[1]}/ (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
