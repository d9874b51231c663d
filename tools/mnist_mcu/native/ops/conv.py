"""Conv with constant weights [M, C/group, *kernel] and bias; padding is a real 0 (skipped).

The MNIST case (one image, 2-D, group 1, dilation 1; any stride and padding) calls the
kernels nn_conv2d_f32 / nn_conv2d_s8 (geometry `ConvGeom`); anything else (batch, 1-D/3-D,
groups, dilations: `ConvNd`) is a plain loop, f32 only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    activation,
    check_attrs,
    constant,
    fail,
    n_inputs,
    out_dim,
    pads_nd,
    set_out,
    strides,
)
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
class ConvNd:
    N: int
    C: int
    M: int
    group: int
    spatial: tuple
    kernel: tuple
    strides: tuple
    dilations: tuple
    pads: tuple          # at the start of each spatial dim
    out: tuple


@dataclass
class ConvParams:
    W: np.ndarray        # [M, C/group, *kernel] float32
    bias: np.ndarray     # [M] float32
    geom: ConvGeom | ConvNd
    relu: bool = False


class Conv(Operator):
    OP_TYPES = ("Conv",)
    CONST_INPUTS = (1, 2)

    def resolve(self, node, graph):
        n_inputs(node, 2, 3)
        check_attrs(node, {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                           "group": None, "auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")})
        x = activation(node, graph, 0)
        nd = len(x.shape) - 2
        w = constant(node, graph, 1, "W (weights)")
        if nd < 1 or w is None or w.ndim != nd + 2:
            fail(node, f"X {list(x.shape)} and W must be [N, C, *spatial] and a constant [M, C/group, *kernel]")
        group = int(node.attrs.get("group", 1))
        n, c, m = x.shape[0], x.shape[1], w.shape[0]
        if group < 1 or c % group or m % group or w.shape[1] * group != c:
            fail(node, f"group={group} does not fit X with {c} channels and W {list(w.shape)}")
        ks = tuple(node.attrs.get("kernel_shape", w.shape[2:]))
        if ks != tuple(w.shape[2:]):
            fail(node, f"kernel_shape {list(ks)} does not match W {list(w.shape)}")
        st = tuple(node.attrs.get("strides", (1,) * nd))
        dil = tuple(node.attrs.get("dilations", (1,) * nd))
        if len(st) != nd or len(dil) != nd or min(st + dil) < 1:
            fail(node, f"strides={list(st)} / dilations={list(dil)} are not supported")
        spatial = tuple(x.shape[2:])
        begin, end = pads_nd(node, spatial, ks, st, dil)
        out = tuple(out_dim(spatial[d], ks[d], st[d], dil[d], begin[d], end[d]) for d in range(nd))
        if min(out) < 1:
            fail(node, "the kernel is larger than the padded input")
        if n == 1 and nd == 2 and group == 1 and dil == (1, 1):
            geom: ConvGeom | ConvNd = ConvGeom(c, spatial[0], spatial[1], m, ks[0], ks[1], out[0], out[1],
                                               st[0], st[1], begin[0], begin[1])
        else:
            geom = ConvNd(n, c, m, group, spatial, ks, st, dil, tuple(begin), out)
        if isinstance(node.params, ConvParams):    # second resolve: keep what the passes folded in
            node.params.geom = geom
        else:
            b = constant(node, graph, 2, "B (bias)")
            bias = np.zeros(m, np.float32) if b is None else b.astype(np.float32).reshape(m)
            node.params = ConvParams(w.astype(np.float32), bias, geom)
        set_out(node, graph, (n, m, *out))

    def macs(self, node, graph):
        """Each output element takes C/group x kernel multiply-accumulates."""
        return graph.tensors[node.outputs[0]].size * int(np.prod(node.params.W.shape[1:]))

    def emit_f32(self, node, ctx):
        p = node.params
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        w = ctx.const("w", "float", p.W.reshape(-1))
        b = ctx.const("b", "float", p.bias)
        if isinstance(p.geom, ConvNd):
            return _loop(p.geom, x, w, b, y, p.relu)
        return [f"nn_conv2d_f32({x}, {w}, {b}, {y}, {p.geom.args()}, {int(p.relu)});"]

    # ---- int8
    def int8_domain(self, node, graph):
        from ..passes import alias_root

        if isinstance(node.params.geom, ConvNd):
            fail(node, "with --dtype int8 only 2-D convolution of one image, group 1, dilation 1")
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


def _loop(g: ConvNd, x: str, w: str, b: str, y: str, relu: bool) -> list[str]:
    nd = len(g.spatial)
    cg, mg = g.C // g.group, g.M // g.group
    ist, ost, kst = strides(g.spatial), strides(g.out), strides(g.kernel)
    isz, osz, ksz = (int(np.prod(v)) for v in (g.spatial, g.out, g.kernel))
    lines = ["{", f"    for (int n = 0; n < {g.N}; n++) for (int m = 0; m < {g.M}; m++) {{",
             f"        const float *xg = {x} + (n * {g.C} + (m / {mg}) * {cg}) * {isz};",
             f"        const float *wm = {w} + m * {cg * ksz};",
             f"        float *yp = {y} + (n * {g.M} + m) * {osz};"]
    ind = "        "
    lines += [f"{ind}for (int o{d} = 0; o{d} < {g.out[d]}; o{d}++)" for d in range(nd)]
    lines += [f"{ind}{{", f"{ind}    float acc = {b}[m];", f"{ind}    for (int c = 0; c < {cg}; c++) {{"]
    ind2 = ind + "        "
    for d in range(nd):
        lines.append(f"{ind2}for (int k{d} = 0; k{d} < {g.kernel[d]}; k{d}++) {{")
        lines.append(f"{ind2}    int i{d} = o{d} * {g.strides[d]} - {g.pads[d]} + k{d} * {g.dilations[d]};")
        lines.append(f"{ind2}    if (i{d} < 0 || i{d} >= {g.spatial[d]}) continue;")
        ind2 += "    "
    xi = " + ".join(f"i{d} * {ist[d]}" for d in range(nd))
    wi = " + ".join(f"k{d} * {kst[d]}" for d in range(nd))
    lines.append(f"{ind2}acc += xg[c * {isz} + {xi}] * wm[c * {ksz} + {wi}];")
    for _ in range(nd):
        ind2 = ind2[:-4]
        lines.append(f"{ind2}}}")
    oi = " + ".join(f"o{d} * {ost[d]}" for d in range(nd))
    store = "acc > 0.0f ? acc : 0.0f" if relu else "acc"
    lines += [f"{ind}    }}", f"{ind}    yp[{oi}] = {store};", f"{ind}}}", "    }", "}"]
    return lines


OPERATORS = (Conv,)
