"""LogSoftmax: Softmax's shape rules and loop, ending in (x - max) - log(sum)."""

from .softmax import Softmax


class LogSoftmax(Softmax):
    OP_TYPES = ("LogSoftmax",)
    KERNEL = "nn_logsoftmax_f32"
    LOG = True


OPERATORS = (LogSoftmax,)
