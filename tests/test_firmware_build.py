"""Firmware builds: every platformio.ini env builds for real (the real-board envs too) and fits
its board; the F405 envs keep to the 8 KB RAM budget on the device; a model too big for the
board fails at link time with the linker's message; the app's own limits (outputs) hold.
Plus host checks of the app's streaming COBS encoder and in-place decoder."""

import ctypes
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mnist_mcu import firmware
from mnist_mcu import protocol as P
from mnist_mcu.paths import ROOT

FW = ROOT / "firmware"
# every app env; a test-only env (test_build_src: `pio test` builds its firmware from firmware/test/,
# it has no main of its own) is covered by tests/test_native_kernels.py
ALL_ENVS = [e for e in firmware.list_envs() if not firmware.get_env(e).options.get("test_build_src")]
RAM_BUDGET_ENVS = ["qemu_f405_f32", "qemu_f405_int8"]
RAM_BUDGET = 8 * 1024  # static RAM (.data + .bss) + heap peak + stack high-water mark
MAX_F4_STACK = 8 * 1024  # reserved stack on the STM32F4 boards: enough, not the bulk of "RAM:"



def _need_toolchain():
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)")


def _sections(elf: Path) -> dict:
    return firmware.elf_sizes(elf)["sections"]


def _board(name: str) -> dict:
    import json

    return json.loads((FW / "boards" / f"{name}.json").read_text())


_builds: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def built():
    """built(env_name) -> (Env, build log text): `pio run -e ENV` once per session."""
    _need_toolchain()

    def get(name):
        if name not in _builds:
            env = firmware.get_env(name)
            firmware.build(env)  # raises UserError (with the log path) if the build fails
            log = (ROOT / ".pio" / f"build-{name}.log").read_text(errors="replace")
            _builds[name] = (env, log)
        return _builds[name]

    return get


# -- every env builds and fits its board -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ALL_ENVS)
def test_env_builds_and_fits_board(built, env_name):
    env, log = built(env_name)
    assert env.elf.is_file()
    board = _board(env.board)
    max_flash, max_ram = board["upload"]["maximum_size"], board["upload"]["maximum_ram_size"]

    # PlatformIO's own summary lines are printed and within the board
    ram = re.search(r"^RAM:.*used (\d+) bytes from (\d+) bytes", log, re.MULTILINE)
    flash = re.search(r"^Flash:.*used (\d+) bytes from (\d+) bytes", log, re.MULTILINE)
    assert ram and flash, "pio run printed no RAM:/Flash: summary"
    assert int(ram.group(2)) == max_ram and int(flash.group(2)) == max_flash
    assert 0 < int(ram.group(1)) <= max_ram
    assert 0 < int(flash.group(1)) <= max_flash

    # the same from the ELF's sections
    sizes = firmware.elf_sizes(env.elf)
    s = sizes["sections"]
    assert sizes["flash_bytes"] == int(flash.group(1))
    assert sizes["static_ram_bytes"] + sizes["reserved_stack_bytes"] == int(ram.group(1))
    assert s.get(".stack", 0) > 0
    if board["build"]["mcu"].startswith("stm32f4"):
        assert s[".stack"] <= MAX_F4_STACK, "the reserved stack dominates the RAM figure"
    bin_file = env.elf.with_suffix(".bin")
    assert bin_file.is_file() and 0 < bin_file.stat().st_size <= max_flash


@pytest.mark.slow
@pytest.mark.parametrize("env_name", RAM_BUDGET_ENVS)
def test_static_ram_from_elf_within_budget(built, env_name):
    env, _ = built(env_name)
    s = _sections(env.elf)
    assert s.get(".data", 0) + s.get(".bss", 0) < RAM_BUDGET


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.parametrize("env_name", RAM_BUDGET_ENVS)
def test_device_ram_within_budget(built, require_qemu, env_name):
    """static RAM + heap peak + stack high-water mark, as the device reports it after inferences."""
    from mnist_mcu.qemu import Qemu

    env, _ = built(env_name)
    rng = np.random.default_rng(0)
    with Qemu(env.elf, env.qemu_machine, timeout=5) as q:
        for _ in range(5):
            img = (rng.random(784) < 0.2) * rng.integers(1, 256, 784)
            res = q.device.infer(img.astype(np.uint8))
            assert len(res.outputs) == 10
        info = q.device.info()
    s = _sections(env.elf)
    assert info.static_ram_bytes == s.get(".data", 0) + s.get(".bss", 0)
    assert info.stack_size_bytes == s[".stack"]
    assert 0 < info.stack_peak_bytes < info.stack_size_bytes
    used = info.static_ram_bytes + info.heap_peak_bytes + info.stack_peak_bytes
    assert used <= RAM_BUDGET, (f"{env_name}: static {info.static_ram_bytes} + heap {info.heap_peak_bytes} + "
                                f"stack {info.stack_peak_bytes} = {used} B > {RAM_BUDGET} B")


