"""Softmax over the last axis (opset < 13: over the flattened axes >= axis), with
the backend's deterministic exp so device and host agree bit for bit."""

from ._common import activation, check_attrs, fail, n_inputs, numel, set_out

OP_TYPES = ("Softmax",)
KERNEL = "nn_softmax_f32"


def resolve(node, graph):
    n_inputs(node, 1)
    check_attrs(node, {"axis": None})
    x = activation(node, graph, 0)
    r = len(x.shape)
    default = -1 if graph.opset >= 13 else 1
    axis = int(node.attrs.get("axis", default))
    if axis < 0:
        axis += r
    if not 0 <= axis < r:
        fail(node, f"axis {axis} out of range for rank {r}")
    if graph.opset >= 13 and axis != r - 1:
        fail(node, f"axis={axis} is not supported (only the last axis)")
    inner = numel(x.shape[axis:])
    node.extra["outer"], node.extra["inner"] = x.size // inner, inner
    set_out(node, graph, x.shape)


def emit(node, ctx):
    if ctx.dtype != "f32" and ctx.domain(node.inputs[0]) != "f32":
        fail(node, "internal error: softmax input is not dequantised")
    return [f"{KERNEL}({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, "
            f"{node.extra['outer']}, {node.extra['inner']});"]
