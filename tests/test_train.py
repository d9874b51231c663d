"""Training, model shape, ONNX export parity, and the committed model's accuracy."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from mnist_mcu import data
from mnist_mcu.paths import MODEL_DIR

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")
from mnist_mcu import train  # noqa: E402  (train imports torch: the skip above must run first)

MNIST = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))
SEED_ACCURACY = 0.9771  # the seed article's figure


def test_mlp_shape_and_size():
    model = train.build_model("mlp")
    out = model(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 784 * 100 + 100 + 100 * 10 + 10
    assert train.count_macs(model) == 784 * 100 + 100 * 10


def test_cnn_shape():
    model = train.build_model("cnn")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    for spec in ("c8s2-c16s2-f32", "c8-p-c16s2", "c4s2-c4s2-c4s2-f8"):
        assert train.build_model("cnn", spec)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(train.UserError, match="bad architecture token"):
        train.build_model("cnn", "c8s2-x3")


def test_augmentation_is_seeded_and_batched():
    from mnist_mcu import augment

    x = torch.from_numpy(data.load_mnist("train", MNIST)[0][:64].astype(np.float32) / 255).unsqueeze(1)
    a = augment.augment(x, torch.Generator().manual_seed(5))
    b = augment.augment(x, torch.Generator().manual_seed(5))
    c = augment.augment(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0
    changed = (a - x).abs().flatten(1).amax(1) > 0.1
    assert 0.6 < changed.float().mean() < 1.0  # most images move; a few (clean_p) stay as they are
    ink = x.sum()
    thick = augment.thicken(x, torch.ones(64))
    thin = augment.thicken(x, -torch.ones(64))
    assert thin.sum() < ink < thick.sum()
    nd = augment.non_digits(32, torch.Generator().manual_seed(0))
    assert nd.shape == (32, 1, 28, 28) and 0.0 <= nd.min() and nd.max() <= 1.0


def test_cnn_smoke_training_runs_augmentation_and_exports(tmp_path):
    """One short epoch on 3,000 images: augmentation, non-digit batches, BN folding, export, reject
    threshold; and the same seed gives the same bytes."""
    import onnx

    m = train.run_training("cnn", epochs=1, seed=0, data_dir=MNIST, out_dir=tmp_path / "a", limit_train=3000)
    assert m["test_accuracy"] > 0.5 and m["export_parity"]["max_abs_diff"] <= 1e-5
    assert 0.0 < m["reject_threshold"] < 1.0 and m["held_out_images"] == 300
    ops = {n.op_type for n in onnx.load(str(tmp_path / "a" / "cnn.onnx")).graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm", "Softmax"}, ops
    train.run_training("cnn", epochs=1, seed=0, data_dir=MNIST, out_dir=tmp_path / "b", limit_train=3000)
    assert (tmp_path / "a" / "cnn.onnx").read_bytes() == (tmp_path / "b" / "cnn.onnx").read_bytes()
    with pytest.raises(train.UserError, match="at least 100 training images"):
        train.run_training("cnn", epochs=1, data_dir=MNIST, out_dir=tmp_path / "c", limit_train=50)
    assert not (tmp_path / "c").exists()


def test_smoke_training_learns_and_exports(tmp_path, capsys):
    metrics = train.run_training("mlp", epochs=2, batch_size=100, lr=1e-3, seed=0, data_dir=MNIST,
                                 out_dir=tmp_path, limit_train=3000)
    # no bar when output is not a terminal: each epoch line says how long is left (CI logs)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 2 and all(re.search(r"\d+ s, \d+ s left$", ln) for ln in lines), lines
    ep = metrics["epochs"]
    assert ep[1]["train_loss"] < ep[0]["train_loss"]
    assert ep[1]["test_accuracy"] > 0.80  # chance is 0.10
    assert (tmp_path / "mlp.onnx").is_file() and (tmp_path / "mlp_training.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "mlp.json").read_text())
    for key in ("test_accuracy", "epochs", "parameters", "macs", "seed", "training_seconds", "hyperparameters"):
        assert key in saved
    assert saved["export_parity"]["max_abs_diff"] <= 1e-5


def test_export_parity_check_rejects_a_wrong_model(tmp_path):
    model = train.build_model("mlp")
    x = torch.from_numpy(data.normalise(data.load_mnist("test", MNIST)[0][:200])).unsqueeze(1)
    train.export_onnx(model, tmp_path / "m.onnx", x)
    other = train._WithSoftmax.wrap(train.build_model("mlp"))  # different random weights
    with pytest.raises(train.UserError, match="disagrees with PyTorch"):
        train.check_parity(other, tmp_path / "m.onnx", x)


def _ort_accuracy(path, images, labels):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": data.normalise(images)[:, None]})[0]
    assert np.allclose(out.sum(1), 1.0, atol=1e-5)  # softmax at the output
    return float((out.argmax(1) == labels).mean())


def test_committed_model_reaches_seed_accuracy():
    """model/mlp.onnx, evaluated independently with onnxruntime on all 10,000 test images."""
    import onnx

    onnx.checker.check_model(str(MODEL_DIR / "mlp.onnx"))
    images, labels = data.load_mnist("test", MNIST)
    acc = _ort_accuracy(MODEL_DIR / "mlp.onnx", images, labels)
    assert acc >= SEED_ACCURACY
    assert abs(acc - json.loads((MODEL_DIR / "mlp.json").read_text())["test_accuracy"]) < 1e-9


def test_committed_cnn_reaches_product_accuracy():
    """model/cnn.onnx (the product model), onnxruntime on all 10,000 test images: >= 99.3 %."""
    import onnx

    onnx.checker.check_model(str(MODEL_DIR / "cnn.onnx"))
    images, labels = data.load_mnist("test", MNIST)
    acc = _ort_accuracy(MODEL_DIR / "cnn.onnx", images, labels)
    assert acc >= 0.993
    assert abs(acc - json.loads((MODEL_DIR / "cnn.json").read_text())["test_accuracy"]) < 1e-9


@pytest.mark.slow
def test_full_training_reproduces_seed_accuracy_deterministically(tmp_path):
    a = train.run_training("mlp", 10, 100, 1e-3, 3, MNIST, tmp_path / "a")
    assert a["test_accuracy"] >= SEED_ACCURACY
    b = train.run_training("mlp", 10, 100, 1e-3, 3, MNIST, tmp_path / "b")
    assert b["test_accuracy"] == a["test_accuracy"]
    images, labels = data.load_mnist("test", MNIST)
    assert _ort_accuracy(tmp_path / "a" / "mlp.onnx", images, labels) == pytest.approx(a["test_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_full_cnn_training_reaches_product_accuracy(tmp_path):
    """The full recipe (about 5 CPU-minutes on one thread) from scratch: >= 99.3 % and a reject
    threshold that keeps false rejects on the test set <= 0.5 %."""
    m = train.run_training("cnn", data_dir=MNIST, out_dir=tmp_path)
    assert m["test_accuracy"] >= 0.993 and m["test_false_reject_rate"] <= 0.005
    images, labels = data.load_mnist("test", MNIST)
    assert _ort_accuracy(tmp_path / "cnn.onnx", images, labels) == pytest.approx(m["test_accuracy"], abs=1e-9)