# -- builds outside the committed envs: a temporary PlatformIO project -------------------------


def _onnx_mlp(path: Path, hidden: int, outputs: int, seed: int = 0):
    """Flatten -> Gemm 784xH -> Relu -> Gemm HxO -> Softmax, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, 784)) * 0.05).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((outputs, hidden)) * 0.05).astype(np.float32)
    b2 = np.zeros(outputs, np.float32)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp_test",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _tmp_project(root: Path, lib_dir: Path, board: str = "netduinoplus2") -> Path:
    """A PlatformIO project in root that builds the repo's app + bsp with the model library
    lib_dir for board, through the repo's platform and boards: nothing in the repo is touched."""
    src = root / "src"
    (src / "generated").mkdir(parents=True)
    for name in ("app", "bsp"):
        (src / name).symlink_to(FW / name, target_is_directory=True)
    (src / "generated" / "model").symlink_to(lib_dir, target_is_directory=True)
    bsp = "stm32f4" if board != "mps2_an386" else "mps2_an386"
    ldscript = FW / _board(board)["build"]["ldscript"].split("firmware/", 1)[1]
    (root / "platformio.ini").write_text(f"""\
[platformio]
src_dir = {src}
include_dir = {FW / "include"}
boards_dir = {FW / "boards"}
lib_dir = {FW / "lib"}

[env:test]
platform = symlink://{FW / "platform"}
board = {board}
board_build.ldscript = {ldscript}
build_unflags = -Os
build_flags = -Wextra -O2 -ffp-contract=off
lib_deps = nnkernels
build_src_filter = +<app/> +<bsp/common/> +<bsp/{bsp}/> +<generated/model/>
""")
    return root


def _pio_run(project: Path, timeout=900):
    return subprocess.run(["nice", firmware.pio_executable(), "run", "-d", str(project), "-e", "test"],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_model_too_big_for_flash_fails_at_link(tmp_path):
    """784 -> 400 -> 10 in float32 is ~1.25 MB of weights: more than the F405's 1 MB flash."""
    _need_toolchain()
    from mnist_mcu.native import compile_native

    onnx_path = _onnx_mlp(tmp_path / "big.onnx", hidden=400, outputs=10)
    lib = compile_native(onnx_path, tmp_path / "lib" / "native_big", dtype="f32")
    project = _tmp_project(tmp_path / "proj", lib)
    proc = _pio_run(project)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"region `FLASH' overflowed by \d+ bytes", out), out[-3000:]
    assert not (project / ".pio" / "build" / "test" / "firmware.bin").exists()
    # the one-line cause the CLI prints names the region and the size, not collect2's exit status
    cause = firmware.build_failure_cause(out)
    assert re.fullmatch(r"region 'FLASH' overflowed by \d+ bytes \(flash overflow: .*\)", cause), cause


# -- build failures: one line naming the real cause (issue 13) ---------------------------------

LD_LOG = """Linking .pio/build/qemu_f405_f32/firmware.elf
/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: .pio/build/qemu_f405_f32/firmware.elf section \
`.rodata' will not fit in region `FLASH'
/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: region `FLASH' overflowed by 584960 bytes
collect2: error: ld returned 1 exit status
*** [.pio/build/qemu_f405_f32/firmware.elf] Error 1
"""


@pytest.mark.parametrize("log,expect", [
    (LD_LOG, "region 'FLASH' overflowed by 584960 bytes (flash overflow"),
    ("ld: region `RAM' overflowed by 1200 bytes\ncollect2: error: ld returned 1 exit status\n",
     "region 'RAM' overflowed by 1200 bytes (RAM overflow"),
    ("ld: section .bss will not fit in region RAM\ncollect2: error: ld returned 1 exit status\n",
     "section .bss will not fit in region 'RAM' (RAM overflow)"),
    (("firmware/app/a.c: In function 'f':\nfirmware/app/a.c:3:5: error: 'x' undeclared\n"
      "firmware/app/a.c:4:5: error: second\n*** [a.o] Error 1\n"), "firmware/app/a.c:3: error: 'x' undeclared"),
    ("main.c:(.text+0x8): undefined reference to `model_run'\ncollect2: error: ld returned 1 exit status\n",
     "undefined reference to 'model_run' (link error)"),
], ids=["flash", "ram", "wont-fit", "compiler", "undefined"])
def test_build_failure_cause_names_the_real_cause(log, expect):
    cause = firmware.build_failure_cause(log)
    assert cause.startswith(expect) and "collect2" not in cause and "\n" not in cause, cause


