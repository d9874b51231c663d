"""MatMul with numpy semantics (1-D operands promoted, batch dimensions broadcast).
[1, K] x constant [K, N] becomes a Gemm (pass matmul_to_gemm, also in int8); every
other case calls nn_matmul_f32 per batch, f32 only."""

from dataclasses import dataclass

import numpy as np

from ._common import broadcast_strides, check_attrs, fail, index_loop, n_inputs, set_out
from .base import Operator


@dataclass
class MatMulParams:
    batch: tuple      # broadcast batch dimensions of the output
    m: int
    k: int
    n: int
    a_batch: tuple    # batch dims of A / B (before broadcasting)
    b_batch: tuple


class MatMul(Operator):
    OP_TYPES = ("MatMul",)

    def resolve(self, node, graph):
        n_inputs(node, 2)
        check_attrs(node, {})
        a, b = (graph.tensors[i] for i in node.inputs)
        if a.is_const and b.is_const:
            fail(node, "multiplying two constants is not supported (fold it in the exporter)")
        sa, sb = list(a.shape), list(b.shape)
        if not sa or not sb:
            fail(node, "scalar operands are not supported")
        a2 = [1] + sa if len(sa) == 1 else sa
        b2 = sb + [1] if len(sb) == 1 else sb
        if a2[-1] != b2[-2]:
            fail(node, f"shapes {sa} and {sb} do not multiply")
        try:
            batch = tuple(int(d) for d in np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
        except ValueError:
            fail(node, f"batch dimensions of {sa} and {sb} do not broadcast")
        m, k, n = a2[-2], a2[-1], b2[-1]
        node.params = MatMulParams(batch, m, k, n, tuple(a2[:-2]), tuple(b2[:-2]))
        out = list(batch) + ([m] if len(sa) > 1 else []) + ([n] if len(sb) > 1 else [])
        set_out(node, graph, out)

    def macs(self, node, graph):
        p = node.params
        return int(np.prod(p.batch, dtype=np.int64)) * p.m * p.k * p.n

    def emit_f32(self, node, ctx):
        p = node.params
        a, b = (ctx.tensor_ptr(i) for i in node.inputs)
        y = ctx.ptr(node.outputs[0])
        if not p.batch:
            return [f"nn_matmul_f32({a}, {b}, {y}, {p.m}, {p.k}, {p.n});"]
        sa = [s * p.m * p.k for s in broadcast_strides(p.a_batch, p.batch)]
        sb = [s * p.k * p.n for s in broadcast_strides(p.b_batch, p.batch)]
        return index_loop(p.batch, [("ia", sa), ("ib", sb)],
                          f"nn_matmul_f32({a} + ia, {b} + ib, {y} + i * {p.m * p.n}, {p.m}, {p.k}, {p.n});")


OPERATORS = (MatMul,)
