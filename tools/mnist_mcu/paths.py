"""Repository locations, resolved from this file so commands work from any directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "model"
FIRMWARE_DIR = ROOT / "firmware"
GENERATED_DIR = FIRMWARE_DIR / "generated"
REPORTS_DIR = ROOT / "reports"
DEPS_DIR = ROOT / ".deps"


def shown(path) -> str:
    """A path as reports, generated headers and messages show it: relative to the checkout
    when inside it (stable across clones), otherwise absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def out_dir() -> Path | None:
    """$MNIST_MCU_OUT: where the main job (make all) keeps what it makes (trained model,
    generated libraries) instead of the committed model/ and firmware/generated/."""
    import os

    value = os.environ.get("MNIST_MCU_OUT", "").strip()
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else ROOT / p
