"""`mnist-mcu benchmark`: evaluate every QEMU environment and print one comparison table.

Per env it shows wall seconds, images per second and the emulators' host CPU time per byte
on the wire (sent + received), which shows the harness cost apart from machine load."""

from __future__ import annotations

import time
from pathlib import Path

import click

from . import firmware as fw
from . import targets
from .errors import UserError
from .evaluate import DEFAULT_JOBS, EvalOptions, evaluate
from .evaluation.report import layer_lines
from .outdir import output_file_option
from .paths import REPORTS_DIR
from .reports import Column, fmt_bytes, plot_benchmark, table, write_json

DEFAULT_ENVS = ("qemu_an386_deepc", "qemu_f405_deepc", "qemu_f405_f32", "qemu_f405_int8", "qemu_f405_cnn_int8")
BASELINE_ENV = "qemu_f405_ref_f32"  # plain reference kernels: the speed-up is measured against it

COLUMNS: list[Column] = [
    ("env", "env", str),
    ("backend", "backend", str),
    ("dtype", "dtype", str),
    ("flash", "flash_bytes", fmt_bytes),
    ("RAM", "ram_bytes", fmt_bytes),
    ("instr/inf", "instructions_per_inference", lambda v: f"{v:,.0f}"),
    ("instr max", "instructions_per_inference_max", lambda v: f"{v:,.0f}"),
    ("speed-up", "speedup_vs_baseline", lambda v: f"{v:.2f}x"),
    ("accuracy", "accuracy", lambda v: f"{v:.2%}"),
    ("agreement", "agreement", lambda v: f"{v:.2%}"),
    ("max|diff|", "max_abs_diff", lambda v: f"{v:.2g}"),
    ("ort int8", "ort_int8_agreement", lambda v: f"{v:.2%}"),
    ("wall s", "wall_seconds", lambda v: f"{v:.1f}"),
    ("img/s", "images_per_second", lambda v: f"{v:.0f}"),
    ("µs/byte", "host_cpu_us_per_wire_byte", lambda v: f"{v:.0f}"),
]


def default_envs() -> list[str]:
    known = fw.list_envs()
    envs = [e for e in DEFAULT_ENVS if e in known]
    if BASELINE_ENV in known:
        envs.append(BASELINE_ENV)
    return envs


def add_speedups(rows: list[dict]):
    """speedup_vs_baseline: the baseline env's instructions per inference over each env's
    (same model only: the baseline runs model/mlp.onnx in f32)."""
    base = next((r for r in rows if r["env"] == BASELINE_ENV), None)
    if not base or not base.get("instructions_per_inference"):
        return
    for r in rows:
        if r.get("instructions_per_inference") and r.get("model") == base.get("model"):
            r["speedup_vs_baseline"] = round(base["instructions_per_inference"] / r["instructions_per_inference"], 3)


def benchmark(envs=None, limit=None, json_path=None, data_dir=None, model=None, jobs=DEFAULT_JOBS,
              build=True, progress=None, echo=click.echo) -> dict:
    envs = list(envs) if envs else default_envs()
    known = fw.list_envs()
    for e in envs:
        if e not in known:
            raise UserError(f"unknown environment {e!r}; platformio.ini has: {', '.join(known)}")
        if not fw.get_env(e).is_qemu:
            raise UserError(f"env {e} is not a QEMU environment; benchmark runs QEMU envs only "
                            f"(use `mnist-mcu evaluate --target serial` for boards)")
    json_path = Path(json_path) if json_path else REPORTS_DIR / "benchmark.json"
    t0 = time.monotonic()
    rows = []
    for e in envs:
        echo(f"== {e}", err=True)
        rows.append(evaluate(EvalOptions(env=e, target="qemu", limit=limit, json_path=json_path.parent / f"{e}.json",
                                         data_dir=data_dir, model=model, jobs=jobs, build=build, progress=progress,
                                         echo=echo)))
    slim = [{k: v for k, v in r.items() if k not in ("confusion_matrix", "misclassified")} for r in rows]
    add_speedups(slim)
    result = {"limit": limit, "jobs": jobs, "total_seconds": round(time.monotonic() - t0, 3), "envs": slim}
    chart = json_path.with_suffix(".png")
    plot_benchmark(slim, chart, f"mnist-mcu benchmark: {slim[0]['images'] if slim else 0} test images per env")
    result["chart_png"] = str(chart)
    result["targets"] = targets.check(result)
    write_json(json_path, result)
    result["json"] = str(json_path)
    result["table"] = table(slim, COLUMNS)
    return result


@click.command("benchmark")
@click.option("--envs", multiple=True,
              help=f"environments (repeat or comma-separate; default: {', '.join(DEFAULT_ENVS)}, {BASELINE_ENV})")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test images")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, callback=output_file_option,
              help="summary JSON (default reports/benchmark.json); per-env reports go next to it")
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root [env: MNIST_DIR]")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="float ONNX model for every env (default: each env's custom_model_onnx, else model/mlp.onnx)")
@click.option("--jobs", type=click.IntRange(min=1), default=DEFAULT_JOBS, show_default=True,
              help="parallel QEMU instances per env")
@click.option("--no-build", is_flag=True, help="use existing ELFs")
def cli(envs, limit, json_path, data_dir, model, jobs, no_build):
    """Evaluate all QEMU environments and print a comparison table."""
    names = [n.strip() for item in envs for n in item.split(",") if n.strip()]
    res = benchmark(names or None, limit, json_path, data_dir, model, jobs, not no_build)
    click.echo(res["table"])
    for r in res["envs"]:
        if r.get("layers"):
            click.echo(f"{r['env']}:")
            click.echo("\n".join(layer_lines(r["layers"])))
    click.echo(targets.render(res["targets"], min((r["images"] for r in res["envs"]), default=0)))
    click.echo(f"total {res['total_seconds']:.1f} s; wrote {res['json']} and {res['chart_png']}; "
               f"`mnist-mcu report` makes reports/index.html")
    for r in sorted(res["envs"], key=lambda r: r["backend"] == "deepc"):  # deepC last: the user's compiler
        click.echo(f"{r['env']}: {r['backend']} {r['dtype']} device accuracy {r['accuracy']:.2%} on "
                   f"{r['images']} test images under QEMU (host {r['host_accuracy']:.2%}, "
                   f"agreement {r['agreement']:.2%})")
