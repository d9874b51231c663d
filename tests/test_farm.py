"""The labgrid board farm end to end, without hardware, all on 127.0.0.1.

A real `labgrid-coordinator` and a real `labgrid-exporter` (running the shipped
tools/farm/qemu-exporter.yaml) export the TCP serial ports of three QEMU instances running our
firmware; `labgrid-client` creates one place per instance. `mnist-mcu evaluate --target labgrid`
shares the images between two places and must give what a direct QEMU run gives, image by image.
The failures (a place held by someone else, no coordinator, an emulator killed mid-run, Ctrl-C
and SIGTERM) must each end in seconds with one line, leaving no place held and no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mnist_mcu.evaluate import EvalOptions, evaluate, load_test_set
from mnist_mcu.evaluation.session import StreamOptions, run_qemu, stream_to_ports
from mnist_mcu.farm import Farm  # imports labgrid only when used
from mnist_mcu.paths import ROOT
from mnist_mcu.qemu import Qemu, free_port, start_all, stop_all

pytestmark = pytest.mark.qemu
pytest.importorskip("labgrid", reason="labgrid is not installed: pip install -e '.[farm]' (tools/setup.sh does)")

ENV = "qemu_f405_int8"
SUBSET = 300
BIN = Path(sys.executable).parent
EXPORTER_CONFIG = ROOT / "tools" / "farm" / "qemu-exporter.yaml"
PLACES = {"farm-a": 1, "farm-b": 2, "farm-c": 3}  # place -> exporter group qemu-N
FAILS_WITHIN = 20.0  # seconds: "in seconds", with room for a loaded 2-core machine
# keys of the report that do not depend on how the images were shared out
SAME_KEYS = ("images", "accuracy", "host_accuracy", "agreement", "max_abs_diff", "mean_abs_diff", "rmse", "mae",
             "l2r", "cosine", "disagreements", "confusion_matrix", "misclassified", "flash_bytes", "ram_bytes",
             "ort_int8_agreement", "ort_int8_max_lsb", "tick_hz", "cpu_hz")
# equal to within one timer tick per image (which tick phase an inference starts in varies)
TICK_KEYS = ("instructions_per_inference", "instructions_per_inference_max", "instructions_per_inference_min")


def _spawn(args, cwd, log: Path, env=None) -> subprocess.Popen:
    from mnist_mcu.qemu import _die_with_parent  # the same PR_SET_PDEATHSIG guard as QEMU's

    return subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # noqa: PLW1509 - test process, no threads yet


def _stop(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Lab:
    address: str
    qemus: dict          # place -> Qemu
    work: Path
    procs: list

    def client(self, *args, user: str | None = None, check=True) -> subprocess.CompletedProcess:
        env = dict(os.environ, **({"LG_USERNAME": user} if user else {}))
        res = subprocess.run([str(BIN / "labgrid-client"), "-x", self.address, *args], capture_output=True,
                             text=True, env=env, timeout=60, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"labgrid-client {' '.join(args)}: {res.stderr or res.stdout}")
        return res

    def holders(self) -> dict:
        """{place: "host/user"} of the held places, as `labgrid-client who` lists them."""
        rows = [ln.split() for ln in self.client("who").stdout.splitlines()[1:] if ln.strip()]
        return {row[2]: f"{row[1]}/{row[0]}" for row in rows}


def _wait(what: str, cond, timeout: float = 30.0, procs=()):
    end = time.monotonic() + timeout
    while not cond():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args[0]} exited with {p.returncode}")
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def lab(build_env, tmp_path_factory):
    env = build_env(ENV)
    work = tmp_path_factory.mktemp("farm")
    elf = work / "firmware.elf"  # our own copy: a rebuild of the env elsewhere cannot pull it away
    shutil.copyfile(env.elf, elf)
    qemus = {name: Qemu(elf, env.qemu_machine, name=f"qemu behind {name}") for name in PLACES}
    procs: list[subprocess.Popen] = []
    try:
        start_all(list(qemus.values()))  # boots each and checks INFO ...
        for q in qemus.values():
            q.device.close()  # ... then frees its TCP serial port for the exporter's clients
        port = free_port()
        address = f"127.0.0.1:{port}"
        # the coordinator keeps places.yaml in its working directory: a temporary one
        procs.append(_spawn([BIN / "labgrid-coordinator", "-l", address], work, work / "coordinator.log"))
        _wait("coordinator listening", lambda: _listening(port), procs=procs)
        ports = " ".join(str(qemus[name].port) for name in PLACES)
        procs.append(_spawn([BIN / "labgrid-exporter", "-c", address, "-n", "farmtest", "--hostname", "127.0.0.1",
                             EXPORTER_CONFIG], work, work / "exporter.log", env=dict(os.environ, QEMU_PORTS=ports)))
        lab = Lab(address, qemus, work, procs)
        want = {f"farmtest/qemu-{i}/NetworkSerialPort" for i in PLACES.values()}
        _wait("exporter's resources at the coordinator",
              lambda: want <= set(lab.client("resources").stdout.split()), procs=procs)
        for name, i in PLACES.items():
            lab.client("-p", name, "create")
            lab.client("-p", name, "add-match", f"farmtest/qemu-{i}/NetworkSerialPort")
            lab.client("-p", name, "set-tags", "board=netduinoplus2", f"serial=QEMU{i:04d}")
        yield lab
    finally:
        for proc in reversed(procs):
            _stop(proc)
        stop_all(list(qemus.values()))
    stray = [p.args[0] for p in procs if p.poll() is None] + [q.name for q in qemus.values() if q.alive()]
    assert not stray, f"processes left running: {stray}"


def _evaluate_cli(lab: Lab, *args, wait=True, env=ENV, **kwargs):
    cmd = [str(BIN / "mnist-mcu"), "evaluate", "--env", env, "--target", "labgrid", "--coordinator", lab.address,
           "--no-build", "--no-plots", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, **kwargs)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines, "no error message"
    assert lines[-1].startswith("error: "), stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


def _direct(lab: Lab, mnist_dir, tmp_path, limit) -> dict:
    """A single-device run on the same firmware without labgrid: straight to one emulator's UART."""
    url = f"socket://127.0.0.1:{lab.qemus['farm-a'].port}"
    return evaluate(EvalOptions(env=ENV, target="serial", port=url, limit=limit, json_path=tmp_path / "direct.json",
                                data_dir=mnist_dir, build=False, plots=False, progress=False))


