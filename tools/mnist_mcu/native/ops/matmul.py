"""MatMul: [1, K] x constant [K, N] becomes a Gemm (pass matmul_to_gemm); two
2-D activations use the plain float kernel (f32 only)."""

from ._common import fail, n_inputs, set_out, check_attrs

OP_TYPES = ("MatMul",)


def resolve(node, graph):
    n_inputs(node, 2)
    check_attrs(node, {})
    a, b = (graph.tensors[i] for i in node.inputs)
    if a.is_const:
        fail(node, "a constant first input is not supported")
    if len(a.shape) != 2 or len(b.shape) != 2:
        fail(node, f"only 2-D operands are supported, got {list(a.shape)} x {list(b.shape)}")
    if a.shape[1] != b.shape[0]:
        fail(node, f"shapes {list(a.shape)} and {list(b.shape)} do not multiply")
    set_out(node, graph, (a.shape[0], b.shape[1]))


def emit(node, ctx):
    if ctx.dtype != "f32":
        fail(node, "MatMul of two activations is not supported in int8")
    a, b = (ctx.graph.tensors[i] for i in node.inputs)
    return [f"nn_matmul_f32({ctx.ptr(a.name)}, {ctx.ptr(b.name)}, {ctx.ptr(node.outputs[0])}, "
            f"{a.shape[0]}, {a.shape[1]}, {b.shape[1]});"]
