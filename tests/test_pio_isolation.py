"""PlatformIO state is per checkout (platformio.ini `core_dir = ${PROJECT_DIR}/.pio-core`):
two clones building at once must not touch each other's platform registration, nor the
user's ~/.platformio (which once made one clone's builds fail with "Unknown development
platform" after the other one built)."""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_mcu.paths import ROOT

ENV = "qemu_f405_f32"


def _clone(dst: Path):
    """A copy of the parts of this checkout that a firmware build reads, with its own core dir."""
    dst.mkdir()
    shutil.copy(ROOT / "platformio.ini", dst / "platformio.ini")
    shutil.copytree(ROOT / "firmware", dst / "firmware", ignore=shutil.ignore_patterns(".pio*"))
    scons = ROOT / ".pio-core" / "packages" / "tool-scons"
    if not (scons / ".piopm").is_file():
        pytest.skip(f"{scons} missing: run tools/setup.sh")
    shutil.copytree(scons, dst / ".pio-core" / "packages" / "tool-scons")


def _build(project: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMIO")}
    env["HOME"] = str(home)  # a ~/.platformio that the builds must leave alone
    pio = Path(sys.executable).with_name("pio")
    return subprocess.run([str(pio), "run", "-e", ENV], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


def _link_target(project: Path) -> str:
    link = json.loads((project / ".pio-core" / "platforms" / "platform.pio-link").read_text())
    return link["spec"]["uri"]


@pytest.mark.slow
def test_two_clones_build_at_once(tmp_path):
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc is not installed")
    a, b, home = tmp_path / "a", tmp_path / "b", tmp_path / "home"
    home.mkdir()
    _clone(a)
    _clone(b)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: _build(p, home), (a, b)))
    for proj, res in zip((a, b), results):
        assert res.returncode == 0, f"{proj.name}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
        assert (proj / ".pio" / "build" / ENV / "firmware.elf").is_file()
        # each clone's platform link points into its own firmware/platform
        assert str(proj / "firmware" / "platform") in _link_target(proj), _link_target(proj)
    assert not (home / ".platformio" / "platforms").exists(), "a build registered its platform in ~/.platformio"
