"""Report files: JSON, confusion matrix and misclassified-digit plots, text tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(labels, predicted, n_classes: int = 10) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, int), np.asarray(predicted, int)), 1)
    return cm


def write_json(path: Path, data: dict):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, path: Path, title: str):
    """Counts on a log colour scale with the diagonal masked (grey), so every error cell shows;
    the per-class recall is written beside each row."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    n = cm.shape[0]
    fig, ax = plt.subplots(figsize=(7.0, 5.6), dpi=110)
    off = np.ma.masked_where(np.eye(n, dtype=bool) | (cm == 0), cm.astype(float))
    ax.imshow(np.where(np.eye(n, dtype=bool), 1.0, np.nan), cmap="Greys", vmin=0, vmax=4)
    vmax = max(float(off.max()) if off.count() else 1.0, 2.0)
    im = ax.imshow(off, cmap="Reds", norm=LogNorm(vmin=0.4, vmax=vmax))  # 1 error is clearly coloured
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if i != j and cm[i, j] > vmax ** 0.6 else "black")
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{i}  ({recall[i]:.1%})" for i in range(n)], fontsize=8)
    ax.set_xlabel("predicted on device")
    ax.set_ylabel("true label (recall)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="errors (count, log scale; diagonal grey)")
    fig.subplots_adjust(left=0.15, right=0.89, bottom=0.09, top=0.94)  # fixed: tight_layout took ~0.1 s
    fig.savefig(path)
    plt.close(fig)


def _softmaxish(row: np.ndarray) -> np.ndarray:
    """Outputs as probabilities: as they are when they already sum to 1, else softmax."""
    row = np.asarray(row, np.float64)
    if np.all(row >= 0) and abs(row.sum() - 1) < 1e-3:
        return row
    e = np.exp(row - np.nanmax(row))
    return e / e.sum()


def plot_misclassified(images, labels, predicted, indices, path: Path, title: str, max_items: int = 32,
                       device_out=None, host_out=None, host_name: str = "host"):
    """Images the device got wrong or where device and host disagree (red frame), each with
    the device's and the host's class and probability. One mosaic image: a subplot per digit
    took seconds."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    idx = list(indices)
    host_cls = np.asarray(host_out).argmax(axis=1) if host_out is not None else None
    if host_cls is not None:  # disagreements first: they are the ones to look at
        idx.sort(key=lambda i: predicted[i] == host_cls[i])
    idx = idx[:max_items]
    cols = 8
    rows = max(1, (len(idx) + cols - 1) // cols)
    cell_w, cell_h = 44, 52  # pixels of the mosaic per digit: image plus room for two text lines
    mosaic = np.zeros((rows * cell_h, cols * cell_w), np.uint8)
    fig, ax = plt.subplots(figsize=(cols * 1.25, rows * 1.5 + 0.5), dpi=110)
    for n, i in enumerate(idx):
        r, c = divmod(n, cols)
        y, x = r * cell_h + 20, c * cell_w + 8
        mosaic[y:y + 28, x:x + 28] = np.asarray(images[i]).reshape(28, 28)
        text = f"#{i}: true {labels[i]}\ndev {predicted[i]}"
        if device_out is not None:
            text += f" {_softmaxish(device_out[i])[predicted[i]]:.2f}"
        if host_cls is not None:
            h = int(host_cls[i])
            text += f" | host {h} {_softmaxish(host_out[i])[h]:.2f}"
            if h != predicted[i]:
                ax.add_patch(Rectangle((x - 1.5, y - 1.5), 30, 30, fill=False, edgecolor="red", linewidth=1.5))
        ax.text(c * cell_w + cell_w / 2, r * cell_h + 1, text, ha="center", va="top", fontsize=5.5)
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    if not idx:
        ax.text(cols * cell_w / 2, cell_h / 2, "no misclassified images", ha="center", fontsize=9)
    note = f" (red frame: device and {host_name} disagree)" if host_cls is not None else ""
    ax.set_title(title + note, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight())
    fig.savefig(path)
    plt.close(fig)


def plot_ticks(ticks, info, report: dict, path: Path, title: str):
    """Histogram of instructions (emulator) or cycles (board) per inference."""
    plt = _plt()
    t = np.asarray(ticks, np.float64)
    if "instructions_per_inference" in report:
        from .protocol import ticks_to_instructions

        values, unit = ticks_to_instructions(t, info.tick_hz, report.get("icount_shift", 0)), "instructions"
    else:
        values, unit = t, "CPU cycles"
    fig, ax = plt.subplots(figsize=(6.2, 3.4), dpi=110)
    ax.hist(values, bins=60, color="#4878a8")
    ax.set_xlabel(f"{unit} per inference")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.9)
    fig.savefig(path)
    plt.close(fig)


def layer_unit(layers: list[dict]) -> str:
    """'instructions' (emulator) or 'cycles' (board): the unit of a report's per-layer rows."""
    return "cycles" if layers and "cycles_mean" in layers[0] else "instructions"


def plot_layers(layers: list[dict], path: Path, title: str):
    """Bar chart of the per-layer profile: mean instructions (or cycles) per layer, with the
    max as a thin whisker and the work per MAC written next to each bar."""
    plt = _plt()
    unit = layer_unit(layers)
    names = [f"{r['op']}  {r['name']}" for r in layers]
    mean = np.array([r[f"{unit}_mean"] or 0.0 for r in layers])
    top = np.array([r[f"{unit}_max"] or 0.0 for r in layers])
    fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(layers) + 1.4), dpi=110)
    y = np.arange(len(layers))[::-1]
    ax.barh(y, mean, color="#4878a8", label="mean")
    ax.errorbar(top, y, xerr=np.c_[top - mean, np.zeros_like(top)].T, fmt="none", ecolor="#c44e52", capsize=3,
                label="max")
    for yi, r, m, t in zip(y, layers, mean, top):
        per = r.get(f"{unit}_per_mac")
        note = f"  {m:,.0f}" + (f"  ({per:.2f}/MAC, {r['macs']:,} MACs)" if per else "")
        ax.text(max(m, t), yi, note, va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel(f"{unit} per inference (mean; whisker to the max)")
    ax.set_xlim(0, max(float(top.max(initial=0.0)), 1.0) * 1.45)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f}K"


# (header, row key, formatter of a non-missing value)
Column = tuple[str, str, Callable[[Any], str]]


def table(rows: list[dict], columns: list[Column]) -> str:
    """rows: dicts; columns: (header, key, formatter)."""
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        cells.append([fmt(r.get(k)) if r.get(k) is not None else "-" for _, k, fmt in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_benchmark(rows: list[dict], path: Path, title: str = "mnist-mcu benchmark"):
    """Flash, RAM and instructions per inference of every env, side by side (bars from zero,
    values written beside them)."""
    plt = _plt()
    names = [r["env"] for r in rows]
    panels = [("flash (KB)", [r.get("flash_bytes", 0) / 1024 for r in rows]),
              ("RAM (KB)", [r.get("ram_bytes", 0) / 1024 for r in rows]),
              ("instructions per inference", [r.get("instructions_per_inference") or 0 for r in rows])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * len(rows) + 1.6), dpi=110, sharey=True)
    for ax, (label, values) in zip(axes, panels):
        bars = ax.barh(range(len(rows)), values, color="#4878a8")
        ax.set_xlabel(label)
        ax.set_xlim(0, max(values + [1]) * 1.3)
        for bar, v in zip(bars, values):
            if v:
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,.0f}" if v >= 100 else f" {v:.1f}",
                        va="center", fontsize=7)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
