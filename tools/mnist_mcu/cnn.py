"""The product CNN: architecture specs, the augmented training recipe, BN folding for export,
and the "no digit here" threshold calibrated on held-out training images.

An architecture is a short spec, e.g. "c8s2-c16s2-f32": c<N>[s<S>] is a 3x3 conv with N
channels (stride S, padding 1) + BatchNorm + ReLU, "p" a 2x2 max-pool, f<N> a dense layer of N
units + ReLU; a final dense layer to 10 classes is always added. BatchNorm is folded into the
conv weights before export, so the ONNX graph holds only Conv, Relu, MaxPool, Flatten, Gemm,
Softmax: all supported by the native int8 backend.
"""

import math
import re
import time

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment, non_digits
from .data import MEAN, STD
from .evaluation.progress import eta
from .errors import UserError

DEFAULT_ARCH = "c12s2-c16s2-f64"  # chosen by measurement: README "The product CNN"
HELD_OUT = 5000          # last training images: never trained on, used to calibrate the reject rule
REJECT_TARGET = 0.0025   # false-reject rate the threshold is set to on the held-out images
NON_DIGIT_SHARE = 8      # one non-digit image per this many digits in a batch
NON_DIGIT_WEIGHT = 0.5   # weight of their loss (cross-entropy against the uniform distribution)
_TOKEN = re.compile(r"^(c(\d+)(?:s(\d+))?|p|f(\d+))$")


def build(spec: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    ch, size, flat = 1, 28, None
    for tok in spec.split("-"):
        m = _TOKEN.match(tok)
        if not m:
            raise UserError(f"bad architecture token {tok!r} in {spec!r} (use c<N>[s<S>], p, f<N>)")
        if m.group(2):
            if flat is not None:
                raise UserError(f"conv after a dense layer in {spec!r}")
            out, stride = int(m.group(2)), int(m.group(3) or 1)
            layers += [nn.Conv2d(ch, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            ch, size = out, (size - 1) // stride + 1
        elif tok == "p":
            layers.append(nn.MaxPool2d(2))
            size //= 2
        else:
            if flat is None:
                layers.append(nn.Flatten())
                flat = ch * size * size
            layers += [nn.Linear(flat, int(m.group(4))), nn.ReLU()]
            flat = int(m.group(4))
    if flat is None:
        layers.append(nn.Flatten())
        flat = ch * size * size
    layers.append(nn.Linear(flat, 10))
    return nn.Sequential(*layers)


def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """Eval-mode copy with every Conv+BatchNorm pair folded into one Conv (with bias)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = model.eval()
    out: list[nn.Module] = []
    mods = list(model)
    i = 0
    while i < len(mods):
        conv, bn = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(conv, bn))
            i += 2
        else:
            out.append(mods[i])
            i += 1
    return nn.Sequential(*out).eval()


def _norm(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - MEAN) / STD


def _max_prob(model, x, batch=2000):
    model.eval()
    with torch.no_grad():
        return torch.cat([F.softmax(model(x[i:i + batch]), 1) for i in range(0, len(x), batch)])


def calibrate_reject(probs_held: np.ndarray, target: float = REJECT_TARGET) -> float:
    """The largest max-probability threshold that rejects at most `target` of the held-out digits."""
    conf = np.sort(probs_held.max(1))
    k = math.floor(target * len(conf))  # this many may fall below the threshold
    return float(conf[k]) if k < len(conf) else 0.0


def train(train_img, train_lbl, test_img, test_lbl, epochs, batch_size, lr, seed, arch=DEFAULT_ARCH,
          progress=None, aug: AugmentConfig | None = None):
    """Returns (trained model with BatchNorm, history, extra metrics). Images uint8 [N,28,28]."""
    aug = aug or AugmentConfig()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build(arch)
    if len(train_img) < 100:
        raise UserError(f"the CNN needs at least 100 training images (got {len(train_img)}): a tenth is held out")
    held = min(HELD_OUT, len(train_img) // 10)
    x01 = torch.from_numpy(train_img.astype(np.float32) / 255).unsqueeze(1)
    y = torch.from_numpy(train_lbl.astype(np.int64))
    xtr, ytr, xho, yho = x01[:-held], y[:-held], x01[-held:], y[-held:]
    xte = _norm(torch.from_numpy(test_img.astype(np.float32) / 255).unsqueeze(1))
    yte = torch.from_numpy(test_lbl.astype(np.int64))
    steps = math.ceil(len(xtr) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total_loss, correct = 0.0, 0
        it = range(0, len(xtr), batch_size)
        for i in (progress(it, f"epoch {epoch}/{epochs}") if progress else it):
            idx = order[i:i + batch_size]
            xb = augment(xtr[idx], gen, aug)
            nd = non_digits(max(1, len(idx) // NON_DIGIT_SHARE), gen)
            logits = model(_norm(torch.cat([xb, nd])))
            lg, lnd = logits[:len(idx)], logits[len(idx):]
            loss = F.cross_entropy(lg, ytr[idx]) + NON_DIGIT_WEIGHT * -F.log_softmax(lnd, 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (lg.argmax(1) == ytr[idx]).sum().item()
        test_acc = (_max_prob(model, xte).argmax(1) == yte).float().mean().item()
        history.append({"epoch": epoch, "train_loss": total_loss / len(xtr),
                        "train_accuracy": correct / len(xtr), "test_accuracy": test_acc})
        click.echo(f"epoch {epoch:2d}: loss {history[-1]['train_loss']:.4f}  "
                   f"train(aug) {history[-1]['train_accuracy']:.4f}  test {test_acc:.4f}  "
                   f"{eta(t0, epoch, epochs)}")
    p_held = _max_prob(model, _norm(xho)).numpy()
    thr = calibrate_reject(p_held)
    p_test = _max_prob(model, xte).numpy()
    extra = {
        "architecture": arch,
        "train_images": len(xtr),
        "held_out_images": held,
        "held_out_accuracy": float((p_held.argmax(1) == yho.numpy()).mean()),
        "reject_threshold": thr,
        "reject_rule": "no digit when the highest softmax output < reject_threshold",
        "reject_calibration": f"threshold rejects <= {REJECT_TARGET:.2%} of the {held} held-out training digits",
        "test_false_reject_rate": float((p_test.max(1) < thr).mean()),
        "augmentation": {k: v for k, v in aug.__dict__.items()},
        "non_digit_training": {"share": f"1 per {NON_DIGIT_SHARE} digits", "weight": NON_DIGIT_WEIGHT,
                               "target": "uniform over the 10 classes",
                               "kinds": ["blank", "specks", "noise", "disc", "smear"]},
    }
    return model, history, extra


def timed_train(*args, **kwargs):
    """train() plus its wall-clock and CPU seconds (the machine is shared: both tell the story)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = train(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu
