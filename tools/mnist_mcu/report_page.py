"""`mnist-mcu report`: one offline HTML page (reports/index.html) with every table and plot of
the last benchmark: the comparison table and chart, then per env its figures, summary,
confusion matrix, misclassified digits and instruction histogram, and the training curves.
Images are embedded (data: URIs), so the page is one file that opens without a server."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import click

from .errors import UserError
from .paths import MODEL_DIR, REPORTS_DIR, ROOT, out_dir

# (label, key, format) of the per-env figures table
FIGURES = [
    ("accuracy", "accuracy", "{:.2%}"), ("host accuracy", "host_accuracy", "{:.2%}"),
    ("agreement", "agreement", "{:.2%}"), ("compared with", "agreement_reference", "{}"),
    ("max |diff|", "max_abs_diff", "{:.3g}"), ("RMSE", "rmse", "{:.3g}"), ("MAE", "mae", "{:.3g}"),
    ("L2R", "l2r", "{:.3g}"), ("cosine", "cosine", "{:.6f}"),
    ("float model agreement", "float_agreement", "{:.2%}"), ("float RMSE", "float_rmse", "{:.3g}"),
    ("onnxruntime int8 agreement", "ort_int8_agreement", "{:.2%}"),
    ("onnxruntime int8 max LSB", "ort_int8_max_lsb", "{}"),
    ("instructions/inference (mean)", "instructions_per_inference", "{:,.0f}"),
    ("instructions/inference (max)", "instructions_per_inference_max", "{:,.0f}"),
    ("cycles/inference (mean)", "cycles_per_inference", "{:,.0f}"), ("µs/inference", "us_per_inference", "{:,.1f}"),
    ("flash", "flash_bytes", "{:,} B"), ("RAM", "ram_bytes", "{:,} B"),
    ("wall", "wall_seconds", "{:.1f} s"), ("images/s", "images_per_second", "{:.0f}"),
    ("emulator CPU per wire byte", "host_cpu_us_per_wire_byte", "{:.0f} µs"),
    ("wire bytes per image", "wire_bytes_per_image", "{:.0f}"),
]

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:12px}h2{border-bottom:1px solid #ddd}"""


def _img(path: Path, alt: str) -> str:
    if not path or not Path(path).is_file():
        return f"<p><em>{html.escape(alt)}: not found ({html.escape(str(path))})</em></p>"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(fmt: str, value) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _resolve(p: str | None, base: Path) -> Path | None:
    if not p:
        return None
    path = Path(p)
    if path.is_absolute():
        return path
    return (ROOT / path) if (ROOT / path).exists() else base / path.name


def build_page(bench: dict, folder: Path) -> str:
    from .benchmark import COLUMNS
    from .evaluation.report import summary_lines
    from .reports import table

    envs = bench.get("envs", [])
    parts = [f"<!doctype html><meta charset='utf-8'><title>mnist-mcu report</title><style>{STYLE}</style>",
             "<h1>mnist-mcu: the last benchmark</h1>",
             (f"<p>{len(envs)} environments, {bench.get('limit') or 'all 10,000'} test images each, "
              f"{bench.get('total_seconds', 0):.0f} s in total. Definitions of the figures: README, Metrics.</p>"),
             "<h2>Comparison</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in COLUMNS) + "</tr>"]
    for r in envs:
        cells = [str(fmt(r[k])) if r.get(k) is not None else "-" for _, k, fmt in COLUMNS]
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    parts.append(f"<pre>{html.escape(table(envs, COLUMNS))}</pre>")
    parts.append(_img(_resolve(bench.get("chart_png"), folder) or folder / "benchmark.png", "benchmark chart"))
    if bench.get("targets"):
        from .targets import render

        images = min((r.get("images", 0) for r in envs), default=0)
        parts.append(f"<h2>Targets</h2><pre>{html.escape(render(bench['targets'], images))}</pre>")
    for r in envs:
        full_path = folder / f"{r['env']}.json"
        full = json.loads(full_path.read_text()) if full_path.is_file() else r
        parts.append(f"<h2 id='{html.escape(r['env'])}'>{html.escape(r['env'])}: {html.escape(r.get('backend', ''))} "
                     f"{html.escape(r.get('dtype', ''))} on {html.escape(r.get('board', ''))}</h2>")
        parts.append("<table>" + "".join(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(_fmt(fmt, full.get(key)))}</td></tr>"
            for label, key, fmt in FIGURES if full.get(key) is not None) + "</table>")
        full.setdefault("json", str(full_path))
        try:
            parts.append(f"<pre>{html.escape(chr(10).join(summary_lines(full)))}</pre>")
        except KeyError:
            pass
        for key, alt in (("confusion_png", "confusion matrix"), ("misclassified_png", "misclassified digits"),
                         ("ticks_png", "instructions per inference"), ("layers_png", "per-layer profile")):
            parts.append(_img(_resolve(full.get(key), folder) or folder / f"{r['env']}_{key[:-4]}.png", alt))
    out = out_dir()
    curves = [p for base in ((out / "model") if out else None, MODEL_DIR) if base
              for p in sorted(Path(base).glob("*_training.png"))]
    if curves:
        parts.append("<h2>Training</h2>" + "".join(_img(p, p.stem) for p in curves))
    return "\n".join(parts) + "\n"


def write_report(bench_json: Path, out: Path) -> Path:
    if not bench_json.is_file():
        raise UserError(f"{bench_json} not found; run `mnist-mcu benchmark` first (or pass --json)")
    try:
        bench = json.loads(bench_json.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{bench_json} is not a benchmark report: {exc}") from None
    if not isinstance(bench, dict) or not isinstance(bench.get("envs"), list):
        raise UserError(f"{bench_json} is not a benchmark report (no 'envs' list)")
    page = build_page(bench, bench_json.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out


@click.command("report")
@click.option("--json", "bench_json", type=click.Path(path_type=Path), default=REPORTS_DIR / "benchmark.json",
              show_default=True, help="benchmark summary; the per-env reports and PNGs are read next to it")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="HTML file (default: index.html next to --json)")
def cli(bench_json, out):
    """Write one offline HTML page with every table and plot of the last benchmark."""
    path = write_report(Path(bench_json), Path(out) if out else Path(bench_json).parent / "index.html")
    click.echo(f"wrote {path}")
