"""`mnist-mcu robustness`: accuracy of each model on perturbed copies of the MNIST test set
(rotation, shift, scale, stroke thickness, bounding-box centring; perturb.py), on the host
(onnxruntime, float ONNX) and on the device for the int8 envs (the evaluate device session).
For a model whose metrics JSON holds a `reject_threshold` it also reports the "no digit"
rule (reject.py): false rejects on the test set and rejection of non-digit inputs.
Writes robustness.json and robustness.png (default reports/).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import numpy as np

from . import firmware as fw
from .errors import UserError
from .evaluation.reference import FloatModel, load_test_set
from .evaluation.session import (
    DEFAULT_WINDOW_QEMU,
    StreamOptions,
    run_qemu,
    stream_to_ports,
)
from .paths import MODEL_DIR, REPORTS_DIR, shown
from .perturb import FAMILIES, perturb
from .reject import reject_report, reject_threshold

DEFAULT_MODELS = (MODEL_DIR / "cnn.onnx", MODEL_DIR / "mlp.onnx")
DEFAULT_ENVS = ("qemu_f405_cnn_int8", "qemu_f405_int8")
TARGET = 0.97  # the CNN's goal on every family


def perturbed_sets(pixels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every family's copy of uint8 pixels [N,784]."""
    return {f: perturb(pixels, f, seed) for f in FAMILIES}


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(1) == labels).mean())


def host_scores(model: Path, sets: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    net = FloatModel(model)
    return {f: _accuracy(net.run(px), labels) for f, px in sets.items()}


def device_scores(env_name: str, sets: dict[str, np.ndarray], labels: np.ndarray, build: bool = True,
                  port: str | None = None, timeout: float = 5.0) -> dict:
    """All families in one device session (one boot), split back per family."""
    env = fw.get_env(env_name)
    if env.dtype != "int8":
        raise UserError(f"env {env_name} is not an int8 build; robustness runs the device for int8 envs")
    if not env.is_qemu and not port:
        raise UserError(f"env {env_name} is a real board: pass --port")
    if build:
        click.echo(f"building {env.name} ...", err=True)
        fw.build(env)
    n = len(labels)
    pixels = np.concatenate(list(sets.values()))
    if port:
        run = stream_to_ports([p.strip() for p in port.split(",")], pixels, StreamOptions(timeout=timeout))
    else:
        run = run_qemu(fw.require_elf(env), str(env.qemu_machine), pixels,
                       options=StreamOptions(window=DEFAULT_WINDOW_QEMU, timeout=timeout))
    out = {}
    for i, fam in enumerate(sets):
        out[fam] = _accuracy(run.outputs[i * n:(i + 1) * n], labels)
    return {"model_onnx": shown(env.model_onnx), "images": n, "accuracy": out, "min_accuracy": min(out.values()),
            "wall_seconds": round(run.wall_seconds, 1)}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{Path(m).stem} host", r["accuracy"]) for m, r in report["host"].items()]
    rows += [(f"{e} device", r["accuracy"]) for e, r in report["device"].items()]
    fams = list(FAMILIES)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(rows))
    for k, (name, acc) in enumerate(rows):
        ax.bar(np.arange(len(fams)) + k * width - 0.4 + width / 2, [100 * acc[f] for f in fams], width, label=name)
    ax.axhline(100 * TARGET, color="k", ls="--", lw=1, label=f"CNN target {100 * TARGET:.0f} %")
    ax.set_xticks(range(len(fams)), fams)
    lo = min(min(a.values()) for _, a in rows) if rows else 0.9
    ax.set_ylim(max(0, 100 * lo - 5), 100)
    dev = {r["images"] for r in report["device"].values()} - {report["images"]}
    note = f"; device {', '.join(map(str, sorted(dev)))}" if dev else ""
    ax.set(ylabel="accuracy (%)", title=f"Robustness on {report['images']} perturbed test images per family{note} "
                                        f"(seed {report['seed']})")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def robustness(models=DEFAULT_MODELS, envs=DEFAULT_ENVS, limit=None, seed=0, out_dir=REPORTS_DIR,
               data_dir=None, build=True, port=None, timeout=5.0, device_limit=None) -> dict:
    t0 = time.monotonic()
    for m in models:
        if not Path(m).is_file():
            raise UserError(f"model {m} not found; train it first (mnist-mcu train) or pass --model")
    pixels, labels = load_test_set(data_dir, limit)
    sets = perturbed_sets(pixels, seed)
    report = {"images": len(labels), "seed": seed, "families": FAMILIES, "target_min_accuracy_cnn": TARGET,
              "host": {}, "device": {}}
    for m in models:
        acc = host_scores(Path(m), sets, labels)
        report["host"][shown(m)] = {"accuracy": acc, "min_accuracy": min(acc.values())}
        meta = Path(m).with_suffix(".json")
        if meta.is_file() and "reject_threshold" in json.loads(meta.read_text()):
            report.setdefault("reject", {})[shown(m)] = reject_report(
                Path(m), reject_threshold(meta), pixels, labels, seed=seed)
    k = min(device_limit or len(labels), len(labels))  # the device runs the first k of every family
    for e in envs:
        report["device"][e] = device_scores(e, {f: px[:k] for f, px in sets.items()}, labels[:k], build, port,
                                            timeout)
    report["seconds"] = round(time.monotonic() - t0, 1)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; pass a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "robustness.png"
    plot(report, png)
    report["plot"] = shown(png)
    tmp = out_dir / "robustness.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out_dir / "robustness.json")
    return report


