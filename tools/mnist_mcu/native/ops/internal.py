"""Nodes the passes insert (not ONNX operators):

InputLUT   raw uint8 pixels -> normalised input through a 256-entry table (float,
           or int8 quantised); used when normalisation cannot be folded into the
           first layer (e.g. a padded Conv).
Dequantize int8 activation -> float (before Softmax / at the graph output).
"""

import numpy as np

OP_TYPES = ("InputLUT", "Dequantize")


def resolve(node, graph):
    graph.tensors[node.outputs[0]].shape = graph.tensors[node.inputs[0]].shape


def float_lut(graph):
    p = np.arange(256, dtype=np.float32)
    return ((p / np.float32(graph.scale)) - np.float32(graph.mean)) / np.float32(graph.std)


def emit(node, ctx):
    g = ctx.graph
    n = g.tensors[node.inputs[0]].size
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if node.op == "InputLUT":
        if ctx.dtype == "f32":
            return [f"nn_lut_u8_f32({x}, {ctx.const('lut', 'float', float_lut(g))}, {y}, {n});"]
        return [f"nn_lut_u8_s8({x}, {ctx.const('lut', 'int8_t', node.extra['lut'])}, {y}, {n});"]
    s, z = ctx.q(node.inputs[0])
    return [f"nn_dequant_s8_f32({x}, {y}, {n}, {ctx.fmt_float(s)}, {z});"]
