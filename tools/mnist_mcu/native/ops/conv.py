"""Conv: 2-D, NCHW, constant weights [M, C, KH, KW] and bias, group 1, dilation 1,
any stride and padding (padding is a real 0: skipped, also in int8)."""

import numpy as np

from ._common import activation, check_attrs, constant, fail, n_inputs, pads_2d, set_out

OP_TYPES = ("Conv",)


def resolve(node, graph):
    n_inputs(node, 2, 3)
    check_attrs(node, {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                       "group": (1,), "auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")})
    x = activation(node, graph, 0)
    if len(x.shape) != 4:
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
    bias = np.zeros(m, np.float32) if b is None else b.astype(np.float32).reshape(m)
    node.extra.setdefault("W", w.astype(np.float32))
    node.extra.setdefault("bias", bias)
    node.extra.setdefault("relu", False)
    node.extra["geom"] = dict(C=c, H=h, W=wd, M=m, KH=ks[0], KW=ks[1], OH=oh, OW=ow,
                              sh=st[0], sw=st[1], pt=pt, pl=pl)
    set_out(node, graph, (1, m, oh, ow))


def geom_args(g):
    return ", ".join(str(g[k]) for k in ("C", "H", "W", "M", "KH", "KW", "OH", "OW", "sh", "sw", "pt", "pl"))


def emit(node, ctx):
    g = node.extra["geom"]
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    relu = int(bool(node.extra.get("relu")))
    if ctx.dtype == "f32":
        w = ctx.const("w", "float", node.extra["W"].reshape(-1))
        b = ctx.const("b", "float", node.extra["bias"])
        return [f"nn_conv2d_f32({x}, {w}, {b}, {y}, {geom_args(g)}, {relu});"]
    q = node.extra["q"]
    w = ctx.const("w", "int8_t", q["wq"].reshape(-1))
    b = ctx.const("bq", "int32_t", q["bias"])
    if q["output"] == "f32":
        sc = ctx.const("dq", "float", q["dq_scale"])
        return [f"nn_conv2d_s8({x}, {q['zx']}, {w}, {b}, {geom_args(g)}, 0, 0, 0, -128, 127, 0, "
                f"{sc}, {y}, {relu});"]
    m = ctx.const("mult", "int32_t", q["mult"])
    s = ctx.const("shift", "int8_t", q["shift"])
    return [f"nn_conv2d_s8({x}, {q['zx']}, {w}, {b}, {geom_args(g)}, {m}, {s}, {q['zy']}, {q['lo']}, "
            f"{q['hi']}, {y}, 0, 0, 0);"]
