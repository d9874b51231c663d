"""Operator registry: one module per operator, each with resolve() and emit()."""

from . import add, conv, flatten, gemm, internal, logsoftmax, matmul, maxpool, relu, reshape, softmax

_MODULES = (gemm, matmul, add, relu, conv, maxpool, flatten, reshape, softmax, logsoftmax)

REGISTRY = {}
for _m in _MODULES + (internal,):
    for _op in _m.OP_TYPES:
        REGISTRY[_op] = _m

SUPPORTED = tuple(op for m in _MODULES for op in m.OP_TYPES)
