"""A labgrid board farm: `mnist-mcu evaluate --target labgrid --place NAME [--place NAME2 ...]`.

labgrid's coordinator tracks *places* (a board with its resources) and who holds them; exporters
beside the hardware export serial ports and debug probes. For a run this module

1. connects to the coordinator (`--coordinator HOST:PORT`, else $LG_COORDINATOR, else labgrid's
   default 127.0.0.1:20408) and acquires every place, all or none (a place someone else holds is
   a one-line error);
2. flashes the env's firmware through the place's debug probe (labgrid's OpenOCDDriver, with the
   board's OpenOCD script); a place without a probe (an emulator behind a network serial port,
   a board flashed by hand) is used as it is: evaluate checks that its firmware matches the env;
3. hands the places' serial URLs to evaluate, which shares the images among them (one queue,
   so the merged report is that of a single device), and adds the places to the report;
4. releases the places, also on Ctrl-C, SIGTERM (the CLI raises both as exceptions) and errors.

We use labgrid's Python client API (`start_session`, the coordinator's AcquirePlace/ReleasePlace
calls, `RemotePlace` to expand a place into resources, `OpenOCDDriver`) rather than the
`labgrid-client` CLI: one session for the whole run, errors as exceptions rather than parsed
text, and no process per step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from . import firmware as fw
from .errors import UserError
from .paths import ROOT

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's default
SERIAL_CLASSES = ("NetworkSerialPort", "RawSerialPort", "USBSerialPort")
PROBE_CLASSES = ("NetworkUSBDebugger", "USBDebugger")
# OpenOCD: halt, write and verify the flash, then let the new firmware run
LOAD_COMMANDS = ["init", "reset init", "program {filename} verify", "reset run", "shutdown"]
RPC_TIMEOUT = 10.0  # seconds for one coordinator call; a live coordinator answers in milliseconds


def coordinator_address(value: str | None = None) -> str:
    return value or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def _client():
    try:
        from labgrid.remote import client
    except ImportError:
        raise UserError("labgrid is not installed; install the farm extra: .venv/bin/pip install -e '.[farm]' "
                        "(tools/setup.sh does)") from None
    return client


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _quiet_labgrid():
    # labgrid reports a dead coordinator through logging.error on the root logger; without a
    # handler Python prints it, which would make our one-line error three lines
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


@dataclass
class Place:
    """An acquired place, expanded into the resources we use."""

    name: str
    tags: dict
    url: str                     # pyserial URL of the device's UART
    target: Any = field(repr=False)  # labgrid Target holding the place's resources
    probe: Any = field(default=None, repr=False)  # debug probe resource, if any
    flashed: bool = False

    def record(self) -> dict:
        """What the report says about the place: its name, board and serial number come from the
        place's tags (`labgrid-client -p NAME set-tags board=... serial=...`)."""
        rec = {"name": self.name, "board": self.tags.get("board"), "serial": self.tags.get("serial"),
               "url": self.url, "flashed": self.flashed}
        extra = {k: v for k, v in self.tags.items() if k not in ("board", "serial")}
        if extra:
            rec["tags"] = extra
        return rec


class Farm:
    """One client session with the coordinator. Places acquired through it are released by
    close() (and on leaving the `with` block), whatever happened in between."""

    def __init__(self, coordinator: str | None = None, echo: Callable[[str], None] | None = None):
        self.address = coordinator_address(coordinator)
        self.echo = echo or (lambda msg: click.echo(msg, err=True))
        self.session: Any = None  # labgrid's ClientSession
        self.held: list[str] = []
        self._targets: list = []

    # ------------------------------------------------------------------ session
    def __enter__(self) -> Farm:  # noqa: PYI034
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def open(self) -> Farm:
        client = _client()
        _quiet_labgrid()
        try:
            self.session = client.start_session(self.address)
        except Exception as exc:  # noqa: BLE001 - ServerError, grpc errors, a malformed address
            raise UserError(f"cannot reach the labgrid coordinator at {self.address} ({_one_line(exc)}); "
                            "start labgrid-coordinator there or pass --coordinator HOST:PORT "
                            "(or set LG_COORDINATOR)") from None
        return self

    def close(self):
        with _signals_held():
            self.release_all()
            for target in self._targets:
                _forget_target(target)
            self._targets.clear()
            if self.session is not None:
                session, self.session = self.session, None
                try:
                    session.loop.run_until_complete(_bounded(session.stop()))
                    session.loop.run_until_complete(_bounded(session.close()))
                except Exception:  # noqa: BLE001, S110 - the coordinator may be gone; nothing to tidy there
                    pass

    def _call(self, coro):
        """Run one coordinator call and wait until the coordinator has processed it."""
        async def call_and_sync():
            await coro
            await self.session.sync_with_coordinator()

        return self.session.loop.run_until_complete(_bounded(call_and_sync()))

    # ------------------------------------------------------------------ places
    def places(self) -> dict:
        return self.session.places

    def select(self, patterns: list[str]) -> list[str]:
        """Place names for --place values: a name, or KEY=VALUE for every *free* place with that tag."""
        places = self.places()
        known = ", ".join(sorted(places)) or "none"
        names: list[str] = []
        for pattern in patterns:
            if "=" in pattern:
                key, value = pattern.split("=", 1)
                hits = sorted(n for n, p in places.items() if p.tags.get(key) == value)
                if not hits:
                    raise UserError(f"no place on {self.address} has the tag {pattern} (places: {known})")
                free = [n for n in hits if not places[n].acquired]
                if not free:
                    raise UserError(f"every place tagged {pattern} is held by someone else: "
                                    + ", ".join(f"{n} by {places[n].acquired}" for n in hits))
                if len(free) < len(hits):
                    self.echo(f"skipping places held by others: {', '.join(n for n in hits if n not in free)}")
                names += free
            elif pattern in places:
                names.append(pattern)
            else:
                raise UserError(f"no place named {pattern!r} on the coordinator at {self.address} (places: {known}); "
                                f"create it with `labgrid-client -p {pattern} create` and add-match its resources")
        return list(dict.fromkeys(names))  # each place once, in the order given

    def acquire(self, names: list[str], reuse_own: bool = False) -> list[Place]:
        """Acquire all the places or none; returns them expanded into resources. With reuse_own,
        a place this user already holds on this host (`labgrid-client acquire` before the run) is
        used as it is and left held."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        client = _client()
        places = self.places()
        me = f"{self.session.gethostname()}/{self.session.getuser()}"
        own = [n for n in names if reuse_own and places[n].acquired == me]
        for name in names:  # check all first, so a held place costs nothing
            place = places[name]
            if name in own:
                continue
            if place.acquired:
                raise UserError(f"place {name} is held by {place.acquired}; wait until it is released "
                                f"(`labgrid-client who` lists who holds what; the holder runs "
                                f"`labgrid-client -p {name} release`)")
            try:
                self.session.check_matches(place)
            except client.Error as exc:
                raise UserError(f"place {name}: {_one_line(exc)} (is its exporter running?)") from None
        for name in (n for n in names if n not in own):
            try:
                self._call(self.session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name)))
            except Exception as exc:  # noqa: BLE001 - grpc errors (e.g. a resource taken meanwhile)
                holder = self.places().get(name)
                who = f" (held by {holder.acquired})" if holder is not None and holder.acquired else ""
                raise UserError(f"cannot acquire place {name}{who}: {_grpc_details(exc)}") from None
            self.held.append(name)
        return [self._expand(name) for name in names]

    def release_all(self):
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        while self.held:
            name = self.held.pop()
            try:
                self._call(self.session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name)))
            except Exception as exc:  # noqa: BLE001 - warn and go on releasing the others
                self.echo(f"warning: could not release place {name} ({_grpc_details(exc)}); "
                          f"release it with `labgrid-client -p {name} release`")

    def _expand(self, name: str) -> Place:
        """The place's resources as a labgrid Target (RemotePlace does the expansion)."""
        from labgrid import Target
        from labgrid.resource.remote import RemotePlace, RemotePlaceManager

        manager = RemotePlaceManager.get()  # labgrid's process-wide manager: give it our session
        manager.session, manager.loop = self.session, self.session.loop
        target = Target(name)
        self._targets.append(target)
        try:
            RemotePlace(target, name=name)
        except Exception as exc:  # noqa: BLE001 - labgrid raises several kinds here
            raise UserError(f"place {name}: cannot read its resources ({_one_line(exc)})") from None
        resources = [r for r in target.resources if type(r).__name__ not in ("RemotePlace",)]
        serials = [r for r in resources if type(r).__name__ in SERIAL_CLASSES]
        probes = [r for r in resources if type(r).__name__ in PROBE_CLASSES]
        if len(serials) != 1:
            raise UserError(f"place {name} has {len(serials)} serial port resources; it needs exactly one "
                            f"(labgrid-client -p {name} add-match EXPORTER/GROUP/NetworkSerialPort)")
        if len(probes) > 1:
            raise UserError(f"place {name} has {len(probes)} debug probes; it needs at most one")
        serial = serials[0]
        if not serial.avail:
            raise UserError(f"place {name}: its serial port is not available (board unplugged, exporter gone?)")
        return Place(name=name, tags=dict(self.places()[name].tags), url=serial_url(serial), target=target,
                     probe=probes[0] if probes else None)

    # ------------------------------------------------------------------ flashing
    def flash(self, place: Place, elf: Path, env: fw.Env):
        """Write `elf` through the place's debug probe with OpenOCD (run where the probe is)."""
        from labgrid.driver import OpenOCDDriver

        if not place.probe.avail:
            raise UserError(f"place {place.name}: its debug probe is not available (unplugged?)")
        board_cfg = openocd_board(env)
        self.echo(f"flashing {env.name} onto place {place.name} (OpenOCD board/{board_cfg}) ...")
        try:
            driver = OpenOCDDriver(place.target, name=None, board_config=board_cfg, load_commands=LOAD_COMMANDS)
            place.target.activate(driver)
            driver.load(str(elf))
        except Exception as exc:  # noqa: BLE001 - ExecutionError, SSH errors, a missing openocd
            raise UserError(f"place {place.name}: flashing {env.name} through OpenOCD failed: "
                            f"{_flash_error(exc)}") from None
        place.flashed = True


