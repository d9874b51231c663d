"""Relu: usually fused into the preceding Gemm/Conv by passes.fuse_relu; a
standalone Relu is an elementwise max(x, 0) (in int8: max(q, zero_point))."""

from ._common import activation, check_attrs, n_inputs, set_out

OP_TYPES = ("Relu",)


def resolve(node, graph):
    n_inputs(node, 1)
    check_attrs(node, {})
    set_out(node, graph, activation(node, graph, 0).shape)


def emit(node, ctx):
    n = ctx.graph.tensors[node.inputs[0]].size
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if ctx.dtype == "f32" or ctx.domain(node.inputs[0]) == "f32":
        return [f"nn_relu_f32({x}, {y}, {n});"]
    return [f"nn_relu_s8({x}, {y}, {n}, {ctx.q(node.inputs[0])[1]});"]
