"""int8 post-training quantisation: the driver.  The arithmetic of each operator (its
parameters, its int8 emission and its numpy integer reference) lives in its own module
under ops/ (see ops/base.py); this module only walks the graph.

Scheme (TFLite-like):
  weights      int8 symmetric, one scale per output channel (max|w| / 127)
  activations  int8 asymmetric (scale, zero point) calibrated with min/max on
               TRAINING images (never test images); ReLU fused into the clamp
  raw pixels   when the first layer is a Gemm, the uint8 pixels themselves are its
               input (scale 1/(255*std), zero point 0) and the normalisation offset
               -mean/std is folded into the int32 bias: exact, and zero pixels skip
  accumulate   int32; bias int32 at scale s_in * s_w[o]
  requantise   (acc * M + 2^(S-1)) >> S  (M in [2^30, 2^31), round half up), + zp, clamp
  last layer   int32 accumulator dequantised to float (float(acc) * s), then Softmax

reference_int8() runs exactly this arithmetic in numpy; the generated C must
reproduce it bit for bit (tests/test_native_ops.py, tests/test_native.py).
"""

import numpy as np

from ..errors import UserError
from .graph import Node, Tensor
from .ops import REGISTRY, guarded
from .ops._int8 import (  # noqa: F401
    I32_MAX,
    I32_MIN,
    qparams_from_range,
    quantize_multiplier,
    requant_ref,
)
from .ops.gemm import pack_pairs  # noqa: F401  (re-exported for the kernel tests)
from .ops.internal import float_lut
from .ops.softmax import expf, logf, softmax_ref  # noqa: F401
from .passes import alias_root


def assign_domains(graph):
    """'u8' raw pixels, 'q8' int8 activations, 'f32' float; operators may insert Dequantize nodes."""
    graph.domains = {graph.input: "u8"}
    for node in list(graph.nodes):
        if not node.view:
            graph.domains[node.outputs[0]] = guarded(node, REGISTRY[node.op].int8_domain, node, graph)
    root = alias_root(graph, graph.output)
    if graph.domains.get(root) != "f32":
        new = graph.new_name("output_dequantized")
        graph.tensors[new] = Tensor(new, graph.tensors[graph.output].shape)
        graph.nodes.append(Node("Dequantize", "output_dequantize", [graph.output], [new]))
        graph.domains[new] = "f32"
        graph.output = new


def calibrate(onnx_path, names, images_norm, batch=500):
    """min/max of the named ONNX tensors over images_norm [N,1,28,28] float32."""
    import onnx
    import onnxruntime as ort  # type: ignore[import-untyped]

    model = onnx.load(str(onnx_path))
    existing = {o.name for o in model.graph.output}
    for n in names:
        if n not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    dim0 = sess.get_inputs()[0].shape[0]
    if isinstance(dim0, int):
        batch = dim0
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    try:   # graphs with a hard-coded batch of 1 (e.g. Reshape to [1, -1]) run one image at a time
        sess.run(list(names), {in_name: images_norm[:2]})
    except Exception:  # noqa: BLE001 (onnxruntime raises its own types for a fixed batch)
        batch = 1
    for i in range(0, len(images_norm), batch):
        outs = sess.run(list(names), {in_name: images_norm[i:i + batch]})
        for n, v in zip(names, outs):
            lo[n] = min(lo[n], float(v.min()))
            hi[n] = max(hi[n], float(v.max()))
    return {n: (lo[n], hi[n]) for n in names}


def quantize_graph(graph, onnx_path, calib_pixels):
    """Fill graph.domains, graph.qparams and every node's int8 parameters (node.q);
    calib_pixels: uint8 [N, 784] training images."""
    if not graph.image_input:
        raise UserError("int8 needs an MNIST model (one image input) to calibrate")
    onnx_out = graph.output
    softmax_out = getattr(graph.producer(alias_root(graph, onnx_out)), "op", None) == "Softmax"
    assign_domains(graph)
    graph.qparams = {}
    in_shape = graph.tensors[graph.input].shape
    norm = float_lut(graph)[calib_pixels.reshape(len(calib_pixels), -1)]
    norm = norm.reshape((len(calib_pixels),) + tuple(in_shape[1:])).astype(np.float32)
    need = [t for n in graph.nodes if not n.view for t in REGISTRY[n.op].calib_tensors(n, graph)]
    ranges = calibrate(onnx_path, need + [onnx_out], norm)
    # the output as int8 codes (for comparing with other int8 engines): probabilities in steps
    # of 1/256 (TFLite's softmax output), anything else over its calibrated range
    graph.output_codes = (1.0 / 256.0, -128) if softmax_out else qparams_from_range(*ranges[onnx_out])
    for node in graph.nodes:
        if not node.view:
            guarded(node, REGISTRY[node.op].quantize, node, graph, ranges)
    return graph


def reference_int8(graph, pixels):
    """Run the quantised graph in numpy integers: pixels uint8 [N, input_size] -> float32 [N, out]."""
    pixels = np.asarray(pixels, np.uint8).reshape(len(pixels), -1)
    n = len(pixels)
    vals = {graph.input: pixels}
    for node in graph.nodes:
        if node.view:
            continue
        x = vals[alias_root(graph, node.inputs[0])]
        y = REGISTRY[node.op].reference_int8(node, graph, x)
        vals[node.outputs[0]] = np.asarray(y).reshape(n, -1)
    return vals[alias_root(graph, graph.output)].astype(np.float32).reshape(n, -1)
