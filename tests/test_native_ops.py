"""Each operator on its own (and small combinations) in tiny random graphs with odd
sizes: generated f32 C vs onnxruntime, generated int8 C vs the numpy integer
reference (bit for bit), and the one-line errors for what is not supported."""

import zlib

import numpy as np
import pytest
from mnist_mcu.errors import UserError
from mnist_mcu.native import build_graph, compile_native
from mnist_mcu.native.host import HostModel
from mnist_mcu.native.qdq import ort_int8_outputs, output_codes
from mnist_mcu.native.quantize import reference_int8
from native_helpers import init, make_model, random_pixels, rng_w, run_ort
from onnx import helper

H = helper.make_node


def g_mlp_odd(rng):
    nodes = [H("Flatten", ["input"], ["f"]), H("Gemm", ["f", "w1", "b1"], ["g1"], transB=1),
             H("Relu", ["g1"], ["r"]), H("Gemm", ["r", "w2", "b2"], ["g2"], transB=1),
             H("Softmax", ["g2"], ["output"])]
    return nodes, [init("w1", rng_w(rng, 13, 35)), init("b1", rng_w(rng, 13)),
                   init("w2", rng_w(rng, 3, 13)), init("b2", rng_w(rng, 3))], (1, 1, 5, 7)


def g_gemm_attrs(rng):   # transB=0, alpha, beta, C of shape [1, N], no activation after
    nodes = [H("Reshape", ["input", "shp"], ["f"]),
             H("Gemm", ["f", "w1", "b1"], ["output"], transB=0, alpha=0.5, beta=2.0)]
    return nodes, [init("shp", np.array([1, -1], np.int64)), init("w1", rng_w(rng, 21, 9)),
                   init("b1", rng_w(rng, 1, 9))], (1, 1, 3, 7)


def g_matmul_add(rng):
    nodes = [H("Flatten", ["input"], ["f"]), H("MatMul", ["f", "w1"], ["m1"]), H("Add", ["m1", "b1"], ["a1"]),
             H("Relu", ["a1"], ["r"]), H("MatMul", ["r", "w2"], ["m2"]), H("Add", ["b2", "m2"], ["a2"]),
             H("LogSoftmax", ["a2"], ["output"], axis=-1)]
    return nodes, [init("w1", rng_w(rng, 33, 17)), init("b1", rng_w(rng, 17)),
                   init("w2", rng_w(rng, 17, 5)), init("b2", rng_w(rng, 1, 5))], (1, 1, 3, 11)


