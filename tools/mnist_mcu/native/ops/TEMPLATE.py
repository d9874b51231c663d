"""TEMPLATE: copy this file to add an operator (onnx2c style: resolve + emit).

1. Copy to ops/<opname>.py and set OP_TYPES to the ONNX operator name(s).
2. resolve(node, graph): check the number of inputs, which inputs must be
   constants, every attribute (call check_attrs so unknown attributes are
   rejected by name), the input shapes; then set the output shape(s) with
   set_out().  Raise through fail() so the user sees one line naming the node.
   Put anything the emitter needs (normalised weights, geometry) in node.extra.
3. emit(node, ctx): return the C statements (a list of strings) for model_run.
   ctx.ptr(name) gives a pointer expression to a tensor's buffer, ctx.const(hint,
   ctype, array) places a constant array in flash and returns its name,
   ctx.scratch(ctype, n) returns a shared scratch array, ctx.dtype is "f32" or
   "int8" (in int8 mode ctx.domain(name) is "u8", "q8" or "f32" and ctx.q(name)
   returns (scale, zero_point)).  Put the arithmetic in runtime/nn_*.c as a
   reference kernel (and, if worth it, an optimised kernel with a test comparing
   the two: tests/test_native_kernels.py).
4. Register the module in ops/__init__.py, add a test with a small onnx.helper
   graph in tests/test_native_ops.py, and, for int8, the integer arithmetic to
   quantize.py (parameters and the numpy reference).
"""

from ._common import check_attrs, fail, n_inputs, set_out  # noqa: F401

OP_TYPES = ("MyOp",)


def resolve(node, graph):
    n_inputs(node, 1)
    check_attrs(node, {})
    x = graph.tensors[node.inputs[0]]
    set_out(node, graph, x.shape)


def emit(node, ctx):
    if ctx.dtype != "f32":
        fail(node, "int8 is not supported for this operator")
    n = ctx.graph.tensors[node.outputs[0]].size
    return [f"my_kernel_f32({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {n});"]
