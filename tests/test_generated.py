"""The committed model libraries under firmware/generated/ are exactly what the compiler makes
from model/mlp.onnx today: generated code is reproducible and never edited by hand."""

import pytest

from mnist_mcu.compile import compile_model, default_out_dir
from mnist_mcu.paths import MODEL_DIR


def _files(folder):
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines = path.read_text().splitlines()
        # the header names the command line, which differs only by --out
        out[path.relative_to(folder).as_posix()] = [ln for ln in lines if "Regenerate with:" not in ln]
    return out


@pytest.mark.parametrize("backend,dtype", [("deepc", "f32"), ("native", "f32"), ("native", "int8")])
def test_generated_library_is_up_to_date(tmp_path, backend, dtype):
    fresh = compile_model(MODEL_DIR / "mlp.onnx", backend, dtype, out_dir=tmp_path / "gen")
    committed = default_out_dir(backend, dtype)
    assert _files(fresh) == _files(committed), (
        f"{committed} is stale: run `make generate` (mnist-mcu compile ... --backend {backend} --dtype {dtype})")