def _compare_reports(farm_report: dict, direct: dict):
    for key in SAME_KEYS:
        if key in direct or key in farm_report:
            assert farm_report.get(key) == direct.get(key), key
    per_tick = 1e9 / direct["tick_hz"]  # emulated instructions per tick (-icount shift=0: 1 ns each)
    for key in TICK_KEYS:
        # one tick apart at most; the slack is float rounding (ticks are converted to instructions)
        assert abs(farm_report[key] - direct[key]) <= per_tick * (1 + 1e-9), (key, farm_report[key], direct[key])


# ---------------------------------------------------------------------- the sharded run

def test_sharded_run_matches_direct_qemu_image_by_image(lab, mnist_dir):
    """The same images through two places (one shared queue) and through QEMU directly."""
    pixels, _ = load_test_set(mnist_dir, SUBSET)
    opts = StreamOptions(window=2, progress=False)
    with Farm(lab.address) as farm:
        places = farm.acquire(["farm-a", "farm-b"])
        assert set(lab.holders()) == {"farm-a", "farm-b"}  # held while we stream
        sharded = stream_to_ports([p.url for p in places], pixels, opts)
    assert not lab.holders(), "places left held"
    env = lab.qemus["farm-a"]
    direct = run_qemu(env.elf, env.machine, pixels, jobs=1, options=opts)
    assert sharded.instances == 2 and direct.instances == 1
    np.testing.assert_array_equal(sharded.classes, direct.classes)
    np.testing.assert_array_equal(sharded.outputs, direct.outputs)  # int8: bit-identical dequantised codes
    # ticks: the timer's phase when an inference starts differs between the runs, so a tick
    # count may differ by one (SysTick at 168 MHz is ~6 emulated instructions per tick)
    assert np.abs(sharded.ticks - direct.ticks).max() <= 1


