"""`mnist-mcu evaluate`: stream the MNIST test set to the device (QEMU or a board) and
compare it with the host model: accuracy, agreement, output differences, instructions or
cycles per inference, flash and RAM. Writes JSON plus a confusion-matrix and a
misclassified-digits PNG next to it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import click
import numpy as np

from . import firmware as fw
from . import protocol as P
from .errors import UserError
from .outdir import output_file_option
from .paths import REPORTS_DIR, ROOT

DEFAULT_JOBS = 2


# ---------------------------------------------------------------------- host side

def load_test_set(data_dir=None, limit=None):
    from .data import load_mnist

    images, labels = load_mnist("test", data_dir)
    if limit is not None:
        if limit <= 0:
            raise UserError("--limit must be positive")
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8), labels.astype(np.int64)


def onnx_outputs(model_path: Path, pixels: np.ndarray) -> np.ndarray:
    """Float model on the host (onnxruntime) for uint8 pixels [N,784] -> [N,10]."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"model {model_path} not found; run `mnist-mcu train` or pass --model")
    import onnxruntime as ort

    from .data import normalise

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserError(f"onnxruntime cannot load {model_path}: {str(exc).splitlines()[0]}") from None
    name = sess.get_inputs()[0].name
    out = []
    for start in range(0, len(pixels), 1000):
        x = normalise(pixels[start:start + 1000]).reshape(-1, 1, 28, 28).astype(np.float32)
        out.append(sess.run(None, {name: x})[0])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 10), np.float32)


def int8_host_outputs(model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    try:
        from .native.host import HostModel
    except ImportError as exc:
        raise UserError(f"the int8 host reference (mnist_mcu.native.host) is unavailable: {exc}") from None
    if not Path(model_dir).is_dir():
        raise UserError(f"model library {model_dir} not found; run `mnist-mcu compile --backend native --dtype int8`")
    return np.asarray(HostModel(model_dir).run(pixels), dtype=np.float32)


# ---------------------------------------------------------------------- device side

class DeviceRun:
    """Results of streaming images through one or more devices."""

    def __init__(self, n):
        self.classes = np.full(n, -1, dtype=np.int64)
        self.outputs = np.full((n, 10), np.nan, dtype=np.float32)
        self.ticks = np.zeros(n, dtype=np.int64)
        self.counts = np.zeros(n, dtype=np.int64)
        self.infos_before: list[P.Info] = []
        self.infos_after: list[P.Info] = []
        self.wall_seconds = 0.0
        self.stream_seconds = 0.0
        self.bytes_sent = 0
        self.resends = 0
        self.stray_errors = 0
        self.instances = 0

    def store(self, idx, res: P.InferResult):
        self.counts[idx] += 1
        if self.counts[idx] == 1:
            self.classes[idx] = res.cls
            if len(res.outputs) != self.outputs.shape[1]:  # a model with other than 10 outputs
                self.outputs = _resize(self.outputs, len(res.outputs))
            self.outputs[idx] = res.outputs
            self.ticks[idx] = res.ticks

    def check_complete(self):
        missing = np.flatnonzero(self.counts == 0)
        dup = np.flatnonzero(self.counts > 1)
        if len(missing) or len(dup):
            raise UserError(f"device run incomplete: {len(missing)} images unanswered, {len(dup)} answered twice")


def _resize(arr, cols):
    out = np.full((arr.shape[0], cols), np.nan, dtype=arr.dtype)
    k = min(cols, arr.shape[1])
    out[:, :k] = arr[:, :k]
    return out


class _Work:
    """Thread-safe shared queue of (index, pixels); a failure anywhere stops everyone."""

    def __init__(self, pixels):
        self.pixels = pixels
        self.next = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def items(self):
        while not self.stop.is_set():
            with self.lock:
                i = self.next
                if i >= len(self.pixels):
                    return
                self.next += 1
            yield i, self.pixels[i]


def _progress(total, desc, enabled=None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled is None else not enabled, smoothing=0.1,
                dynamic_ncols=True, leave=True)


def _stream(devices, pixels, window, progress_desc, progress=None, timeout=None) -> DeviceRun:
    """Stream all images over the given Device objects in parallel (one thread each)."""
    run = DeviceRun(len(pixels))
    work = _Work(pixels)
    errors: list[BaseException] = []
    lock = threading.Lock()
    bar = _progress(len(pixels), progress_desc, progress)

    def worker(dev):
        try:
            for idx, res in dev.infer_many(work.items(), window=window, timeout=timeout):
                with lock:
                    run.store(idx, res)
                bar.update(1)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            work.stop.set()
            errors.append(exc)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        work.stop.set()
        raise
    finally:
        bar.close()
    run.stream_seconds = time.monotonic() - t0
    if errors:
        raise errors[0]
    for d in devices:
        run.bytes_sent += d.bytes_sent
        run.resends += d.resends
        run.stray_errors += len(d.stray_errors)
    run.check_complete()
    return run


def run_qemu(elf, machine, pixels, jobs=DEFAULT_JOBS, window=2, timeout=5.0, progress=None) -> DeviceRun:
    from .qemu import Qemu, start_all, stop_all

    jobs = max(1, min(jobs, len(pixels)))
    t0 = time.monotonic()
    instances = [Qemu(elf, machine, timeout=timeout, name=f"qemu {machine} #{i}") for i in range(jobs)]
    try:
        start_all(instances)
        devices = [q.device for q in instances]
        run = _stream(devices, pixels, window, f"{machine} x{jobs}", progress, timeout)
        run.infos_before = [q.info for q in instances]
        run.infos_after = [d.info() for d in devices]
        run.instances = jobs
    finally:
        stop_all(instances)
    run.wall_seconds = time.monotonic() - t0
    return run


def run_serial(port, pixels, window=1, timeout=5.0, progress=None) -> DeviceRun:
    from .transport import Device

    t0 = time.monotonic()
    with Device(port, timeout=timeout) as dev:
        dev.reset_input()
        info = dev.wait_ready(total=max(5.0, timeout))
        run = _stream([dev], pixels, window, str(port), progress, timeout)
        run.infos_before = [info]
        run.infos_after = [dev.info()]
        run.instances = 1
    run.wall_seconds = time.monotonic() - t0
    return run


# ---------------------------------------------------------------------- metrics

def _check_info(info: P.Info, env: fw.Env, target: str):
    problems = []
    if info.input_size != 784:
        problems.append(f"input_size {info.input_size} (expected 784)")
    if env.backend and info.backend != env.backend:
        problems.append(f"backend {info.backend!r} (env says {env.backend!r})")
    if env.dtype and info.dtype != env.dtype:
        problems.append(f"dtype {info.dtype!r} (env says {env.dtype!r})")
    if problems:
        hint = "rebuild" if target == "qemu" else f"flash it with `pio run -e {env.name} -t upload`"
        raise UserError(f"the firmware does not match env {env.name}: {', '.join(problems)}; {hint}")


def output_similarity(dev, host) -> dict:
    """Validate-on-target figures (as STM32Cube.AI reports them): RMSE, MAE, relative L2, cosine."""
    dev, host = dev.astype(np.float64), host.astype(np.float64)
    if not len(dev):
        return {"rmse": 0.0, "mae": 0.0, "l2r": 0.0, "cosine": 1.0}
    d = dev - host
    norms = np.linalg.norm(dev, axis=1) * np.linalg.norm(host, axis=1)
    cos = np.where(norms > 0, np.sum(dev * host, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    return {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d))),
            "l2r": float(np.linalg.norm(d) / max(np.linalg.norm(host), 1e-30)), "cosine": float(np.mean(cos))}


