"""`mnist-mcu train`: train the digit classifier in PyTorch and export it to ONNX.

The reference network (`--model mlp`) is the seed's: 784 -> 100 -> 10, ReLU,
softmax at the output, Adam 1e-3, 10 epochs, batch 100, fixed seed.
The product network (`--model cnn`) is trained with augmentation; its recipe is in cnn.py.
"""

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import click
import numpy as np

from .data import MEAN, STD, load_mnist, normalise
from .errors import UserError
from .evaluation.progress import eta
from .paths import MODEL_DIR

PARITY_TOL = 1e-5
# Recipe defaults per model: epochs, batch size, learning rate (the MLP's are the seed article's).
RECIPES = {"mlp": (10, 100, 1e-3), "cnn": (40, 128, 4e-3)}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise UserError("training needs PyTorch; install the extra: "
                        "pip install -e '.[train]' (or run make setup)") from exc
    return torch


def build_model(kind, arch=None):
    """Networks return logits; softmax is appended at export (see _WithSoftmax)."""
    nn = _torch().nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
    if kind == "cnn":
        from . import cnn

        return cnn.build(arch or cnn.DEFAULT_ARCH)
    raise UserError(f"unknown model {kind!r}; choose mlp or cnn")


def count_macs(model):
    """Multiply-accumulates of one inference (Linear and Conv2d layers)."""
    torch = _torch()
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Linear):
            macs += mod.in_features * mod.out_features
        elif isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += out[0].numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    return macs


def _seed_everything(seed):
    torch = _torch()
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _tensors(images, labels):
    torch = _torch()
    x = torch.from_numpy(normalise(images)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def evaluate_accuracy(model, x, y, batch=1000):
    torch = _torch()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def train_model(kind="mlp", epochs=10, batch_size=100, lr=1e-3, seed=3, data_dir=None, limit_train=None,
                arch=None):
    """Train and return (model, metrics dict, test tensors)."""
    torch = _torch()
    _seed_everything(seed)
    train_img, train_lbl = load_mnist("train", data_dir)
    test_img, test_lbl = load_mnist("test", data_dir)
    if limit_train:
        train_img, train_lbl = train_img[:limit_train], train_lbl[:limit_train]
    if kind == "cnn":
        return _train_cnn(train_img, train_lbl, test_img, test_lbl, epochs, batch_size, lr, seed, arch)
    xtr, ytr = _tensors(train_img, train_lbl)
    xte, yte = _tensors(test_img, test_lbl)
    model = build_model(kind)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total_loss, correct = 0.0, 0
        bar = _progress(range(0, len(xtr), batch_size), f"epoch {epoch}/{epochs}")
        for i in bar:
            idx = order[i:i + batch_size]
            logits = model(xtr[idx])
            loss = loss_fn(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == ytr[idx]).sum().item()
        test_acc = evaluate_accuracy(model, xte, yte)
        history.append({"epoch": epoch, "train_loss": total_loss / len(xtr),
                        "train_accuracy": correct / len(xtr), "test_accuracy": test_acc})
        click.echo(f"epoch {epoch:2d}: loss {history[-1]['train_loss']:.4f}  "
                   f"train {history[-1]['train_accuracy']:.4f}  test {test_acc:.4f}  "
                   f"{eta(start, epoch, epochs)}")  # progress in CI logs, where no bar is drawn
    seconds = time.perf_counter() - start
    metrics = {
        "model": kind,
        "test_accuracy": history[-1]["test_accuracy"] if history else evaluate_accuracy(model, xte, yte),
        "epochs": history,
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model),
        "seed": seed,
        "training_seconds": round(seconds, 2),
        "hyperparameters": {"optimizer": "Adam", "lr": lr, "epochs": epochs, "batch_size": batch_size,
                            "loss": "cross-entropy", "input_mean": MEAN, "input_std": STD,
                            "train_images": len(xtr)},
        "torch_version": torch.__version__,
    }
    return model, metrics, (xte, yte)


def _train_cnn(train_img, train_lbl, test_img, test_lbl, epochs, batch_size, lr, seed, arch):
    torch = _torch()
    from . import cnn

    # one thread: deterministic regardless of the core count, and on this shared 2-core machine
    # the small per-batch ops run several times faster than with two contending threads
    torch.set_num_threads(1)
    (model, history, extra), seconds, cpu_seconds = cnn.timed_train(
        train_img, train_lbl, test_img, test_lbl, epochs, batch_size, lr, seed,
        arch=arch or cnn.DEFAULT_ARCH, progress=_progress)
    xte, yte = _tensors(test_img, test_lbl)
    folded = cnn.fold_batchnorm(model)
    metrics = {
        "model": "cnn",
        "test_accuracy": evaluate_accuracy(folded, xte, yte),
        "epochs": history,
        "parameters": sum(p.numel() for p in folded.parameters()),
        "macs": count_macs(folded),
        "seed": seed,
        "training_seconds": round(seconds, 2),
        "training_cpu_seconds": round(cpu_seconds, 2),
        "hyperparameters": {"optimizer": "AdamW (weight decay 1e-4), one-cycle schedule", "lr": lr,
                            "epochs": epochs, "batch_size": batch_size, "loss": "cross-entropy",
                            "input_mean": MEAN, "input_std": STD, "train_images": extra["train_images"],
                            "threads": 1},
        **extra,
        "torch_version": torch.__version__,
    }
    return folded, metrics, (xte, yte)


