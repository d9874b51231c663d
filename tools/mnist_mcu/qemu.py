"""Run firmware under QEMU with its UART on a local TCP socket, and talk to it with `Device`.

    with Qemu(elf, "netduinoplus2") as q:
        info = q.device.info()

QEMU is always stopped: on leaving the context, at interpreter exit (atexit), and
(Linux) when this process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .errors import UserError
from .transport import Device, UnixSocketSerial

QEMU_BINARY = "qemu-system-arm"
ICOUNT_SHIFT = 0  # instructions = ticks * 1e9 / tick_hz / 2**shift

_live: set = set()
_live_lock = threading.Lock()


def stop_everything() -> int:
    """Stop every QEMU this process started that still runs; returns how many."""
    with _live_lock:
        procs = [p for p in _live if p.poll() is None]
    for proc in procs:
        _kill(proc)
    return len(procs)


def live_count() -> int:
    with _live_lock:
        return sum(1 for p in _live if p.poll() is None)


atexit.register(stop_everything)


def _kill(proc: subprocess.Popen, grace: float = 1.0):
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        except OSError:
            pass
    with _live_lock:
        _live.discard(proc)


def _die_with_parent():
    """preexec_fn: ask Linux to SIGKILL QEMU when the Python process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cpu_slot(i: int) -> int | None:
    """The CPU for the i-th of several QEMU instances: round robin over the CPUs this process
    may use (None where the OS cannot pin).

    Pinning all of one QEMU's threads to one CPU cuts its host CPU per UART byte by about a
    quarter (measured 39 -> 28 us with 3 instances on 2 cores): every byte passes between
    QEMU's I/O thread and its vCPU thread, and a wake-up on the same CPU is a plain context
    switch, not a cross-CPU wake-up."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return cpus[i % len(cpus)] if cpus else None


def _preexec(pdeathsig: bool, cpu: int | None):
    """Runs in the child before exec: parent-death signal, and the CPU all QEMU's threads share."""
    if pdeathsig:
        _die_with_parent()
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except (AttributeError, OSError):
            pass


def _pdeathsig_ok() -> bool:
    # Linux sends the parent-death signal when the *thread* that forked exits, so it is
    # only safe from the main thread (which lives as long as the process).
    return os.name == "posix" and threading.current_thread() is threading.main_thread()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_binary() -> str:
    found = shutil.which(QEMU_BINARY)
    if not found:
        raise UserError(f"{QEMU_BINARY} not found; install QEMU (Debian: apt-get install qemu-system-arm) "
                        "or use --target serial with a board")
    return found