def compute_metrics(run: DeviceRun, labels, host_out, float_out=None, target="qemu",
                    shift: int = 0) -> dict:
    info = run.infos_after[0] if run.infos_after else run.infos_before[0]
    n = len(labels)
    dev_cls = run.classes
    host_cls = host_out.argmax(axis=1)
    k = min(host_out.shape[1], run.outputs.shape[1])
    diff = np.abs(run.outputs[:, :k].astype(np.float64) - host_out[:, :k].astype(np.float64))
    m = {
        "images": int(n),
        "accuracy": float(np.mean(dev_cls == labels)),
        "host_accuracy": float(np.mean(host_cls == labels)),
        "agreement": float(np.mean(dev_cls == host_cls)),
        "max_abs_diff": float(np.nanmax(diff)) if n else 0.0,
        "mean_abs_diff": float(np.nanmean(diff)) if n else 0.0,
        **output_similarity(run.outputs[:, :k], host_out[:, :k]),
        "disagreements": int(np.sum(dev_cls != host_cls)),
        "class_vs_argmax_mismatch": int(np.sum(dev_cls != np.nanargmax(run.outputs, axis=1))) if n else 0,
    }
    if float_out is not None:
        f_cls = float_out.argmax(axis=1)
        m["float_agreement"] = float(np.mean(dev_cls == f_cls))
        m["float_accuracy"] = float(np.mean(f_cls == labels))
        # how far quantisation moved the outputs from the float model's
        sim = output_similarity(run.outputs[:, :k], float_out[:, :k])
        m.update({f"float_{key}": value for key, value in sim.items()})
    ticks = run.ticks.astype(np.float64)
    if target == "qemu":
        instr = P.ticks_to_instructions(ticks, info.tick_hz, shift)
        m["instructions_per_inference"] = float(instr.mean())
        m["instructions_per_inference_max"] = float(instr.max())
        m["instructions_per_inference_min"] = float(instr.min())
        m["icount_shift"] = shift
    else:
        m["cycles_per_inference"] = float(ticks.mean())
        m["cycles_per_inference_max"] = float(ticks.max())
        m["cycles_per_inference_min"] = float(ticks.min())
        if info.tick_hz:
            m["ms_per_inference"] = float(ticks.mean() / info.tick_hz * 1e3)
            m["ms_per_inference_max"] = float(ticks.max() / info.tick_hz * 1e3)
    heap = max(i.heap_peak_bytes for i in run.infos_after)
    stack = max(i.stack_peak_bytes for i in run.infos_after)
    m.update({
        "flash_bytes": info.flash_bytes,
        "ram_bytes": info.static_ram_bytes + heap + stack,
        "static_ram_bytes": info.static_ram_bytes,
        "heap_peak_bytes": heap,
        "stack_peak_bytes": stack,
        "stack_size_bytes": info.stack_size_bytes,
        "cpu_hz": info.cpu_hz,
        "tick_hz": info.tick_hz,
    })
    return m