@pytest.mark.slow
def test_compiler_error_is_the_one_line_cause(tmp_path):
    """A real compile error through the real build: the first `file:line: error:` line."""
    _need_toolchain()
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "model.c").write_text('#include "model.h"\nint model_run(const unsigned char *p, float *o) '
                                 "{ return undeclared_thing; }\n")
    proc = _pio_run(_tmp_project(tmp_path / "proj", lib))
    assert proc.returncode != 0
    cause = firmware.build_failure_cause(proc.stdout + proc.stderr)
    assert cause and "model.c:2: error:" in cause and "undeclared_thing" in cause, cause


@pytest.mark.slow
def test_failed_run_leaves_library_and_firmware_as_they_were(tmp_path):
    """`mnist-mcu run` with a model too big for flash: one line naming the overflow; the env's
    library folder and its firmware.elf are byte for byte what they were (issue 13)."""
    _need_toolchain()
    env = firmware.get_env("qemu_f405_f32")
    firmware.build(env)
    tree = {p: p.read_bytes() for p in sorted(env.model_dir.rglob("*")) if p.is_file()}
    elf = env.elf.read_bytes()
    onnx_path = _onnx_mlp(tmp_path / "big.onnx", hidden=400, outputs=10)
    proc = subprocess.run([str(Path(sys.executable).parent / "mnist-mcu"), "run", "--backend", "native",
                           "--dtype", "f32", "--model", str(onnx_path), "--limit", "1"],
                          capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert re.search(r"region 'FLASH' overflowed by \d+ bytes", lines[0]) and "collect2" not in lines[0]
    assert {p: p.read_bytes() for p in sorted(env.model_dir.rglob("*")) if p.is_file()} == tree
    assert env.elf.read_bytes() == elf
    assert not [p for p in env.model_dir.parent.iterdir() if ".stage-" in p.name or ".tmp-" in p.name]


@pytest.mark.slow
@pytest.mark.qemu
def test_model_with_too_many_outputs_is_refused(tmp_path, require_qemu):
    """The app sizes its outputs for 32 floats: a 40-output model builds, answers INFO with its
    real sizes, and every INFER gets ERROR model-failed (detail 0xFF) instead of an overflow."""
    _need_toolchain()
    from mnist_mcu.native import compile_native
    from mnist_mcu.qemu import Qemu
    from mnist_mcu.transport import DeviceErrorReply

    onnx_path = _onnx_mlp(tmp_path / "wide.onnx", hidden=16, outputs=40)
    lib = compile_native(onnx_path, tmp_path / "lib" / "native_wide", dtype="f32")
    project = _tmp_project(tmp_path / "proj", lib)
    proc = _pio_run(project)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    elf = project / ".pio" / "build" / "test" / "firmware.elf"
    with Qemu(elf, "netduinoplus2", timeout=5) as q:
        assert (q.info.input_size, q.info.output_size) == (784, 40)
        with pytest.raises(DeviceErrorReply) as exc:
            q.device.infer(np.zeros(784, np.uint8))
        assert exc.value.error.code == P.ERR_MODEL and exc.value.error.detail == 0xFF
        assert q.device.info().output_size == 40  # still answering


# -- upload without a board --------------------------------------------------------------------


@pytest.mark.slow
def test_upload_without_board_fails_fast(built):
    """`pio run -e nucleo_f446re_int8 -t upload` uses the system OpenOCD; with no probe attached
    it fails within seconds and says so (instead of waiting for a probe)."""
    if not shutil.which("openocd"):
        pytest.skip("openocd is not installed (apt-get install openocd)")
    if os.environ.get("MNIST_MCU_BOARD_ATTACHED"):
        pytest.skip("a board is attached: this test would flash it")
    built("nucleo_f446re_int8")
    proc = subprocess.run([firmware.pio_executable(), "run", "-e", "nucleo_f446re_int8", "-t", "upload"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "openocd" in out and "board/st_nucleo_f4.cfg" in out, out[-3000:]
    assert "no debug probe found" in out, out[-3000:]


# -- the app's COBS on the host ----------------------------------------------------------------


class _Part(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


@pytest.fixture(scope="module")
def cobs_lib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no host C compiler")
    so = tmp_path_factory.mktemp("cobs") / "libcobs.so"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(so),
                    str(FW / "app" / "cobs.c"), str(FW / "app" / "crc16.c")], check=True)
    lib = ctypes.CDLL(str(so))
    lib.cobs_decode.restype = ctypes.c_int
    lib.cobs_decode.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    lib.crc16_ccitt.restype = ctypes.c_uint16
    lib.crc16_ccitt.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.crc16_ccitt_update.restype = ctypes.c_uint16
    lib.crc16_ccitt_update.argtypes = [ctypes.c_uint16, ctypes.c_char_p, ctypes.c_size_t]
    return lib


PUT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)


def _encode_parts(lib, chunks):
    out = bytearray()
    keep = [ctypes.create_string_buffer(c, len(c) or 1) for c in chunks]
    parts = (_Part * len(chunks))(*[_Part(ctypes.cast(b, ctypes.c_void_p), len(c)) for b, c in zip(keep, chunks)])

    @PUT
    def put(buf, n):
        out.extend(ctypes.string_at(buf, n) if n else b"")

    lib.cobs_encode_parts(parts, ctypes.c_size_t(len(chunks)), put)
    return bytes(out)


def _random_body(rng, n):
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(n))
    if kind == 1:
        return bytes(rng.randrange(1, 256) for _ in range(n))  # long runs without zeros
    if kind == 2:
        return bytes(rng.choice((0, 0, 0, 7)) for _ in range(n))
    return bytes(n)


