"""Device vs reference figures. Each key says what it compares with:

- `agreement`, `max_abs_diff`, `rmse`, `mae`, `l2r`, `cosine`: device vs the host reference
  (int8: the host build of the same generated C; f32: the float model in onnxruntime);
- `float_*`: device vs the float ONNX model in onnxruntime;
- `ort_int8_*`: device vs onnxruntime's own int8 (QDQ) graph, in int8 output codes.
The definitions are in the README (## Metrics).
"""

from __future__ import annotations

import numpy as np

from .. import protocol as P
from ..errors import UserError
from .reference import Reference
from .session import DeviceRun


def check_info(info: P.Info, env, target: str):
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
    dev, host = np.asarray(dev, np.float64), np.asarray(host, np.float64)
    if not len(dev):
        return {"rmse": 0.0, "mae": 0.0, "l2r": 0.0, "cosine": 1.0}
    d = dev - host
    norms = np.linalg.norm(dev, axis=1) * np.linalg.norm(host, axis=1)
    cos = np.where(norms > 0, np.sum(dev * host, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    return {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d))),
            "l2r": float(np.linalg.norm(d) / max(float(np.linalg.norm(host)), 1e-30)), "cosine": float(np.mean(cos))}


def tick_unit_word(info: P.Info) -> str:
    """What the firmware's ticks count: "instructions" under an emulator (INFO tick_unit 2,
    QEMU -icount), "cycles" on a board."""
    return "instructions" if info.tick_unit == P.TICK_EMULATED else "cycles"


def in_tick_unit(ticks, info: P.Info, shift: int) -> np.ndarray:
    """Ticks converted to that unit (float64)."""
    t = np.asarray(ticks, dtype=np.float64)
    return P.ticks_to_instructions(t, info.tick_hz, shift) if tick_unit_word(info) == "instructions" else t


def tick_figures(ticks: np.ndarray, info: P.Info, shift: int) -> dict:
    """Ticks in the unit the firmware says they count: instructions under an emulator,
    cycles (and microseconds) on a board."""
    t = in_tick_unit(ticks, info, shift)
    if not len(t):
        return {}
    if tick_unit_word(info) == "instructions":
        return {"instructions_per_inference": float(t.mean()),
                "instructions_per_inference_max": float(t.max()),
                "instructions_per_inference_min": float(t.min()),
                "icount_shift": shift, "tick_unit": "emulated instructions"}
    m: dict[str, object] = {"cycles_per_inference": float(t.mean()), "cycles_per_inference_max": float(t.max()),
         "cycles_per_inference_min": float(t.min()), "tick_unit": "cpu cycles"}
    if info.tick_hz:
        us, us_max = float(t.mean() / info.tick_hz * 1e6), float(t.max() / info.tick_hz * 1e6)
        m.update({"us_per_inference": us, "us_per_inference_max": us_max,
                  "ms_per_inference": us / 1e3, "ms_per_inference_max": us_max / 1e3})
    return m


def layer_figures(layers: list[dict], info: P.Info, shift: int) -> list[dict]:
    """The device's per-layer profile in the report's units: instructions under an emulator,
    cycles on a board (mean and max over every inference of the run)."""
    unit = tick_unit_word(info)

    def conv(ticks):
        return None if ticks is None else float(in_tick_unit(ticks, info, shift))

    rows = []
    for layer in layers:
        mean = conv(layer["mean_ticks"])
        rows.append({"name": layer["name"], "op": layer["op"], "macs": layer["macs"],
                     f"{unit}_mean": mean, f"{unit}_max": conv(layer["max_ticks"]),
                     f"{unit}_per_mac": round(mean / layer["macs"], 3) if mean is not None and layer["macs"] else None,
                     "runs": layer["runs"]})
    return rows


def ort_int8_figures(dev_cls: np.ndarray, dev_codes: np.ndarray, ort_codes: np.ndarray) -> dict:
    """Device vs onnxruntime's int8 graph: top-1 agreement and the largest code difference."""
    if dev_codes.shape != ort_codes.shape:
        raise UserError(f"onnxruntime's int8 graph gave shape {ort_codes.shape}, the device {dev_codes.shape}")
    if not len(dev_codes):
        return {"ort_int8_agreement": 1.0, "ort_int8_max_lsb": 0}
    return {"ort_int8_agreement": float(np.mean(dev_cls == ort_codes.argmax(axis=1))),
            "ort_int8_max_lsb": int(np.max(np.abs(dev_codes - ort_codes))),
            "ort_int8_disagreements": int(np.sum(dev_cls != ort_codes.argmax(axis=1)))}


def compute_metrics(run: DeviceRun, labels: np.ndarray, ref: Reference, shift: int = 0,
                    dev_codes: np.ndarray | None = None) -> dict:
    info = run.info
    n = len(labels)
    dev_cls = run.classes
    host_out = ref.host
    host_cls = host_out.argmax(axis=1)
    k = min(host_out.shape[1], run.outputs.shape[1])
    diff = np.abs(run.outputs[:, :k].astype(np.float64) - host_out[:, :k].astype(np.float64))
    m = {
        "images": int(n),
        "accuracy": float(np.mean(dev_cls == labels)),
        "host_accuracy": float(np.mean(host_cls == labels)),
        "agreement": float(np.mean(dev_cls == host_cls)),
        "agreement_reference": ref.host_name,
        "max_abs_diff": float(np.nanmax(diff)) if n else 0.0,
        "mean_abs_diff": float(np.nanmean(diff)) if n else 0.0,
        **output_similarity(run.outputs[:, :k], host_out[:, :k]),
        "disagreements": int(np.sum(dev_cls != host_cls)),
        "class_vs_argmax_mismatch": int(np.sum(dev_cls != np.nanargmax(run.outputs, axis=1))) if n else 0,
    }
    float_out = ref.float_ if ref.float_ is not None else ref.host
    f_cls = float_out.argmax(axis=1)
    m["float_agreement"] = float(np.mean(dev_cls == f_cls))
    m["float_accuracy"] = float(np.mean(f_cls == labels))
    if ref.float_ is not None:  # how far quantisation moved the outputs from the float model's
        sim = output_similarity(run.outputs[:, :k], float_out[:, :k])
        m.update({f"float_{key}": value for key, value in sim.items()})
        m["float_max_abs_diff"] = float(np.nanmax(np.abs(run.outputs[:, :k] - float_out[:, :k]))) if n else 0.0
    if ref.ort_codes is not None and dev_codes is not None:
        m.update(ort_int8_figures(dev_cls, dev_codes, ref.ort_codes))
    m.update(tick_figures(run.ticks, info, shift))
    m["layers"] = layer_figures(run.layers, info, shift)
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
