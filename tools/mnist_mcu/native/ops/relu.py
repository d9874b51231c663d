"""Relu: usually fused into the preceding Gemm/Conv by passes.fuse_relu; a
standalone Relu is an elementwise max(x, 0) (in int8: max(q, zero_point))."""

import numpy as np

from ._common import activation, check_attrs, n_inputs, set_out
from .base import Operator


class Relu(Operator):
    OP_TYPES = ("Relu",)
    IN_PLACE = True

    def resolve(self, node, graph):
        n_inputs(node, 1)
        check_attrs(node, {})
        set_out(node, graph, activation(node, graph, 0).shape)

    def emit_f32(self, node, ctx):
        n = ctx.graph.tensors[node.inputs[0]].size
        return [f"nn_relu_f32({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {n});"]

    # ---- int8: the zero point is the code of 0.0; scale and zero point pass through
    def int8_domain(self, node, graph):
        from ..passes import alias_root

        return graph.domains[alias_root(graph, node.inputs[0])]

    def quantize(self, node, graph, ranges):
        from ..passes import alias_root

        if graph.domains[node.outputs[0]] == "q8":
            graph.qparams[node.outputs[0]] = graph.qparams[alias_root(graph, node.inputs[0])]

    def emit_int8(self, node, ctx):
        if ctx.domain(node.inputs[0]) == "f32":
            return self.emit_f32(node, ctx)
        n = ctx.graph.tensors[node.inputs[0]].size
        return [f"nn_relu_s8({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {n}, {ctx.q(node.inputs[0])[1]});"]

    def reference_int8(self, node, graph, x):
        from ..passes import alias_root

        if x.dtype != np.int8:
            return np.maximum(x, np.float32(0))
        return np.maximum(x, np.int8(graph.qparams[alias_root(graph, node.inputs[0])][1]))


OPERATORS = (Relu,)