# ---------------------------------------------------------------------- the command's body

def evaluate(env_name: str, target: str | None = None, port: str | None = None, limit: int | None = None,
             json_path: Path | None = None, data_dir=None, model: Path | None = None, jobs: int = DEFAULT_JOBS,
             build: bool = True, window: int | None = None, timeout: float = 5.0, plots: bool = True,
             progress=None, echo=click.echo, upload: bool = False) -> dict:
    t_start = time.monotonic()
    env = fw.get_env(env_name)
    target = target or ("qemu" if env.is_qemu else "serial")
    if target == "qemu" and not env.is_qemu:
        raise UserError(f"env {env.name} is for a real board (no custom_qemu_machine); use --target serial --port PORT")
    if target == "serial" and not port:
        raise UserError("--target serial needs --port (e.g. /dev/ttyACM0, socket://HOST:PORT, rfc2217://HOST:PORT)")
    model = Path(model) if model else env.model_onnx  # custom_model_onnx, default model/mlp.onnx
    json_path = Path(json_path) if json_path else REPORTS_DIR / f"{env.name}.json"

    if target == "serial" and "://" not in port and not os.path.exists(port):
        raise UserError(f"serial port {port} not found; plug in the board or pass the right --port")
    pixels, labels = load_test_set(data_dir, limit)

    # host reference first: cheap, and its errors should come before a long device run
    float_out = onnx_outputs(model, pixels)
    if env.dtype == "int8":
        host_out = int8_host_outputs(env.model_dir, pixels)
        if host_out.shape != float_out.shape:
            raise UserError(f"int8 host model returned shape {host_out.shape}, expected {float_out.shape}")
    else:
        host_out, float_out = float_out, None

    sizes = {}
    if target == "qemu" or build:
        if build:
            echo(f"building {env.name} ...", err=True)
            fw.build(env)
        elf = fw.require_elf(env) if target == "qemu" else (env.elf if env.elf.is_file() else None)
        sizes = fw.elf_sizes(elf) if elf else {}
    if upload:
        if target != "serial":
            raise UserError("--upload flashes a real board; it needs --target serial")
        echo(f"flashing {env.name} ...", err=True)
        fw.upload(env)

    if target == "qemu":
        run = run_qemu(env.elf, env.qemu_machine, pixels, jobs=jobs, window=window or 2, timeout=timeout,
                       progress=progress)
        from .qemu import ICOUNT_SHIFT as shift
    else:
        run = run_serial(port, pixels, window=window or 1, timeout=timeout, progress=progress)
        shift = 0
    _check_info(run.infos_after[0], env, target)

    metrics = compute_metrics(run, labels, host_out, float_out, target, shift)
    info = run.infos_after[0]
    report = {
        "env": env.name,
        "board": env.board,
        "backend": env.backend,
        "dtype": env.dtype,
        "target": target,
        "device_board": info.board,
        "model": info.model,
        **metrics,
        "wall_seconds": round(run.wall_seconds, 3),
        "images_per_second": round(len(labels) / run.wall_seconds, 2) if run.wall_seconds else None,
        "stream_seconds": round(run.stream_seconds, 3),
        "instances": run.instances,
        "window": window or (2 if target == "qemu" else 1),
        "bytes_sent": run.bytes_sent,
        "resends": run.resends,
        "stray_errors": run.stray_errors,
        "elf_flash_bytes": sizes.get("flash_bytes"),
        "elf_static_ram_bytes": sizes.get("static_ram_bytes"),
        "port": port if target == "serial" else None,
    }
    from .reports import confusion_matrix, plot_confusion, plot_misclassified, write_json

    cm = confusion_matrix(labels, run.classes)
    wrong = np.flatnonzero(run.classes != labels)
    report["confusion_matrix"] = cm.tolist()
    report["misclassified"] = [[int(i), int(labels[i]), int(run.classes[i])] for i in wrong[:200]]
    report["total_seconds"] = round(time.monotonic() - t_start, 3)
    if plots:
        stem = json_path.with_suffix("")
        title = (f"{env.name} ({env.backend} {env.dtype}) on {target}: accuracy {report['accuracy']:.2%}, "
                 f"{len(labels)} images")
        report["confusion_png"] = _rel(Path(f"{stem}_confusion.png"))
        report["misclassified_png"] = _rel(Path(f"{stem}_misclassified.png"))
        json_path.parent.mkdir(parents=True, exist_ok=True)
        plot_confusion(cm, Path(f"{stem}_confusion.png"), title)
        plot_misclassified(pixels, labels, run.classes, wrong, Path(f"{stem}_misclassified.png"), title)
    write_json(json_path, report)
    report["json"] = str(json_path)
    return report


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def summary_lines(r: dict) -> list[str]:
    lines = [
        f"env {r['env']} ({r['backend']} {r['dtype']}, board {r['board']}, target {r['target']}): {r['images']} images",
        f"  accuracy {r['accuracy']:.4%}  host {r['host_accuracy']:.4%}  agreement {r['agreement']:.4%}  "
        f"max |diff| {r['max_abs_diff']:.3g}",
        f"  outputs vs host: RMSE {r['rmse']:.3g}  MAE {r['mae']:.3g}  L2R {r['l2r']:.3g}  COS {r['cosine']:.6f}",
    ]
    if "float_agreement" in r:
        lines.append(f"  float model: accuracy {r['float_accuracy']:.4%}, agreement with device {r['float_agreement']:.4%}, "
                     f"RMSE {r['float_rmse']:.3g}  COS {r['float_cosine']:.6f}")
    if "instructions_per_inference" in r:
        lines.append(f"  instructions/inference mean {r['instructions_per_inference']:,.0f}  "
                     f"max {r['instructions_per_inference_max']:,.0f}")
    if "cycles_per_inference" in r:
        lines.append(f"  cycles/inference mean {r['cycles_per_inference']:,.0f}  max {r['cycles_per_inference_max']:,.0f}"
                     f"  ({r.get('ms_per_inference', 0):.3f} ms)")
    lines.append(f"  flash {r['flash_bytes']:,} B  RAM {r['ram_bytes']:,} B (static {r['static_ram_bytes']:,} + heap "
                 f"{r['heap_peak_bytes']:,} + stack {r['stack_peak_bytes']:,})")
    lines.append(f"  wall {r['wall_seconds']:.1f} s  {r['images_per_second']:.1f} images/s "
                 f"({r['instances']} device(s), {r['bytes_sent']:,} bytes sent)")
    lines.append(f"  report {r['json']}")
    return lines


