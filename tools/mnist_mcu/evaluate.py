"""`mnist-mcu evaluate`: stream the MNIST test set to the device (QEMU or a board) and
compare it with the host model: accuracy, agreement, output differences, instructions or
cycles per inference, flash and RAM. Writes JSON plus plots next to it.

The parts live in mnist_mcu.evaluation (reference, session, metrics, report); this module
holds the options, the order of the steps and the command line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from . import firmware as fw
from . import protocol as P
from .errors import UserError
from .evaluation import metrics as M
from .evaluation import reference as R
from .evaluation import report as Rep
from .evaluation.metrics import output_similarity  # noqa: F401 - public helper used by tests
from .evaluation.reference import load_test_set
from .evaluation.report import summary_lines
from .evaluation.session import (
    DEFAULT_BATCH,
    DEFAULT_JOBS,
    DEFAULT_WINDOW_QEMU,
    DEFAULT_WINDOW_SERIAL,
    StreamOptions,
    run_qemu,
    stream_to_ports,
)
from .outdir import output_file_option
from .paths import REPORTS_DIR

MAX_WINDOW = 255  # sequence numbers 1..255: at most that many requests in flight


@dataclass
class EvalOptions:
    """Everything `evaluate` needs; the command line fills it, other commands build it."""

    env: str
    target: str | None = None           # qemu | serial; default from the env
    port: str | None = None             # serial URL(s) for --target serial; commas shard across devices
    limit: int | None = None            # only the first N test images
    json_path: Path | None = None       # default reports/<env>.json
    data_dir: str | None = None
    model: Path | None = None           # float ONNX; default the env's custom_model_onnx
    jobs: int = DEFAULT_JOBS            # QEMU instances
    build: bool = True
    window: int | None = None           # requests in flight per device
    timeout: float = 5.0
    plots: bool = True
    progress: bool | None = None        # None: bar on a terminal, periodic lines otherwise
    upload: bool = False
    encoding: int = P.ENC_DEFAULT
    batch: int = DEFAULT_BATCH          # images per request frame
    echo: Callable = field(default=click.echo, repr=False)

    def resolved_window(self, target: str) -> int:
        return self.window or (DEFAULT_WINDOW_QEMU if target == "qemu" else DEFAULT_WINDOW_SERIAL)


def _validate(opts: EvalOptions, env) -> str:
    target = opts.target or ("qemu" if env.is_qemu else "serial")
    if target == "qemu" and not env.is_qemu:
        raise UserError(f"env {env.name} is for a real board (no custom_qemu_machine); use --target serial --port PORT")
    if target == "serial" and not opts.port:
        raise UserError("--target serial needs --port (e.g. /dev/ttyACM0, socket://HOST:PORT, rfc2217://HOST:PORT)")
    if opts.window is not None and not 1 <= opts.window <= MAX_WINDOW:
        raise UserError(f"--window must be 1..{MAX_WINDOW} (requests in flight; the protocol has 255 sequence numbers)")
    if not 1 <= opts.batch <= 255:
        raise UserError("--batch must be 1..255 (images per request frame; the reply numbers them in a byte)")
    if not opts.timeout > 0:
        raise UserError("--timeout must be more than 0 seconds")
    if opts.jobs < 1:
        raise UserError("--jobs must be at least 1")
    if opts.upload and target != "serial":
        raise UserError("--upload flashes a real board; it needs --target serial")
    if target == "serial":
        for port in _ports(opts.port):
            if "://" not in port and not os.path.exists(port):
                raise UserError(f"serial port {port} not found; plug in the board or pass the right --port")
    return target


def _ports(port: str | None) -> list[str]:
    return [p.strip() for p in (port or "").split(",") if p.strip()]


def _warm_plot_imports():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def evaluate(opts: EvalOptions) -> dict:
    t_start = time.monotonic()
    env = fw.get_env(opts.env)
    target = _validate(opts, env)
    model = Path(opts.model) if opts.model else env.model_onnx
    json_path = Path(opts.json_path) if opts.json_path else REPORTS_DIR / f"{env.name}.json"
    window = opts.resolved_window(target)
    pixels, labels = load_test_set(opts.data_dir, opts.limit)

    # the host reference: loaded now (its errors come before a long device run), computed
    # while the device streams
    R.FloatModel(model)
    if env.dtype == "int8" and not Path(env.model_dir).is_dir():
        raise UserError(f"model library {env.model_dir} not found; "
                        "run `mnist-mcu compile --backend native --dtype int8`")
    reference = R.Background(R.compute, env, model, pixels)
    warm = R.Background(_warm_plot_imports) if opts.plots else None

    sizes: dict = {}
    if target == "qemu" or opts.build:
        if opts.build:
            opts.echo(f"building {env.name} ...", err=True)
            fw.build(env)
        elf = fw.require_elf(env) if target == "qemu" else (env.elf if env.elf.is_file() else None)
        sizes = fw.elf_sizes(elf) if elf else {}
    if opts.upload:
        opts.echo(f"flashing {env.name} ...", err=True)
        fw.upload(env)

    stream_opts = StreamOptions(window=window, timeout=opts.timeout, progress=opts.progress, encoding=opts.encoding,
                              batch=opts.batch)
    if target == "qemu":
        from .qemu import ICOUNT_SHIFT as shift

        run = run_qemu(env.elf, env.qemu_machine or "", pixels, jobs=opts.jobs, options=stream_opts)
    else:
        shift = 0  # a hand-started QEMU (README recipe, pio -t qemu) uses -icount shift=0 too
        run = stream_to_ports(_ports(opts.port), pixels, stream_opts)
    M.check_info(run.info, env, target)

    ref = reference.result()
    dev_codes = R.device_codes(env.model_dir, run.outputs) if ref.ort_codes is not None else None
    metrics = M.compute_metrics(run, labels, ref, shift, dev_codes)
    report = Rep.build(env, target, opts.port, run, labels, metrics, window, sizes, opts.encoding, opts.batch)
    if warm is not None:
        warm.result()
        report.update(Rep.write_plots(report, json_path, pixels, labels, run, ref))
    report["total_seconds"] = round(time.monotonic() - t_start, 3)
    Rep.write(report, json_path)
    report["json"] = str(json_path)
    return report


@click.command("evaluate")
@click.option("--env", "env_name", required=True, help="platformio.ini environment, e.g. qemu_f405_f32")
@click.option("--target", type=click.Choice(["qemu", "serial", "labgrid"]), default=None,
              help="qemu (emulated board), serial (a board on --port) or labgrid (places of a board farm, "
                   "--place); default from the env")
@click.option("--port", default=None,
              help="pyserial URL or port for --target serial: /dev/ttyACM0, socket://H:P, rfc2217://H:P "
                   "(comma-separate several devices to share the images between them)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test images")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, callback=output_file_option,
              help="report path (default reports/<env>.json); PNGs are written next to it")
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root [env: MNIST_DIR]")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="float ONNX model (default: the env's custom_model_onnx, else model/mlp.onnx)")
@click.option("--jobs", type=click.IntRange(min=1), default=DEFAULT_JOBS, show_default=True,
              help="parallel QEMU instances")
@click.option("--no-build", is_flag=True, help="use the existing ELF instead of running `pio run`")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=None,
              help=f"requests in flight per device, 1..{MAX_WINDOW} (default {DEFAULT_WINDOW_QEMU} under QEMU, "
                   f"{DEFAULT_WINDOW_SERIAL} on a board)")
@click.option("--batch", type=click.IntRange(1, 255), default=DEFAULT_BATCH, show_default=True,
              help="images per request frame, as many as fit in one (1: a frame per image)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="seconds to wait for each reply")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("--upload", is_flag=True, help="flash the board first (`pio run -e ENV -t upload`; --target serial)")
# --target labgrid (mnist_mcu/farm.py): acquire the places, flash them, evaluate over their serial ports, release
@click.option("--place", "places", multiple=True,
              help="--target labgrid: a place of the farm; repeat it to share the images between places "
                   "(KEY=VALUE: every free place with that tag)")
@click.option("--coordinator", envvar="LG_COORDINATOR", default=None,
              help="--target labgrid: the labgrid coordinator HOST:PORT [env: LG_COORDINATOR; default 127.0.0.1:20408]")
def cli(env_name, target, port, limit, json_path, data_dir, model, jobs, no_build, window, batch, timeout,
        no_plots, upload, places, coordinator):
    """Run the test set on the device and compare it with the host model."""
    opts = EvalOptions(env=env_name, target=target, port=port, limit=limit, json_path=json_path,
                       data_dir=data_dir, model=model, jobs=jobs, build=not no_build, window=window,
                       batch=batch, timeout=timeout, plots=not no_plots, upload=upload)
    if target == "labgrid":
        from .farm import evaluate_on_places

        r = evaluate_on_places(opts, places, coordinator)
    elif places:
        raise UserError("--place needs --target labgrid")
    else:
        r = evaluate(opts)
    for line in summary_lines(r):
        click.echo(line)
