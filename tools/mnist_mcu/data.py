"""MNIST loading. The data directory comes from --data-dir or $MNIST_DIR.

torchvision's MNIST is used when PyTorch is installed (it also downloads when the
network allows); without PyTorch the same raw IDX files are read directly, so
compiling and evaluating firmware never needs PyTorch.
"""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import UserError

RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Normalisation used in training and applied on the device.
MEAN = 0.1307
STD = 0.3081


def data_dir(option=None):
    """The MNIST root (torchvision layout: <root>/MNIST/raw/...)."""
    value = option or os.environ.get("MNIST_DIR") or "data"
    return Path(value).expanduser()


def _raw_dir(root):
    return Path(root) / "MNIST" / "raw"


def _missing_error(root, split):
    names = ", ".join(RAW_FILES[split])
    return UserError(
        f"MNIST {split} files not found under {_raw_dir(root)} (expected {names}) and they "
        "could not be downloaded; set --data-dir or MNIST_DIR to a directory holding MNIST/raw/"
    )


def _read_idx(path):
    """One IDX file (optionally gzip-compressed, as torchvision downloads them) -> uint8 array."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise UserError(f"{path} is not an IDX file of unsigned bytes; replace it with the original MNIST file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated or corrupt ({body.size} bytes for shape {dims}); replace it")
    return body.reshape(dims)


def _load_raw(root, split):
    raw = _raw_dir(root)
    for suffix in ("", ".gz"):
        paths = [raw / f"{name}{suffix}" for name in RAW_FILES[split]]
        if all(p.is_file() for p in paths):
            return tuple(_read_idx(p) for p in paths)
    raise _missing_error(root, split)


def _load_torchvision(root, split):
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(root=str(root), train=(split == "train"), download=False)
    except RuntimeError:
        created = [d for d in (Path(root), Path(root) / "MNIST", _raw_dir(root)) if not d.exists()]
        try:
            ds = MNIST(root=str(root), train=(split == "train"), download=True)
        except Exception as exc:  # no network, or a refused download
            for d in reversed(created):  # leave nothing half-made behind
                shutil.rmtree(d, ignore_errors=True)
            raise _missing_error(root, split) from exc
    return ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.uint8)


def load_mnist(split, root=None):
    """Return (images uint8 [N,28,28], labels uint8 [N]) for split 'train' or 'test'."""
    if split not in RAW_FILES:
        raise ValueError(split)
    root = data_dir(root)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        images, labels = _load_raw(root, split)
    else:
        images, labels = _load_torchvision(root, split)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise UserError(f"MNIST {split} data under {root} has unexpected shape {images.shape}; replace the files")
    return images, labels


def normalise(images):
    """uint8 pixels -> the float input the network was trained on."""
    return ((images.astype(np.float32) / 255.0) - MEAN) / STD
