"""Optimisation passes over the resolved graph (kept apart from the emitters).

Each pass rewrites graph.nodes / node.params in place; run_all() applies them in order.
"""

import numpy as np

from .graph import Graph, Node, Tensor
from .ops.conv import ConvParams
from .ops.gemm import Dense


def _sole_consumer(graph, name):
    cons = graph.consumers(name)
    if len(cons) != 1 or name in graph.outputs:
        return None
    return cons[0]


def _replace_output(graph, node, removed):
    """node takes over the output of `removed` (which is deleted)."""
    node.outputs[0] = removed.outputs[0]
    node.fused.append(removed.name)
    graph.nodes.remove(removed)


def _layer(node):
    """The Dense/Conv parameters of a layer the passes may fold into, or None."""
    return node.params if isinstance(node.params, (Dense, ConvParams)) else None


def matmul_to_gemm(graph):
    """MatMul([1,K], constant [K,N]) -> Gemm with W = B^T."""
    for n in list(graph.nodes):
        if n.op != "MatMul":
            continue
        a, b = (graph.tensors[x] for x in n.inputs)
        if b.is_const and not a.is_const and len(a.shape) == 2 and len(b.shape) == 2 and a.shape[0] == 1:
            g = Node("Gemm", n.name, [n.inputs[0]], list(n.outputs), {},
                     Dense(np.ascontiguousarray(b.data.T.astype(np.float32)), np.zeros(b.shape[1], np.float32)))
            graph.nodes[graph.nodes.index(n)] = g


def fold_bias_add(graph):
    """Gemm/Conv followed by Add(constant) -> bias folded into the layer."""
    changed = True
    while changed:
        changed = False
        for n in graph.nodes:
            p = _layer(n)
            if p is None or p.relu:
                continue
            add = _sole_consumer(graph, n.outputs[0])
            if add is None or add.op != "Add":
                continue
            other = [graph.tensors[x] for x in add.inputs if x != n.outputs[0]]
            if len(other) != 1 or not other[0].is_const:
                continue
            out_shape = graph.tensors[n.outputs[0]].shape
            c = other[0].data.astype(np.float32)
            try:
                full = np.broadcast_to(c, out_shape)
            except ValueError:
                continue
            if tuple(np.broadcast_shapes(c.shape, out_shape)) != tuple(out_shape):
                continue
            if isinstance(p, Dense):
                extra = full.reshape(-1)
            else:   # per-channel constant only (one image)
                if out_shape[0] != 1:
                    continue
                per = full.reshape(out_shape[1], -1)
                if not np.all(per == per[:, :1]):
                    continue
                extra = per[:, 0]
            p.bias = (p.bias + extra).astype(np.float32)
            _replace_output(graph, n, add)
            changed = True
            break


def fuse_relu(graph):
    """Gemm/Conv followed by its only consumer Relu -> clamp inside the layer."""
    for n in list(graph.nodes):
        p = _layer(n)
        if p is None:
            continue
        r = _sole_consumer(graph, n.outputs[0])
        if r is not None and r.op == "Relu":
            p.relu = True
            _replace_output(graph, n, r)


def alias_root(graph, name):
    """Follow Flatten/Reshape views back to the tensor that owns the buffer."""
    while True:
        p = graph.producer(name)
        if p is None or not p.view:
            return name
        name = p.inputs[0]


def consumers_through_views(graph, name):
    out = []
    for c in graph.consumers(name):
        if c.view:
            out += consumers_through_views(graph, c.outputs[0])
        else:
            out.append(c)
    return out


def fold_input_normalisation(graph):
    """The device gets raw pixels.  If the input only feeds (through views) the A
    input of one Gemm, fold (p/scale - mean)/std into its weights exactly
    (gemm.folded_f32 / quantize); otherwise insert an InputLUT node."""
    name = graph.input
    while True:
        cons = graph.consumers(name)
        if len(cons) != 1:
            break
        c = cons[0]
        if c.view:
            name = c.outputs[0]
            continue
        if isinstance(c.params, Dense) and c.inputs[0] == name:
            c.params.input_u8 = True
            graph.input_folded = True
            return
        break
    graph.input_folded = False
    new = graph.new_name("input_normalised")
    graph.tensors[new] = Tensor(new, graph.tensors[graph.input].shape)
    for c in graph.consumers(graph.input):
        c.inputs = [new if x == graph.input else x for x in c.inputs]
    graph.nodes.insert(0, Node("InputLUT", "input_normalisation", [graph.input], [new]))


PASSES = (matmul_to_gemm, fold_bias_add, fuse_relu, fold_input_normalisation)


def run_all(graph: Graph) -> Graph:
    for p in PASSES:
        if p is fold_input_normalisation and not graph.image_input:
            continue     # a general graph takes float inputs as they are
        p(graph)
    return graph
