"""Host references for the device's answers.

- `float_outputs`: the float ONNX model in onnxruntime (f32 envs compare with it);
- `int8_host_outputs`: the host build of the same generated int8 C (bit-exact reference);
- `ort_int8`: onnxruntime running a QDQ graph built from the float model and the generated
  library's scales (mnist_mcu.native.qdq): independent of our C, so it catches a wrong
  scale, zero point or rounding rule.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError


def load_test_set(data_dir=None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images as uint8 [N, 784] and labels int64 [N]."""
    from ..data import load_mnist

    images, labels = load_mnist("test", data_dir)
    if limit is not None:
        if limit <= 0:
            raise UserError("--limit must be positive")
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8), labels.astype(np.int64)


def _ort_session(model_path: Path):
    if not model_path.is_file():
        raise UserError(f"model {model_path} not found; run `mnist-mcu train` or pass --model")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types for a bad model
        raise UserError(f"onnxruntime cannot load {model_path}: {str(exc).splitlines()[0]}") from None


def _input_layout(model_path: Path, shape) -> tuple[int | None, tuple[int, ...]]:
    """(fixed batch size or None, per-image shape) from the model's declared input shape.

    A model exported with a fixed batch (e.g. 1) is fed that many images at a time."""
    dims = list(shape)
    want = {2: (784,), 3: (28, 28), 4: (1, 28, 28)}.get(len(dims))
    if want is None or any(isinstance(d, int) and d != w for d, w in zip(dims[1:], want)):
        raise UserError(f"model {model_path} has input shape {dims}; expected [N, 784], [N, 28, 28] or [N, 1, 28, 28]")
    fixed = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    return fixed, want


class FloatModel:
    """The float ONNX model in onnxruntime. Loading checks it before a long device run."""

    def __init__(self, model_path):
        self.path = Path(model_path)
        self.session = _ort_session(self.path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch, self.image_shape = _input_layout(self.path, inp.shape)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels [N, 784] -> outputs [N, K] float32."""
        from ..data import normalise

        out = []
        b = self.fixed_batch or 1000
        for start in range(0, len(pixels), b):
            chunk = pixels[start:start + b]
            x = normalise(chunk).reshape((len(chunk), *self.image_shape)).astype(np.float32)
            if self.fixed_batch and len(chunk) < b:  # pad the last chunk to the fixed batch
                x = np.concatenate([x, np.zeros((b - len(chunk), *self.image_shape), np.float32)])
            y = self.session.run(None, {self.input_name: x})[0]
            out.append(np.asarray(y, dtype=np.float32).reshape(len(x), -1)[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def float_outputs(model_path, pixels: np.ndarray) -> np.ndarray:
    """Float model on the host (onnxruntime) for uint8 pixels [N,784] -> [N,10]."""
    return FloatModel(model_path).run(pixels)


def int8_host_outputs(model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """The host build of the generated int8 C (the same sources the device runs)."""
    if not Path(model_dir).is_dir():
        raise UserError(f"model library {model_dir} not found; run `mnist-mcu compile --backend native --dtype int8`")
    from ..native.host import HostModel

    return np.asarray(HostModel(model_dir).run(pixels), dtype=np.float32)


def qdq_module():
    """mnist_mcu.native.qdq (onnxruntime's int8 graph), or None while it does not exist yet."""
    import importlib

    try:
        return importlib.import_module("mnist_mcu.native.qdq")
    except ModuleNotFoundError as exc:  # only the module itself missing; a broken import is an error
        if exc.name == "mnist_mcu.native.qdq":
            return None
        raise


def ort_int8_codes(model_dir: Path, pixels: np.ndarray) -> np.ndarray | None:
    qdq = qdq_module()
    if qdq is None:
        return None
    return np.asarray(qdq.ort_int8_outputs(Path(model_dir), pixels), dtype=np.int64)


def device_codes(model_dir: Path, device_outputs: np.ndarray) -> np.ndarray:
    qdq = qdq_module()
    assert qdq is not None
    return np.asarray(qdq.output_codes(Path(model_dir), device_outputs), dtype=np.int64)


@dataclass
class Reference:
    """Everything the host computes for one env and one image set."""

    host: np.ndarray                    # what `agreement` compares with
    float_: np.ndarray | None = None    # the float model, when host is not it (int8)
    ort_codes: np.ndarray | None = None  # onnxruntime's int8 codes (native int8)
    host_name: str = "onnxruntime float model"


def compute(env, model_path, pixels: np.ndarray) -> Reference:
    float_out = float_outputs(model_path, pixels)
    if env.dtype != "int8":
        return Reference(host=float_out)
    host = int8_host_outputs(env.model_dir, pixels)
    if host.shape != float_out.shape:
        raise UserError(f"int8 host model returned shape {host.shape}, expected {float_out.shape}")
    codes = ort_int8_codes(env.model_dir, pixels) if env.backend == "native" else None
    return Reference(host=host, float_=float_out, ort_codes=codes, host_name="host build of the same C")


class Background:
    """Run fn(*args) in a thread while other work goes on (the host reference while the device
    streams, the plot imports, the images' encoding while the emulators boot); result() waits
    for it and re-raises its error."""

    def __init__(self, fn, *args):
        self._result = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True,
                                        name=f"background-{getattr(fn, '__name__', 'task')}")
        self._thread.start()

    def _run(self, fn, *args):
        try:
            self._result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result