def _progress(iterable, desc):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, unit="batch", disable=None)


class _WithSoftmax:
    """Wraps the logits network so the exported graph ends with Softmax."""

    @staticmethod
    def wrap(model):
        nn = _torch().nn
        return nn.Sequential(model, nn.Softmax(dim=1)).eval()


def export_onnx(model, path, x_check, opset=13):
    """Export to ONNX, then check it against PyTorch on x_check; returns the parity figures."""
    torch = _torch()
    import onnx

    net = _WithSoftmax.wrap(model)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / path.name
        with warnings.catch_warnings():
            # the legacy exporter is chosen on purpose (README: plain graph deepC reads, no onnxscript)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(tmp_path), input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp_path))
        for key, value in (("input_mean", MEAN), ("input_std", STD), ("input_scale", 255.0)):
            proto.metadata_props.add(key=key, value=repr(value))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp_path))
        parity = check_parity(net, tmp_path, x_check)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, path)
    return parity


def check_parity(net, onnx_path, x):
    """Top-1 and output agreement between PyTorch and onnxruntime; raises if off."""
    torch = _torch()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(x).numpy()
    got = sess.run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    same_top1 = float((ref.argmax(1) == got.argmax(1)).mean())
    if diff > PARITY_TOL or same_top1 < 1.0:
        raise UserError(f"ONNX export disagrees with PyTorch (max abs diff {diff:.2e}, top-1 agreement "
                        f"{same_top1:.4f}); check the torch/onnx versions pinned in pyproject.toml")
    return {"images": len(x), "max_abs_diff": diff, "top1_agreement": same_top1}


def plot_curves(metrics, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [e["epoch"] for e in metrics["epochs"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [e["train_loss"] for e in metrics["epochs"]], marker="o")
    a1.set(xlabel="epoch", ylabel="training loss", title="Loss")
    a2.plot(ep, [100 * e["train_accuracy"] for e in metrics["epochs"]], marker="o", label="train")
    a2.plot(ep, [100 * e["test_accuracy"] for e in metrics["epochs"]], marker="o", label="test")
    a2.set(xlabel="epoch", ylabel="accuracy (%)",
           title=f"{metrics['model']}: {100 * metrics['test_accuracy']:.2f}% test")
    a2.legend()
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def run_training(kind, epochs=None, batch_size=None, lr=None, seed=3, data_dir=None, out_dir=MODEL_DIR,
                 limit_train=None, arch=None):
    """Train, export <out_dir>/<kind>.onnx (checked against PyTorch) and write metrics + curve."""
    if arch and kind != "cnn":
        raise UserError("--arch applies to --model cnn only")
    d_epochs, d_batch, d_lr = RECIPES[kind]
    epochs, batch_size, lr = epochs or d_epochs, batch_size or d_batch, lr or d_lr
    out_dir = Path(out_dir)
    model, metrics, (xte, _) = train_model(kind, epochs, batch_size, lr, seed, data_dir, limit_train, arch)
    click.echo("exporting to ONNX and checking it against PyTorch on the test set ...")
    metrics["export_parity"] = export_onnx(model, out_dir / f"{kind}.onnx", xte)
    _write_json(out_dir / f"{kind}.json", metrics)
    plot_curves(metrics, out_dir / f"{kind}_training.png")
    return metrics


@click.command("train")
@click.option("--model", "kind", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="default: mlp 10, cnn 40")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="default: mlp 100, cnn 128")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="default: mlp 1e-3, cnn 4e-3 (peak of the one-cycle schedule)")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=3, show_default=True)
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root (torchvision layout) [env: MNIST_DIR]")
@click.option("--out-dir", type=click.Path(path_type=Path), default=MODEL_DIR, show_default=True)
@click.option("--limit-train", type=click.IntRange(min=1), default=None,
              help="train on the first N images only (smoke tests)")
@click.option("--arch", default=None, help="cnn architecture spec, e.g. c8s2-c16s2-f32 (see cnn.py)")
def cli(kind, epochs, batch_size, lr, seed, data_dir, out_dir, limit_train, arch):
    """Train on MNIST, export model/<model>.onnx and write metrics and a training-curve PNG."""
    m = run_training(kind, epochs, batch_size, lr, seed, data_dir, out_dir, limit_train, arch)
    p = m["export_parity"]
    click.echo(f"test accuracy {100 * m['test_accuracy']:.2f}% in {m['training_seconds']:.0f} s; "
               f"ONNX parity on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}; "
               f"wrote {out_dir}/{kind}.onnx")