async def _bounded(coro):
    import asyncio

    try:
        return await asyncio.wait_for(coro, RPC_TIMEOUT)
    except asyncio.TimeoutError:
        raise UserError(f"the labgrid coordinator did not answer within {RPC_TIMEOUT:g} s") from None


def _grpc_details(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        try:
            return str(details())
        except Exception:  # noqa: BLE001, S110 - fall back to the exception's text
            pass
    return _one_line(exc)


def _flash_error(exc: BaseException) -> str:
    """labgrid's SSH failure quotes the whole ssh command line; say what it means instead."""
    text = str(getattr(exc, "msg", "") or exc)
    m = re.match(r"failed to connect to (\S+) with args .*returncode=(-?\d+)", text, re.DOTALL)
    if not m:
        return _one_line(exc)
    said = [ln.strip() for ln in re.findall(r"b'((?:[^'\\]|\\.)*)'", text) if ln.strip()]
    detail = said[-1].replace("\\r", "").replace("\\n", " ").strip() if said else f"ssh exit code {m.group(2)}"
    return (f"cannot reach the exporter host {m.group(1)} over SSH ({detail}); labgrid runs OpenOCD on the host "
            "with the probe, so this computer needs key-based SSH access to it")


def _forget_target(target):
    """Drop a finished target from labgrid's process-wide RemotePlaceManager (it would keep
    polling our closed session otherwise)."""
    try:
        target.cleanup()
    except Exception:  # noqa: BLE001, S110 - best effort on the way out
        pass
    from labgrid.resource.remote import RemotePlaceManager

    manager = RemotePlaceManager.get()
    manager.resources = [r for r in manager.resources if r.target is not target]
    manager.unmanaged_resources = [r for r in manager.unmanaged_resources if r.target is not target]
    if not manager.resources:
        manager.session = manager.loop = None


def serial_url(resource) -> str:
    """pyserial URL of a labgrid serial resource (network ones through labgrid's proxy manager,
    which adds an SSH forward when the exporter asks for one)."""
    cls = type(resource).__name__
    if cls != "NetworkSerialPort":
        return resource.port  # a local port (/dev/tty...)
    from labgrid.util.proxy import proxymanager

    host, port = proxymanager.get_host_and_port(resource)
    scheme = {"raw": "socket", "rfc2217": "rfc2217"}.get(resource.protocol)
    if scheme is None:
        raise UserError(f"serial resource protocol {resource.protocol!r} is not supported (raw or rfc2217)")
    return f"{scheme}://{host}:{port}"


def openocd_board(env: fw.Env) -> str:
    """The board's OpenOCD script (boards/<board>.json upload.openocd_board), e.g. st_nucleo_f4.cfg."""
    path = ROOT / "firmware" / "boards" / f"{env.board}.json"
    try:
        name = json.loads(path.read_text())["upload"]["openocd_board"]
    except (OSError, ValueError, KeyError):
        raise UserError(f"board {env.board!r} of env {env.name} names no OpenOCD board script "
                        f"(upload.openocd_board in {path.relative_to(ROOT)}); it cannot be flashed in a farm") from None
    return f"{name}.cfg"


# ---------------------------------------------------------------------- signals

@contextmanager
def _signals_held():
    """Hold back Ctrl-C and SIGTERM while places are released; they are delivered right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


# ---------------------------------------------------------------------- pytest --lg-env

@contextmanager
def place_for_tests(lg_env, env_name: str | None = None, build: bool = True):
    """The place of a labgrid environment file (pytest --lg-env FILE), held for a test session.

    The file's target `main` (or its only target) names the place as a RemotePlace; its option
    `mnist_mcu_env` names the platformio.ini env unless `env_name` is given. A free place is
    acquired and released at the end; one the user acquired beforehand (labgrid's usual
    `labgrid-client -c FILE acquire`) is used and stays held. The place is flashed when it has
    a debug probe. Yields (Place, env name)."""
    from labgrid.factory import target_factory

    cfg = lg_env.config
    targets = cfg.get_targets()
    role = "main" if "main" in targets else (next(iter(targets)) if len(targets) == 1 else None)
    if role is None:
        raise UserError(f"{lg_env.config_file}: needs a target `main` (it has: {', '.join(targets) or 'none'})")
    resources, _ = target_factory.normalize_config(targets[role])
    names = list(resources.get("RemotePlace", {}))
    if len(names) != 1:
        raise UserError(f"{lg_env.config_file}: target {role} needs exactly one RemotePlace (it has {len(names)})")
    env_name = env_name or cfg.get_target_option(role, "mnist_mcu_env", "")
    if not env_name:
        raise UserError(f"{lg_env.config_file}: give the firmware's env with --env or the target option mnist_mcu_env")
    env = fw.get_env(env_name)
    with Farm(cfg.get_option("coordinator_address", "") or None) as farm:
        place = farm.acquire(farm.select(names), reuse_own=True)[0]
        if place.probe is not None:
            farm.flash(place, fw.build(env) if build else fw.require_elf(env), env)
        yield place, env_name


# ---------------------------------------------------------------------- evaluate on places

def _name_places(message: str, places: list[Place]) -> str:
    """Device errors name the serial URL; say which place it is."""
    for p in places:
        if p.url in message:
            return message.replace(p.url, f"place {p.name} ({p.url})", 1)
    return message


def evaluate_on_places(opts, patterns: list[str] | tuple, coordinator: str | None = None) -> dict:
    """`evaluate --target labgrid`: acquire, flash, evaluate over the places' serial ports, release.

    `opts` is evaluate's EvalOptions (its target and port are filled in here)."""
    from .evaluate import evaluate
    from .reports import write_json

    if not patterns:
        raise UserError("--target labgrid needs --place NAME (repeat it to share the images between places; "
                        "KEY=VALUE takes every free place with that tag)")
    if opts.upload:
        raise UserError("--upload is for --target serial; a labgrid place is flashed through its debug probe")
    if opts.port:
        raise UserError("--port is for --target serial; with --target labgrid each place brings its serial port")
    env = fw.get_env(opts.env)
    echo = opts.echo
    # Ctrl-C and SIGTERM (the CLI turns both into exceptions) leave through Farm.__exit__ too
    with Farm(coordinator, lambda m: echo(m, err=True)) as farm:
        names = farm.select(list(patterns))
        places = farm.acquire(names)
        echo(f"acquired place(s) {', '.join(names)} on {farm.address}", err=True)
        probed = [p for p in places if p.probe is not None]
        if probed:
            elf = fw.build(env) if opts.build else fw.require_elf(env)
            for place in probed:
                farm.flash(place, elf, env)
        run_opts = replace(opts, target="serial", port=",".join(p.url for p in places),
                           build=opts.build and not probed)
        try:
            report = evaluate(run_opts)
        except UserError as exc:
            raise UserError(_name_places(str(exc), places)) from None
        json_path = report.pop("json")
        report.update(target="labgrid", coordinator=farm.address, places=[p.record() for p in places])
        write_json(Path(json_path), report)
        report["json"] = json_path
    return report
