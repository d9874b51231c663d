"""Operator registry: one module per operator, each with one Operator subclass (see base.py)."""

from ...errors import UserError
from . import (
    add,
    conv,
    flatten,
    gemm,
    internal,
    logsoftmax,
    matmul,
    maxpool,
    relu,
    reshape,
    softmax,
)

_MODULES = (gemm, matmul, add, relu, conv, maxpool, flatten, reshape, softmax, logsoftmax)

REGISTRY = {}
for _m in _MODULES + (internal,):
    for _cls in _m.OPERATORS:
        for _op in _cls.OP_TYPES:
            REGISTRY[_op] = _cls()

SUPPORTED = tuple(op for m in _MODULES for c in m.OPERATORS for op in c.OP_TYPES)


def guarded(node, fn, *args):
    """Run one operator step; an unexpected exception becomes the one-line UserError naming the node."""
    try:
        return fn(*args)
    except UserError:
        raise
    except Exception as exc:   # a graph the operator did not anticipate: one line, never a traceback
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{node}: not supported by the native backend ({type(exc).__name__}: {msg})") from exc