def test_evaluate_target_labgrid_report(lab, mnist_dir, tmp_path):
    res = _evaluate_cli(lab, "--place", "farm-a", "--place", "farm-b", "--limit", str(SUBSET),
                        "--json", tmp_path / "farm.json", "--data-dir", mnist_dir)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "farm.json").read_text())
    direct = _direct(lab, mnist_dir, tmp_path, SUBSET)
    _compare_reports(report, direct)
    assert report["target"] == "labgrid" and report["coordinator"] == lab.address and report["instances"] == 2
    assert [(p["name"], p["board"], p["serial"]) for p in report["places"]] == [
        ("farm-a", "netduinoplus2", "QEMU0001"), ("farm-b", "netduinoplus2", "QEMU0002")]
    urls = [f"socket://127.0.0.1:{lab.qemus[n].port}" for n in ("farm-a", "farm-b")]
    assert [p["url"] for p in report["places"]] == urls
    assert "acquired place(s) farm-a, farm-b" in res.stderr
    assert not lab.holders(), "places left held"


def test_places_selected_by_tag(lab, mnist_dir, tmp_path):
    """KEY=VALUE takes every free place with that tag; a held one is skipped and said so."""
    lab.client("-p", "farm-b", "acquire", user="someone-else")
    try:
        res = _evaluate_cli(lab, "--place", "board=netduinoplus2", "--limit", "20", "--json", tmp_path / "t.json",
                            "--data-dir", mnist_dir)
    finally:
        lab.client("-p", "farm-b", "release", user="someone-else")
    assert res.returncode == 0, res.stderr
    assert "skipping places held by others: farm-b" in res.stderr
    names = [p["name"] for p in json.loads((tmp_path / "t.json").read_text())["places"]]
    assert names == ["farm-a", "farm-c"]


@pytest.mark.slow
def test_full_test_set_on_two_places(lab, mnist_dir, tmp_path):
    two = _evaluate_cli(lab, "--place", "farm-a", "--place", "farm-b", "--json", tmp_path / "two.json",
                        "--data-dir", mnist_dir)
    assert two.returncode == 0, two.stderr
    two_r = json.loads((tmp_path / "two.json").read_text())
    direct = _direct(lab, mnist_dir, tmp_path, None)  # one device: what the farm run must equal
    _compare_reports(two_r, direct)
    assert two_r["images"] == 10000 and two_r["instances"] == 2 and direct["instances"] == 1
    print(f"\n10,000 images: 2 labgrid places {two_r['wall_seconds']:.1f} s, "
          f"one emulator {direct['wall_seconds']:.1f} s")


# ---------------------------------------------------------------------- pytest --lg-env

@pytest.mark.parametrize("acquired_before", [False, True], ids=["acquired-by-the-tests", "acquired-by-the-user"])
def test_hardware_tests_run_on_a_place(lab, mnist_dir, tmp_path, acquired_before):
    """tests/test_hardware.py through labgrid's pytest plugin against an emulated place: a free
    place is held for the session; one the user acquired first (labgrid's usual
    `labgrid-client -c FILE acquire`) is used and stays theirs."""
    env_file = tmp_path / "farm.yaml"
    env_file.write_text("targets:\n  main:\n    resources:\n      RemotePlace:\n        name: farm-a\n"
                        f"    options:\n      mnist_mcu_env: {ENV}\n")
    if acquired_before:
        lab.client("-c", str(env_file), "acquire")
    res = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_hardware.py"), "-m", "hardware",
                          "--lg-env", str(env_file), "--lg-coordinator", lab.address, "--hw-limit", "200",
                          "-p", "no:cacheprovider", "-q", "-rs"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=dict(os.environ, MNIST_DIR=mnist_dir), check=False)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert "3 passed" in res.stdout and "skipped" not in res.stdout, res.stdout[-2000:]
        assert set(lab.holders()) == ({"farm-a"} if acquired_before else set())
    finally:
        if acquired_before:
            lab.client("-c", str(env_file), "release")


# ---------------------------------------------------------------------- RFC 2217 (ser2net's protocol)

