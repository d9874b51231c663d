"""Add with numpy broadcasting.  A constant bias right after Gemm/MatMul/Conv is folded
into that layer by passes.fold_bias_add (then nothing is emitted); an activation plus
a constant of its shape (or two activations of one shape) uses nn_add_f32; any other
broadcast is a loop.  f32 only (int8 only as a folded bias)."""

import numpy as np

from ._common import broadcast_strides, check_attrs, fail, index_loop, n_inputs, set_out
from .base import Operator


class Add(Operator):
    OP_TYPES = ("Add",)

    def resolve(self, node, graph):
        n_inputs(node, 2)
        check_attrs(node, {})
        a, b = (graph.tensors[i] for i in node.inputs)
        if a.is_const and b.is_const:
            fail(node, "adding two constants is not supported (fold it in the exporter)")
        try:
            out = tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            fail(node, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast")
        set_out(node, graph, out)

    def emit_f32(self, node, ctx):
        g = ctx.graph
        a, b = (g.tensors[i] for i in node.inputs)
        out = g.tensors[node.outputs[0]].shape
        act, other = (b, a) if a.is_const else (a, b)
        y = ctx.ptr(node.outputs[0])
        if tuple(act.shape) == tuple(out) and (other.is_const or tuple(other.shape) == tuple(out)):
            if other.is_const:
                full = np.broadcast_to(other.data.astype(np.float32), act.shape).reshape(-1)
                other_ptr = ctx.const("add", "float", full)
            else:
                other_ptr = ctx.ptr(other.name)
            return [f"nn_add_f32({ctx.ptr(act.name)}, {other_ptr}, {y}, {act.size});"]
        pa, pb = ctx.tensor_ptr(a.name), ctx.tensor_ptr(b.name)
        return index_loop(out, [("ia", broadcast_strides(a.shape, out)), ("ib", broadcast_strides(b.shape, out))],
                          f"{y}[i] = {pa}[ia] + {pb}[ib];")


OPERATORS = (Add,)
