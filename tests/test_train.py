"""Training, model shape, ONNX export parity, and the committed model's accuracy."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mnist_mcu import data
from mnist_mcu.paths import MODEL_DIR

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")
from mnist_mcu import train  # noqa: E402

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


def test_smoke_training_learns_and_exports(tmp_path):
    metrics = train.run_training("mlp", epochs=2, batch_size=100, lr=1e-3, seed=0, data_dir=MNIST,
                                 out_dir=tmp_path, limit_train=3000)
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


@pytest.mark.slow
def test_full_training_reproduces_seed_accuracy_deterministically(tmp_path):
    a = train.run_training("mlp", 10, 100, 1e-3, 3, MNIST, tmp_path / "a")
    assert a["test_accuracy"] >= SEED_ACCURACY
    b = train.run_training("mlp", 10, 100, 1e-3, 3, MNIST, tmp_path / "b")
    assert b["test_accuracy"] == a["test_accuracy"]
    images, labels = data.load_mnist("test", MNIST)
    assert _ort_accuracy(tmp_path / "a" / "mlp.onnx", images, labels) == pytest.approx(a["test_accuracy"], abs=1e-9)
