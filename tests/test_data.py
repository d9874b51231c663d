"""MNIST loading: real files, the IDX fallback without torchvision, and the missing-data error."""

import os
from pathlib import Path

import numpy as np
import pytest
from mnist_mcu import data
from mnist_mcu.errors import UserError

MNIST = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))


def test_loads_real_test_split():
    images, labels = data.load_mnist("test", MNIST)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


def test_idx_reader_matches_torchvision():
    tvm = pytest.importorskip("torchvision.datasets")
    ds = tvm.MNIST(root=MNIST, train=False, download=False)
    images, labels = data.load_mnist("test", MNIST)
    assert np.array_equal(ds.data.numpy(), images) and np.array_equal(ds.targets.numpy(), labels)


def test_evaluate_path_does_not_import_torchvision():
    """Reading MNIST for evaluate must not pay torchvision's import (seconds under load)."""
    import subprocess
    import sys

    code = ("import sys; from mnist_mcu.evaluation.reference import load_test_set; load_test_set(None, 10); "
            "print('torchvision' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MNIST_DIR": MNIST}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def _idx(dims, body=None):
    head = bytes((0, 0, 8, len(dims))) + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + (bytes(int(np.prod(dims))) if body is None else body)


GOOD_LABELS = _idx([3], bytes([1, 2, 3]))
GOOD_IMAGES = _idx([3, 28, 28])


def _gz(data):
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize("name,images", [
    ("truncated", GOOD_IMAGES[:-100]),
    ("bad magic", b"\x00\x00\x0d\x03" + GOOD_IMAGES[4:]),
    ("huge dimensions", _idx([2**31, 2**31, 2**31], b"\x01" * 100)),
    ("empty file", b""),
    ("header cut short", GOOD_IMAGES[:9]),
    ("broken gz", _gz(GOOD_IMAGES)[:-30]),
    ("not gz at all", b"plain bytes"),
])
def test_corrupt_file_is_reported_as_corrupt_not_missing(tmp_path, name, images, monkeypatch):
    """Issue 13 item 5: with torchvision installed these all said 'not found ... could not be
    downloaded'. Through the public load_mnist, so torchvision's path is exercised too."""
    try:  # no network here: make sure a download attempt would fail fast instead of hanging
        import torchvision.datasets.mnist as tvm
        monkeypatch.setattr(tvm.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    except ImportError:
        pass
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    gz = name.endswith("gz") or name == "not gz at all"
    (raw / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))).write_bytes(images)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(GOOD_LABELS)
    with pytest.raises(UserError) as err:
        data.load_mnist("test", tmp_path)
    msg = str(err.value)
    assert "corrupt" in msg and "t10k-images-idx3-ubyte" in msg and "not found" not in msg and "\n" not in msg
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in raw.iterdir() if p.is_file())


def test_labels_that_do_not_match_the_images_are_corrupt(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(GOOD_IMAGES)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx([2], bytes([1, 2])))
    with pytest.raises(UserError, match="corrupt"):
        data.load_mnist("test", tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx([3], bytes([1, 2, 12])))
    with pytest.raises(UserError, match="outside 0..9"):
        data.load_mnist("test", tmp_path)


def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("MNIST_DIR", "/somewhere/mnist")
    assert data.data_dir() == Path("/somewhere/mnist")
    assert data.data_dir("/explicit") == Path("/explicit")


@pytest.mark.parametrize("loader", ["torchvision", "raw"])
def test_missing_data_is_one_clear_line(tmp_path, loader, monkeypatch):
    if loader == "torchvision":
        # no network here: make sure a download attempt fails fast instead of hanging
        import torchvision.datasets.mnist as tvm
        monkeypatch.setattr(tvm.MNIST, "mirrors", ["http://127.0.0.1:9/"])
        def call():
            return data.load_mnist("test", tmp_path)
    else:
        def call():
            return data._load_raw(tmp_path, "test")
    with pytest.raises(UserError) as err:
        call()
    msg = str(err.value)
    assert not any(tmp_path.iterdir()), "a failed download must not leave folders behind"
    assert "\n" not in msg and str(tmp_path) in msg and "t10k-images-idx3-ubyte" in msg and "MNIST_DIR" in msg


def test_corrupt_idx_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") * 3 + b"\x01" * 5)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\x01" * 10)
    with pytest.raises(UserError, match="truncated or corrupt"):
        data._load_raw(tmp_path, "test")


def test_normalise_matches_training_constants():
    x = data.normalise(np.array([[0, 255]], dtype=np.uint8))
    assert np.allclose(x, [[-data.MEAN / data.STD, (1 - data.MEAN) / data.STD]])


def test_gzipped_idx_files_read_like_plain_ones(tmp_path):
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_FILES["test"]:
        (raw / f"{name}.gz").write_bytes(gzip.compress((Path(MNIST) / "MNIST" / "raw" / name).read_bytes()))
    got, want = data._load_raw(tmp_path, "test"), data._load_raw(Path(MNIST), "test")
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
