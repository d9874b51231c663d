"""Nodes the passes insert (not ONNX operators):

InputLUT   raw uint8 pixels -> normalised input through a 256-entry table (float,
           or int8 quantised); used when normalisation cannot be folded into the
           first layer (e.g. a padded Conv).
Dequantize int8 activation -> float (before Softmax / at the graph output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Node, Tensor
from ._int8 import qparams_from_range
from .base import Operator


def float_lut(graph) -> np.ndarray:
    p = np.arange(256, dtype=np.float32)
    return ((p / np.float32(graph.scale)) - np.float32(graph.mean)) / np.float32(graph.std)


@dataclass
class LutQ:
    lut: np.ndarray      # int8 [256]: code of the normalised value of each pixel value


class _Internal(Operator):
    def resolve(self, node, graph):
        graph.tensors[node.outputs[0]].shape = graph.tensors[node.inputs[0]].shape


class InputLUT(_Internal):
    OP_TYPES = ("InputLUT",)

    def emit_f32(self, node, ctx):
        n = ctx.graph.tensors[node.inputs[0]].size
        lut = ctx.const("lut", "float", float_lut(ctx.graph))
        return [f"nn_lut_u8_f32({ctx.ptr(node.inputs[0])}, {lut}, {ctx.ptr(node.outputs[0])}, {n});"]

    def int8_domain(self, node, graph):
        return "q8"

    def quantize(self, node, graph, ranges):
        lut = float_lut(graph)
        s, z = qparams_from_range(lut.min(), lut.max())
        graph.qparams[node.outputs[0]] = (s, z)
        node.q = LutQ(np.clip(np.round(lut.astype(np.float64) / s) + z, -128, 127).astype(np.int8))

    def emit_int8(self, node, ctx):
        n = ctx.graph.tensors[node.inputs[0]].size
        lut = ctx.const("lut", "int8_t", node.q.lut)
        return [f"nn_lut_u8_s8({ctx.ptr(node.inputs[0])}, {lut}, {ctx.ptr(node.outputs[0])}, {n});"]

    def reference_int8(self, node, graph, x):
        return node.q.lut[x]


class Dequantize(_Internal):
    OP_TYPES = ("Dequantize",)

    def int8_domain(self, node, graph):
        return "f32"

    def emit_int8(self, node, ctx):
        n = ctx.graph.tensors[node.inputs[0]].size
        s, z = ctx.q(node.inputs[0])
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        return [f"nn_dequant_s8_f32({x}, {y}, {n}, {ctx.fmt_float(s)}, {z});"]

    def reference_int8(self, node, graph, x):
        from ..passes import alias_root

        s, z = graph.qparams[alias_root(graph, node.inputs[0])]
        return (x.astype(np.int32) - z).astype(np.float32) * np.float32(s)


def insert_dequantize(graph, node) -> None:
    """Feed `node` the float value of its int8 first input (a Dequantize node before it)."""
    src = node.inputs[0]
    new = graph.new_name(src + "_dq")
    graph.tensors[new] = Tensor(new, graph.tensors[src].shape)
    graph.nodes.insert(graph.nodes.index(node), Node("Dequantize", f"{node.name}_dequantize", [src], [new]))
    node.inputs = [new] + node.inputs[1:]
    graph.domains[new] = "f32"


OPERATORS = (InputLUT, Dequantize)
