"""Gemm: Y = alpha * A' B' + beta * C with constant B (and C); A is [1, K].

Normalised in node.extra: W [N, K] float32 (alpha and transB applied), bias [N]
(beta applied), relu (fused by passes), input_u8 (normalisation folded in by passes).
f32 emission stores W input-major and visits only nonzero inputs; int8 emission
uses the pair-packed SMLAD kernel (weights one row per input pair, accumulators in
the output buffer).  Neither needs scratch memory.
"""

import numpy as np

from ._common import activation, check_attrs, constant, fail, n_inputs, set_out

OP_TYPES = ("Gemm",)


def resolve(node, graph):
    if node.extra.get("canonical"):      # built by a pass (e.g. from MatMul): W/bias already set
        set_out(node, graph, (1, node.extra["W"].shape[0]))
        return
    n_inputs(node, 2, 3)
    check_attrs(node, {"alpha": None, "beta": None, "transA": (0,), "transB": (0, 1)})
    a = activation(node, graph, 0)
    if len(a.shape) != 2 or a.shape[0] != 1:
        fail(node, f"input A must be [1, K] (one image), got {list(a.shape)}")
    b = constant(node, graph, 1, "B (weights)")
    if b is None or b.ndim != 2:
        fail(node, "B must be a 2-D constant")
    w = b.T if node.attrs.get("transB", 0) == 0 else b
    if w.shape[1] != a.shape[1]:
        fail(node, f"A is [1, {a.shape[1]}] but B gives K={w.shape[1]}")
    n = w.shape[0]
    c = constant(node, graph, 2, "C (bias)")
    bias = np.zeros(n, np.float32)
    if c is not None:
        try:
            bias = np.broadcast_to(c.astype(np.float32), (1, n)).reshape(n).copy()
        except ValueError:
            fail(node, f"C of shape {list(c.shape)} does not broadcast to [1, {n}]")
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    node.extra.setdefault("W", (np.float32(alpha) * w).astype(np.float32))
    node.extra.setdefault("bias", (np.float32(beta) * bias).astype(np.float32))
    node.extra.setdefault("relu", False)
    node.extra["canonical"] = True
    set_out(node, graph, (1, n))


def folded_f32(node, graph):
    """Weights/bias with the input normalisation folded in (raw pixel input)."""
    w = node.extra["W"].astype(np.float64)
    b = node.extra["bias"].astype(np.float64)
    if not node.extra.get("input_u8"):
        return node.extra["W"], node.extra["bias"]
    a = 1.0 / (graph.scale * graph.std)
    c = -graph.mean / graph.std
    return (w * a).astype(np.float32), (b + c * w.sum(axis=1)).astype(np.float32)


def out_bytes(node, ctx):
    """int8: the int32 accumulators live in the output buffer (requantised in place)."""
    return 4 * node.extra["W"].shape[0] if ctx.dtype == "int8" else 0


def emit(node, ctx):
    g = ctx.graph
    k = g.tensors[node.inputs[0]].size
    n = node.extra["W"].shape[0]
    relu = int(bool(node.extra.get("relu")))
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if ctx.dtype == "f32":
        w, b = folded_f32(node, g)
        wt = ctx.const("wt", "float", np.ascontiguousarray(w.T))
        bb = ctx.const("b", "float", b)
        fn = "nn_dense_u8_f32" if node.extra.get("input_u8") else "nn_dense_f32"
        return [f"{fn}({x}, {wt}, {bb}, {y}, {k}, {n}, {relu});"]
    q = node.extra["q"]
    words = ctx.const("w", "uint32_t", q["words"])
    bias = ctx.const("bq", "int32_t", q["bias"])
    acc = ctx.acc_ptr(node.outputs[0])
    if q["input"] == "u8":
        lines = [f"nn_dense_pairs_u8({x}, {k}, {words}, {q['nw']}, {bias}, {acc}, {n});"]
    else:
        lines = [f"nn_dense_pairs_s8({x}, {q['zx']}, {k}, {words}, {q['nw']}, {bias}, {acc}, {n});"]
    lines += epilogue(ctx, q, acc, y, n, 1)
    return lines


def epilogue(ctx, q, acc, y, n_ch, inner):
    """int32 accumulators -> requantised int8, or dequantised float."""
    if q["output"] == "f32":
        sc = ctx.const("dq", "float", q["dq_scale"])
        return [f"nn_dequant_ch_f32({acc}, {y}, {n_ch}, {inner}, {sc}, {int(q['relu'])});"]
    m = ctx.const("mult", "int32_t", q["mult"])
    s = ctx.const("shift", "int8_t", q["shift"])
    return [f"nn_requant_ch_s8({acc}, {y}, {n_ch}, {inner}, {m}, {s}, {q['zy']}, {q['lo']}, {q['hi']});"]