class Qemu:
    """One QEMU instance running `elf` on `machine`, with a connected `Device` in `.device`."""

    def __init__(self, elf, machine: str, timeout: float = 5.0, retries: int = 2,
                 boot_timeout: float = 15.0, name: str | None = None, extra_args=(), cpu: int | None = None,
                 unix_socket: bool = False):
        self.elf = Path(elf)
        self.machine = machine
        self.timeout = timeout
        self.retries = retries
        self.boot_timeout = boot_timeout
        self.name = name or f"qemu {machine}"
        self.extra_args = list(extra_args)
        self.cpu = cpu
        # the UART on a Unix socket instead of local TCP: no TCP segment and ACK per byte,
        # about 7 % less emulator and 10 % less host CPU per wire byte; .port stays None
        self.unix_socket = unix_socket and hasattr(socket, "AF_UNIX")
        self.socket_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.device: Device | None = None
        self.info = None
        self._stderr = None

    # -------------------------------------------------------------- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def command(self, port: int | None) -> list[str]:
        """QEMU's command line with the UART on local TCP `port`, or on the Unix socket when None."""
        serial = (f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on" if port is not None
                  else f"unix:{self.socket_path},server=on,wait=on")
        return [qemu_binary(), "-M", self.machine, "-nographic", "-monitor", "none",
                "-serial", serial,
                "-icount", f"shift={ICOUNT_SHIFT},align=off,sleep=off",
                "-kernel", str(self.elf), *self.extra_args]

    def launch(self):
        """Start the QEMU process (call from the main thread, see _pdeathsig_ok)."""
        if not self.elf.is_file():
            raise UserError(f"firmware {self.elf} not found; build it first (pio run -e <env>)")
        if self.unix_socket:
            self.socket_path = Path(tempfile.mkdtemp(prefix="mnist-mcu-qemu-")) / "uart.sock"
        else:
            self.port = free_port()
        self._stderr = tempfile.TemporaryFile()
        pdeathsig = _pdeathsig_ok()
        preexec = functools.partial(_preexec, pdeathsig, self.cpu) if pdeathsig or self.cpu is not None else None
        self.proc = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr, preexec_fn=preexec)
        with _live_lock:
            _live.add(self.proc)

    def finish_start(self):
        """Connect to the UART and wait until INFO answers (may run in a worker thread)."""
        self._connect()  # raises _PortBusy when the probed port was taken meanwhile
        try:
            self.info = self.device.wait_ready(total=self.boot_timeout, attempt_timeout=min(1.0, self.timeout))
        except BaseException:
            self.stop()
            raise
        return self

    def start(self):
        for _ in range(3):  # the free port may be taken between probing and QEMU binding it
            self.launch()
            try:
                return self.finish_start()
            except _PortBusy:
                self.stop()
        raise UserError(f"{self.name}: could not bind a local TCP port for the UART")

    def _connect(self):
        """Connect to QEMU's UART socket (QEMU waits for it before starting the CPU)."""
        deadline = time.monotonic() + 10.0
        url = f"unix:{self.socket_path}" if self.socket_path else f"socket://127.0.0.1:{self.port}"
        while True:
            if self.proc.poll() is not None:
                err = self.stderr_text()
                if "Address already in use" in err or "Failed to bind" in err:
                    raise _PortBusy()
                self.stop()
                raise UserError(f"{self.name}: QEMU exited with code {self.proc.returncode} before the UART "
                                f"connected: {_one_line(err) or 'no message'}")
            try:
                port = UnixSocketSerial(self.socket_path) if self.socket_path else url
                self.device = Device(port, timeout=self.timeout, retries=self.retries, name=self.name,
                                     diagnose=self.diagnose)
                self.device.elf = self.elf  # FAULT reports name the function (addr2line)
                return
            except (UserError, OSError) as exc:  # OSError: the Unix socket is not there yet
                if time.monotonic() > deadline:
                    err = self.stderr_text()
                    self.stop()
                    raise UserError(f"{self.name}: cannot connect to QEMU's UART at {url} within 10 s: "
                                    f"{_one_line(err) or exc}") from None
                time.sleep(0.02)

    def cpu_seconds(self, precise: bool = False) -> float | None:
        """Host CPU time (user + system) QEMU has used so far, from /proc (Linux). /proc's stat
        counts in 10 ms ticks; precise sums the live threads' schedstat (nanoseconds), for short
        samples such as the idle probe (a thread that ended meanwhile is not counted)."""
        if self.proc is None:
            return None
        try:
            if precise:
                tasks = Path(f"/proc/{self.proc.pid}/task").iterdir()
                return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def stop(self):
        if self.device is not None:
            self.device.close()
        if self.proc is not None:
            _kill(self.proc)
        if self.socket_path is not None:
            shutil.rmtree(self.socket_path.parent, ignore_errors=True)

    # -------------------------------------------------------------- diagnostics
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def diagnose(self) -> str | None:
        """Extra context for Device errors: did QEMU die, and what did it say?"""
        if self.proc is None:
            return None
        # give a dying QEMU a moment to exit so its status and message are known
        for _ in range(10):
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        code = self.proc.poll()
        if code is None:
            return None
        err = _one_line(self.stderr_text())
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return f"QEMU died, {how}" + (f": {err}" if err else "")


def start_all(instances):
    """Start several instances, booting them in parallel; all or none are left running."""
    try:
        for q in instances:
            q.launch()
        errors = {}

        def boot(q):
            try:
                q.finish_start()
            except BaseException as exc:  # noqa: BLE001
                errors[id(q)] = exc

        threads = [threading.Thread(target=boot, args=(q,), daemon=True) for q in instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for q in instances:
            exc = errors.get(id(q))
            if isinstance(exc, _PortBusy):
                q.stop()
                q.start()
            elif exc is not None:
                raise exc
    except BaseException:
        stop_all(instances)
        raise
    return instances


def stop_all(instances):
    """Stop several instances at once (each QEMU takes ~0.3 s to exit after SIGTERM)."""
    for q in instances:
        if q.device is not None:
            q.device.close()
        if q.proc is not None and q.proc.poll() is None:
            try:
                q.proc.terminate()
            except OSError:
                pass
    for q in instances:
        q.stop()


class _PortBusy(Exception):
    pass


def _one_line(text: str, limit: int = 300) -> str:
    """QEMU's stderr as one line, without its routine 'waiting for connection' notice."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "QEMU waiting for connection" not in ln]
    text = " | ".join(lines)
    return text[:limit]
