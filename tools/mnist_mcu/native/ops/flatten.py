"""Flatten: a view; the output shares the input's buffer (nothing is emitted)."""

from ._common import activation, check_attrs, n_inputs, numel, set_out
from .base import Operator


class Flatten(Operator):
    OP_TYPES = ("Flatten",)

    def resolve(self, node, graph):
        n_inputs(node, 1)
        check_attrs(node, {"axis": None})
        x = activation(node, graph, 0)
        axis = int(node.attrs.get("axis", 1))
        if axis < 0:
            axis += len(x.shape)
        set_out(node, graph, (numel(x.shape[:axis]), numel(x.shape[axis:])))
        node.view = True

    def emit_f32(self, node, ctx):
        return []

    emit_int8 = emit_f32


OPERATORS = (Flatten,)
