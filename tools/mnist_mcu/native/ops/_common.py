"""Helpers shared by the operator modules."""

from __future__ import annotations

import numpy as np

from ...errors import UserError


def fail(node, msg):
    raise UserError(f"{node}: {msg}")


def check_attrs(node, allowed):
    """allowed: {attribute: None (any value) | collection of accepted values}."""
    unknown = sorted(set(node.attrs) - set(allowed))
    if unknown:
        fail(node, f"unsupported attribute(s) {', '.join(unknown)}")
    for name, ok in allowed.items():
        if ok is None or name not in node.attrs:
            continue
        val = node.attrs[name]
        if isinstance(val, bytes):
            val = val.decode()
        if isinstance(val, list):
            val = tuple(val)
        if val not in ok:
            fail(node, f"attribute {name}={val} is not supported (supported: {', '.join(map(str, ok))})")


def attr_str(node, name, default):
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def n_inputs(node, lo, hi=None):
    real = [i for i in node.inputs if i]
    hi = lo if hi is None else hi
    if not (lo <= len(real) <= hi):
        fail(node, f"expects {lo}{'' if hi == lo else f'..{hi}'} inputs, got {len(real)}")


def activation(node, graph, idx):
    t = graph.tensors[node.inputs[idx]]
    if t.is_const:
        fail(node, f"input {idx} ('{t.name}') must be an activation, not a constant")
    return t


def constant(node, graph, idx, what):
    if len(node.inputs) <= idx or not node.inputs[idx]:
        return None
    t = graph.tensors[node.inputs[idx]]
    if not t.is_const:
        fail(node, f"{what} ('{t.name}') must be a constant initializer")
    return t.data


def set_out(node, graph, shape, idx=0):
    graph.tensors[node.outputs[idx]].shape = tuple(int(d) for d in shape)


def numel(shape):
    return int(np.prod(shape)) if len(shape) else 1


def pads_nd(node, spatial, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(pads at the start, pads at the end) of each spatial dim, from pads / auto_pad."""
    nd = len(spatial)
    auto = attr_str(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for d in range(nd):
            o = -(-spatial[d] // strides[d])
            total = max((o - 1) * strides[d] + dilations[d] * (kernel[d] - 1) + 1 - spatial[d], 0)
            b = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begin.append(b)
            end.append(total - b)
        return begin, end
    p = list(node.attrs.get("pads", [0] * 2 * nd)) if auto == "NOTSET" else [0] * 2 * nd
    if len(p) != 2 * nd:
        fail(node, f"pads={p} does not match {nd} spatial dimension(s)")
    if min(p) < 0:
        fail(node, f"negative pads={p} are not supported")
    return p[:nd], p[nd:]


def out_dim(size, k, s, d, pb, pe, ceil=False) -> int:
    """Output length of a sliding window (ONNX Conv/MaxPool; ceil_mode as in MaxPool)."""
    eff = d * (k - 1) + 1
    span = size + pb + pe - eff
    if span < 0:
        return 0
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= size + pb:     # the last window must start inside the input or the front pad
        o -= 1
    return o


def strides(shape) -> list[int]:
    out, s = [], 1
    for d in reversed(list(shape)):
        out.append(s)
        s *= int(d)
    return out[::-1]


def broadcast_strides(shape, out_shape) -> list[int]:
    """Element strides of a tensor of `shape` read at every index of `out_shape` (0 on broadcast dims)."""
    shape = [1] * (len(out_shape) - len(shape)) + list(shape)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(shape, out_shape, strides(shape))]


def index_loop(out_shape, operands, body) -> list[str]:
    """A flat loop over the output's elements computing each operand's element offset
    (operands: [(offset variable, strides)]); body: C statement(s) using i and the offsets.
    For general shapes (broadcasting, strided views) where no kernel fits."""
    n = numel(out_shape)
    lines = ["{", f"    for (int i = 0; i < {n}; i++) {{", "        int r = i;"]
    names = [v for v, _ in operands]
    if names:
        lines.append("        int " + ", ".join(f"{v} = 0" for v in names) + ";")
    for d in reversed(range(len(out_shape))):
        dim = int(out_shape[d])
        used = [(v, st[d]) for v, st in operands if st[d] != 0]
        if dim == 1 or not used:
            if dim != 1:
                lines.append(f"        r /= {dim};")
            continue
        lines.append(f"        {{ int c = r % {dim}; r /= {dim}; "
                     + " ".join(f"{v} += c * {s};" for v, s in used) + " }")
    lines += [f"        {body}", "    }", "}"]
    return lines
