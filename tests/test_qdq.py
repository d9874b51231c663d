"""The independent int8 reference (mnist_mcu.native.qdq): onnxruntime on a QDQ graph built
from the float ONNX and the scales/zero points in model.json, against the host build of the
generated int8 C.  The numbers are printed (pytest -s shows them)."""

import os
from pathlib import Path

import numpy as np
import pytest
from mnist_mcu.errors import UserError
from mnist_mcu.native import compile_native, qdq
from mnist_mcu.native.host import HostModel
from mnist_mcu.paths import MODEL_DIR, ROOT
from native_helpers import mlp_model, random_pixels

N_IMAGES = 2000


def _mnist_root():
    for cand in (os.environ.get("MNIST_DIR"), ROOT.parent / "shared" / "mnist", ROOT / "data"):
        if cand and (Path(cand) / "MNIST" / "raw").is_dir():
            return str(cand)
    return None


def compare(model_dir, px):
    """(top-1 agreement, max |code difference|, codes that differ) device C vs onnxruntime."""
    ref = qdq.ort_int8_outputs(model_dir, px)
    dev = qdq.output_codes(model_dir, HostModel(model_dir).run(px))
    diff = np.abs(ref - dev)
    return float((ref.argmax(1) == dev.argmax(1)).mean()), int(diff.max()), int((diff > 0).sum())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_generated_int8_matches_onnxruntime_qdq(tmp_path, model):
    root = _mnist_root()
    onnx_path = MODEL_DIR / f"{model}.onnx"
    if root is None or not onnx_path.is_file():
        pytest.skip("needs MNIST (MNIST_DIR) and model/<model>.onnx")
    from mnist_mcu.data import load_mnist

    out = compile_native(onnx_path, tmp_path / "gen", "int8", data_dir=root, calib_images=2000)
    x, _ = load_mnist("test", root)
    agree, lsb, n_diff = compare(out, x.reshape(len(x), -1)[:N_IMAGES])
    print(f"\n{model} int8: host C vs onnxruntime QDQ on {N_IMAGES} test images: top-1 agreement "
          f"{agree:.4f}, max {lsb} LSB, {n_diff} of {N_IMAGES * 10} output codes differ")
    assert agree >= 0.999 and lsb <= 1


def _tiny_mlp(tmp_path):
    path = mlp_model(tmp_path / "mlp.onnx", h=8, w=8, hidden=24, out=10, seed=5)
    rng = np.random.default_rng(5)
    return path, random_pixels(rng, 300, 64, 0.5), random_pixels(rng, 300, 64, 0.5)


def test_qdq_agrees_on_a_random_mlp(tmp_path):
    path, calib, px = _tiny_mlp(tmp_path)
    out = compile_native(path, tmp_path / "gen", "int8", calib_pixels=calib)
    agree, lsb, _ = compare(out, px)
    assert agree >= 0.99 and lsb <= 1


@pytest.mark.parametrize("bug", ["zero point", "scale"])
def test_qdq_catches_a_wrong_zero_point_or_scale(tmp_path, monkeypatch, bug):
    """A generator that puts a wrong output zero point (off by one) or a wrong requantisation
    scale (5 % off) into the C, while model.json keeps the right ones, is caught."""
    from mnist_mcu.native.ops import _int8, gemm

    if bug == "zero point":
        real = gemm.quantize_layer

        def broken(*args, **kw):
            q = real(*args, **kw)
            if q.output == "q8":
                q.zy += 1
            return q
        monkeypatch.setattr(gemm, "quantize_layer", broken)
    else:
        real_m = _int8.quantize_multiplier
        monkeypatch.setattr(_int8, "quantize_multiplier", lambda r: real_m(r * 1.05))
    path, calib, px = _tiny_mlp(tmp_path)
    out = compile_native(path, tmp_path / "gen", "int8", calib_pixels=calib)
    _, lsb, n_diff = compare(out, px)
    assert lsb > 1 and n_diff > 10, (bug, lsb, n_diff)


def test_output_codes_inverts_the_output_scale(tmp_path):
    path, calib, _ = _tiny_mlp(tmp_path)
    out = compile_native(path, tmp_path / "gen", "int8", calib_pixels=calib)
    codes = np.arange(-128, 128)
    assert np.array_equal(qdq.output_codes(out, ((codes + 128) / 256.0)[None, :]), codes[None, :])


def test_needs_model_json(tmp_path):
    with pytest.raises(UserError, match="model.json not found"):
        qdq.ort_int8_outputs(tmp_path, np.zeros((1, 784), np.uint8))


@pytest.mark.parametrize("folder", ["native_int8", "native_cnn_int8"])
def test_committed_int8_libraries_have_their_qdq_reference(folder):
    """What evaluate uses for ort_int8_*: the committed folders carry model.json matching their ONNX."""
    from mnist_mcu.paths import GENERATED_DIR

    out = GENERATED_DIR / folder
    px = random_pixels(np.random.default_rng(2), 50, 784, 0.8)
    agree, lsb, _ = compare(out, px)
    assert agree >= 0.98 and lsb <= 1
