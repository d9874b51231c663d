"""int8 building blocks shared by the operators (TFLite-like scheme, see quantize.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError

I32_MIN, I32_MAX = -2**31, 2**31 - 1


def quantize_multiplier(r: float) -> tuple[int, int]:
    """real multiplier r > 0 -> (M, S) with r ~= M * 2^-S."""
    r = float(r)
    if r <= 0:
        return 0, 1
    m, e = np.frexp(r)
    mi = round(m * (1 << 31))
    if mi == 1 << 31:
        mi //= 2
        e += 1
    s = 31 - int(e)
    if s > 62:
        mi >>= (s - 62)
        s = 62
    if s < 1:
        raise UserError(f"requantisation multiplier {r:g} is out of range; the model's ranges are degenerate")
    return mi, s


def qparams_from_range(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 symmetric per output channel (axis 0): (wq like w, scales [channels])."""
    wr = w.reshape(w.shape[0], -1).astype(np.float64)
    sw = np.abs(wr).max(axis=1) / 127.0
    sw[sw == 0] = 1.0
    wq = np.clip(np.round(wr / sw[:, None]), -127, 127).astype(np.int8)
    return wq.reshape(w.shape), sw


def requant_ref(acc, mult, shift, zy, lo, hi):
    """Mirror of nn_requant + clamps; acc int64 broadcastable with mult/shift."""
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    p = (acc.astype(np.int64) * mult + (np.int64(1) << (shift - 1))) >> shift
    p = np.clip(p, I32_MIN, I32_MAX)
    p = np.clip(p, -0x10000, 0x10000)
    return np.clip(p + zy, lo, hi).astype(np.int8)


@dataclass
class LayerQ:
    """int8 parameters of a Gemm/Conv: int8 weights, int32 bias, and either a requantisation
    to int8 (output "q8") or a dequantisation of the accumulators to float (output "f32")."""
    wq: np.ndarray            # int8, the layer's weight layout (output channel first)
    w_scale: np.ndarray       # float64 [channels]
    bias: np.ndarray          # int32 [channels], at scale s_in * w_scale
    s_in: float
    zx: int
    input: str                # "u8" raw pixels (normalisation folded into bias) | "q8"
    relu: bool
    output: str               # "q8" | "f32"
    dq_scale: np.ndarray | None = None   # output f32: s_in * w_scale as float32
    zy: int = 0
    lo: int = -128
    hi: int = 127
    mult: np.ndarray | None = None       # output q8: fixed-point multipliers and shifts
    shift: np.ndarray | None = None

    def epilogue_ref(self, acc: np.ndarray) -> np.ndarray:
        """acc int64 [N, channels, inner] -> int8 codes or float."""
        if self.output == "f32":
            assert self.dq_scale is not None
            a = np.maximum(acc, 0) if self.relu else acc
            return (a.astype(np.float32) * self.dq_scale.astype(np.float32)[None, :, None]).astype(np.float32)
        assert self.mult is not None and self.shift is not None
        return requant_ref(acc, self.mult.astype(np.int64)[None, :, None], self.shift.astype(np.int64)[None, :, None],
                           self.zy, self.lo, self.hi)


def quantize_layer(node, graph, w: np.ndarray, bias: np.ndarray, relu: bool, ranges: dict) -> LayerQ:
    """Quantise one Gemm/Conv (w [channels, ...] float32, bias [channels]) and record its output's
    (scale, zero point) in graph.qparams."""
    from ..passes import alias_root

    out = node.outputs[0]
    src = alias_root(graph, node.inputs[0])
    b = bias.astype(np.float64)
    if graph.domains[src] == "u8":      # raw pixels: fold (p/scale - mean)/std into the bias
        s_in, zx, kind = 1.0 / (graph.scale * graph.std), 0, "u8"
        b = b + (-graph.mean / graph.std) * w.astype(np.float64).reshape(w.shape[0], -1).sum(axis=1)
    else:
        (s_in, zx), kind = graph.qparams[src], "q8"
    wq, sw = quantize_weights(w)
    s_acc = s_in * sw
    bq = np.clip(np.round(b / s_acc), I32_MIN, I32_MAX).astype(np.int64).astype(np.int32)
    q = LayerQ(wq=wq, w_scale=sw, bias=bq, s_in=float(s_in), zx=int(zx), input=kind, relu=bool(relu),
               output=graph.domains[out])
    if q.output == "f32":
        q.dq_scale = s_acc.astype(np.float32)
        return q
    lo, hi = ranges[out]
    sy, zy = qparams_from_range(0.0 if relu else lo, hi)
    graph.qparams[out] = (sy, zy)
    ms = [quantize_multiplier(v / sy) for v in s_acc]
    q.zy, q.hi = int(zy), 127
    q.lo = int(max(zy, -128)) if relu else -128
    q.mult = np.array([m for m, _ in ms], np.int32)
    q.shift = np.array([s for _, s in ms], np.int8)
    return q


def layer_domain(node, graph) -> str:
    """A Gemm/Conv writes float when only Softmax/LogSoftmax read it (dequantised accumulators),
    else int8 codes."""
    from ..passes import alias_root, consumers_through_views

    out = node.outputs[0]
    cons = consumers_through_views(graph, out)
    is_out = alias_root(graph, graph.output) == out
    only_softmax = all(c.op in ("Softmax", "LogSoftmax") for c in cons)
    return "f32" if (cons or is_out) and only_softmax else "q8"


def emit_epilogue(ctx, q: LayerQ, acc: str, y: str, n_ch: int, inner: int) -> list[str]:
    """int32 accumulators -> requantised int8, or dequantised float."""
    if q.output == "f32":
        sc = ctx.const("dq", "float", q.dq_scale)
        return [f"nn_dequant_ch_f32({acc}, {y}, {n_ch}, {inner}, {sc}, {int(q.relu)});"]
    m = ctx.const("mult", "int32_t", q.mult)
    s = ctx.const("shift", "int8_t", q.shift)
    return [f"nn_requant_ch_s8({acc}, {y}, {n_ch}, {inner}, {m}, {s}, {q.zy}, {q.lo}, {q.hi});"]
