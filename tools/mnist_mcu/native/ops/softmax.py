"""Softmax / LogSoftmax along one axis (opset < 13: over the flattened axes >= axis),
with the backend's deterministic exp and log (nn_expf, nn_logf) so device and host
agree bit for bit.  Rows along the last axis use the kernels; another axis is a loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import activation, check_attrs, fail, n_inputs, numel, set_out
from .base import Operator

F = np.float32


@dataclass
class SoftmaxParams:
    outer: int      # independent groups before the axis
    n: int          # length along the axis
    inner: int      # elements after the axis (1: contiguous rows)


class Softmax(Operator):
    OP_TYPES = ("Softmax",)
    IN_PLACE = True
    KERNEL = "nn_softmax_f32"
    LOG = False

    def resolve(self, node, graph):
        n_inputs(node, 1)
        check_attrs(node, {"axis": None})
        x = activation(node, graph, 0)
        r = len(x.shape)
        axis = int(node.attrs.get("axis", -1 if graph.opset >= 13 else 1))
        if axis < 0:
            axis += r
        if not 0 <= axis < max(r, 1):
            fail(node, f"axis {axis} out of range for rank {r}")
        if graph.opset >= 13:
            n, inner = (x.shape[axis] if r else 1), numel(x.shape[axis + 1:])
        else:
            n, inner = numel(x.shape[axis:]), 1
        node.params = SoftmaxParams(x.size // (n * inner), n, inner)
        set_out(node, graph, x.shape)

    def emit_f32(self, node, ctx):
        p = node.params
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        if p.inner == 1:
            return [f"{self.KERNEL}({x}, {y}, {p.outer}, {p.n});"]
        last = "y[j] = (x[j] - m) - lg;" if self.LOG else "y[j] = y[j] / s;"
        return ["{", f"    for (int o = 0; o < {p.outer}; o++) for (int q = 0; q < {p.inner}; q++) {{",
                f"        const float *x = {x} + o * {p.n * p.inner} + q;",
                f"        float *y = {y} + o * {p.n * p.inner} + q;",
                "        float m = x[0], s = 0.0f;",
                f"        for (int j = {p.inner}; j < {p.n * p.inner}; j += {p.inner}) if (x[j] > m) m = x[j];",
                f"        for (int j = 0; j < {p.n * p.inner}; j += {p.inner}) {{ float e = nn_expf(x[j] - m); "
                + ("s += e; }" if self.LOG else "y[j] = e; s += e; }"),
                *(["        float lg = nn_logf(s);"] if self.LOG else []),
                f"        for (int j = 0; j < {p.n * p.inner}; j += {p.inner}) {last}",
                "    }", "}"]

    # ---- int8: runs on float (dequantised) input
    def int8_domain(self, node, graph):
        from ..passes import alias_root
        from .internal import insert_dequantize

        if graph.domains[alias_root(graph, node.inputs[0])] != "f32":
            insert_dequantize(graph, node)
        return "f32"

    def emit_int8(self, node, ctx):
        if ctx.domain(node.inputs[0]) != "f32":
            fail(node, "internal error: softmax input is not dequantised")
        return self.emit_f32(node, ctx)

    def reference_int8(self, node, graph, x):
        p = node.params
        if p.inner != 1:
            fail(node, "int8 reference: only the last axis")
        return softmax_ref(x.reshape(-1, p.n), log=self.LOG)


def expf(x):
    """Bit-exact mirror of nn_expf (kernel library, nn_math)."""
    x = np.asarray(x, np.float32)
    small = x < F(-87.0)
    x = np.minimum(np.where(small, F(0), x), F(88.0))
    t = x * F(1.44269502)
    n = np.where(t >= F(0), t + F(0.5), t - F(0.5)).astype(np.int32)
    nf = n.astype(np.float32)
    r = x - nf * F(0.693145752)
    r = r - nf * F(1.42860677e-06)
    p = np.full_like(r, F(1.98412701e-04))
    for c in (1.38888892e-03, 8.33333377e-03, 4.16666679e-02, 1.66666672e-01, 0.5, 1.0, 1.0):
        p = p * r + F(c)
    s = ((n + 127).astype(np.uint32) << np.uint32(23)).view(np.float32)
    return np.where(small, F(0), p * s).astype(np.float32)


def logf(x):
    """Bit-exact mirror of nn_logf for x > 0."""
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32)
    e = ((u >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - 127
    m = ((u & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(np.float32)
    big = m > F(1.41421354)
    m = np.where(big, m * F(0.5), m)
    e = np.where(big, e + 1, e)
    z = (m - F(1.0)) / (m + F(1.0))
    z2 = z * z
    p = np.full_like(z, F(0.111111112))
    for c in (0.142857149, 0.200000003, 0.333333343, 1.0):
        p = p * z2 + F(c)
    lm = F(2.0) * z * p
    return (e.astype(np.float32) * F(0.693147182) + lm).astype(np.float32)


def softmax_ref(x, log=False):
    """Mirror of nn_softmax_f32 / nn_logsoftmax_f32 over the last axis of x [N, n]."""
    x = np.asarray(x, np.float32)
    m = x.max(axis=1, keepdims=True)
    e = expf(x - m)
    s = np.zeros(len(x), np.float32)
    for i in range(x.shape[1]):
        s = s + e[:, i]
    if log:
        return ((x - m) - logf(s)[:, None]).astype(np.float32)
    return (e / s[:, None]).astype(np.float32)


OPERATORS = (Softmax,)
