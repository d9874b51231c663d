"""platformio.ini environments, `pio run`, ELF paths and sizes."""

from __future__ import annotations

import configparser
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .paths import ROOT, out_dir

INI = ROOT / "platformio.ini"
DEFAULT_MODEL_ONNX = "model/mlp.onnx"  # an env's float model when it has no custom_model_onnx
_VAR = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True)
class Env:
    name: str
    board: str
    qemu_machine: str | None
    model_dir: Path
    backend: str
    dtype: str
    options: dict
    model_onnx: Path = ROOT / DEFAULT_MODEL_ONNX  # the float ONNX model (custom_model_onnx)

    @property
    def is_qemu(self) -> bool:
        return bool(self.qemu_machine)

    @property
    def elf(self) -> Path:
        return ROOT / ".pio" / "build" / self.name / "firmware.elf"


def _read_ini(path: Path = INI) -> configparser.ConfigParser:
    if not path.is_file():
        raise UserError(f"{path} not found; run from a mnist-mcu checkout")
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",), strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        cp.read(path)
    except configparser.Error as exc:
        raise UserError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    return cp


def _get(cp, section, key, seen=None):
    """PlatformIO lookup: [env:NAME] (and what it `extends`), then [env]; ${sec.opt} expanded."""
    seen = seen or set()
    if section in seen:
        return None
    seen = seen | {section}
    if cp.has_section(section):
        if cp.has_option(section, key):
            return _expand(cp, cp.get(section, key))
        ext = cp.get(section, "extends", fallback=None)
        if ext:
            for parent in (p.strip() for p in ext.split(",") if p.strip()):
                value = _get(cp, parent, key, seen)
                if value is not None:
                    return value
    if section.startswith("env:"):
        return _get(cp, "env", key, seen)
    return None


def _expand(cp, value, depth=0):
    if depth > 10:
        return value

    def sub(m):
        ref = m.group(1)
        if "." not in ref:
            return m.group(0)  # ${PROJECT_DIR} and friends: left to PlatformIO
        sec, opt = ref.rsplit(".", 1)
        if sec.startswith("sysenv"):
            return os.environ.get(opt, "")
        got = _get(cp, sec, opt)
        return got if got is not None else ""

    return _VAR.sub(sub, value) if "${" in value else value


def list_envs(path: Path = INI) -> list[str]:
    cp = _read_ini(path)
    return [s.split(":", 1)[1] for s in cp.sections() if s.startswith("env:")]


def get_env(name: str, path: Path = INI) -> Env:
    cp = _read_ini(path)
    section = f"env:{name}"
    if not cp.has_section(section):
        raise UserError(f"unknown environment {name!r}; platformio.ini has: {', '.join(list_envs(path))}")
    keys = set(cp.options(section)) | (set(cp.options("env")) if cp.has_section("env") else set())
    options = {k: _get(cp, section, k) for k in keys}
    model_dir = options.get("custom_model_dir") or ""
    model_onnx = (options.get("custom_model_onnx") or "").strip() or DEFAULT_MODEL_ONNX
    lib_dir, onnx = (ROOT / model_dir) if model_dir else ROOT, ROOT / model_onnx
    out = out_dir()
    if out is not None:  # the main job's own outputs (firmware/scripts/model_dir.py builds the same)
        if model_dir:
            lib_dir = out / "generated" / Path(model_dir).name
        if (out / "model" / onnx.name).is_file():
            onnx = out / "model" / onnx.name
    return Env(
        name=name,
        board=options.get("board") or "",
        qemu_machine=(options.get("custom_qemu_machine") or "").strip() or None,
        model_dir=lib_dir,
        backend=(options.get("custom_backend") or "").strip(),
        dtype=(options.get("custom_dtype") or "f32").strip(),
        options=options,
        model_onnx=onnx,
    )


def qemu_envs(path: Path = INI) -> list[str]:
    return [e for e in list_envs(path) if get_env(e, path).is_qemu]


def pio_executable() -> str:
    cand = Path(sys.executable).parent / "pio"
    if cand.is_file():
        return str(cand)
    found = shutil.which("pio") or shutil.which("platformio")
    if not found:
        raise UserError("PlatformIO (`pio`) not found; install the project (pip install -e .) into this Python")
    return found


@contextmanager
def _build_lock(env_name: str):
    """Serialise concurrent builds of the same env (parallel test sessions, two shells)."""
    lock_dir = ROOT / ".pio"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / f".build-{env_name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(env: Env | str, verbose: bool = False, sysenv: dict | None = None) -> Path:
    """`pio run -e ENV`; returns the ELF. Build failures are one-line UserErrors (log kept).
    sysenv: PLATFORMIO_* overrides (build_staged builds from another source tree)."""
    env = get_env(env) if isinstance(env, str) else env
    if not sysenv and not env.model_dir.is_dir():
        raise UserError(f"model library {env.model_dir.relative_to(ROOT)} for env {env.name} does not exist; "
                        f"run `mnist-mcu compile` with --backend {env.backend} --dtype {env.dtype} first")
    build_dir = Path(sysenv["PLATFORMIO_BUILD_DIR"]) if sysenv and "PLATFORMIO_BUILD_DIR" in sysenv \
        else ROOT / ".pio" / "build"
    elf = build_dir / env.name / "firmware.elf"
    log = ROOT / ".pio" / f"build-{env.name}.log"
    cmd = [pio_executable(), "run", "-e", env.name]
    with _build_lock(env.name):
        log.parent.mkdir(exist_ok=True)
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=None if verbose else fh,
                                  env=dict(os.environ, **sysenv) if sysenv else None,
                                  stderr=subprocess.STDOUT if not verbose else None, text=True, check=False)
    if proc.returncode != 0 or not elf.is_file():
        first = _first_error(log) if not verbose else None
        hint = f": {first}" if first else ""
        raise UserError(f"building env {env.name} failed (`pio run -e {env.name}`){hint}; full log: {log}")
    return elf


