#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine: system toolchain, venv,
# PlatformIO working offline, deepC 0.13 runtime. Each step runs only when needed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
DEPS="$ROOT/.deps"
PY="${PYTHON:-python3}"
log() { printf '[setup] %s\n' "$*"; }

# 1. System packages (make, cross compiler, newlib, QEMU, OpenOCD to flash real boards,
#    Chromium for the draw page's browser test and screenshot, clang-format for `make lint`).
APT_PKGS="make gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm openocd chromium clang-format"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "error: missing system packages:$missing; run: sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

# 2. Virtual environment with the project (training extra included).
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.mnist-mcu-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  log "installing Python packages (PyTorch is large: a few minutes on first run)"
  "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/pip" install -q -e "$ROOT[train,dev,farm]" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import torch, onnxruntime, serial, labgrid" || { echo "error: Python packages failed to install; see pip output above" >&2; exit 1; }
  touch "$STAMP"
fi

# 3. PlatformIO offline: the core wants tool-scons ~4.41101.0 (SCons 4.11.1).
#    We point it at the SCons already installed from PyPI in the venv.
PIO_CORE="${PLATFORMIO_CORE_DIR:-$ROOT/.pio-core}"  # per checkout: platformio.ini core_dir
SCONS_PKG="$PIO_CORE/packages/tool-scons"
if [ ! -f "$SCONS_PKG/.piopm" ]; then
  log "registering SCons 4.11.1 as PlatformIO's tool-scons"
  mkdir -p "$SCONS_PKG"
  cat > "$SCONS_PKG/scons.py" <<'PYEOF'
# Entry point PlatformIO runs; SCons itself comes from PyPI (scons==4.11.1).
import sys
from SCons.Script.Main import main
if __name__ == "__main__":
    sys.exit(main())
PYEOF
  cat > "$SCONS_PKG/package.json" <<'JEOF'
{"name": "tool-scons", "version": "4.41101.0", "description": "SCons 4.11.1 from PyPI", "system": "*"}
JEOF
  cat > "$SCONS_PKG/.piopm" <<'JEOF'
{"type": "tool", "name": "tool-scons", "version": "4.41101.0", "spec": {"owner": "platformio", "id": null, "name": "tool-scons", "requirements": "~4.41101.0", "uri": null}}
JEOF
fi

# 4. deepC 0.13 (the only release with its C++ runtime headers); cp36 wheel, unpacked
#    outside git's tracked files. Its metadata pins onnx==1.5.0, so no dependencies.
DEEPC_DIR="$DEPS/deepc"
if [ ! -f "$DEEPC_DIR/deepC/include/core/tensor.h" ]; then
  log "fetching deepC 0.13 from PyPI"
  rm -rf "$DEEPC_DIR.tmp" && mkdir -p "$DEEPC_DIR.tmp"
  "$VENV/bin/pip" download -q deepC==0.13 --no-deps --only-binary=:all: \
    --python-version 3.6 --platform manylinux2010_x86_64 -d "$DEEPC_DIR.tmp" 2>&1 | grep -v "^WARNING: Location" || true
  ls "$DEEPC_DIR.tmp"/deepC-0.13-*.whl >/dev/null 2>&1 || {
    echo "error: could not download deepC 0.13 from PyPI; check access to the package registry and rerun" >&2; exit 1; }
  "$VENV/bin/python" -m zipfile -e "$DEEPC_DIR.tmp"/deepC-0.13-*.whl "$DEEPC_DIR.tmp/pkg"
  rm -rf "$DEEPC_DIR" && mv "$DEEPC_DIR.tmp/pkg" "$DEEPC_DIR" && rm -rf "$DEEPC_DIR.tmp"
fi
log "ready: $VENV (activate with: source .venv/bin/activate)"