def g_cnn(rng):
    nodes = [H("Conv", ["input", "cw", "cb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
             H("Relu", ["c"], ["cr"]),
             H("MaxPool", ["cr"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             H("Conv", ["p", "cw2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]),
             H("Relu", ["c2"], ["c2r"]),
             H("Flatten", ["c2r"], ["f"]), H("Gemm", ["f", "w", "b"], ["g"], transB=1),
             H("Softmax", ["g"], ["output"])]
    return nodes, [init("cw", rng_w(rng, 4, 1, 3, 3)), init("cb", rng_w(rng, 4)),
                   init("cw2", rng_w(rng, 5, 4, 3, 3)),
                   init("w", rng_w(rng, 7, 5 * 2 * 2)), init("b", rng_w(rng, 7))], (1, 1, 11, 9)


def g_conv_add_maxpool_pad(rng):   # Conv + Add(per-channel const) + MaxPool with padding + standalone Relu
    nodes = [H("Conv", ["input", "cw"], ["c"], kernel_shape=[2, 3], auto_pad="SAME_UPPER"),
             H("Add", ["c", "cb"], ["ca"]),
             H("MaxPool", ["ca"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             H("Relu", ["p"], ["pr"]),
             H("Reshape", ["pr", "shp"], ["f"]), H("Gemm", ["f", "w", "b"], ["output"], transB=1)]
    return nodes, [init("cw", rng_w(rng, 3, 1, 2, 3)), init("cb", rng_w(rng, 1, 3, 1, 1)),
                   init("shp", np.array([1, -1], np.int64)),
                   init("w", rng_w(rng, 6, 3 * 4 * 3)), init("b", rng_w(rng, 6))], (1, 1, 7, 5)


def g_add_two_acts(rng):   # f32 only: residual Add of two activations, MatMul of two activations
    nodes = [H("Flatten", ["input"], ["f"]), H("Gemm", ["f", "w1", "b1"], ["g1"], transB=1),
             H("Relu", ["g1"], ["r1"]), H("Gemm", ["r1", "w2", "b2"], ["g2"], transB=1),
             H("Add", ["g2", "r1"], ["s"]), H("Reshape", ["s", "shp"], ["s2"]),
             H("MatMul", ["s2", "s"], ["output"])]
    return nodes, [init("w1", rng_w(rng, 6, 15)), init("b1", rng_w(rng, 6)),
                   init("w2", rng_w(rng, 6, 6)), init("b2", rng_w(rng, 6)),
                   init("shp", np.array([6, 1], np.int64))], (1, 1, 3, 5)


GRAPHS = {"mlp_odd": g_mlp_odd, "gemm_attrs": g_gemm_attrs, "matmul_add": g_matmul_add, "cnn": g_cnn,
          "conv_add_maxpool_pad": g_conv_add_maxpool_pad, "add_two_acts": g_add_two_acts}
INT8 = ["mlp_odd", "gemm_attrs", "matmul_add", "cnn", "conv_add_maxpool_pad"]


def _model(tmp_path, name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    nodes, inits, shape = GRAPHS[name](rng)
    return make_model(nodes, inits, shape, None, tmp_path / f"{name}.onnx"), shape, rng


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_f32_matches_onnxruntime(tmp_path, name):
    path, shape, rng = _model(tmp_path, name)
    out = compile_native(path, tmp_path / "gen", "f32")
    px = random_pixels(rng, 64, int(np.prod(shape)))
    got = HostModel(out).run(px)
    want = run_ort(path, px, shape)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", INT8)
def test_int8_matches_integer_reference(tmp_path, name):
    path, shape, rng = _model(tmp_path, name)
    size = int(np.prod(shape))
    calib = random_pixels(rng, 200, size)
    out = compile_native(path, tmp_path / "gen", "int8", calib_pixels=calib)
    px = random_pixels(rng, 64, size)
    got = HostModel(out).run(px)
    g = build_graph(path, "int8", calib)
    ref = reference_int8(g, px)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))     # exact, bit for bit
    # independent: onnxruntime on the QDQ graph with the scales/zero points of model.json
    ort_codes = ort_int8_outputs(out, px)
    lsb = np.abs(output_codes(out, got) - ort_codes).max()
    assert lsb <= 1, f"{name}: {lsb} LSB from onnxruntime's QDQ graph"


def test_int8_rejects_float_only_graph(tmp_path):
    path, _, rng = _model(tmp_path, "add_two_acts")
    with pytest.raises(UserError, match="not supported with --dtype int8|int8"):
        compile_native(path, tmp_path / "gen", "int8", calib_pixels=random_pixels(rng, 20, 15))


def test_unsupported_operator_one_line(tmp_path):
    nodes = [H("Flatten", ["input"], ["f"]), H("Sigmoid", ["f"], ["s"], name="sig"),
             H("LSTM", ["s", "w", "r"], ["output"], name="x", hidden_size=2)]
    import onnx
    from onnx import TensorProto
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
                          [init("w", np.zeros((1, 8, 4), np.float32)), init("r", np.zeros((1, 8, 2), np.float32))])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    good, _, _ = _model(tmp_path, "mlp_odd")
    out = compile_native(good, tmp_path / "gen", "f32")       # a previous compile's folder
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UserError) as e:
        compile_native(path, out, "f32")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("unsupported ONNX operator(s): Sigmoid (node 'sig'), LSTM (node 'x');")
    assert "the native backend supports: Gemm" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before          # nothing half-written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gen")] == []


@pytest.mark.parametrize("attrs", [{"group": 2}, {"dilations": [2, 2]}])
def test_conv_group_and_dilation(tmp_path, attrs):
    """Groups and dilations: f32 (a loop) matches onnxruntime; int8 refuses them in one line."""
    rng = np.random.default_rng(1)
    cin = 2 if attrs.get("group") else 1
    nodes = [H("Conv", ["input", "cw", "cb"], ["c"], kernel_shape=[3, 3], name="cv", **attrs),
             H("Flatten", ["c"], ["output"])]
    inits = [init("cw", rng_w(rng, 4, 1, 3, 3)), init("cb", rng_w(rng, 4))]
    path = make_model(nodes, inits, (1, cin, 7, 6), None, tmp_path / "m.onnx")
    px = random_pixels(rng, 8, cin * 42)
    got = HostModel(compile_native(path, tmp_path / "f32", "f32")).run(px)
    np.testing.assert_allclose(got, run_ort(path, px, (1, cin, 7, 6)), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError) as e:
        compile_native(path, tmp_path / "int8", "int8", calib_pixels=random_pixels(rng, 20, cin * 42))
    assert str(e.value).startswith("Conv (node 'cv'): with --dtype int8 only 2-D") and "\n" not in str(e.value)


def _run_graph(tmp_path, model, inputs):
    """compile_graph() + the kernel library as a host library; returns the outputs."""
    import ctypes

    from mnist_mcu.native import compile_graph
    from mnist_mcu.native.host import KERNEL_INCLUDE, build_shared, kernel_sources

    text, g = compile_graph(model, entry="run")
    (tmp_path / "g.c").write_text(text)
    lib = ctypes.CDLL(str(build_shared([tmp_path / "g.c", *kernel_sources()], [KERNEL_INCLUDE],
                                       cache_dir=tmp_path / "build")))
    ins = [np.ascontiguousarray(a, np.float32) for a in inputs]
    outs = [np.zeros(g.tensors[o].shape, np.float32) for o in g.outputs]
    assert lib.run((ctypes.c_void_p * len(ins))(*[a.ctypes.data for a in ins]),
                   (ctypes.c_void_p * len(outs))(*[a.ctypes.data for a in outs])) == 0
    return outs


@pytest.mark.parametrize("shape,attrs", [
    ((2, 4, 9), {"group": 2, "dilations": [2], "strides": [2], "pads": [1, 2]}),                  # 1-D, batch 2
    ((1, 3, 5, 6, 4), {"auto_pad": "SAME_UPPER", "strides": [1, 2, 1]}),                         # 3-D
    ((3, 6, 7, 5), {"group": 3, "dilations": [1, 2], "pads": [1, 2, 0, 1], "strides": [2, 1]}),
])
def test_general_conv_graph_matches_onnxruntime(tmp_path, shape, attrs):
    import onnxruntime as ort
    from onnx import TensorProto

    rng = np.random.default_rng(len(shape))
    g = attrs.get("group", 1)
    w = rng_w(rng, 2 * g, shape[1] // g, *([3] * (len(shape) - 2)))
    node = H("Conv", ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [init("w", w), init("b", rng_w(rng, 2 * g))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = rng.standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = _run_graph(tmp_path, model, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_matmul_constant_b_with_rows(tmp_path):
    """MatMul of an [M, K] activation (M != 1) with a constant B: f32 runs it (nn_matmul_f32 with
    B in flash); int8 refuses it in one line naming the node (it used to end in a KeyError)."""
    rng = np.random.default_rng(7)
    nodes = [H("Reshape", ["input", "shp"], ["x"]), H("MatMul", ["x", "w"], ["m"], name="mm"),
             H("Flatten", ["m"], ["output"])]
    inits = [init("shp", np.array([5, 7], np.int64)), init("w", rng_w(rng, 7, 3))]
    path = make_model(nodes, inits, (1, 1, 5, 7), None, tmp_path / "mm.onnx")
    px = random_pixels(rng, 16, 35)
    got = HostModel(compile_native(path, tmp_path / "f32", "f32")).run(px)
    np.testing.assert_allclose(got, run_ort(path, px, (1, 1, 5, 7)), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError) as e:
        compile_native(path, tmp_path / "int8", "int8", calib_pixels=random_pixels(rng, 20, 35))
    assert "\n" not in str(e.value) and str(e.value).startswith("MatMul (node 'mm'): ")


def test_model_that_only_normalises(tmp_path):
    """Output = the (viewed) input: the device returns the normalised pixels (input table)."""
    path = make_model([H("Flatten", ["input"], ["output"])], [], (1, 1, 28, 28), None, tmp_path / "id.onnx")
    px = random_pixels(np.random.default_rng(3), 8, 784)
    got = HostModel(compile_native(path, tmp_path / "gen", "f32")).run(px)
    np.testing.assert_allclose(got, run_ort(path, px, (1, 1, 28, 28)), rtol=1e-4, atol=1e-5)
