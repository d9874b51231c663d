"""Report files: JSON, confusion matrix and misclassified-digit plots, text tables."""

from __future__ import annotations

import json
from pathlib import Path

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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 5.4), dpi=110)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = cm.shape[0]
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted on device")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_misclassified(images, labels, predicted, indices, path: Path, title: str, max_items: int = 32):
    plt = _plt()
    idx = list(indices)[:max_items]
    cols = 8
    rows = max(1, (len(idx) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.5), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx):
        ax.imshow(np.asarray(images[i]).reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"#{i}: {labels[i]}→{predicted[i]}", fontsize=7)
    if not idx:
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f}K"


def table(rows: list[dict], columns: list[tuple[str, str, callable]]) -> str:
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
