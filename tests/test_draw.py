"""Draw-a-digit: preprocessing of a drawing into an MNIST-like image, request parsing, the web server."""

import base64
import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_mcu import data, draw
from mnist_mcu.errors import UserError
from mnist_mcu.paths import MODEL_DIR

MNIST = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))


def _as_drawing(img28, side=280):
    """An MNIST digit blown up to canvas size, as a person's drawing would arrive."""
    return np.asarray(Image.fromarray(img28).resize((side, side), Image.BILINEAR))


def test_blank_drawing_is_blank():
    assert not draw.preprocess(np.zeros((280, 280), np.uint8)).any()


def test_preprocessed_drawings_are_recognised_like_mnist():
    import onnxruntime as ort

    images, labels = data.load_mnist("test", MNIST)
    sess = ort.InferenceSession(str(MODEL_DIR / "mlp.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([draw.preprocess(_as_drawing(im)) for im in images[:300]])
    assert batch.shape == (300, 28, 28) and batch.dtype == np.uint8
    pred = sess.run(None, {"input": data.normalise(batch)[:, None]})[0].argmax(1)
    assert (pred == labels[:300]).mean() > 0.93


def test_small_offcentre_drawing_is_centred_and_scaled():
    canvas = np.zeros((280, 280), np.uint8)
    canvas[10:60, 200:215] = 255  # a short stroke in a corner
    out = draw.preprocess(canvas)
    rows, cols = np.nonzero(out)
    assert rows.max() - rows.min() + 1 >= 19  # fitted into the 20-pixel box
    assert abs(rows.mean() - 14) < 1.5 and abs(cols.mean() - 14) < 1.5


@pytest.mark.parametrize("body", [b"not json", b'{"width": 2, "height": 2, "pixels": "AAA="}',
                                  b'{"width": 5000, "height": 1, "pixels": ""}', b'{"width": 1}'])
def test_malformed_requests_are_rejected(body):
    with pytest.raises(UserError):
        draw.decode_drawing(body)


class _FakeDevice:
    """Stands in for the serial line in this unit test only; QEMU runs it for real in test_draw_qemu."""

    def infer(self, pixels):
        from mnist_mcu.protocol import InferResult

        return InferResult(cls=7, outputs=np.eye(10, dtype=np.float32)[7], ticks=123)


def _post(url, payload):
    req = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _drawing_body(img):
    h, w = img.shape
    return json.dumps({"width": w, "height": h, "pixels": base64.b64encode(img.tobytes()).decode()}).encode()


def test_server_serves_page_and_answers(unused_port=0):
    server = draw.serve(draw.Recogniser(_FakeDevice()), {"env": "x"}, port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert "<canvas" in page and "/predict" in page
        images, _ = data.load_mnist("test", MNIST)
        status, res = _post(base + "/predict", _drawing_body(_as_drawing(images[0])))
        assert status == 200 and res["device_class"] == 7 and res["ticks"] == 123 and len(res["image"]) == 784
        status, res = _post(base + "/predict", b"garbage")
        assert status == 400 and "malformed" in res["error"]
    finally:
        server.shutdown()


@pytest.mark.qemu
def test_draw_qemu_device_agrees_with_host():
    """The real firmware in QEMU answers drawings through the web server."""
    from mnist_mcu import firmware as fw
    from mnist_mcu.qemu import Qemu

    env = fw.get_env("qemu_f405_f32")
    images, labels = data.load_mnist("test", MNIST)
    with Qemu(fw.build(env), env.qemu_machine) as q:
        server = draw.serve(draw.Recogniser(q.device), {"env": env.name}, port=0)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            agree = 0
            for img in images[:20]:
                status, res = _post(base + "/predict", _drawing_body(_as_drawing(img)))
                assert status == 200
                agree += res["device_class"] == res["host_class"]
                assert abs(sum(res["device_outputs"]) - 1) < 1e-3
            assert agree == 20
        finally:
            server.shutdown()
