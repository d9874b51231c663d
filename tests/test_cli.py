"""The `mnist-mcu` command line: sub-commands exist, errors are one line with a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "mnist-mcu"


def run(*args, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=600)


def test_help_lists_stages():
    out = run("--help")
    assert out.returncode == 0
    for name in ("train", "compile", "evaluate", "benchmark"):
        assert name in out.stdout


def test_missing_data_dir_is_one_line(tmp_path):
    import os

    env = dict(os.environ, MNIST_DIR=str(tmp_path / "nowhere"))
    out = run("train", "--epochs", "1", "--out-dir", str(tmp_path / "out"), env=env)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: MNIST") and "nowhere" in lines[0]
    assert not (tmp_path / "out").exists()


def test_compile_missing_model_is_one_line(tmp_path):
    out = run("compile", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "gen"))
    assert out.returncode == 2 and out.stderr.startswith("error: model file") and out.stderr.count("\n") == 1
    assert not (tmp_path / "gen").exists()


def test_compile_rejects_int8_for_deepc(tmp_path):
    model = Path(__file__).resolve().parents[1] / "model" / "mlp.onnx"
    out = run("compile", str(model), "--backend", "deepc", "--dtype", "int8", "--out", str(tmp_path / "gen"))
    assert out.returncode == 2 and "--backend native" in out.stderr


def test_run_rejects_int8_deepc():
    out = run("run", "--backend", "deepc", "--dtype", "int8")
    assert out.returncode == 2 and out.stderr.startswith("error: no environment") and out.stderr.count("\n") == 1


def test_run_rejects_env_of_another_backend():
    out = run("run", "--backend", "native", "--dtype", "int8", "--env", "qemu_f405_f32")
    assert out.returncode == 2 and "not native int8" in out.stderr


def test_run_picks_the_backend_env():
    from mnist_mcu.run import pick_env

    assert pick_env("deepc", "f32").name == "qemu_an386_deepc"
    assert pick_env("native", "int8").name == "qemu_f405_int8"
    assert pick_env("native", "f32", "nucleo_f446re_f32").name == "nucleo_f446re_f32"


@pytest.mark.qemu
def test_run_end_to_end_on_a_subset():
    out = run("run", "--backend", "native", "--dtype", "int8", "--limit", "200")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert "native int8 on netduinoplus2 (qemu_f405_int8): device accuracy" in last and "200 test images" in last


def _gemm_model(path, inputs):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((10, inputs), np.float32), "W")
    graph = helper.make_graph([helper.make_node("Gemm", ["input", "W"], ["output"], transB=1)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", inputs])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("backend", ["native", "deepc"])
def test_compile_rejects_wrong_input_shape(tmp_path, backend):
    _gemm_model(tmp_path / "m.onnx", 500)
    out = run("compile", str(tmp_path / "m.onnx"), "--backend", backend, "--out", str(tmp_path / "gen"))
    assert out.returncode == 2 and "has shape ['N', 500]" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("backend", ["native", "deepc"])
def test_compile_rejects_corrupt_file(tmp_path, backend):
    data = (Path(__file__).resolve().parents[1] / "model" / "mlp.onnx").read_bytes()
    (tmp_path / "m.onnx").write_bytes(data[:1000])
    out = run("compile", str(tmp_path / "m.onnx"), "--backend", backend, "--out", str(tmp_path / "gen"))
    assert out.returncode == 2 and "not a readable ONNX model" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "gen").exists()


def test_compile_accepts_flat_784_input(tmp_path):
    _gemm_model(tmp_path / "m.onnx", 784)
    out = run("compile", str(tmp_path / "m.onnx"), "--backend", "native", "--out", str(tmp_path / "gen"))
    assert out.returncode == 0, out.stderr


def test_env_float_model_from_custom_model_onnx():
    """evaluate/benchmark/run/draw compare with the env's custom_model_onnx (default model/mlp.onnx)."""
    from mnist_mcu import firmware
    from mnist_mcu.paths import MODEL_DIR

    assert firmware.get_env("qemu_f405_cnn_int8").model_onnx == MODEL_DIR / "cnn.onnx"
    assert firmware.get_env("qemu_f405_cnn_int8").model_dir.name == "native_cnn_int8"
    for name in ("qemu_an386_deepc", "qemu_f405_f32", "qemu_f405_int8", "nucleo_f446re_int8"):
        assert firmware.get_env(name).model_onnx == MODEL_DIR / "mlp.onnx"


def test_output_similarity_figures():
    import numpy as np

    from mnist_mcu.evaluate import output_similarity

    host = np.array([[1.0, 0.0], [0.0, 2.0]])
    same = output_similarity(host, host)
    assert same == {"rmse": 0.0, "mae": 0.0, "l2r": 0.0, "cosine": 1.0}
    off = output_similarity(host + np.array([[0.0, 1.0], [0.0, 0.0]]), host)
    assert off["mae"] == 0.25 and off["rmse"] == 0.5 and abs(off["l2r"] - 1 / np.sqrt(5)) < 1e-12
    assert abs(off["cosine"] - (1 / np.sqrt(2) + 1) / 2) < 1e-12
