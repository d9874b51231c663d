"""The speed, size and agreement targets of issues 8 and 9, checked against a benchmark run.

`mnist-mcu benchmark` prints one line per target (met or missed) and writes them to its JSON.
Kilobytes are 1,000 bytes, as in the issues' own figures (86,416 B was "86 KB")."""

from __future__ import annotations

from dataclasses import dataclass

from .reports import table


@dataclass(frozen=True)
class Target:
    env: str | None    # None: the whole benchmark run
    key: str           # report key (or a derived one, see value())
    limit: float
    below: bool = True  # True: value <= limit; False: value >= limit
    what: str = ""
    issue: int = 8


TARGETS = [
    Target("qemu_f405_f32", "instructions_per_inference", 25_000, what="mean instructions per inference"),
    Target("qemu_f405_f32", "instructions_per_inference_max", 50_000, what="max instructions per inference"),
    Target("qemu_f405_f32", "agreement", 1.0, below=False, what="top-1 agreement with onnxruntime"),
    Target("qemu_f405_f32", "max_abs_diff", 1e-5, what="max |output - onnxruntime|"),
    Target("qemu_f405_int8", "instructions_per_inference", 22_000, what="mean instructions per inference"),
    Target("qemu_f405_int8", "flash_bytes", 90_000, what="flash bytes"),
    Target("qemu_f405_int8", "max_abs_diff", 0.0, what="max |output - host C build| (bit-exact)"),
    Target("qemu_f405_int8", "ort_int8_max_lsb", 1, what="max code difference to onnxruntime's int8 graph"),
    Target("qemu_f405_cnn_int8", "instructions_per_inference", 600_000, what="mean instructions per inference"),
    Target("qemu_f405_cnn_int8", "max_abs_diff", 0.0, what="max |output - host C build| (bit-exact)"),
    Target("qemu_f405_cnn_int8", "accuracy_drop_vs_float", 0.001,
           what="accuracy below the float model's (points/100)"),
    Target("qemu_an386_deepc", "flash_bytes", 340_000, what="flash bytes"),
    Target("qemu_an386_deepc", "ram_bytes", 8_000, what="RAM bytes (static + heap peak + stack peak)"),
    # the whole evaluate (build check, boot, stream, host reference, metrics, plots), not only
    # the device run (`wall_seconds`, about 1-3 s less)
    Target("*", "total_seconds", 30.0, what="evaluate wall seconds, each env", issue=9),
    Target("*", "emulator_idle_cpu_percent", 5.0, what="idle emulator CPU, % of a core, each env", issue=9),
    Target(None, "total_seconds", 150.0, what="benchmark wall seconds, all envs", issue=9),
]


def _value(row: dict, key: str):
    if key == "accuracy_drop_vs_float" and row.get("float_accuracy") is not None:
        return round(row["float_accuracy"] - row["accuracy"], 6)
    return row.get(key)


def check(result: dict) -> list[dict]:
    """One dict per target and env present in the run: value, limit, met (None: not measured)."""
    rows = {r["env"]: r for r in result["envs"]}
    out = []
    for t in TARGETS:
        scope = [None] if t.env is None else sorted(rows) if t.env == "*" else [t.env] if t.env in rows else []
        for env in scope:
            value = result.get(t.key) if env is None else _value(rows[env], t.key)
            met = None if value is None else (value <= t.limit if t.below else value >= t.limit)
            out.append({"issue": t.issue, "env": env or "all", "target": t.what, "key": t.key, "value": value,
                        "limit": f"{'<=' if t.below else '>='} {_fmt(t.limit)}", "met": met})
    return out


def _fmt(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.1f}"
    return f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def render(checks: list[dict], images: int) -> str:
    note = "" if images >= 10_000 else f" (on {images} images: the targets are set for all 10,000)"
    lines = table(checks, [("target", "target", str), ("issue", "issue", str), ("env", "env", str),
                           ("value", "value", _fmt), ("limit", "limit", str),
                           ("", "met", lambda m: "met" if m else "MISSED")])
    counts = "; ".join(f"issue {i}: {sum(1 for c in checks if c['issue'] == i and c['met'])} of "
                       f"{sum(1 for c in checks if c['issue'] == i)} met"
                       for i in sorted({c["issue"] for c in checks}))
    return f"targets{note}: {counts}\n{lines}"