class Rfc2217Server:
    """An RFC 2217 (telnet serial) server in front of an emulator's TCP UART, as ser2net puts one
    in front of a board's USB serial port on a real exporter. pyserial's own PortManager does
    the protocol; this class only moves bytes."""

    def __init__(self, uart_url: str):
        import serial
        import serial.rfc2217

        self.uart = serial.serial_for_url(uart_url, timeout=0.05)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.rfc2217 = serial.rfc2217
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed before any client came
            return

        class Out:  # PortManager writes its replies through .write
            write = conn.sendall

        manager = self.rfc2217.PortManager(self.uart, Out())

        def device_to_client():
            try:
                while not self.stopped.is_set():
                    data = self.uart.read(4096)
                    if data:
                        conn.sendall(b"".join(manager.escape(data)))
            except Exception:  # noqa: BLE001 - the port is closed under us at the end
                pass

        threading.Thread(target=device_to_client, daemon=True).start()
        try:
            while not self.stopped.is_set():
                data = conn.recv(4096)
                if not data:
                    break
                self.uart.write(b"".join(manager.filter(data)))
        except Exception:  # noqa: BLE001, S110 - the same
            pass
        conn.close()

    def close(self):
        self.stopped.set()
        self.listener.close()
        self.uart.close()


def test_place_behind_an_rfc2217_server(lab, mnist_dir, tmp_path, build_env):
    """A place whose serial port speaks RFC 2217, like a USB serial port exported by ser2net."""
    env = build_env(ENV)
    qemu = Qemu(env.elf, env.qemu_machine, name="qemu behind RFC 2217")
    server = None
    exporter = None
    try:
        qemu.start()
        qemu.device.close()
        server = Rfc2217Server(f"socket://127.0.0.1:{qemu.port}")
        config = tmp_path / "rfc2217-exporter.yaml"
        config.write_text(f"rfc:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {server.port}\n"
                          "    protocol: rfc2217\n")
        exporter = _spawn([BIN / "labgrid-exporter", "-c", lab.address, "-n", "farmrfc", "--hostname", "127.0.0.1",
                           config], tmp_path, tmp_path / "exporter.log")
        _wait("RFC 2217 resource", lambda: "farmrfc/rfc/NetworkSerialPort" in lab.client("resources").stdout,
              procs=[exporter])
        lab.client("-p", "farm-rfc", "create")
        lab.client("-p", "farm-rfc", "add-match", "farmrfc/rfc/NetworkSerialPort")
        res = _evaluate_cli(lab, "--place", "farm-rfc", "--limit", "50", "--json", tmp_path / "r.json",
                            "--data-dir", mnist_dir)
        assert res.returncode == 0, res.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["places"][0]["url"] == f"rfc2217://127.0.0.1:{server.port}"
        assert report["agreement"] == 1.0 and report["images"] == 50
    finally:
        lab.client("-p", "farm-rfc", "delete", check=False)
        if exporter is not None:
            _stop(exporter)
        if server is not None:
            server.close()
        qemu.stop()


# ---------------------------------------------------------------------- failures

def test_place_held_by_someone_else(lab, mnist_dir):
    lab.client("-p", "farm-b", "acquire", user="someone-else")
    try:
        t0 = time.monotonic()
        res = _evaluate_cli(lab, "--place", "farm-a", "--place", "farm-b", "--limit", "20", "--data-dir", mnist_dir)
        took = time.monotonic() - t0
        line = _error_line(res.stderr)
        assert res.returncode == 2 and took < FAILS_WITHIN
        assert "place farm-b is held by" in line and "someone-else" in line, line
        assert lab.holders() == {"farm-b": f"{socket.gethostname()}/someone-else"}, \
            "farm-a must not stay acquired when farm-b cannot be"
    finally:
        lab.client("-p", "farm-b", "release", user="someone-else")


