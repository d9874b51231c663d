"""The evaluate report: JSON keys, plots next to it, and the summary lines printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import protocol as P
from ..paths import shown
from ..reports import confusion_matrix, write_json


def build(env, target: str, port: str | None, run, labels, metrics: dict, window: int, sizes: dict,
          encoding: int, batch: int) -> dict:
    info = run.info
    wire = run.bytes_sent + run.bytes_received
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
        "window": window,
        "batch": batch,
        "encoding": P.ENCODING_NAMES.get(encoding, encoding),
        "wire_bytes_per_image": round((run.bytes_sent + run.bytes_received) / len(labels), 1) if len(labels) else None,
        "bytes_sent": run.bytes_sent,
        "bytes_received": run.bytes_received,
        "resends": run.resends,
        "stray_errors": run.stray_errors,
        "elf_flash_bytes": sizes.get("flash_bytes"),
        "elf_static_ram_bytes": sizes.get("static_ram_bytes"),
        "port": port if target == "serial" else None,
    }
    if run.device_cpu_seconds is not None:
        report["emulator_cpu_seconds"] = round(run.device_cpu_seconds, 3)
        report["host_cpu_us_per_wire_byte"] = round(run.device_cpu_seconds / wire * 1e6, 2) if wire else None
    if run.idle_cpu_percent is not None:
        report["emulator_idle_cpu_percent"] = run.idle_cpu_percent
    cm = confusion_matrix(labels, run.classes)
    wrong = np.flatnonzero(run.classes != labels)
    report["confusion_matrix"] = cm.tolist()
    report["misclassified"] = [[int(i), int(labels[i]), int(run.classes[i])] for i in wrong[:200]]
    return report


def plot_paths(json_path: Path) -> dict[str, Path]:
    stem = Path(json_path).with_suffix("")
    return {"confusion_png": Path(f"{stem}_confusion.png"), "misclassified_png": Path(f"{stem}_misclassified.png"),
            "ticks_png": Path(f"{stem}_ticks.png"), "layers_png": Path(f"{stem}_layers.png")}


def write_plots(report: dict, json_path: Path, pixels, labels, run, ref) -> dict:
    """The PNGs next to the JSON; returns {report key: relative path}."""
    from ..reports import plot_confusion, plot_layers, plot_misclassified, plot_ticks

    paths = plot_paths(json_path)
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    title = (f"{report['env']} ({report['backend']} {report['dtype']}) on {report['target']}: "
             f"accuracy {report['accuracy']:.2%}, {report['images']} images")
    cm = np.asarray(report["confusion_matrix"])
    plot_confusion(cm, paths["confusion_png"], title)
    host_cls = ref.host.argmax(axis=1)
    wrong = np.flatnonzero((run.classes != labels) | (run.classes != host_cls))
    plot_misclassified(pixels, labels, run.classes, wrong, paths["misclassified_png"], title,
                       device_out=run.outputs, host_out=ref.host, host_name=ref.host_name)
    out = {"confusion_png": shown(paths["confusion_png"]), "misclassified_png": shown(paths["misclassified_png"])}
    if "instructions_per_inference" in report or "cycles_per_inference" in report:
        plot_ticks(run.ticks, run.info, report, paths["ticks_png"], title)
        out["ticks_png"] = shown(paths["ticks_png"])
    if report.get("layers"):
        plot_layers(report["layers"], paths["layers_png"], title)
        out["layers_png"] = shown(paths["layers_png"])
    return out


def write(report: dict, json_path: Path):
    write_json(json_path, report)


def summary_lines(r: dict) -> list[str]:
    lines = [
        f"env {r['env']} ({r['backend']} {r['dtype']}, board {r['board']}, target {r['target']}): {r['images']} images",
        (f"  accuracy {r['accuracy']:.4%}  host {r['host_accuracy']:.4%}  agreement {r['agreement']:.4%}  "
         f"max |diff| {r['max_abs_diff']:.3g}  (vs {r.get('agreement_reference', 'host')})"),
        f"  outputs vs host: RMSE {r['rmse']:.3g}  MAE {r['mae']:.3g}  L2R {r['l2r']:.3g}  COS {r['cosine']:.6f}",
    ]
    if "float_rmse" in r:
        lines.append(f"  float model: accuracy {r['float_accuracy']:.4%}, "
                     f"agreement with device {r['float_agreement']:.4%}, "
                     f"RMSE {r['float_rmse']:.3g}  COS {r['float_cosine']:.6f}")
    if "ort_int8_agreement" in r:
        lines.append(f"  onnxruntime int8 graph: agreement {r['ort_int8_agreement']:.4%}, "
                     f"max output code difference {r['ort_int8_max_lsb']} LSB")
    if "instructions_per_inference" in r:
        lines.append(f"  emulated instructions/inference mean {r['instructions_per_inference']:,.0f}  "
                     f"max {r['instructions_per_inference_max']:,.0f}")
    if "cycles_per_inference" in r:
        lines.append(f"  cycles/inference mean {r['cycles_per_inference']:,.0f}  "
                     f"max {r['cycles_per_inference_max']:,.0f}"
                     f"  ({r.get('us_per_inference', 0):,.1f} µs at {r['cpu_hz'] / 1e6:g} MHz)")
    lines += layer_lines(r.get("layers") or [])
    lines.append(f"  flash {r['flash_bytes']:,} B  RAM {r['ram_bytes']:,} B (static {r['static_ram_bytes']:,} + heap "
                 f"{r['heap_peak_bytes']:,} + stack {r['stack_peak_bytes']:,})")
    wire = f"{r['bytes_sent']:,} bytes sent, {r.get('bytes_received', 0):,} received"
    if r.get("host_cpu_us_per_wire_byte"):
        wire += f", {r['host_cpu_us_per_wire_byte']:.0f} µs emulator CPU per wire byte"
    lines.append(f"  wall {r['wall_seconds']:.1f} s  {r['images_per_second']:.1f} images/s "
                 f"({r['instances']} device(s), {wire})")
    lines.append(f"  report {r['json']}")
    return lines


def layer_lines(layers: list[dict]) -> list[str]:
    """The per-layer profile as an indented table (mean and max per inference)."""
    from ..reports import layer_unit, table

    if not layers:
        return []
    unit = layer_unit(layers)
    text = table(layers, [("layer", "name", str), ("op", "op", str), ("MACs", "macs", lambda v: f"{v:,}"),
                          (f"{unit} mean", f"{unit}_mean", lambda v: f"{v:,.0f}"),
                          ("max", f"{unit}_max", lambda v: f"{v:,.0f}"),
                          ("per MAC", f"{unit}_per_mac", lambda v: f"{v:.2f}")])
    return ["  per layer:"] + ["    " + ln for ln in text.splitlines()]
