"""Helpers for the native backend tests: tiny ONNX graphs built with onnx.helper."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN, STD = 0.1307, 0.3081


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def make_model(nodes, inits, in_shape, out_shape, path, opset=13, meta=True):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape[1:]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if meta:
        for k, v in (("input_mean", "0.1307"), ("input_std", "0.3081"), ("input_scale", "255.0")):
            p = m.metadata_props.add()
            p.key, p.value = k, v
    onnx.save(m, str(path))
    return path


def rng_w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp_model(path, h=28, w=28, hidden=100, out=10, seed=0):
    """The seed MLP's shape (Flatten -> Gemm -> Relu -> Gemm -> Softmax) with random weights."""
    rng = np.random.default_rng(seed)
    k = h * w
    nodes = [helper.make_node("Flatten", ["input"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["g1"], transB=1),
             helper.make_node("Relu", ["g1"], ["r1"]),
             helper.make_node("Gemm", ["r1", "w2", "b2"], ["g2"], transB=1),
             helper.make_node("Softmax", ["g2"], ["output"], axis=1)]
    inits = [init("w1", rng_w(rng, hidden, k, scale=0.05)), init("b1", rng_w(rng, hidden, scale=0.1)),
             init("w2", rng_w(rng, out, hidden, scale=0.3)), init("b2", rng_w(rng, out, scale=0.1))]
    return make_model(nodes, inits, (1, 1, h, w), (1, out), path)


def random_pixels(rng, n, size, zero_frac=0.75):
    px = rng.integers(0, 256, size=(n, size)).astype(np.uint8)
    px[rng.random((n, size)) < zero_frac] = 0
    return px


def normalise(px, shape):
    x = ((px.astype(np.float32) / np.float32(255.0)) - np.float32(MEAN)) / np.float32(STD)
    return x.reshape((len(px),) + tuple(shape[1:])).astype(np.float32)


def run_ort(path, px, in_shape):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = normalise(px, in_shape)
    return np.concatenate([s.run(None, {"input": x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])
