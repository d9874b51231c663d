"""Gemm: Y = alpha * A' B' + beta * C.

Fast path (the MNIST layers), params `Dense`: A is one row [1, K], B and C constant;
W [N, K] float32 (alpha and transB applied), bias [N] (beta applied), relu (fused by
passes), input_u8 (normalisation folded in by passes).  f32 emission stores W
input-major and visits only nonzero inputs; int8 emission uses the pair-packed SMLAD
kernel (weights one row per input pair, accumulators in the output buffer).

Anything else (A with M rows, transA, B or C computed at run time, C broadcast),
params `GemmGeneral`: a plain loop in f32; int8 rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    activation,
    broadcast_strides,
    check_attrs,
    fail,
    index_loop,
    n_inputs,
    set_out,
)
from ._int8 import LayerQ, emit_epilogue, layer_domain, quantize_layer
from .base import Operator


@dataclass
class Dense:
    W: np.ndarray            # [N, K] float32
    bias: np.ndarray         # [N] float32
    relu: bool = False
    input_u8: bool = False   # raw pixels in: (p/scale - mean)/std folded into W and bias


@dataclass
class GemmGeneral:
    M: int
    K: int
    N: int
    trans_a: bool
    trans_b: bool
    alpha: float
    beta: float
    c_shape: tuple | None


@dataclass
class DenseQ(LayerQ):
    words: np.ndarray | None = None    # pair-packed weights [ceil(K/2), ceil(N/2)] (nn_dense_pairs_*)
    nw: int = 0


def pack_pairs(wq: np.ndarray) -> np.ndarray:
    """int8 [N, K] -> uint32 words [ceil(N/2), ceil(K/2)]: w[o][2k], w[o+1][2k], w[o][2k+1], w[o+1][2k+1].

    The bytes of even outputs o are stored + 128 (bit 7 flipped): the kernels' SMLAD then
    takes the raw word (nn_dense_s8.c) and sign-extends only the odd bytes."""
    n, k = wq.shape
    p = np.zeros((n + (n & 1), k + (k & 1)), np.int8)
    p[:n, :k] = wq
    b = p.view(np.uint8).astype(np.uint32)
    b0, b1 = b[0::2, 0::2] ^ 0x80, b[1::2, 0::2]
    b2, b3 = b[0::2, 1::2] ^ 0x80, b[1::2, 1::2]
    return (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)).astype(np.uint32)


class Gemm(Operator):
    OP_TYPES = ("Gemm",)

    def resolve(self, node, graph):
        if isinstance(node.params, Dense):      # already normalised (first resolve, or built by a pass)
            set_out(node, graph, (1, node.params.W.shape[0]))
            return
        n_inputs(node, 2, 3)
        check_attrs(node, {"alpha": None, "beta": None, "transA": (0, 1), "transB": (0, 1)})
        a = activation(node, graph, 0)
        b = graph.tensors[node.inputs[1]]
        c = graph.tensors[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
        if len(a.shape) != 2 or len(b.shape) != 2:
            fail(node, f"A and B must be 2-D, got {list(a.shape)} and {list(b.shape)}")
        ta, tb = bool(node.attrs.get("transA", 0)), bool(node.attrs.get("transB", 0))
        m, k = a.shape[::-1] if ta else a.shape
        kb, n = b.shape[::-1] if tb else b.shape
        if k != kb:
            fail(node, f"A is {list(a.shape)} but B gives K={kb}")
        if c is not None:
            try:
                if tuple(np.broadcast_shapes(c.shape, (m, n))) != (m, n):
                    raise ValueError
            except ValueError:
                fail(node, f"C of shape {list(c.shape)} does not broadcast to [{m}, {n}]")
        alpha = float(node.attrs.get("alpha", 1.0))
        beta = float(node.attrs.get("beta", 1.0))
        if m == 1 and not ta and b.is_const and (c is None or c.is_const):
            w = b.data.T if not tb else b.data
            bias = np.zeros(n, np.float32)
            if c is not None:
                bias = np.broadcast_to(c.data.astype(np.float32), (1, n)).reshape(n).copy()
            node.params = Dense((np.float32(alpha) * w).astype(np.float32),
                                (np.float32(beta) * bias).astype(np.float32))
        else:
            node.params = GemmGeneral(m, k, n, ta, tb, alpha, beta, None if c is None else tuple(c.shape))
        set_out(node, graph, (m, n))

    def emit_f32(self, node, ctx):
        p = node.params
        if isinstance(p, GemmGeneral):
            return self._emit_general(node, ctx, p)
        k = ctx.graph.tensors[node.inputs[0]].size
        w, b = folded_f32(p, ctx.graph)
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        wt = ctx.const("wt", "float", np.ascontiguousarray(w.T))
        bb = ctx.const("b", "float", b)
        fn = "nn_dense_u8_f32" if p.input_u8 else "nn_dense_f32"
        return [f"{fn}({x}, {wt}, {bb}, {y}, {k}, {p.W.shape[0]}, {int(p.relu)});"]

    def _emit_general(self, node, ctx, p: GemmGeneral):
        a, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        b = ctx.tensor_ptr(node.inputs[1])
        ai = f"k * {p.M} + m" if p.trans_a else f"m * {p.K} + k"
        bi = f"n * {p.K} + k" if p.trans_b else f"k * {p.N} + n"
        lines = ["{", f"    for (int m = 0; m < {p.M}; m++) for (int n = 0; n < {p.N}; n++) {{",
                 "        float s = 0.0f;",
                 f"        for (int k = 0; k < {p.K}; k++) s += {a}[{ai}] * {b}[{bi}];",
                 f"        {y}[m * {p.N} + n] = {ctx.fmt_float(p.alpha)} * s;", "    }", "}"]
        if p.c_shape is not None and p.beta != 0.0:
            c = ctx.tensor_ptr(node.inputs[2])
            lines += index_loop((p.M, p.N), [("ic", broadcast_strides(p.c_shape, (p.M, p.N)))],
                                f"{y}[i] += {ctx.fmt_float(p.beta)} * {c}[ic];")
        return lines

    def macs(self, node, graph):
        p = node.params
        return p.W.size if isinstance(p, Dense) else p.M * p.K * p.N

    def out_bytes(self, node, ctx):
        """int8: the int32 accumulators live in the output buffer (requantised in place)."""
        return 4 * node.params.W.shape[0] if ctx.dtype == "int8" else 0

    # ---- int8
    def int8_domain(self, node, graph):
        if not isinstance(node.params, Dense):
            fail(node, "with --dtype int8 only A [1, K] times a constant B is supported")
        return layer_domain(node, graph)

    def calib_tensors(self, node, graph):
        return [node.outputs[0]] if graph.domains[node.outputs[0]] == "q8" else []

    def quantize(self, node, graph, ranges):
        p = node.params
        base = quantize_layer(node, graph, p.W, p.bias, p.relu, ranges)
        q = DenseQ(**base.__dict__)
        # one row of words per input pair (nn_dense_pairs_*): [ceil(K/2), ceil(N/2)]
        q.words = np.ascontiguousarray(pack_pairs(q.wq).T)
        q.nw = q.words.shape[1]
        node.q = q

    def emit_int8(self, node, ctx):
        q = node.q
        k = ctx.graph.tensors[node.inputs[0]].size
        n = node.params.W.shape[0]
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        words = ctx.const("w", "uint32_t", q.words)
        bias = ctx.const("bq", "int32_t", q.bias)
        acc = ctx.acc_ptr(node.outputs[0])
        if q.input == "u8":
            lines = [f"nn_dense_pairs_u8({x}, {k}, {words}, {q.nw}, {bias}, {acc}, {n});"]
        else:
            lines = [f"nn_dense_pairs_s8({x}, {q.zx}, {k}, {words}, {q.nw}, {bias}, {acc}, {n});"]
        return lines + emit_epilogue(ctx, q, acc, y, n, 1)

    def reference_int8(self, node, graph, x):
        q = node.q
        xo = x.reshape(len(x), -1).astype(np.int64) - q.zx
        acc = xo @ q.wq.astype(np.int64).T + q.bias.astype(np.int64)
        return q.epilogue_ref(acc[:, :, None])


def folded_f32(p: Dense, graph) -> tuple[np.ndarray, np.ndarray]:
    """Weights/bias with the input normalisation folded in (raw pixel input)."""
    if not p.input_u8:
        return p.W, p.bias
    w = p.W.astype(np.float64)
    b = p.bias.astype(np.float64)
    a = 1.0 / (graph.scale * graph.std)
    c = -graph.mean / graph.std
    return (w * a).astype(np.float32), (b + c * w.sum(axis=1)).astype(np.float32)


OPERATORS = (Gemm,)