def test_probe_that_cannot_be_reached(lab, mnist_dir, tmp_path, build_env):
    """A board place: the firmware goes through its debug probe (labgrid's OpenOCD driver, run on
    the exporter host over SSH). Here no SSH server answers, so flashing fails: one line, released."""
    build_env("nucleo_f446re_int8")
    config = tmp_path / "probe-exporter.yaml"
    config.write_text(f"nucleo:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {free_port()}\n"
                      "    protocol: raw\n"
                      "  NetworkUSBDebugger:\n    host: 127.0.0.1\n    busnum: 1\n    devnum: 5\n    path: '1-1.2'\n"
                      "    vendor_id: 0x0483\n    model_id: 0x374b\n")
    exporter = _spawn([BIN / "labgrid-exporter", "-c", lab.address, "-n", "farmprobe", "--hostname", "127.0.0.1",
                       config], tmp_path, tmp_path / "exporter.log")
    try:
        _wait("probe resource", lambda: "farmprobe/nucleo/NetworkUSBDebugger" in lab.client("resources").stdout,
              procs=[exporter])
        lab.client("-p", "farm-probe", "create")
        lab.client("-p", "farm-probe", "add-match", "farmprobe/nucleo/*")
        t0 = time.monotonic()
        res = _evaluate_cli(lab, "--place", "farm-probe", "--limit", "20", "--data-dir", mnist_dir,
                            env="nucleo_f446re_int8")
        took = time.monotonic() - t0
        line = _error_line(res.stderr)
        assert res.returncode == 2 and took < FAILS_WITHIN + 30, res.stderr  # + ssh's own connect attempt
        assert line.startswith("error: place farm-probe: flashing nucleo_f446re_int8 through OpenOCD failed: "), line
        assert "with args" not in line, "the reason, not labgrid's whole ssh command line"
        assert "flashing nucleo_f446re_int8 onto place farm-probe (OpenOCD board/st_nucleo_f4.cfg)" in res.stderr
        assert not lab.holders(), "place left held"
    finally:
        lab.client("-p", "farm-probe", "delete", check=False)
        _stop(exporter)


def test_coordinator_down(lab, mnist_dir):
    nobody = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    res = subprocess.run([str(BIN / "mnist-mcu"), "evaluate", "--env", ENV, "--target", "labgrid", "--place", "farm-a",
                          "--coordinator", nobody, "--no-build", "--limit", "20", "--data-dir", mnist_dir],
                         capture_output=True, text=True, timeout=120, check=False)
    took = time.monotonic() - t0
    line = _error_line(res.stderr)
    assert res.returncode == 2 and took < FAILS_WITHIN
    assert f"cannot reach the labgrid coordinator at {nobody}" in line
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_unknown_place(lab, mnist_dir):
    res = _evaluate_cli(lab, "--place", "no-such-place", "--limit", "20", "--data-dir", mnist_dir)
    line = _error_line(res.stderr)
    assert res.returncode == 2 and "no place named 'no-such-place'" in line and "farm-a" in line


def _wait_streaming(lab: Lab, proc, names):
    _wait("places acquired", lambda: set(names) <= set(lab.holders()), timeout=60, procs=[proc])
    time.sleep(3.0)  # past loading the data and connecting: the images are flowing
    assert proc.poll() is None, proc.communicate()


@pytest.mark.parametrize("sig, code, message", [(signal.SIGINT, 130, "error: interrupted"),
                                                (signal.SIGTERM, 143, "error: terminated by SIGTERM")])
def test_interrupted_run_releases_its_places(lab, mnist_dir, sig, code, message):
    proc = _evaluate_cli(lab, "--place", "farm-a", "--place", "farm-b", "--data-dir", mnist_dir, wait=False)
    try:
        _wait_streaming(lab, proc, ["farm-a", "farm-b"])
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        _stop(proc)
    assert proc.returncode == code and took < FAILS_WITHIN, err
    assert _error_line(err).startswith(message)
    assert not lab.holders(), "places left held"


def test_emulator_killed_mid_run(lab, mnist_dir):
    """The serial resource of farm-c disappears (its QEMU is killed): one line naming the place.
    Runs last: farm-c has no emulator afterwards."""
    proc = _evaluate_cli(lab, "--place", "farm-a", "--place", "farm-c", "--data-dir", mnist_dir, wait=False)
    try:
        _wait_streaming(lab, proc, ["farm-a", "farm-c"])
        t0 = time.monotonic()
        lab.qemus["farm-c"].proc.kill()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        _stop(proc)
    line = _error_line(err)
    assert proc.returncode == 2 and took < FAILS_WITHIN, err
    assert f"place farm-c (socket://127.0.0.1:{lab.qemus['farm-c'].port})" in line, line
    assert not lab.holders(), "places left held"