def summary_lines(report: dict) -> list[str]:
    fams = list(FAMILIES)
    lines = [f"{'':36s}" + "".join(f"{f:>12s}" for f in fams)]
    for name, r in [(f"{Path(m).name} (host)", r) for m, r in report["host"].items()] + \
                   [(f"{e} (device, {r['images']})", r) for e, r in report["device"].items()]:
        lines.append(f"{name:36s}" + "".join(f"{100 * r['accuracy'][f]:11.2f}%" for f in fams))
    for m, r in report.get("reject", {}).items():
        nd = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["non_digit_rejection_rate"].items())
        lines.append(f"{Path(m).name}: no digit when max output < {r['threshold']:.3f}: false rejects "
                     f"{100 * r['false_reject_rate']:.2f}% of {r['test_images']} test digits; rejected: {nd}")
    return lines


@click.command("robustness")
@click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
              help="float ONNX model(s) scored on the host (default: model/cnn.onnx and model/mlp.onnx)")
@click.option("--env", "envs", multiple=True,
              help=f"int8 env(s) scored on the device (default: {', '.join(DEFAULT_ENVS)})")
@click.option("--no-device", is_flag=True, help="host only: no firmware build, no device run")
@click.option("--port", default=None, help="serial URL(s) for a real board instead of QEMU")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test images")
@click.option("--device-limit", type=click.IntRange(min=1), default=None,
              help="only the first N images of each family on the device (default: as many as the host)")
@click.option("--seed", default=0, show_default=True, help="seed of the perturbations")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=REPORTS_DIR, show_default=True,
              help="folder for robustness.json and robustness.png")
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root [env: MNIST_DIR]")
@click.option("--no-build", is_flag=True, help="use the existing ELF instead of running `pio run`")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
def cli(models, envs, no_device, port, limit, device_limit, seed, out_dir, data_dir, no_build, timeout):
    """Accuracy on rotated, shifted, scaled, thickened/thinned and bbox-centred test digits."""
    r = robustness(models or DEFAULT_MODELS, () if no_device else (envs or DEFAULT_ENVS), limit, seed, out_dir,
                   data_dir, not no_build, port, timeout, device_limit)
    for line in summary_lines(r):
        click.echo(line)
    click.echo(f"wrote {out_dir}/robustness.json and robustness.png")
