"""ONNX -> the backend's graph: tensors with static shapes, nodes in topological order.

load() reads the model and rejects unsupported operators (all of them named in one
line); resolve() asks every operator to check its inputs, attributes and types and
to set its output shapes.

Two kinds of graph:
  * an MNIST model for the firmware (image_input=True): one float input (one image;
    the batch dimension is fixed to 1) fed from raw pixels, one output;
  * any graph (image_input=False, e.g. ONNX's node tests): float32 inputs and outputs
    of static shapes, run through `int <name>(const float *const *in, float *const *out)`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

DEFAULT_MEAN = 0.1307
DEFAULT_STD = 0.3081
DEFAULT_SCALE = 255.0


@dataclass
class Tensor:
    name: str
    shape: tuple | None = None
    data: np.ndarray | None = None      # constants (initializers) only
    dtype: str = "float32"

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape is not None else 0


@dataclass
class Node:
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    params: Any = None     # the operator's typed parameters (set by its resolve(), rewritten by passes)
    q: Any = None          # its int8 parameters (set by its quantize())
    view: bool = False     # the output shares the input's buffer (Flatten, Reshape): nothing is emitted
    fused: list = field(default_factory=list)   # names of ONNX nodes the passes folded into this one

    def __str__(self) -> str:
        return f"{self.op} (node '{self.name}')"


@dataclass
class Graph:
    name: str
    tensors: dict
    nodes: list
    inputs: list
    outputs: list
    opset: int = 13
    image_input: bool = True     # MNIST model for the firmware: raw uint8 pixels in
    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD
    scale: float = DEFAULT_SCALE
    input_folded: bool = False   # normalisation folded into the first layer (passes)
    domains: dict = field(default_factory=dict)    # int8: tensor -> "u8" | "q8" | "f32"
    qparams: dict = field(default_factory=dict)    # int8: tensor -> (scale, zero point)
    output_codes: tuple | None = None   # int8: (scale, zero point) that turn the float output into codes

    @property
    def input(self) -> str:
        return self.inputs[0]

    @property
    def output(self) -> str:
        return self.outputs[0]

    @output.setter
    def output(self, name: str) -> None:
        self.outputs[0] = name

    def t(self, name: str) -> Tensor:
        return self.tensors[name]

    def consumers(self, name: str) -> list:
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name: str):
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def const(self, name: str):
        t = self.tensors.get(name)
        return None if t is None else t.data

    def new_name(self, base: str) -> str:
        i = 0
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"


def _float_meta(props, key, default):
    try:
        return float(props[key])
    except (KeyError, ValueError):
        return default


def _read(onnx_model):
    import onnx

    if isinstance(onnx_model, onnx.ModelProto):
        return onnx_model, "model"
    path = Path(onnx_model)
    try:
        return onnx.load(str(path)), path.stem
    except Exception as exc:
        raise UserError(f"cannot read ONNX model {path}: {exc}".splitlines()[0]) from exc


def _const_array(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.int64) if arr.dtype.kind in "iub" else arr.astype(np.float32)


def load(onnx_model, image_input: bool = True) -> Graph:
    """Read an ONNX file (or ModelProto) into a Graph (shapes not yet resolved)."""
    import onnx
    from onnx import helper, numpy_helper

    from .ops import SUPPORTED

    model, stem = _read(onnx_model)
    g = model.graph
    opset = 13
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version

    unsupported = [f"{n.op_type} (node '{n.name}')" for n in g.node
                   if n.op_type not in SUPPORTED and n.op_type != "Constant"]
    if unsupported:
        raise UserError(
            f"unsupported ONNX operator(s): {', '.join(unsupported)}; "
            f"the native backend supports: {', '.join(SUPPORTED)}")

    tensors = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        tensors[init.name] = Tensor(init.name, tuple(arr.shape), _const_array(arr), arr.dtype.name)
    inputs = [i for i in g.input if i.name not in tensors]
    if image_input and (len(inputs) != 1 or len(g.output) != 1):
        raise UserError(f"the native backend needs exactly one input and one output; {stem} has "
                        f"{len(inputs)} input(s) and {len(g.output)} output(s)")
    for inp in inputs:
        tt = inp.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "undefined"
        if image_input:
            if tt.elem_type != onnx.TensorProto.FLOAT:
                raise UserError(f"input '{inp.name}' must be float32 (normalised pixels)")
            dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
            if dims:
                dims[0] = 1   # batch: one image per call
        else:
            if any(not d.HasField("dim_value") for d in tt.shape.dim):
                raise UserError(f"input '{inp.name}' has a symbolic dimension; the native backend needs "
                                "static shapes")
            dims = [d.dim_value for d in tt.shape.dim]
        tensors[inp.name] = Tensor(inp.name, tuple(dims), None, dtype)

    nodes = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            if "value" not in attrs:
                raise UserError(f"Constant (node '{name}') must use the 'value' attribute")
            arr = numpy_helper.to_array(attrs["value"])
            tensors[n.output[0]] = Tensor(n.output[0], tuple(arr.shape), _const_array(arr), arr.dtype.name)
            continue
        for o in n.output:
            if o:
                tensors.setdefault(o, Tensor(o))
        nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs))

    props = {p.key: p.value for p in model.metadata_props}
    graph = Graph(
        name="".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "model",
        tensors=tensors, nodes=nodes, inputs=[i.name for i in inputs], outputs=[o.name for o in g.output],
        opset=opset, image_input=image_input,
        mean=_float_meta(props, "input_mean", DEFAULT_MEAN),
        std=_float_meta(props, "input_std", DEFAULT_STD),
        scale=_float_meta(props, "input_scale", DEFAULT_SCALE),
    )
    _toposort(graph)
    return graph


def _toposort(graph: Graph) -> None:
    known = set(graph.inputs) | {k for k, t in graph.tensors.items() if t.is_const}
    ordered, pending = [], list(graph.nodes)
    while pending:
        progress = False
        for n in list(pending):
            if all((not i) or i in known for i in n.inputs):
                ordered.append(n)
                known.update(n.outputs)
                pending.remove(n)
                progress = True
        if not progress:
            missing = sorted({i for n in pending for i in n.inputs if i and i not in known})
            raise UserError(f"the ONNX graph is not connected: no producer for {', '.join(missing[:5])}")
    graph.nodes = ordered
    for o in graph.outputs:
        if o not in known:
            raise UserError(f"the ONNX graph output '{o}' is not produced by any node")


def resolve(graph: Graph) -> Graph:
    """Check every node and infer output shapes (onnx2c's resolve step)."""
    from .ops import REGISTRY, guarded

    for node in graph.nodes:
        op = REGISTRY[node.op]
        for k, i in enumerate(node.inputs):
            if not i:
                continue
            t = graph.tensors[i]
            if t.shape is None:
                raise UserError(f"{node}: input '{i}' has no known shape")
            if t.dtype != "float32" and k not in op.INT_INPUTS:
                raise UserError(f"{node}: input '{i}' has type {t.dtype}; only float32 is supported")
            if 0 in t.shape:
                raise UserError(f"{node}: input '{i}' is empty (shape {list(t.shape)}); not supported")
        guarded(node, op.resolve, node, graph)
        for o in node.outputs[:1]:
            if graph.tensors[o].shape is None:
                raise UserError(f"{node}: could not infer the output shape")
        for o in node.outputs:
            if o:
                graph.tensors[o].dtype = "float32"
    return graph
