"""ONNX -> the backend's graph: tensors with static shapes, nodes in topological order.

load() reads the model and rejects unsupported operators (all of them named in one
line); resolve() asks every operator module to check its inputs and attributes and
to set its output shapes.  Batch dimensions are fixed to 1 (one image per call).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

DEFAULT_MEAN = 0.1307
DEFAULT_STD = 0.3081
DEFAULT_SCALE = 255.0


@dataclass
class Tensor:
    name: str
    shape: tuple = None
    data: np.ndarray = None      # constants (initializers) only

    @property
    def is_const(self):
        return self.data is not None

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape is not None else 0


@dataclass
class Node:
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # filled by passes / quantisation

    def __str__(self):
        return f"{self.op} (node '{self.name}')"


@dataclass
class Graph:
    name: str
    tensors: dict
    nodes: list
    input: str
    output: str
    opset: int = 13
    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD
    scale: float = DEFAULT_SCALE

    def t(self, name):
        return self.tensors[name]

    def consumers(self, name):
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name):
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def const(self, name):
        t = self.tensors.get(name)
        return None if t is None else t.data

    def new_name(self, base):
        i = 0
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"


def _float_meta(props, key, default):
    try:
        return float(props[key])
    except (KeyError, ValueError):
        return default


def load(onnx_path):
    """Read an ONNX file into a Graph (shapes not yet resolved)."""
    import onnx
    from onnx import helper, numpy_helper

    from .ops import SUPPORTED

    path = Path(onnx_path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"cannot read ONNX model {path}: {exc}".splitlines()[0]) from exc
    g = model.graph
    opset = 13
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version

    unsupported = []
    for n in g.node:
        if n.op_type not in SUPPORTED and n.op_type != "Constant":
            unsupported.append(f"{n.op_type} (node '{n.name}')")
    if unsupported:
        raise UserError(
            f"unsupported ONNX operator(s): {', '.join(unsupported)}; "
            f"the native backend supports: {', '.join(SUPPORTED)}")

    tensors = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        arr = arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(np.float32)
        tensors[init.name] = Tensor(init.name, tuple(arr.shape), arr)
    init_names = set(tensors)
    inputs = [i for i in g.input if i.name not in init_names]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UserError(f"the native backend needs exactly one input and one output; {path.name} has "
                        f"{len(inputs)} input(s) and {len(g.output)} output(s)")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != onnx.TensorProto.FLOAT:
        raise UserError(f"input '{inp.name}' must be float32 (normalised pixels)")
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
    if dims:
        dims[0] = 1   # batch
    tensors[inp.name] = Tensor(inp.name, tuple(dims))

    nodes = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            if "value" not in attrs:
                raise UserError(f"Constant (node '{name}') must use the 'value' attribute")
            arr = numpy_helper.to_array(attrs["value"])
            arr = arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(np.float32)
            tensors[n.output[0]] = Tensor(n.output[0], tuple(arr.shape), arr)
            continue
        for o in n.output:
            tensors.setdefault(o, Tensor(o))
        nodes.append(Node(n.op_type, name, [x for x in n.input], [x for x in n.output], attrs))

    props = {p.key: p.value for p in model.metadata_props}
    graph = Graph(
        name=(g.name if g.name and g.name.isidentifier() else path.stem),
        tensors=tensors, nodes=nodes, input=inp.name, output=g.output[0].name, opset=opset,
        mean=_float_meta(props, "input_mean", DEFAULT_MEAN),
        std=_float_meta(props, "input_std", DEFAULT_STD),
        scale=_float_meta(props, "input_scale", DEFAULT_SCALE),
    )
    graph.name = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem) or "model"
    _toposort(graph)
    return graph


def _toposort(graph):
    known = {graph.input} | {k for k, t in graph.tensors.items() if t.is_const}
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
    if graph.output not in known:
        raise UserError(f"the ONNX graph output '{graph.output}' is not produced by any node")


def resolve(graph):
    """Check every node and infer output shapes (onnx2c's resolve step)."""
    from .ops import REGISTRY

    for node in graph.nodes:
        for i in node.inputs:
            if i and graph.tensors[i].shape is None:
                raise UserError(f"{node}: input '{i}' has no known shape")
        REGISTRY[node.op].resolve(node, graph)
        for o in node.outputs[:1]:
            if graph.tensors[o].shape is None:
                raise UserError(f"{node}: could not infer the output shape")
    return graph
