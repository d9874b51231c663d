"""int8 post-training quantisation and the numpy integer reference.

Scheme (TFLite-like):
  weights      int8 symmetric, one scale per output channel (max|w| / 127)
  activations  int8 asymmetric (scale, zero point) calibrated with min/max on
               TRAINING images (never test images); ReLU fused into the clamp
  raw pixels   when the first layer is a Gemm, the uint8 pixels themselves are its
               input (scale 1/(255*std), zero point 0) and the normalisation offset
               -mean/std is folded into the int32 bias: exact, and zero pixels skip
  accumulate   int32; bias int32 at scale s_in * s_w[o]
  requantise   (acc * M + 2^(S-1)) >> S  (M in [2^30, 2^31), round half up), + zp, clamp
  last layer   int32 accumulator dequantised to float (float(acc) * s), then Softmax

reference_int8() runs exactly this arithmetic in numpy; the generated C must
reproduce it bit for bit (tests/test_native_int8.py).
"""

import numpy as np

from ..errors import UserError
from .graph import Node, Tensor
from .ops.internal import float_lut
from .passes import alias_root

I32_MIN, I32_MAX = -2**31, 2**31 - 1


# ---------------------------------------------------------------- parameters
def quantize_multiplier(r):
    """real multiplier r > 0 -> (M, S) with r ~= M * 2^-S."""
    r = float(r)
    if r <= 0:
        return 0, 1
    m, e = np.frexp(r)
    mi = int(round(m * (1 << 31)))
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


def qparams_from_range(lo, hi):
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def pack_pairs(wq):
    """int8 [N, K] -> uint32 words [ceil(N/2), ceil(K/2)]: w[o][2k], w[o+1][2k], w[o][2k+1], w[o+1][2k+1]."""
    n, k = wq.shape
    p = np.zeros((n + (n & 1), k + (k & 1)), np.int8)
    p[:n, :k] = wq
    b = p.view(np.uint8).astype(np.uint32)
    b0, b1 = b[0::2, 0::2], b[1::2, 0::2]
    b2, b3 = b[0::2, 1::2], b[1::2, 1::2]
    return (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)).astype(np.uint32)


def _weights(w):
    wr = w.reshape(w.shape[0], -1).astype(np.float64)
    sw = np.abs(wr).max(axis=1) / 127.0
    sw[sw == 0] = 1.0
    wq = np.clip(np.round(wr / sw[:, None]), -127, 127).astype(np.int8)
    return wq.reshape(w.shape), sw


def _layer_q(graph, node, s_in, zx, b_eff):
    wq, sw = _weights(node.extra["W"])
    s_acc = s_in * sw
    bias = np.clip(np.round(b_eff / s_acc), I32_MIN, I32_MAX).astype(np.int64).astype(np.int32)
    q = {"wq": wq, "bias": bias, "zx": int(zx), "relu": bool(node.extra.get("relu"))}
    out = node.outputs[0]
    if graph.domains[out] == "f32":
        q["output"] = "f32"
        q["dq_scale"] = s_acc.astype(np.float32)
    else:
        sy, zy = graph.qparams[out]
        ms = [quantize_multiplier(v / sy) for v in s_acc]
        q.update(output="q8", zy=int(zy), hi=127, lo=int(max(zy, -128)) if q["relu"] else -128,
                 mult=np.array([m for m, _ in ms], np.int32), shift=np.array([s for _, s in ms], np.int8))
    return q


# ---------------------------------------------------------------- planning
def _consumers_through_views(graph, name):
    out = []
    for c in graph.consumers(name):
        if c.extra.get("alias"):
            out += _consumers_through_views(graph, c.outputs[0])
        else:
            out.append(c)
    return out


def _is_graph_output(graph, name):
    return alias_root(graph, graph.output) == name


def assign_domains(graph):
    """'u8' raw pixels, 'q8' int8 activations, 'f32' float; inserts Dequantize nodes."""
    dom = {graph.input: "u8"}
    for node in list(graph.nodes):
        if node.extra.get("alias"):
            continue
        out = node.outputs[0]
        src = alias_root(graph, node.inputs[0]) if node.inputs else None
        if node.op in ("Gemm", "Conv"):
            cons = _consumers_through_views(graph, out)
            is_out = _is_graph_output(graph, out)
            only_softmax = all(c.op in ("Softmax", "LogSoftmax") for c in cons)
            dom[out] = "f32" if (cons or is_out) and only_softmax else "q8"
            if node.op == "Conv" and dom.get(src) == "u8":
                raise UserError(f"{node}: internal error: raw pixels reach a Conv")
        elif node.op == "InputLUT":
            dom[out] = "q8"
        elif node.op in ("MaxPool", "Relu"):
            dom[out] = dom[src]
        elif node.op in ("Softmax", "LogSoftmax"):
            if dom[src] != "f32":
                _insert_dequant(graph, node, dom)
            dom[out] = "f32"
        elif node.op == "Dequantize":
            dom[out] = "f32"
        else:
            raise UserError(f"{node}: not supported with --dtype int8 (use --dtype f32)")
    graph.domains = dom
    root = alias_root(graph, graph.output)
    if dom.get(root) != "f32":
        new = graph.new_name("output_dequantized")
        graph.tensors[new] = Tensor(new, graph.tensors[graph.output].shape)
        graph.nodes.append(Node("Dequantize", "output_dequantize", [graph.output], [new]))
        dom[new] = "f32"
        graph.output = new


