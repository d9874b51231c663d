"""MaxPool over N-D spatial dims; padding never wins the max.

The MNIST case (one image, 2-D, dilation 1, floor mode, pads smaller than the kernel)
calls the kernels nn_maxpool2d_f32/_s8; everything else (batch, 1-D/3-D, dilations,
ceil_mode) is a plain loop, f32 only.  The Indices output is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    activation,
    check_attrs,
    fail,
    n_inputs,
    numel,
    out_dim,
    pads_nd,
    set_out,
    strides,
)
from .base import Operator


@dataclass
class PoolGeom:
    N: int
    C: int
    spatial: tuple       # input spatial dims
    kernel: tuple
    strides: tuple
    dilations: tuple
    pads: tuple          # padding at the start of each spatial dim
    out: tuple           # output spatial dims
    ceil: bool

    @property
    def kernel_2d(self) -> bool:
        """The nn_maxpool2d_* kernels apply (one image, 2-D, no dilation, floor mode)."""
        return (self.N == 1 and len(self.spatial) == 2 and self.dilations == (1, 1) and not self.ceil)

    def args_2d(self) -> str:
        (h, w), (kh, kw), (oh, ow), (sh, sw), (pt, pl) = self.spatial, self.kernel, self.out, self.strides, self.pads
        return ", ".join(str(v) for v in (self.C, h, w, kh, kw, oh, ow, sh, sw, pt, pl))


class MaxPool(Operator):
    OP_TYPES = ("MaxPool",)

    def resolve(self, node, graph):
        n_inputs(node, 1)
        if len(node.outputs) > 1 and node.outputs[1]:
            fail(node, "the Indices output is not supported")
        check_attrs(node, {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                           "ceil_mode": (0, 1), "storage_order": (0,),
                           "auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")})
        x = activation(node, graph, 0)
        nd = len(x.shape) - 2
        ks = tuple(node.attrs.get("kernel_shape", ()))
        if nd < 1 or len(ks) != nd:
            fail(node, f"kernel_shape={list(ks)} does not match the input {list(x.shape)}")
        st = tuple(node.attrs.get("strides", (1,) * nd))
        dil = tuple(node.attrs.get("dilations", (1,) * nd))
        if len(st) != nd or len(dil) != nd or min(st + dil) < 1:
            fail(node, f"strides={list(st)} / dilations={list(dil)} are not supported")
        ceil = bool(node.attrs.get("ceil_mode", 0))
        spatial = tuple(x.shape[2:])
        begin, end = pads_nd(node, spatial, ks, st, dil)
        out = [out_dim(spatial[d], ks[d], st[d], dil[d], begin[d], end[d], ceil) for d in range(nd)]
        if min(out) < 1:
            fail(node, "the kernel is larger than the padded input")
        if any(max(begin[d], end[d]) >= dil[d] * (ks[d] - 1) + 1 for d in range(nd)):
            fail(node, "padding as large as the kernel is not supported")
        node.params = PoolGeom(x.shape[0], x.shape[1], spatial, ks, st, dil, tuple(begin), tuple(out), ceil)
        set_out(node, graph, (x.shape[0], x.shape[1], *out))

    def emit_f32(self, node, ctx):
        g = node.params
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        if g.kernel_2d:
            return [f"nn_maxpool2d_f32({x}, {y}, {g.args_2d()});"]
        return _loop(g, x, y)

    # ---- int8: codes keep their order, so the max of codes is the code of the max
    def int8_domain(self, node, graph):
        from ..passes import alias_root

        return graph.domains[alias_root(graph, node.inputs[0])]

    def quantize(self, node, graph, ranges):
        from ..passes import alias_root

        src = alias_root(graph, node.inputs[0])
        if graph.domains[node.outputs[0]] == "q8":
            graph.qparams[node.outputs[0]] = graph.qparams[src]

    def emit_int8(self, node, ctx):
        g = node.params
        if ctx.domain(node.inputs[0]) == "f32":
            return self.emit_f32(node, ctx)
        if not g.kernel_2d:
            fail(node, "with --dtype int8 only 2-D pooling of one image without dilation or ceil_mode")
        return [f"nn_maxpool2d_s8({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {g.args_2d()});"]

    def reference_int8(self, node, graph, x):
        g = node.params
        (h, w), (kh, kw), (oh, ow), (sh, sw), (pt, pl) = g.spatial, g.kernel, g.out, g.strides, g.pads
        x = x.reshape(len(x), g.C, h, w)
        pad = np.int8(-128) if x.dtype == np.int8 else np.float32(-np.inf)
        ph = np.full((len(x), g.C, h + pt + kh + sh * oh, w + pl + kw + sw * ow), pad, x.dtype)
        ph[:, :, pt:pt + h, pl:pl + w] = x
        out = None
        for ky in range(kh):
            for kx in range(kw):
                patch = ph[:, :, ky:ky + sh * oh:sh, kx:kx + sw * ow:sw]
                out = patch if out is None else np.maximum(out, patch)
        return out


def _loop(g: PoolGeom, x: str, y: str) -> list[str]:
    nd = len(g.spatial)
    ist, ost = strides(g.spatial), strides(g.out)
    isz, osz = numel(g.spatial), numel(g.out)
    lines = ["{", f"    for (int nc = 0; nc < {g.N * g.C}; nc++) {{",
             f"        const float *xp = {x} + nc * {isz};", f"        float *yp = {y} + nc * {osz};"]
    ind = "        "
    for d in range(nd):
        lines.append(f"{ind}for (int o{d} = 0; o{d} < {g.out[d]}; o{d}++)")
    lines.append(f"{ind}{{")
    ind2 = ind + "    "
    lines.append(f"{ind2}float m = 0.0f; int any = 0;")
    for d in range(nd):
        lines.append(f"{ind2}for (int k{d} = 0; k{d} < {g.kernel[d]}; k{d}++) {{")
        lines.append(f"{ind2}    int i{d} = o{d} * {g.strides[d]} - {g.pads[d]} + k{d} * {g.dilations[d]};")
        lines.append(f"{ind2}    if (i{d} < 0 || i{d} >= {g.spatial[d]}) continue;")
        ind2 += "    "
    src = " + ".join(f"i{d} * {ist[d]}" for d in range(nd))
    lines.append(f"{ind2}{{ float v = xp[{src}]; if (!any || v > m) {{ m = v; any = 1; }} }}")
    for _ in range(nd):  # close the window loops
        ind2 = ind2[:-4]
        lines.append(f"{ind2}}}")
    dst = " + ".join(f"o{d} * {ost[d]}" for d in range(nd))
    lines += [f"{ind2}yp[{dst}] = m;", f"{ind}}}", "    }", "}"]
    return lines


OPERATORS = (MaxPool,)
