"""Add: activation + constant (broadcast to the activation's shape) or two
activations of the same shape.  A constant bias right after Gemm/MatMul/Conv is
folded into that layer by passes.fold_bias_add (then nothing is emitted)."""

import numpy as np

from ._common import check_attrs, fail, n_inputs, set_out

OP_TYPES = ("Add",)


def resolve(node, graph):
    n_inputs(node, 2)
    check_attrs(node, {})
    a, b = (graph.tensors[i] for i in node.inputs)
    if a.is_const and b.is_const:
        fail(node, "adding two constants is not supported (fold it in the exporter)")
    act, other = (b, a) if a.is_const else (a, b)
    try:
        out = np.broadcast_shapes(act.shape, other.shape)
    except ValueError:
        fail(node, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast")
    if tuple(out) != tuple(act.shape):
        fail(node, f"broadcasting {list(act.shape)} up to {list(out)} is not supported")
    if not other.is_const and tuple(other.shape) != tuple(act.shape):
        fail(node, "two activations must have the same shape")
    set_out(node, graph, act.shape)


def emit(node, ctx):
    g = ctx.graph
    if ctx.dtype != "f32":
        fail(node, "Add is only supported in int8 as a bias folded into Gemm/MatMul/Conv")
    a, b = (g.tensors[i] for i in node.inputs)
    act, other = (b, a) if a.is_const else (a, b)
    if other.is_const:
        full = np.broadcast_to(other.data.astype(np.float32), act.shape).reshape(-1)
        other_ptr = ctx.const("add", "float", full)
    else:
        other_ptr = ctx.ptr(other.name)
    return [f"nn_add_f32({ctx.ptr(act.name)}, {other_ptr}, {ctx.ptr(node.outputs[0])}, {act.size});"]
