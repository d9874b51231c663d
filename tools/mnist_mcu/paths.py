"""Repository locations, resolved from this file so commands work from any directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "model"
FIRMWARE_DIR = ROOT / "firmware"
GENERATED_DIR = FIRMWARE_DIR / "generated"
REPORTS_DIR = ROOT / "reports"
DEPS_DIR = ROOT / ".deps"
