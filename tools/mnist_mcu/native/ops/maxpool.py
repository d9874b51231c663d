"""MaxPool: 2-D on [1, C, H, W]; padding never wins the max; ceil_mode 0."""

from ._common import activation, check_attrs, fail, n_inputs, pads_2d, set_out

OP_TYPES = ("MaxPool",)


def resolve(node, graph):
    n_inputs(node, 1)
    if len(node.outputs) > 1 and node.outputs[1]:
        fail(node, "the Indices output is not supported")
    check_attrs(node, {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                       "ceil_mode": (0,), "storage_order": (0,),
                       "auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")})
    x = activation(node, graph, 0)
    if len(x.shape) != 4:
        fail(node, f"only 2-D pooling on [1, C, H, W] is supported, got {list(x.shape)}")
    ks = tuple(node.attrs.get("kernel_shape", ()))
    if len(ks) != 2:
        fail(node, f"kernel_shape={list(ks)} is not supported (2-D only)")
    if tuple(node.attrs.get("dilations", (1, 1))) != (1, 1):
        fail(node, "dilations other than 1 are not supported")
    st = tuple(node.attrs.get("strides", (1, 1)))
    _, c, h, w = x.shape
    pt, pl, pb, pr = pads_2d(node, (h, w), ks, st)
    if max(pt, pb) >= ks[0] or max(pl, pr) >= ks[1]:
        fail(node, "padding as large as the kernel is not supported")
    oh = (h + pt + pb - ks[0]) // st[0] + 1
    ow = (w + pl + pr - ks[1]) // st[1] + 1
    if oh < 1 or ow < 1:
        fail(node, "the kernel is larger than the padded input")
    node.extra["geom"] = dict(C=c, H=h, W=w, KH=ks[0], KW=ks[1], OH=oh, OW=ow,
                              sh=st[0], sw=st[1], pt=pt, pl=pl)
    set_out(node, graph, (1, c, oh, ow))


def emit(node, ctx):
    g = node.extra["geom"]
    args = ", ".join(str(g[k]) for k in ("C", "H", "W", "KH", "KW", "OH", "OW", "sh", "sw", "pt", "pl"))
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    kind = "f32" if ctx.dtype == "f32" or ctx.domain(node.inputs[0]) == "f32" else "s8"
    return [f"nn_maxpool2d_{kind}({x}, {y}, {args});"]
