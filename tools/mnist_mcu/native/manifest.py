"""model.json of a generated model folder: what was compiled, and for int8 every
quantisation parameter by ONNX tensor and node name, so that an independent engine
(qdq.py: onnxruntime on a QDQ graph) can rebuild the same quantised model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..paths import shown
from .ops._int8 import LayerQ
from .ops.internal import LutQ
from .passes import alias_root



def _fused_onnx_nodes(graph, node) -> list[str]:
    return [node.name, *node.fused]


def model_json(graph, dtype: str, onnx_path) -> str:
    onnx_path = Path(onnx_path)
    info = {
        "backend": "native", "dtype": dtype, "name": graph.name,
        "onnx": shown(onnx_path), "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "input": {"name": graph.input, "shape": list(graph.tensors[graph.input].shape),
                  "scale": graph.scale, "mean": graph.mean, "std": graph.std},
        "output_size": graph.tensors[graph.output].size,
    }
    if dtype == "int8":
        info["int8"] = _int8_info(graph)
    return json.dumps(info, indent=1) + "\n"


def _int8_info(graph) -> dict:
    layers, tensors, lut = [], {}, None
    for node in graph.nodes:
        if node.view:
            continue
        out = node.outputs[0]
        if isinstance(node.q, LutQ):
            s, z = graph.qparams[out]
            lut = {"scale": s, "zero_point": z}
        elif isinstance(node.q, LayerQ):
            q = node.q
            layers.append({"node": node.name, "op": node.op, "onnx_nodes": _fused_onnx_nodes(graph, node),
                           "output": out, "input_domain": q.input, "output_domain": q.output, "relu": q.relu,
                           "input_scale": q.s_in, "input_zero_point": q.zx,
                           "weight_scales": [float(v) for v in q.w_scale]})
        if graph.domains.get(out) == "q8" and not isinstance(node.q, LutQ):
            s, z = graph.qparams[out]
            tensors[out] = {"scale": s, "zero_point": z}
    first = next((n for n in graph.nodes if graph.input in n.inputs or
                  any(alias_root(graph, i) == graph.input for i in n.inputs if i)), None)
    s_out, z_out = graph.output_codes
    return {
        "scheme": "weights int8 symmetric per output channel; activations int8 asymmetric; "
                  "requantisation (acc*M + 2^(S-1)) >> S",
        "input": ({"mode": "lut", **lut} if lut else
                  {"mode": "folded", "scale": 1.0 / (graph.scale * graph.std), "zero_point": 0,
                   "into": first.name if first else None}),
        "tensors": tensors,
        "layers": layers,
        "output_codes": {"scale": s_out, "zero_point": z_out},
    }
