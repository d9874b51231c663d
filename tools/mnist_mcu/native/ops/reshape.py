"""Reshape with a constant shape: a view (nothing is emitted)."""

import numpy as np

from ._common import activation, check_attrs, constant, fail, n_inputs, numel, set_out
from .base import Operator


class Reshape(Operator):
    OP_TYPES = ("Reshape",)
    CONST_INPUTS = (1,)
    INT_INPUTS = (1,)

    def resolve(self, node, graph):
        n_inputs(node, 2)
        check_attrs(node, {"allowzero": (0, 1)})
        x = activation(node, graph, 0)
        shape = constant(node, graph, 1, "shape")
        shape = [int(v) for v in np.asarray(shape).reshape(-1)]
        keep = not node.attrs.get("allowzero", 0)
        out = [x.shape[i] if v == 0 and keep else v for i, v in enumerate(shape)]
        if out.count(-1) > 1:
            fail(node, f"shape {shape} has more than one -1")
        if -1 in out:
            rest = numel([v for v in out if v != -1])
            out[out.index(-1)] = x.size // max(rest, 1)
        if numel(out) != x.size or 0 in out:
            fail(node, f"cannot reshape {list(x.shape)} to {shape}")
        set_out(node, graph, out)
        node.view = True

    def emit_f32(self, node, ctx):
        return []

    emit_int8 = emit_f32


OPERATORS = (Reshape,)
