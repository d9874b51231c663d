"""deepC backend: ONNX normalisation, operator check, and the generated library built
for the host (compared with onnxruntime on real MNIST images) and for Cortex-M4F."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from mnist_mcu import outdir
from mnist_mcu.deepc_backend import (
    check_operators,
    compile_deepc,
    implemented_operators,
    normalise_model,
)
from mnist_mcu.deepc_patches import (
    CPP_DEFINES,
    CXX_STD,
    DEVICE_CXXFLAGS,
    DeepcSetupError,
    prepare_runtime,
)
from mnist_mcu.errors import UserError
from mnist_mcu.paths import FIRMWARE_DIR, MODEL_DIR
from onnx import TensorProto, helper, numpy_helper

MNIST_DIR = os.environ.get("MNIST_DIR", "/work/shared/mnist")
N_IMAGES = int(os.environ.get("DEEPC_TEST_IMAGES", "300"))
C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

HOST_MAIN = r"""
#include <stdio.h>
#include <stdint.h>
#include "model.h"
/* model.h's clock for the per-layer stamps: a counter, so each layer reads 1 tick. */
uint32_t model_clock(void) { static uint32_t t; return t++; }
/* stdin: N images of 784 bytes; stdout: N x output_size floats (binary). */
int main(void) {
  const model_info_t *info = model_info();
  if (model_init() != 0) return 10;
  static uint8_t px[784];
  float out[65536];
  while (fread(px, 1, info->input_size, stdin) == info->input_size) {
    int rc = model_run(px, out);
    if (rc != 0) { fprintf(stderr, "model_run %d\n", rc); return 11; }
    fwrite(out, sizeof(float), info->output_size, stdout);
  }
  return 0;
}
"""


def mlp_model(seed=0, opset=17, names="torch"):
    """The project's MLP (Flatten -> Gemm -> Relu -> Gemm -> Softmax) with random weights,
    named the way torch.onnx.export names things (slashes, dots, dynamic batch)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((100, 784)) * 0.05).astype(np.float32), "fc1.weight")
    b1 = numpy_helper.from_array((rng.standard_normal(100) * 0.05).astype(np.float32), "fc1.bias")
    w2 = numpy_helper.from_array((rng.standard_normal((10, 100)) * 0.3).astype(np.float32), "fc2.weight")
    b2 = numpy_helper.from_array((rng.standard_normal(10) * 0.1).astype(np.float32), "fc2.bias")
    nodes = [
        helper.make_node("Flatten", ["input"], ["/flatten/Flatten_output_0"], name="/flatten/Flatten", axis=1),
        helper.make_node("Gemm", ["/flatten/Flatten_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"],
                         name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Gemm", ["/relu/Relu_output_0", "fc2.weight", "fc2.bias"], ["/fc2/Gemm_output_0"],
                         name="/fc2/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Softmax", ["/fc2/Gemm_output_0"], ["output"], name="/softmax/Softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])],
        [w1, b1, w2, b2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = 8  # readable by the pinned onnxruntime
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------ fast tests
def test_implemented_set_comes_from_headers():
    impl = implemented_operators()
    for op in ("Gemm", "MatMul", "Conv", "Relu", "Softmax", "LogSoftmax", "Reshape", "Flatten", "Add"):
        assert op in impl
    for op in ("MaxPool", "AveragePool", "BatchNormalization", "Concat", "QuantizeLinear"):
        assert op not in impl  # empty stub headers in deepC 0.13
    assert 80 <= len(impl) <= 100


def test_normalise_names_inputs_opset():
    norm = normalise_model(mlp_model(), reserved={"Gemm", "Relu"})
    g = norm.graph
    names = [n.name for n in g.node] + [t for n in g.node for t in list(n.input) + list(n.output)]
    names += [i.name for i in g.initializer] + [v.name for v in g.input] + [v.name for v in g.output]
    assert all(C_IDENT.match(n) for n in names), names
    assert len({n.name for n in g.node}) == len(g.node)
    # every initializer is a graph input, the image input stays first
    input_names = [v.name for v in g.input]
    assert input_names[0] == "input"
    assert {i.name for i in g.initializer} <= set(input_names)
    # batch fixed, opset for deepC, graph still wired
    assert [d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    assert [(o.domain, o.version) for o in norm.opset_import] == [("", 10)]
    assert g.node[1].input[1] == "fc1_weight" and g.node[1].input[0] == g.node[0].output[0]
    assert g.output[0].name == g.node[-1].output[0] == "output"


def test_normalise_keeps_semantics_and_handles_odd_names():
    model = mlp_model()
    g = model.graph
    # names that are not C identifiers, a C++ keyword, a deepC class name, a clash
    g.node[0].name, g.node[2].name, g.node[3].name = "2nd-node", "float", "Relu"
    g.node[4].name = ""
    norm = normalise_model(model, reserved={"Relu", "Gemm"})
    node_names = [n.name for n in norm.graph.node]
    assert all(C_IDENT.match(n) for n in node_names)
    assert "float" not in node_names and "Relu" not in node_names and node_names[0] == "t_2nd_node"
    assert len(set(node_names)) == len(node_names)
    # same numbers as the original (opset-17 Softmax on the last axis)
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(norm.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)  # other opset kernels in onnxruntime


def test_softmax_on_non_last_axis_is_rejected():
    model = mlp_model(opset=13)
    model.graph.node[-1].attribute[0].i = 0
    with pytest.raises(UserError, match="Softmax over axis 0"):
        normalise_model(model)


def test_unsupported_operators_one_line_error(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    scale = numpy_helper.from_array(np.ones(1, np.float32), "bn.scale")
    bias = numpy_helper.from_array(np.zeros(1, np.float32), "bn.bias")
    mean = numpy_helper.from_array(np.zeros(1, np.float32), "bn.mean")
    var = numpy_helper.from_array(np.ones(1, np.float32), "bn.var")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    w = numpy_helper.from_array(np.zeros((196, 10), np.float32), "w")
    nodes = [
        helper.make_node("BatchNormalization", ["x", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["r"]),
        helper.make_node("MaxPool", ["p"], ["unused"], kernel_shape=[1, 1]),
        helper.make_node("MatMul", ["r", "w"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [scale, bias, mean, var, shape, w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "cnn.onnx"
    onnx.save(model, path)
    out = tmp_path / "gen"
    with pytest.raises(UserError) as err:
        compile_deepc(path, out)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("deepC does not implement: BatchNormalization, MaxPool;"), msg
    assert "--backend native" in msg
    assert not out.exists()  # nothing half-written


def test_check_operators_accepts_mlp():
    check_operators(normalise_model(mlp_model()), implemented_operators())


def test_missing_model_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        compile_deepc(bad, tmp_path / "gen")


# --------------------------------------------------------- generated library
def _model_path(tmp_path_factory):
    """The trained model when it exists, else the same network with random weights."""
    trained = MODEL_DIR / "mlp.onnx"
    if trained.is_file():
        return trained
    path = tmp_path_factory.mktemp("model") / "mlp.onnx"
    onnx.save(mlp_model(), path)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    onnx_path = _model_path(tmp_path_factory)
    out = tmp_path_factory.mktemp("deepc") / "deepc"
    assert compile_deepc(onnx_path, out) == out
    return onnx_path, out


def _compile_flags():
    """The device's flags (lean runtime, no exceptions), so the host build checks its code."""
    inc, eigen = prepare_runtime()
    return [f"-std={CXX_STD}", *[f"-D{d}" for d in CPP_DEFINES], *DEVICE_CXXFLAGS, f"-I{inc}", f"-I{eigen}",
            f"-I{FIRMWARE_DIR / 'include'}"]


def test_generated_files(generated):
    _, out = generated
    names = sorted(p.name for p in out.iterdir() if p.name != outdir.MARKER)
    assert names == sorted(["model_deepc.cpp", "deepc_weights.cpp", "deepc_weights.h",
                            "onnx2cpp_output.cpp.txt", "model.json"])
    src = (out / "model_deepc.cpp").read_text()
    assert src.startswith("/* GENERATED FILE - do not edit by hand.")
    assert "--backend deepc" in src.splitlines()[1]
    assert "int main" not in src and "read(" not in src
    assert not re.search(r"\bint32_t\b", src.split("using namespace dnnc;")[1])   # uint32_t stamps are fine
    assert re.search(r"^const float deepc_w_\w+\[78400\] = \{$", (out / "deepc_weights.cpp").read_text(), re.MULTILINE)
    # no leftovers of the atomic write
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".deepc")]


@pytest.mark.slow
def test_host_build_matches_onnxruntime(generated, tmp_path):
    import onnxruntime as ort
    from mnist_mcu.data import load_mnist, normalise

    onnx_path, out = generated
    (tmp_path / "main.cpp").write_text(HOST_MAIN)
    exe = tmp_path / "deepc_host"
    cmd = ["nice", "g++", "-O2", *_compile_flags(), str(out / "model_deepc.cpp"), str(out / "deepc_weights.cpp"),
           str(tmp_path / "main.cpp"), "-o", str(exe)]
    subprocess.run(cmd, check=True, timeout=900)
    images, _ = load_mnist("test", MNIST_DIR)
    images = images[:N_IMAGES]
    run = subprocess.run([str(exe)], input=images.tobytes(), capture_output=True, check=True, timeout=300)
    got = np.frombuffer(run.stdout, dtype=np.float32).reshape(len(images), -1)
    sess = ort.InferenceSession(str(onnx_path))
    ref = sess.run(None, {sess.get_inputs()[0].name: normalise(images)[:, None, :, :]})[0]
    assert got.shape == ref.shape
    diff = float(np.max(np.abs(got - ref)))
    assert diff <= 1e-5, f"max |deepC - onnxruntime| = {diff}"
    assert np.array_equal(got.argmax(1), ref.argmax(1))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="arm-none-eabi-g++ not installed")
def test_cortex_m4f_build(generated, tmp_path):
    _, out = generated
    objs = []
    for src in ("model_deepc.cpp", "deepc_weights.cpp"):
        obj = tmp_path / (src + ".o")
        cmd = ["nice", "arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
               "-O2", "-ffunction-sections", "-fdata-sections", *_compile_flags(), "-c", str(out / src), "-o", str(obj)]
        subprocess.run(cmd, check=True, timeout=900)
        objs.append(obj)
    size = subprocess.run(["arm-none-eabi-size", *map(str, objs)], capture_output=True, text=True, check=True)
    weights_row = size.stdout.splitlines()[2].split()
    assert int(weights_row[0]) >= 4 * (100 * 784 + 100 + 10 * 100 + 10)  # weights are in .text/.rodata (flash)
    assert int(weights_row[1]) == 0 and int(weights_row[2]) == 0  # ... and not in RAM


def test_runtime_prepared_patched_and_idempotent(tmp_path):
    from mnist_mcu.deepc_patches import deepc_home

    dest = tmp_path / "deepc-arm"
    inc, eigen = prepare_runtime(dest=dest)
    macros = (inc / "core" / "macros.h").read_text()
    assert "#if defined(DNNC_NO_STDIO)" in macros and "dnnc_report(2, __LINE__)" in macros
    assert (eigen / "unsupported" / "Eigen" / "CXX11" / "Tensor").is_file()
    # the original download is untouched
    assert "DNNC_NO_STDIO" not in (deepc_home() / "deepC" / "include" / "core" / "macros.h").read_text()
    stamp = (dest / ".prepared").stat().st_mtime_ns
    assert prepare_runtime(dest=dest) == (inc, eigen)
    assert (dest / ".prepared").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not list(tmp_path.glob("deepc-arm.tmp*"))


def test_gemm_without_bias_gets_a_zero_bias():
    model = mlp_model(opset=13)
    model.graph.node[3].input.pop()  # fc2 without C (allowed since opset 11)
    norm = normalise_model(model)
    gemm = norm.graph.node[3]
    assert len(gemm.input) == 3 and gemm.input[2]
    bias = {i.name: numpy_helper.to_array(i) for i in norm.graph.initializer}[gemm.input[2]]
    assert bias.shape == (10,) and not bias.any()
    assert gemm.input[2] in [v.name for v in norm.graph.input]


# ------------------------------------------------------------------ lean runtime (issue 8)
def test_lean_patches_applied(tmp_path):
    inc, _ = prepare_runtime(dest=tmp_path / "deepc-arm")
    gemm = (inc / "operators" / "Gemm.h").read_text()
    assert "dnnc_gemv_rows(pa + i * ai, pb, py + i * N, N, K)" in gemm  # the batch-1 GEMV path
    lean, original = gemm.split("#if defined(DNNC_LEAN)\n    /* mnist-mcu patch: ONNX Gemm")[1].split("#else", 1)
    assert "eResult" not in lean and "broadcast(" not in lean and "eResult" in original.split("#endif")[0]
    tensor = (inc / "core" / "tensor.h").read_text()
    assert "#if !defined(DNNC_LEAN) /* mnist-mcu patch: INIT_RANDOM only */\n#include <random>" in tensor
    assert "DIMENSION dim(size_t i) const" in (inc / "core" / "placeHolder.h").read_text()
    macros = (inc / "core" / "macros.h").read_text()
    assert "#define DNNC_TRY if (true)" in macros and "#define DNNC_CATCH(...) else" in macros
    for header in (inc / "operators").glob("*.h"):  # no try/catch left that -fno-exceptions rejects
        code = header.read_text()
        assert not re.search(r"\btry \{|\} catch \(", code), header.name
        assert ".shape()[" not in code, header.name  # a heap copy of the shape per index


def test_patch_refuses_another_deepc(tmp_path):
    """A deepC whose headers differ from 0.13 fails with a message naming the header."""
    from mnist_mcu.deepc_patches import EIGEN_SUBDIR, deepc_home

    src = tmp_path / "deepc"
    shutil.copytree(deepc_home() / "deepC" / "include", src / "deepC" / "include")
    (src / "deepC" / EIGEN_SUBDIR).parent.mkdir(parents=True)
    (src / "deepC" / EIGEN_SUBDIR).symlink_to(deepc_home() / "deepC" / EIGEN_SUBDIR)
    gemm = src / "deepC" / "include" / "operators" / "Gemm.h"
    gemm.write_text(gemm.read_text().replace("result.load(eResult.data());", "result.load(eResult.data()); // 0.14"))
    with pytest.raises(DeepcSetupError, match="operators/Gemm.h is not the 0.13 version"):
        prepare_runtime(dest=tmp_path / "out", src=src)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp*"))


def test_tensor_lifetimes_in_model_run(generated):
    """model_run destroys each tensor after its last use (the input too), and builds each
    operator on the stack for its one compute: nothing of an inference stays on the heap."""
    _, out = generated
    run = (out / "model_deepc.cpp").read_text().split('extern "C" int model_run')[1]
    slots = re.findall(r"dnnc_slot<tensor<float>> (s_\d+);", run)
    assert 1 <= len(slots) <= 2  # a chain of layers needs two, reused
    made, destroyed = len(re.findall(r"\bs_\d+\.make\(", run)), len(re.findall(r"\bs_\d+\.destroy\(\)", run))
    assert made == destroyed == 6  # the input + five operators' results
    assert "static dnnc_slot<Gemm" not in (out / "model_deepc.cpp").read_text()


@pytest.mark.slow
@pytest.mark.qemu
def test_lean_build_on_f405_matches_onnxruntime(build_env, mnist_dir, model_path):
    """The lean deepC firmware on the emulated F405: outputs vs onnxruntime on real test images.
    Flash and RAM are printed; their budgets are measured by `mnist-mcu benchmark`."""
    import onnxruntime as ort
    from mnist_mcu import protocol as P
    from mnist_mcu.data import load_mnist, normalise
    from mnist_mcu.qemu import Qemu

    env = build_env("qemu_f405_deepc")
    images, _ = load_mnist("test", mnist_dir)
    images = images[:N_IMAGES]
    sess = ort.InferenceSession(str(model_path))
    ref = sess.run(None, {sess.get_inputs()[0].name: normalise(images)[:, None, :, :]})[0]
    got, ticks = {}, []
    with Qemu(env.elf, env.qemu_machine, timeout=10) as q:
        for i, res in q.device.infer_many(((i, images[i]) for i in range(len(images))), window=2):
            got[i] = res.outputs
            ticks.append(res.ticks)
        info = q.device.info()
    out = np.array([got[i] for i in range(len(images))])
    diff = float(np.max(np.abs(out - ref)))
    instr = P.ticks_to_instructions(np.array(ticks), info.tick_hz)
    print(f"\nqemu_f405_deepc: flash {info.flash_bytes} B, RAM {info.ram_bytes} B (static {info.static_ram_bytes} "
          f"+ heap {info.heap_peak_bytes} + stack {info.stack_peak_bytes}), {instr.mean():,.0f} instructions "
          f"per inference, max |device - onnxruntime| {diff:.2e} on {len(images)} images")
    assert info.backend == "deepc" and info.heap_peak_bytes > 0  # the deepC library, on the heap
    assert diff <= 1e-5, diff
    assert np.array_equal(out.argmax(1), ref.argmax(1))


# ------------------------------------------------------ ONNX node tests (issue 7, information)
NODE_TESTS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


@pytest.mark.slow
def test_conformance_case_statuses(tmp_path):
    """conformance_case runs ONNX's own node tests through deepC: rejected operators, passing
    ones (the lean Gemm included), and a case whose expected output was changed fails."""
    from mnist_mcu.deepc_backend import CONFORMANCE_STATUSES, conformance_case

    assert conformance_case(NODE_TESTS / "test_maxpool_1d_default") == "reject"  # a deepC stub
    assert conformance_case(NODE_TESTS / "test_softmax_axis_0") == "reject"  # not expressible in deepC
    for name in ("test_relu", "test_gemm_all_attributes", "test_gemm_transposeA"):
        assert conformance_case(NODE_TESTS / name, work_dir=tmp_path) == "pass", name
    case = tmp_path / "test_relu_changed"
    shutil.copytree(NODE_TESTS / "test_relu", case)
    out = case / "test_data_set_0" / "output_0.pb"
    want = numpy_helper.to_array(onnx.load_tensor(str(out)))
    onnx.save_tensor(numpy_helper.from_array(want + np.float32(1e-3)), str(out))
    assert conformance_case(case, work_dir=tmp_path) == "fail"
    assert set(CONFORMANCE_STATUSES) == {"pass", "fail", "reject", "codegen-error", "build-error"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("deepc-case-")]  # work folders removed
