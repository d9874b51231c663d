"""Reshape with a constant shape: a view (nothing is emitted)."""

import numpy as np

from ._common import activation, check_attrs, constant, fail, n_inputs, numel, set_out

OP_TYPES = ("Reshape",)


def resolve(node, graph):
    n_inputs(node, 2)
    check_attrs(node, {"allowzero": (0,)})
    x = activation(node, graph, 0)
    shape = constant(node, graph, 1, "shape")
    shape = [int(v) for v in np.asarray(shape).reshape(-1)]
    out = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    if out.count(-1) > 1:
        fail(node, f"shape {shape} has more than one -1")
    if -1 in out:
        rest = numel([v for v in out if v != -1])
        out[out.index(-1)] = x.size // max(rest, 1)
    if numel(out) != x.size:
        fail(node, f"cannot reshape {list(x.shape)} to {shape}")
    set_out(node, graph, out)
    node.extra["alias"] = True


def emit(node, ctx):
    return []
