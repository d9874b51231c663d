"""Conv: 2-D, NCHW, one image, constant weights [M, C, KH, KW] and bias, group 1,
dilation 1, any stride and padding (padding is a real 0: skipped, also in int8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import activation, check_attrs, constant, fail, n_inputs, pads_2d, set_out
from ._int8 import LayerQ, layer_domain, quantize_layer
from .base import Operator


@dataclass
class ConvGeom:
    C: int
    H: int
    W: int
    M: int
    KH: int
    KW: int
    OH: int
    OW: int
    sh: int
    sw: int
    pt: int
    pl: int

    def args(self) -> str:
        return ", ".join(str(v) for v in self.__dict__.values())


@dataclass
class ConvParams:
    W: np.ndarray        # [M, C, KH, KW] float32
    bias: np.ndarray     # [M] float32
    geom: ConvGeom
    relu: bool = False


class Conv(Operator):
    OP_TYPES = ("Conv",)
    CONST_INPUTS = (1, 2)

    def resolve(self, node, graph):
        n_inputs(node, 2, 3)
        check_attrs(node, {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                           "group": (1,), "auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")})
        x = activation(node, graph, 0)
        if len(x.shape) != 4 or x.shape[0] != 1:
            fail(node, f"only 2-D convolution on [1, C, H, W] is supported, got {list(x.shape)}")
        w = constant(node, graph, 1, "W (weights)")
        if w is None or w.ndim != 4:
            fail(node, "W must be a constant [M, C, KH, KW]")
        if w.shape[1] != x.shape[1]:
            fail(node, f"W has {w.shape[1]} input channels, X has {x.shape[1]}")
        ks = tuple(node.attrs.get("kernel_shape", w.shape[2:]))
        if ks != tuple(w.shape[2:]):
            fail(node, f"kernel_shape {list(ks)} does not match W {list(w.shape)}")
        dil = tuple(node.attrs.get("dilations", (1, 1)))
        if dil != (1, 1):
            fail(node, f"dilations={list(dil)} is not supported (only 1)")
        st = tuple(node.attrs.get("strides", (1, 1)))
        if len(st) != 2 or min(st) < 1:
            fail(node, f"strides={list(st)} is not supported")
        _, c, h, wd = x.shape
        pt, pl, pb, pr = pads_2d(node, (h, wd), ks, st)
        oh = (h + pt + pb - ks[0]) // st[0] + 1
        ow = (wd + pl + pr - ks[1]) // st[1] + 1
        if oh < 1 or ow < 1:
            fail(node, "the kernel is larger than the padded input")
        m = w.shape[0]
        b = constant(node, graph, 2, "B (bias)")
        geom = ConvGeom(c, h, wd, m, ks[0], ks[1], oh, ow, st[0], st[1], pt, pl)
        if isinstance(node.params, ConvParams):    # second resolve: keep what the passes folded in
            node.params.geom = geom
        else:
            bias = np.zeros(m, np.float32) if b is None else b.astype(np.float32).reshape(m)
            node.params = ConvParams(w.astype(np.float32), bias, geom)
        set_out(node, graph, (1, m, oh, ow))

    def emit_f32(self, node, ctx):
        p = node.params
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        w = ctx.const("w", "float", p.W.reshape(-1))
        b = ctx.const("b", "float", p.bias)
        return [f"nn_conv2d_f32({x}, {w}, {b}, {y}, {p.geom.args()}, {int(p.relu)});"]

    # ---- int8
    def int8_domain(self, node, graph):
        from ..passes import alias_root

        if graph.domains.get(alias_root(graph, node.inputs[0])) == "u8":
            fail(node, "internal error: raw pixels reach a Conv")
        return layer_domain(node, graph)

    def calib_tensors(self, node, graph):
        return [node.outputs[0]] if graph.domains[node.outputs[0]] == "q8" else []

    def quantize(self, node, graph, ranges):
        p = node.params
        node.q = quantize_layer(node, graph, p.W, p.bias, p.relu, ranges)

    def emit_int8(self, node, ctx):
        p, q = node.params, node.q
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        w = ctx.const("w", "int8_t", q.wq.reshape(-1))
        b = ctx.const("bq", "int32_t", q.bias)
        g = p.geom.args()
        if q.output == "f32":
            sc = ctx.const("dq", "float", q.dq_scale)
            return [f"nn_conv2d_s8({x}, {q.zx}, {w}, {b}, {g}, 0, 0, 0, -128, 127, 0, {sc}, {y}, {int(q.relu)});"]
        m = ctx.const("mult", "int32_t", q.mult)
        s = ctx.const("shift", "int8_t", q.shift)
        return [f"nn_conv2d_s8({x}, {q.zx}, {w}, {b}, {g}, {m}, {s}, {q.zy}, {q.lo}, {q.hi}, {y}, 0, 0, 0);"]

    def reference_int8(self, node, graph, x):
        g, q = node.params.geom, node.q
        return q.epilogue_ref(conv_acc_ref(x.reshape(len(x), g.C, g.H, g.W), q, g))


def conv_acc_ref(x: np.ndarray, q: LayerQ, g: ConvGeom) -> np.ndarray:
    """x int [N, C, H, W] -> int32 accumulators as int64 [N, M, OH*OW] (padding is a real zero)."""
    n = x.shape[0]
    xo = x.astype(np.int64) - q.zx
    ph = np.zeros((n, g.C, g.H + g.pt + g.KH + g.sh * g.OH, g.W + g.pl + g.KW + g.sw * g.OW), np.int64)
    ph[:, :, g.pt:g.pt + g.H, g.pl:g.pl + g.W] = xo
    wq = q.wq.astype(np.int64)
    acc = np.zeros((n, g.M, g.OH, g.OW), np.int64)
    for ky in range(g.KH):
        for kx in range(g.KW):
            patch = ph[:, :, ky:ky + g.sh * g.OH:g.sh, kx:kx + g.sw * g.OW:g.sw]
            acc += np.einsum("nchw,mc->nmhw", patch, wq[:, :, ky, kx])
    acc += q.bias.astype(np.int64)[None, :, None, None]
    return acc.reshape(n, g.M, -1)


OPERATORS = (Conv,)
