"""The contract every operator implements (onnx2c style: one class per operator).

    resolve(node, graph)          check inputs, attributes, shapes; set node.params (a dataclass)
                                  and the output shape
    macs(node, graph)             multiply-accumulates per inference (the per-layer profile's work
                                  figure; 0, the default, for elementwise operators)
    emit_f32(node, ctx)           C statements for --dtype f32 (or for a float tensor in an int8 model)
    int8_domain(node, graph)      the output's domain in an int8 model: "q8" (int8 codes) or "f32"
    calib_tensors(node, graph)    tensors whose float range calibration must measure
    quantize(node, graph, ranges) int8 parameters of its own (node.q, graph.qparams of its output)
    emit_int8(node, ctx)          C statements for --dtype int8
    reference_int8(node, graph, x) the same integer arithmetic in numpy (x: its first input, batch first)

The defaults reject int8 with one line naming the operator.
"""

from __future__ import annotations

from ._common import fail


class Operator:
    OP_TYPES: tuple = ()
    IN_PLACE = False      # the kernel may write its output over its first input, element for element
    CONST_INPUTS: tuple = ()   # input positions that must be compile-time constants
    INT_INPUTS: tuple = ()     # input positions that may be int64 (e.g. a shape)

    def resolve(self, node, graph) -> None:
        raise NotImplementedError

    def emit_f32(self, node, ctx) -> list[str]:
        raise NotImplementedError

    def macs(self, node, graph) -> int:
        return 0

    def out_bytes(self, node, ctx) -> int:
        """Bytes the output buffer needs beyond the output itself (e.g. int32 accumulators)."""
        return 0

    # ---- int8
    def int8_domain(self, node, graph) -> str:
        fail(node, "not supported with --dtype int8 (use --dtype f32)")
        return ""

    def calib_tensors(self, node, graph) -> list[str]:
        return []

    def quantize(self, node, graph, ranges: dict) -> None:
        pass

    def emit_int8(self, node, ctx) -> list[str]:
        fail(node, "not supported with --dtype int8 (use --dtype f32)")
        return []

    def reference_int8(self, node, graph, x):
        fail(node, "no int8 reference")
