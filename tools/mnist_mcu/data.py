"""MNIST loading. The data directory comes from --data-dir or $MNIST_DIR.

The IDX files (plain or .gz, torchvision's layout <root>/MNIST/raw/) are always read
directly: a raw read takes milliseconds, importing torchvision takes seconds. torchvision
is used only to download missing files when it is installed and the network allows.
A file that is there but unreadable is reported as corrupt, never as missing.
"""

import gzip
import math
import os
import shutil
import zlib
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


def _corrupt(path, why):
    return UserError(f"{path} is truncated or corrupt ({why}); replace it with the original MNIST file")


def _read_idx(path):
    """One IDX file (optionally gzip-compressed, as torchvision downloads them) -> uint8 array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise _corrupt(path, f"broken gzip data: {exc}") from None
    if not raw:
        raise _corrupt(path, "empty file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8 or not 1 <= raw[3] <= 4:
        raise _corrupt(path, f"not an IDX file of unsigned bytes: header {raw[:4].hex() or 'missing'}")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise _corrupt(path, f"header cut short: {len(raw)} bytes")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    want = math.prod(dims)  # Python ints: huge dimensions cannot overflow
    if len(raw) - head != want:
        raise _corrupt(path, f"{len(raw) - head} bytes of data for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def _raw_paths(root, split):
    """The split's two files (plain preferred over .gz), or None when one is missing."""
    raw = _raw_dir(root)
    found = []
    for name in RAW_FILES[split]:
        path = next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def _load_raw(root, split):
    paths = _raw_paths(root, split)
    if paths is None:
        raise _missing_error(root, split)
    images, labels = (_read_idx(p) for p in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise _corrupt(paths[0], f"shape {list(images.shape)}, expected [N, 28, 28]")
    if labels.ndim != 1 or len(labels) != len(images):
        raise _corrupt(paths[1], f"shape {list(labels.shape)} for {len(images)} images")
    if len(labels) and labels.max() > 9:
        raise _corrupt(paths[1], f"label {int(labels.max())} outside 0..9")
    return images, labels


def _download(root, split):
    """Fetch missing files with torchvision (when installed); leaves nothing half-made behind."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise _missing_error(root, split) from None
    created = [d for d in (Path(root), Path(root) / "MNIST", _raw_dir(root)) if not d.exists()]
    try:
        MNIST(root=str(root), train=(split == "train"), download=True)
    except Exception as exc:
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise _missing_error(root, split) from exc


def load_mnist(split, root=None):
    """Return (images uint8 [N,28,28], labels uint8 [N]) for split 'train' or 'test'."""
    if split not in RAW_FILES:
        raise ValueError(split)
    root = data_dir(root)
    if _raw_paths(root, split) is None:
        _download(root, split)
    return _load_raw(root, split)


def normalise(images):
    """uint8 pixels -> the float input the network was trained on."""
    return ((images.astype(np.float32) / 255.0) - MEAN) / STD
