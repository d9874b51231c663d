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
def test_run_end_to_end_on_a_subset(tmp_path):
    out = run("run", "--backend", "native", "--dtype", "int8", "--limit", "200", "--json", str(tmp_path / "r.json"))
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


@pytest.mark.parametrize("args,what", [
    (["--window", "0"], "--window"), (["--window", "-1"], "--window"), (["--window", "256"], "--window"),
    (["--timeout", "0"], "--timeout"), (["--timeout", "-2"], "--timeout"), (["--jobs", "0"], "--jobs"),
])
def test_evaluate_bad_numbers_are_one_line(args, what, tmp_path):
    """Issue 13 item 2: --window 0 silently became 2, -1 ended in '20 images unanswered',
    256 hung, --timeout 0 waited 15 s for INFO. Now refused before anything runs."""
    out = run("evaluate", "--env", "qemu_f405_f32", "--no-build", "--limit", "5", "--json",
              str(tmp_path / "r.json"), *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], out.stderr
    assert not (tmp_path / "r.json").exists()


def _fixed_batch(src, dst, batch=1):
    import onnx

    m = onnx.load(str(src))
    for value in (*m.graph.input, *m.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    onnx.save(m, str(dst))
    return dst


def test_host_reference_runs_a_fixed_batch_model(tmp_path):
    """Issue 13 item 3: a model exported with batch 1 made onnxruntime fail on 1000-image chunks."""
    import numpy as np
    from mnist_mcu.evaluation.reference import float_outputs

    src = Path(__file__).resolve().parents[1] / "model" / "mlp.onnx"
    px = np.random.default_rng(0).integers(0, 256, (7, 784), dtype=np.uint8)
    want = float_outputs(src, px)
    for batch in (1, 3):  # 3: the last chunk of 7 is padded and cut
        got = float_outputs(_fixed_batch(src, tmp_path / f"b{batch}.onnx", batch), px)
        assert got.shape == (7, 10) and np.allclose(got, want, atol=1e-6)


@pytest.mark.qemu
def test_evaluate_with_a_fixed_batch_model(tmp_path, mnist_dir, build_env):
    from mnist_mcu.evaluate import EvalOptions, evaluate

    build_env("qemu_f405_f32")
    src = Path(__file__).resolve().parents[1] / "model" / "mlp.onnx"
    model = _fixed_batch(src, tmp_path / "mlp_b1.onnx")
    r = evaluate(EvalOptions(env="qemu_f405_f32", model=model, limit=40, json_path=tmp_path / "r.json",
                             data_dir=mnist_dir, build=False, plots=False, progress=False))
    assert r["images"] == 40 and r["agreement"] == 1.0 and r["max_abs_diff"] < 1e-5


def _children(pid):
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if int(fields[1].split()[1]) == pid:
                kids.append((int(stat.parent.name), fields[0].split("(", 1)[1]))
        except (OSError, IndexError, ValueError):
            pass
    return kids


@pytest.mark.qemu
@pytest.mark.parametrize("sig,word,code", [("SIGTERM", "terminated by SIGTERM", 143), ("SIGINT", "interrupted", 130)])
def test_signal_stops_qemu_and_says_so(tmp_path, mnist_dir, build_env, sig, word, code):
    """Issue 13 item 9: SIGTERM ended evaluate silently. Now, like Ctrl-C, QEMU is stopped
    and one line says so; no report is left half-written."""
    import os
    import signal
    import time

    build_env("qemu_f405_int8")
    proc = subprocess.Popen([str(BIN), "evaluate", "--env", "qemu_f405_int8", "--no-build", "--no-plots", "--jobs", "2",
                             "--json", str(tmp_path / "r.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MNIST_DIR": mnist_dir})
    deadline = time.monotonic() + 120
    qemus = []
    while time.monotonic() < deadline and len(qemus) < 2:
        time.sleep(0.2)
        qemus = [p for p, name in _children(proc.pid) if name.startswith("qemu-system")]
    assert len(qemus) == 2, "QEMU did not start"
    time.sleep(1.0)  # streaming
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "img/s" not in ln and "images/s" not in ln]
    assert lines == [f"error: {word}; stopped 2 QEMU instances"], err
    assert not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in qemus)
    assert not (tmp_path / "r.json").exists()


def _state(pid):
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_report_without_a_benchmark_is_one_line(tmp_path):
    out = run("report", "--json", str(tmp_path / "benchmark.json"))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "mnist-mcu benchmark" in out.stderr
    assert out.stderr.count("\n") == 1 and not (tmp_path / "index.html").exists()
    (tmp_path / "benchmark.json").write_text("[1, 2]")
    out = run("report", "--json", str(tmp_path / "benchmark.json"))
    assert out.returncode == 2 and "not a benchmark report" in out.stderr and out.stderr.count("\n") == 1


def test_progress_lines_when_not_a_terminal():
    """CI logs get a plain line every few seconds: images done, rate, time left."""
    import io
    import time

    from mnist_mcu.evaluation.progress import Progress

    out = io.StringIO()
    p = Progress(100, "qemu x3", enabled=None, every=0.05, stream=out)
    for _ in range(4):
        time.sleep(0.06)
        p.update(10)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(ln.startswith("qemu x3: ") for ln in lines), lines
    assert "40/100 images" in lines[-1] and "images/s" in lines[-1] and "s left" in lines[-1]
    quiet = io.StringIO()
    Progress(10, "x", enabled=False, every=0, stream=quiet).update(10)
    assert quiet.getvalue() == ""


def test_main_job_outputs_replace_the_committed_model_folders(tmp_path, monkeypatch):
    """MNIST_MCU_OUT (make all): evaluate's host reference uses the main job's own library and
    model, the same folders firmware/scripts/model_dir.py builds the firmware from."""
    from mnist_mcu import firmware
    from mnist_mcu.paths import ROOT

    monkeypatch.setenv("MNIST_MCU_OUT", str(tmp_path))
    env = firmware.get_env("qemu_f405_int8")
    assert env.model_dir == tmp_path / "generated" / "native_int8"
    assert env.model_onnx == ROOT / "model" / "mlp.onnx"  # no trained model in OUT yet: the committed one
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mlp.onnx").write_bytes(b"x")
    assert firmware.get_env("qemu_f405_int8").model_onnx == tmp_path / "model" / "mlp.onnx"
    assert firmware.get_env("qemu_f405_cnn_int8").model_onnx == ROOT / "model" / "cnn.onnx"
    monkeypatch.delenv("MNIST_MCU_OUT")
    assert firmware.get_env("qemu_f405_int8").model_dir == ROOT / "firmware" / "generated" / "native_int8"


def test_a_broken_command_module_is_an_error_not_a_missing_command():
    """Issue 7: cli.py swallowed ModuleNotFoundError, so a command with a broken import vanished."""
    code = ("import sys, importlib.abc\n"
            "class Broken(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'mnist_mcu.draw':\n"
            "            raise ModuleNotFoundError(\"No module named 'mnist_mcu.draw'\", name='mnist_mcu.draw')\n"
            "sys.meta_path.insert(0, Broken())\n"
            "import mnist_mcu.cli\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "ImportError" in out.stderr and "draw" in out.stderr.splitlines()[-1]
    listed = run("--help").stdout
    for name in ("train", "compile", "evaluate", "benchmark", "report", "run", "draw"):
        assert f"  {name} " in listed, name
