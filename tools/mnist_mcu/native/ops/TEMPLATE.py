# ruff: noqa: N999  (the name says what the file is: a template to copy)
"""TEMPLATE: copy this file to add an operator.  Adding one means this one file plus its tests.

1. Copy to ops/<opname>.py, rename the class, set OP_TYPES to the ONNX operator name(s) and
   add the module to _MODULES in ops/__init__.py (the registry is built from OPERATORS).
2. resolve(node, graph): check the number of inputs, which inputs must be constants
   (constant()), every attribute (check_attrs() rejects unknown ones by name), the input
   shapes; store what emission needs in node.params as a dataclass, and set the output
   shape with set_out().  Raise through fail(): the user sees one line naming the node.
3. emit_f32(node, ctx): the C statements (a list of strings) for model_run.  ctx.ptr(name)
   is a pointer to an activation's buffer, ctx.tensor_ptr(name) also places a constant in
   flash, ctx.const(hint, ctype, array) places an array in flash and returns its name.
   Call a kernel of the kernel library (firmware/lib/nnkernels, with a reference kernel and
   tests there), or, for rare general cases, emit a plain loop (see _common.index_loop).
4. int8 (optional; the base class rejects it in one line): int8_domain() says whether the
   output holds int8 codes ("q8") or float; calib_tensors() names tensors whose float range
   calibration must measure; quantize() computes the operator's own parameters (node.q, a
   dataclass) and graph.qparams[output] = (scale, zero point); emit_int8() emits the
   integer kernels; reference_int8() is the same integer arithmetic in numpy, which
   tests/test_native_ops.py compares with the generated C bit for bit.
5. Tests: a small onnx.helper graph in tests/test_native_ops.py (f32 vs onnxruntime; int8
   vs reference_int8 and the QDQ graph in onnxruntime), and the operator's ONNX node tests
   join tests/test_onnx_conformance.py automatically once it is in SUPPORTED.
"""

from dataclasses import dataclass

from ._common import activation, check_attrs, n_inputs, set_out
from .base import Operator


@dataclass
class MyOpParams:
    n: int


class MyOp(Operator):
    OP_TYPES = ("MyOp",)

    def resolve(self, node, graph):
        n_inputs(node, 1)
        check_attrs(node, {})
        x = activation(node, graph, 0)
        node.params = MyOpParams(x.size)
        set_out(node, graph, x.shape)

    def emit_f32(self, node, ctx):
        return [f"my_kernel_f32({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {node.params.n});"]


OPERATORS = (MyOp,)