def test_cobs_streamed_from_parts_matches_host(cobs_lib):
    rng = random.Random(1)
    cases = [b"\x01", b"\x00", bytes(range(1, 255)), bytes(range(1, 255)) + b"\x00", b"\x00" * 3,
             bytes(rng.randrange(1, 256) for _ in range(600))]
    cases += [_random_body(rng, rng.choice((1, 2, 5, 100, 253, 254, 255, 508, 509, 1024))) for _ in range(300)]
    for body in cases:
        cuts = sorted(rng.sample(range(len(body) + 1), min(3, len(body) + 1)))
        chunks = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
        assert b"".join(chunks) == body
        enc = _encode_parts(cobs_lib, chunks)
        assert b"\x00" not in enc
        assert P.cobs_decode(enc) == body
        assert enc == P.cobs_encode(body)


def test_cobs_decode_in_place_matches_host(cobs_lib):
    rng = random.Random(2)
    for _ in range(300):
        body = _random_body(rng, rng.choice((1, 4, 100, 254, 255, 1024, 1025)))
        enc = P.cobs_encode(body)
        buf = ctypes.create_string_buffer(enc, len(enc))
        n = cobs_lib.cobs_decode(buf, len(enc), buf, len(enc))
        assert n == len(body) and buf.raw[:n] == body
    for bad in (b"\x00", b"\x05\x01\x02", b"\x03\x01\x00\x02"):
        buf = ctypes.create_string_buffer(bad, len(bad))
        assert cobs_lib.cobs_decode(buf, len(bad), buf, len(bad)) == -1


def test_crc_continues(cobs_lib):
    data = bytes(range(256)) * 3
    for cut in (0, 1, 2, 100, len(data)):
        whole = cobs_lib.crc16_ccitt(data, len(data))
        assert whole == P.crc16(data)
        part = cobs_lib.crc16_ccitt_update(cobs_lib.crc16_ccitt(data[:cut], cut), data[cut:], len(data) - cut)
        assert part == whole


@pytest.mark.qemu
def test_pio_qemu_target_serves_the_protocol(built, require_qemu):
    """`pio run -e ENV -t qemu` (what a user types) boots the firmware with its UART on QEMU_PORT."""
    import signal
    import time

    from mnist_mcu.qemu import free_port
    from mnist_mcu.transport import Device

    port = free_port()
    proc = subprocess.Popen([firmware.pio_executable(), "run", "-e", "qemu_f405_int8", "-t", "qemu"], cwd=ROOT,
                            env=dict(os.environ, QEMU_PORT=str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                dev = Device(f"socket://127.0.0.1:{port}", timeout=1.0)
                break
            except Exception:  # noqa: BLE001 - any failure to connect means "not yet"
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "QEMU never opened its UART socket"
                time.sleep(0.2)
        with dev:
            info = dev.wait_ready(total=10)
            assert (info.board, info.backend, info.dtype) == ("netduinoplus2", "native", "int8")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert b"socket://127.0.0.1:%d" % port in proc.stdout.read()
