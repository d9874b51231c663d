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
    tv_images, tv_labels = data.load_mnist("test", MNIST)
    raw_images, raw_labels = data._load_raw(Path(MNIST), "test")
    assert np.array_equal(tv_images, raw_images) and np.array_equal(tv_labels, raw_labels)


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
        call = lambda: data.load_mnist("test", tmp_path)  # noqa: E731
    else:
        call = lambda: data._load_raw(tmp_path, "test")  # noqa: E731
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