def build_staged(env: Env, model_src: Path) -> None:
    """Build env with the library in model_src (not yet in place) and nothing else changed: a
    private source tree of symlinks (the repo's firmware/ with the env's library folder pointing
    at model_src) and a private build folder. The repo's firmware/ and .pio/build/ are never
    touched, so a failure leaves the last good firmware as it was (and PlatformIO's project
    checksum, which lists every source file, does not change under other builds)."""
    fw_dir = ROOT / "firmware"
    rel = env.model_dir.relative_to(fw_dir).parts
    with tempfile.TemporaryDirectory(prefix=f"mnist-mcu-stage-{env.name}-") as tmp:
        src = Path(tmp) / "src"
        real, mirror = fw_dir, src
        for part in rel:  # mirror the path down to the library folder
            mirror.mkdir()
            for entry in real.iterdir():
                if entry.name != part:
                    (mirror / entry.name).symlink_to(entry)
            real, mirror = real / part, mirror / part
        mirror.symlink_to(Path(model_src).resolve(), target_is_directory=True)
        build(env, sysenv={"PLATFORMIO_SRC_DIR": str(src), "PLATFORMIO_BUILD_DIR": str(Path(tmp) / "build")})


def upload(env: Env | str) -> None:
    """`pio run -e ENV -t upload` (flash a real board); failures are one-line UserErrors."""
    env = get_env(env) if isinstance(env, str) else env
    log = ROOT / ".pio" / f"upload-{env.name}.log"
    log.parent.mkdir(exist_ok=True)
    with _build_lock(env.name), open(log, "w") as fh:
        proc = subprocess.run([pio_executable(), "run", "-e", env.name, "-t", "upload"], cwd=ROOT,
                              stdout=fh, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        first = _first_error(log)
        raise UserError(f"flashing env {env.name} failed (`pio run -e {env.name} -t upload`)"
                        f"{': ' + first if first else ''}; full log: {log}")


_REGION_OVERFLOW = re.compile(r"region [`'\"]?(\w+)['\"]? overflowed by (\d+) bytes")
_WONT_FIT = re.compile(r"section [`'\"]?([\w.]+)['\"]? will not fit in region [`'\"]?(\w+)")
_COMPILER_ERROR = re.compile(r"^(\S+?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$")
_UNDEFINED = re.compile(r"undefined reference to [`'\"]?([^'\"]+)['\"]?")
_NOISE = re.compile(r"collect2: error: ld returned|\*\*\* \[|Error 1$|^=+ \[FAILED\]")


def build_failure_cause(text: str) -> str | None:
    """The real cause of a failed build, in one line: flash/RAM overflow and by how much, the
    first compiler error, the first undefined symbol; never `ld returned 1 exit status`."""
    overflows = _REGION_OVERFLOW.findall(text)
    if overflows:
        parts = [f"region '{r}' overflowed by {n} bytes ({'flash' if 'FLASH' in r.upper() else 'RAM'} "
                 "overflow: the model does not fit this board)" if i == 0 else f"region '{r}' by {n} bytes"
                 for i, (r, n) in enumerate(dict.fromkeys(overflows))]
        return "; ".join(parts)
    fit = _WONT_FIT.search(text)
    if fit:
        kind = "flash" if "FLASH" in fit.group(2).upper() else "RAM"
        return f"section {fit.group(1)} will not fit in region '{fit.group(2)}' ({kind} overflow)"
    for line in text.splitlines():
        m = _COMPILER_ERROR.match(line.strip())
        if m:
            return f"{m.group(1)}:{m.group(2)}: error: {m.group(3)}"[:300]
    undef = _UNDEFINED.search(text)
    if undef:
        return f"undefined reference to '{undef.group(1)}' (link error)"
    for line in text.splitlines():
        if re.search(r"\berror\b|Error:", line) and not _NOISE.search(line):
            return line.strip()[:300]
    return None


def _first_error(log: Path) -> str | None:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    cause = build_failure_cause(text)
    if cause:
        return cause
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else None


def require_elf(env: Env) -> Path:
    if not env.elf.is_file():
        raise UserError(f"{env.elf.relative_to(ROOT)} not found; build it with `pio run -e {env.name}` "
                        "(or drop --no-build)")
    return env.elf


# Allocated sections of our linker scripts: what goes to flash, and RAM that is not the
# reserved stack (the stack is reported by the device as its high-water mark instead).
FLASH_SECTIONS = {".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".fini_array",
                  ".data"}
STATIC_RAM_SECTIONS = {".data", ".bss"}


def elf_sizes(elf: Path) -> dict:
    """Section sizes from `arm-none-eabi-size -A`: flash = loaded sections, static RAM = data + bss."""
    tool = shutil.which("arm-none-eabi-size")
    if not tool:
        return {}
    try:
        out = subprocess.run([tool, "-A", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, OSError):
        return {}
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return {"sections": sections,
            "flash_bytes": sum(v for k, v in sections.items() if k in FLASH_SECTIONS),
            "static_ram_bytes": sum(v for k, v in sections.items() if k in STATIC_RAM_SECTIONS),
            "reserved_stack_bytes": sections.get(".stack", 0)}
