"""Flatten: a view; the output shares the input's buffer (nothing is emitted)."""

from ._common import activation, check_attrs, n_inputs, numel, set_out

OP_TYPES = ("Flatten",)


def resolve(node, graph):
    n_inputs(node, 1)
    check_attrs(node, {"axis": None})
    x = activation(node, graph, 0)
    axis = int(node.attrs.get("axis", 1))
    if axis < 0:
        axis += len(x.shape)
    set_out(node, graph, (numel(x.shape[:axis]), numel(x.shape[axis:])))
    node.extra["alias"] = True


def emit(node, ctx):
    return []
