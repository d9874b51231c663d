"""LogSoftmax: same shape rules as Softmax; deterministic exp and log."""

from . import softmax

OP_TYPES = ("LogSoftmax",)
KERNEL = "nn_logsoftmax_f32"
resolve = softmax.resolve


def emit(node, ctx):
    return [line.replace(softmax.KERNEL, KERNEL) for line in softmax.emit(node, ctx)]
