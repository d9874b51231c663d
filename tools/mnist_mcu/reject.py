""""No digit here": the rule and how it behaves.

The rule (chosen by measurement, README "Not a digit"): the CNN is trained to spread its
output evenly over the 10 classes for non-digit inputs, and an input is rejected when its
highest softmax output is below `reject_threshold`, calibrated on held-out training digits and
stored in model/cnn.json. `reject_report` measures the false-reject rate on the MNIST test set
and the rejection rate on inputs that are no digit (generated here with numpy, independently
of the training-time ones in augment.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import UserError

NON_DIGIT_KINDS = {
    "empty": "all pixels 0 (an empty canvas)",
    "full": "all pixels 255",
    "noise": "uniform random pixels 0..255",
    "sparse_noise": "5 % of pixels lit at random",
    "square": "a filled square 10..20 px wide",
    "ring": "a thick ring filling most of the frame",
    "grid": "a hash pattern of 3 to 5 lines each way",
    "inverted_digit": "a test digit with black ink on white (255 - image)",
}


def reject_threshold(model_json: Path) -> float:
    try:
        return float(json.loads(Path(model_json).read_text())["reject_threshold"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{model_json} has no reject_threshold; retrain with mnist-mcu train --model cnn") from exc


def rejects(outputs: np.ndarray, threshold: float) -> np.ndarray:
    """True where the model says "no digit here" (outputs are softmax probabilities [N,10])."""
    return outputs.max(1) < threshold


def non_digits(kind: str, n: int, seed: int = 0, digits: np.ndarray | None = None) -> np.ndarray:
    """n uint8 images [n,784] of one kind (inverted_digit needs `digits` [>=n,784])."""
    rng = np.random.default_rng([seed, list(NON_DIGIT_KINDS).index(kind)])
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        if kind == "full":
            out[i] = 255
        elif kind == "noise":
            out[i] = rng.integers(0, 256, (28, 28))
        elif kind == "sparse_noise":
            out[i] = (rng.random((28, 28)) < 0.05) * 255
        elif kind == "square":
            s, (y, x) = rng.integers(10, 21), rng.integers(2, 8, 2)
            out[i, y:y + s, x:x + s] = 255
        elif kind == "ring":
            r = np.hypot(yy - 13.5 - rng.uniform(-2, 2), xx - 13.5 - rng.uniform(-2, 2))
            out[i] = ((r > rng.uniform(6, 8)) & (r < rng.uniform(11, 13))) * 255
        elif kind == "grid":
            for axis in (0, 1):
                for p in rng.choice(np.arange(5, 23), rng.integers(3, 6), replace=False):
                    if axis == 0:
                        out[i, p:p + 2, 4:24] = 255
                    else:
                        out[i, 4:24, p:p + 2] = 255
        elif kind == "inverted_digit":
            if digits is None:
                raise ValueError("inverted_digit needs digits")
            out[i] = 255 - digits[i].reshape(28, 28)
    return out.reshape(n, 784)


def reject_report(model_onnx: Path, threshold: float, pixels: np.ndarray, labels: np.ndarray,
                  n_non_digits: int = 1000, seed: int = 0) -> dict:
    """False rejects on real digits and rejection rates on non-digits (host, onnxruntime)."""
    from .evaluation.reference import FloatModel

    net = FloatModel(model_onnx)
    out = net.run(pixels)
    rej = rejects(out, threshold)
    kept = ~rej
    rates: dict[str, float] = {}
    report = {
        "threshold": threshold,
        "test_images": len(labels),
        "false_reject_rate": float(rej.mean()),
        "accuracy_all": float((out.argmax(1) == labels).mean()),
        "accuracy_of_accepted": float((out.argmax(1)[kept] == labels[kept]).mean()) if kept.any() else None,
        "errors_among_rejected": int((out.argmax(1)[rej] != labels[rej]).sum()),
        "non_digit_rejection_rate": rates,
    }
    n = min(n_non_digits, len(pixels))
    for kind in NON_DIGIT_KINDS:
        imgs = non_digits(kind, n, seed, pixels)
        rates[kind] = float(rejects(net.run(imgs), threshold).mean())
    return report
