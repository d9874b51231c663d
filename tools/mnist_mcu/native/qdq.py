"""An independent int8 reference: the quantised model as an ONNX QDQ graph, run by onnxruntime.

    codes = ort_int8_outputs(model_dir, pixels)          # uint8 [N, 784] -> int32 [N, out]
    codes = output_codes(model_dir, device_outputs)      # float [N, out] -> int32 [N, out]

The graph is built from the float ONNX the folder was compiled from and the scales and
zero points recorded in its model.json -- nothing else of the compiler is used (no
graph, no passes, no integer reference).  Weights become DequantizeLinear(int8, per
channel scale), biases DequantizeLinear(int32, s_in * s_w), every int8 activation of the
generated C gets a QuantizeLinear/DequantizeLinear pair with its (scale, zero point), and
the raw uint8 pixels enter through DequantizeLinear as on the device (normalisation folded
into the first layer's bias, or quantised through the input table).  onnxruntime then does
the arithmetic its own way (float, or its fused integer kernels), so a wrong scale, zero
point or rounding rule in the generator shows up as a difference.

Both sides end in the same quantiser of the float output (model.json "output_codes":
softmax probabilities in steps of 1/256, zero point -128), so their int8 output codes can
be compared: output_codes() applies it to what the device sent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import UserError

I32_MIN, I32_MAX = -2**31, 2**31 - 1


def load_info(model_dir: Path) -> dict:
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise UserError(f"{path} not found; recompile with `mnist-mcu compile --backend native --dtype int8`")
    info = json.loads(path.read_text())
    if info.get("backend") != "native" or info.get("dtype") != "int8" or "int8" not in info:
        raise UserError(f"{path} is not a native int8 model library")
    return info


def _onnx_path(info: dict, model_dir: Path) -> Path:
    from ..paths import ROOT

    p = Path(info["onnx"])
    p = p if p.is_absolute() else ROOT / p
    if not p.is_file():
        raise UserError(f"{model_dir}: its float model {p} is missing")
    if hashlib.sha256(p.read_bytes()).hexdigest() != info["onnx_sha256"]:
        raise UserError(f"{model_dir} was compiled from another version of {p}; recompile it")
    return p


def _per_channel(c: np.ndarray, n: int, conv: bool) -> np.ndarray:
    """A bias-like constant as one value per output channel."""
    c = np.asarray(c, np.float64)
    if conv:
        c = c.reshape((1,) * (4 - c.ndim) + c.shape)
        return np.broadcast_to(c[0, :, 0, 0], (n,)).copy()
    return np.broadcast_to(c.reshape(-1) if c.size in (1, n) else c, (n,)).copy()


class _Builder:
    def __init__(self, model, info):
        from onnx import numpy_helper

        self.model, self.info = model, info
        self.g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        for n in self.g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.inits = []
        self.names = {(n.name or f"{n.op_type}_{i}"): n for i, n in enumerate(self.g.node)}

    def init(self, name, arr):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(self, src, dst, scale, zp):
        from onnx import helper

        s = self.init(f"{dst}__s", np.float32(scale))
        z = self.init(f"{dst}__z", np.int8(zp))
        return [helper.make_node("QuantizeLinear", [src, s, z], [f"{dst}__q"]),
                helper.make_node("DequantizeLinear", [f"{dst}__q", s, z], [dst])]

    def layer(self, L):
        """The canonical quantised layer for one entry of model.json: [nodes]."""
        from onnx import helper

        nodes = [self.names.get(name) for name in L["onnx_nodes"]]
        if any(n is None for n in nodes):
            raise UserError(f"model.json names ONNX nodes not in the model: {L['onnx_nodes']}")
        main, conv = nodes[0], nodes[0].op_type == "Conv"
        attrs = {a.name: helper.get_attribute_value(a) for a in main.attribute}
        b_in = self.consts[main.input[1]].astype(np.float64)
        if main.op_type == "Gemm":
            if attrs.get("transA", 0):
                raise UserError(f"{main.name}: transA has no int8 layer")
            w = b_in if attrs.get("transB", 0) else b_in.T
            w = w * float(np.float32(attrs.get("alpha", 1.0)))
            n = w.shape[0]
            c = self.consts.get(main.input[2]) if len(main.input) > 2 and main.input[2] else None
            bias = np.zeros(n) if c is None else _per_channel(c, n, False) * float(np.float32(attrs.get("beta", 1.0)))
        elif main.op_type == "MatMul":
            w, bias = b_in.T, np.zeros(b_in.shape[1])
        else:
            w = b_in
            c = self.consts.get(main.input[2]) if len(main.input) > 2 and main.input[2] else None
            bias = np.zeros(w.shape[0]) if c is None else c.astype(np.float64).reshape(-1)
        n = w.shape[0]
        for extra in nodes[1:]:
            if extra.op_type == "Add":
                other = [i for i in extra.input if i in self.consts]
                bias = bias + _per_channel(self.consts[other[0]], n, conv)
        inp = self.info["int8"]["input"]
        s_in = float(L["input_scale"])
        if L["input_domain"] == "u8":        # raw pixels: (p/scale - mean)/std folded into the bias
            mean, std = self.info["input"]["mean"], self.info["input"]["std"]
            bias = bias + (-mean / std) * w.reshape(n, -1).sum(axis=1)
            s_in = float(inp["scale"])
        sw = np.asarray(L["weight_scales"], np.float64)
        shape = (n,) + (1,) * (w.ndim - 1)
        wq = np.clip(np.round(w / sw.reshape(shape)), -127, 127).astype(np.int8)
        bq = np.clip(np.round(bias / (s_in * sw)), I32_MIN, I32_MAX).astype(np.int32)
        k = L["node"]
        wn = self.init(f"{k}__wq", wq)
        bn = self.init(f"{k}__bq", bq)
        ws = self.init(f"{k}__ws", sw.astype(np.float32))
        bs = self.init(f"{k}__bs", (s_in * sw).astype(np.float32))
        wz = self.init(f"{k}__wz", np.zeros(n, np.int8))
        bz = self.init(f"{k}__bz", np.zeros(n, np.int32))
        out = [helper.make_node("DequantizeLinear", [wn, ws, wz], [f"{k}__w"], axis=0),
               helper.make_node("DequantizeLinear", [bn, bs, bz], [f"{k}__b"], axis=0)]
        pre = f"{k}__pre" if L["relu"] else L["output"]
        if conv:
            keep = {a: v for a, v in attrs.items() if a in ("kernel_shape", "strides", "pads", "dilations",
                                                            "group", "auto_pad")}
            out.append(helper.make_node("Conv", [main.input[0], f"{k}__w", f"{k}__b"], [pre], **keep))
        else:
            out.append(helper.make_node("Gemm", [main.input[0], f"{k}__w", f"{k}__b"], [pre], transB=1))
        if L["relu"]:
            out.append(helper.make_node("Relu", [pre], [L["output"]]))
        return out

    def build(self):
        import onnx
        from onnx import TensorProto, helper

        info, g = self.info, self.g
        x_name = info["input"]["name"]
        shape = info["input"]["shape"]
        inp = info["int8"]["input"]
        nodes = [helper.make_node("DequantizeLinear", ["pixels", self.init("pixels__s", np.float32(
                     1.0 / (info["input"]["scale"] * info["input"]["std"]))), self.init("pixels__z", np.uint8(0))],
                     ["pixels__f"]),
                 helper.make_node("Reshape", ["pixels__f", self.init("pixels__shape",
                                  np.array([-1, *shape[1:]], np.int64))],
                                  [x_name if inp["mode"] == "folded" else "pixels__x"])]
        if inp["mode"] == "lut":      # normalised in float, then quantised as the input table is
            mean, std = info["input"]["mean"], info["input"]["std"]
            nodes.append(helper.make_node("Add", ["pixels__x", self.init("pixels__c", np.float32(-mean / std))],
                                          ["pixels__n"]))
            nodes += self.qdq("pixels__n", x_name, inp["scale"], inp["zero_point"])
        by_main = {L["onnx_nodes"][0]: L for L in info["int8"]["layers"]}
        fused = {name for L in info["int8"]["layers"] for name in L["onnx_nodes"]}
        tensors = info["int8"]["tensors"]
        for i, n in enumerate(g.node):
            name = n.name or f"{n.op_type}_{i}"
            if n.op_type == "Constant":
                continue
            if name in by_main:
                new = self.layer(by_main[name])
            elif name in fused:
                continue
            else:
                new = [n]
            for m in new:     # int8 activations: quantise and dequantise with the recorded parameters
                for j, o in enumerate(m.output):
                    if o in tensors:
                        m.output[j] = f"{o}__f"
                        new = new + self.qdq(f"{o}__f", o, tensors[o]["scale"], tensors[o]["zero_point"])
            nodes += new
        oc = info["int8"]["output_codes"]
        out = g.output[0].name
        nodes.append(helper.make_node("QuantizeLinear", [out, self.init("codes__s", np.float32(oc["scale"])),
                                                         self.init("codes__z", np.int8(oc["zero_point"]))], ["codes"]))
        used = {i for n in nodes for i in n.input}
        inits = [t for t in g.initializer if t.name in used] + self.inits
        graph = helper.make_graph(
            nodes, "qdq", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", int(np.prod(shape[1:]))])],
            [helper.make_tensor_value_info("codes", TensorProto.INT8, ["N", int(info["output_size"])])], inits)
        opset = max(13, *(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")))
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def qdq_model(model_dir: Path):
    """The QDQ ONNX model (input 'pixels' uint8 [N, 784], output 'codes' int8 [N, out])."""
    import onnx

    info = load_info(model_dir)
    model = onnx.load(str(_onnx_path(info, Path(model_dir))))
    try:
        return _Builder(model, info).build()
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise UserError(f"{model_dir}: cannot build the QDQ graph from model.json ({type(exc).__name__}: {exc})") \
            from exc


def ort_int8_outputs(model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """onnxruntime's int8 output codes of the QDQ graph: pixels uint8 [N, 784] -> int32 [N, out]."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    model = qdq_model(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    px = np.ascontiguousarray(np.asarray(pixels, np.uint8).reshape(len(pixels), -1))
    batch = 500
    try:   # graphs with a hard-coded batch of 1 (e.g. Reshape to [1, -1]) run one image at a time
        sess.run(None, {"pixels": px[:2]})
    except Exception:  # noqa: BLE001 (onnxruntime raises its own types)
        batch = 1
    outs = [sess.run(None, {"pixels": px[i:i + batch]})[0] for i in range(0, len(px), batch)]
    return np.concatenate(outs).reshape(len(px), -1).astype(np.int32)


def output_codes(model_dir: Path, device_outputs: np.ndarray) -> np.ndarray:
    """The device's float outputs through the same output quantiser (QuantizeLinear: x / scale in
    float32, rounded half to even, plus the zero point, saturated): int32 [N, out]."""
    oc = load_info(model_dir)["int8"]["output_codes"]
    y = np.asarray(device_outputs, np.float32) / np.float32(oc["scale"])
    return np.clip(np.rint(y) + int(oc["zero_point"]), -128, 127).astype(np.int32)
