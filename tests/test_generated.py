"""The committed model libraries under firmware/generated/ are exactly what the compiler makes
from model/mlp.onnx (and model/cnn.onnx) today: generated code is reproducible and never edited
by hand. One case per `mnist-mcu compile` line of the Makefile's `generate` target."""

import pytest

from mnist_mcu.compile import compile_model, default_out_dir
from mnist_mcu.paths import GENERATED_DIR, MODEL_DIR, ROOT


def _files(folder):
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines = path.read_text().splitlines()
        # the header names the command line, which differs only by --out
        out[path.relative_to(folder).as_posix()] = [ln for ln in lines if "Regenerate with:" not in ln]
    return out


# (float ONNX model, backend, dtype, output folder); None = the compiler's default --out
LIBRARIES = [
    ("mlp.onnx", "deepc", "f32", None),
    ("mlp.onnx", "native", "f32", None),
    ("mlp.onnx", "native", "int8", None),
    ("cnn.onnx", "native", "int8", GENERATED_DIR / "native_cnn_int8"),
]


@pytest.mark.parametrize("onnx_name,backend,dtype,out_dir", LIBRARIES,
                         ids=[f"{m.split('.')[0]}-{b}-{d}" for m, b, d, _ in LIBRARIES])
def test_generated_library_is_up_to_date(tmp_path, onnx_name, backend, dtype, out_dir):
    fresh = compile_model(MODEL_DIR / onnx_name, backend, dtype, out_dir=tmp_path / "gen")
    committed = out_dir or default_out_dir(backend, dtype)
    out_opt = f" --out {committed.relative_to(ROOT)}" if out_dir else ""
    assert _files(fresh) == _files(committed), (
        f"{committed} is stale: run `make generate` (mnist-mcu compile model/{onnx_name} --backend {backend} "
        f"--dtype {dtype}{out_opt})")