@click.command("evaluate")
@click.option("--env", "env_name", required=True, help="platformio.ini environment, e.g. qemu_f405_f32")
@click.option("--target", type=click.Choice(["qemu", "serial"]), default=None,
              help="qemu (emulated board) or serial (a board on --port); default from the env")
@click.option("--port", default=None, help="pyserial URL or port for --target serial: /dev/ttyACM0, socket://H:P, rfc2217://H:P")
@click.option("--limit", type=int, default=None, help="only the first N test images")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, callback=output_file_option,
              help="report path (default reports/<env>.json); PNGs are written next to it")
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root [env: MNIST_DIR]")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="float ONNX model (default: the env's custom_model_onnx, else model/mlp.onnx)")
@click.option("--jobs", type=int, default=DEFAULT_JOBS, show_default=True, help="parallel QEMU instances")
@click.option("--no-build", is_flag=True, help="use the existing ELF instead of running `pio run`")
@click.option("--window", type=int, default=None,
              help="requests in flight per device (default 2 under QEMU, 1 on a board)")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds to wait for each reply")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("--upload", is_flag=True, help="flash the board first (`pio run -e ENV -t upload`; --target serial)")
def cli(env_name, target, port, limit, json_path, data_dir, model, jobs, no_build, window, timeout, no_plots,
        upload):
    """Run the test set on the device and compare it with the host model."""
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    r = evaluate(env_name, target, port, limit, json_path, data_dir, model, jobs, not no_build,
                 window, timeout, not no_plots, upload=upload)
    for line in summary_lines(r):
        click.echo(line)