def _insert_dequant(graph, node, dom):
    src = node.inputs[0]
    new = graph.new_name(src + "_dq")
    graph.tensors[new] = Tensor(new, graph.tensors[src].shape)
    graph.nodes.insert(graph.nodes.index(node), Node("Dequantize", f"{node.name}_dequantize", [src], [new]))
    node.inputs = [new] + node.inputs[1:]
    dom[new] = "f32"


def calibrate(onnx_path, names, images_norm, batch=500):
    """min/max of the named ONNX tensors over images_norm [N,1,28,28] float32."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    existing = {o.name for o in model.graph.output}
    for n in names:
        if n not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    dim0 = sess.get_inputs()[0].shape[0]
    if isinstance(dim0, int):
        batch = dim0
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    try:   # graphs with a hard-coded batch of 1 (e.g. Reshape to [1, -1]) run one image at a time
        sess.run(list(names), {in_name: images_norm[:2]})
    except Exception:
        batch = 1
    for i in range(0, len(images_norm), batch):
        outs = sess.run(list(names), {in_name: images_norm[i:i + batch]})
        for n, v in zip(names, outs):
            lo[n] = min(lo[n], float(v.min()))
            hi[n] = max(hi[n], float(v.max()))
    return {n: (lo[n], hi[n]) for n in names}


def quantize_graph(graph, onnx_path, calib_pixels):
    """Fill graph.domains, graph.qparams and node.extra['q'] (calib_pixels: uint8 [N,784], training)."""
    assign_domains(graph)
    dom = graph.domains
    qp = {}
    graph.qparams = qp
    in_shape = graph.tensors[graph.input].shape
    norm = float_lut(graph)[calib_pixels.reshape(len(calib_pixels), -1)]
    norm = norm.reshape((len(calib_pixels),) + tuple(in_shape[1:])).astype(np.float32)
    need = [n.outputs[0] for n in graph.nodes if n.op in ("Gemm", "Conv") and dom[n.outputs[0]] == "q8"]
    ranges = calibrate(onnx_path, need, norm) if need else {}
    lut = float_lut(graph)
    for node in graph.nodes:
        if node.extra.get("alias"):
            continue
        out = node.outputs[0]
        src = alias_root(graph, node.inputs[0])
        if node.op == "InputLUT":
            s, z = qparams_from_range(lut.min(), lut.max())
            qp[out] = (s, z)
            node.extra["lut"] = np.clip(np.round(lut.astype(np.float64) / s) + z, -128, 127).astype(np.int8)
        elif node.op in ("Gemm", "Conv"):
            if dom[out] == "q8":
                lo, hi = ranges[out]
                qp[out] = qparams_from_range(0.0 if node.extra.get("relu") else lo, hi)
            w, b = node.extra["W"].astype(np.float64), node.extra["bias"].astype(np.float64)
            if dom[src] == "u8":
                s_in, zx = 1.0 / (graph.scale * graph.std), 0
                b = b + (-graph.mean / graph.std) * w.reshape(w.shape[0], -1).sum(axis=1)
            else:
                s_in, zx = qp[src]
            q = _layer_q(graph, node, s_in, zx, b)
            q["input"] = "u8" if dom[src] == "u8" else "q8"
            if node.op == "Gemm":
                # one row of words per input pair (nn_dense_pairs_*): [ceil(K/2), ceil(N/2)]
                q["words"] = np.ascontiguousarray(pack_pairs(q["wq"]).T)
                q["nw"] = q["words"].shape[1]
            node.extra["q"] = q
        elif node.op in ("MaxPool", "Relu") and dom[out] == "q8":
            qp[out] = qp[src]
    return graph


# ---------------------------------------------------------------- reference
F = np.float32


def expf(x):
    """Bit-exact mirror of nn_expf (runtime/nn_math.c)."""
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


def requant_ref(acc, mult, shift, zy, lo, hi):
    """Mirror of nn_requant + clamps; acc int64 [..., ch, inner]-broadcastable with mult/shift."""
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    p = (acc.astype(np.int64) * mult + (np.int64(1) << (shift - 1))) >> shift
    p = np.clip(p, I32_MIN, I32_MAX)
    p = np.clip(p, -0x10000, 0x10000)
    return np.clip(p + zy, lo, hi).astype(np.int8)


def _epilogue(q, acc, ch_axis_shape):
    """acc int64 [N, ch, inner]."""
    if q["output"] == "f32":
        a = np.maximum(acc, 0) if q["relu"] else acc
        return (a.astype(np.float32) * q["dq_scale"].astype(np.float32)[None, :, None]).astype(np.float32)
    return requant_ref(acc, q["mult"].astype(np.int64)[None, :, None], q["shift"].astype(np.int64)[None, :, None],
                       q["zy"], q["lo"], q["hi"])


def _conv_ref(x, q, g):
    """x int [N, C, H, W] -> acc int64 [N, M, OH*OW] (padding is real zero)."""
    n = x.shape[0]
    xo = x.astype(np.int64) - q["zx"]
    ph = np.zeros((n, g["C"], g["H"] + g["pt"] + g["KH"] + g["sh"] * g["OH"],
                   g["W"] + g["pl"] + g["KW"] + g["sw"] * g["OW"]), np.int64)
    ph[:, :, g["pt"]:g["pt"] + g["H"], g["pl"]:g["pl"] + g["W"]] = xo
    wq = q["wq"].astype(np.int64)
    acc = np.zeros((n, g["M"], g["OH"], g["OW"]), np.int64)
    for ky in range(g["KH"]):
        for kx in range(g["KW"]):
            patch = ph[:, :, ky:ky + g["sh"] * g["OH"]:g["sh"], kx:kx + g["sw"] * g["OW"]:g["sw"]]
            acc += np.einsum("nchw,mc->nmhw", patch, wq[:, :, ky, kx])
    acc += q["bias"].astype(np.int64)[None, :, None, None]
    return acc.reshape(n, g["M"], -1)


def _maxpool_ref(x, g, pad_value):
    n = x.shape[0]
    ph = np.full((n, g["C"], g["H"] + g["pt"] + g["KH"] + g["sh"] * g["OH"],
                  g["W"] + g["pl"] + g["KW"] + g["sw"] * g["OW"]), pad_value, x.dtype)
    ph[:, :, g["pt"]:g["pt"] + g["H"], g["pl"]:g["pl"] + g["W"]] = x
    out = None
    for ky in range(g["KH"]):
        for kx in range(g["KW"]):
            patch = ph[:, :, ky:ky + g["sh"] * g["OH"]:g["sh"], kx:kx + g["sw"] * g["OW"]:g["sw"]]
            out = patch if out is None else np.maximum(out, patch)
    return out


def reference_int8(graph, pixels):
    """Run the quantised graph in numpy integers: pixels uint8 [N, input_size] -> float32 [N, out]."""
    pixels = np.asarray(pixels, np.uint8).reshape(len(pixels), -1)
    n = len(pixels)
    vals = {graph.input: pixels}
    for node in graph.nodes:
        if node.extra.get("alias"):
            continue
        src = alias_root(graph, node.inputs[0])
        x = vals[src]
        out = node.outputs[0]
        shape = graph.tensors[out].shape
        if node.op == "InputLUT":
            y = node.extra["lut"][x]
        elif node.op == "Gemm":
            q = node.extra["q"]
            xo = x.reshape(n, -1).astype(np.int64) - q["zx"]
            acc = xo @ q["wq"].astype(np.int64).T + q["bias"].astype(np.int64)
            y = _epilogue(q, acc[:, :, None], None)
        elif node.op == "Conv":
            g = node.extra["geom"]
            q = node.extra["q"]
            acc = _conv_ref(x.reshape(n, g["C"], g["H"], g["W"]), q, g)
            y = _epilogue(q, acc, None)
        elif node.op == "MaxPool":
            g = node.extra["geom"]
            y = _maxpool_ref(x.reshape(n, g["C"], g["H"], g["W"]), g, np.int8(-128))
        elif node.op == "Relu":
            y = np.maximum(x, np.int8(graph.qparams[src][1]))
        elif node.op == "Dequantize":
            s, z = graph.qparams[src]
            y = (x.astype(np.int32) - z).astype(np.float32) * F(s)
        elif node.op in ("Softmax", "LogSoftmax"):
            inner = node.extra["inner"]
            y = softmax_ref(x.reshape(-1, inner), log=node.op == "LogSoftmax")
        else:
            raise UserError(f"{node}: no int8 reference")
        vals[out] = np.asarray(y).reshape(n, -1)
    return vals[alias_root(graph, graph.output)].astype(np.float32).reshape(n, -1)
