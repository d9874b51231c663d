"""The project's own microcontroller-grade C code generator ("native" backend).

    from mnist_mcu.native import compile_native
    compile_native(Path("model/mlp.onnx"), Path("firmware/generated/native_f32"), dtype="f32")

Pipeline (onnx2c's shape): graph.load -> graph.resolve (each operator's resolve())
-> passes.run_all -> [int8: quantize.quantize_graph (each operator's quantize())]
-> emit.emit_model (each operator's emit_f32/emit_int8) -> files written to a temporary
folder, then moved into place.  The folder holds model.c and model.json (what was
compiled, and for int8 every scale and zero point: read by qdq.py).

compile_native() makes an MNIST model for the firmware (one raw-pixel image in, the
model.h interface); compile_graph() compiles any float32 graph (static shapes, several
inputs and outputs) into one C function, e.g. for ONNX's node tests.
"""

import shlex
from pathlib import Path

import numpy as np

from .. import outdir
from ..errors import UserError

__all__ = ["build_graph", "compile_graph", "compile_native"]


def build_graph(onnx_path, dtype="f32", calib_pixels=None, image_input=True):
    """ONNX -> resolved, optimised (and for int8 quantised) graph."""
    from . import graph as G
    from . import passes

    if dtype not in ("f32", "int8"):
        raise UserError(f"unknown dtype '{dtype}' for the native backend (use f32 or int8)")
    g = G.resolve(G.load(onnx_path, image_input=image_input))
    passes.run_all(g)
    G.resolve(g)
    if dtype == "int8":
        from .quantize import quantize_graph

        if calib_pixels is None:
            raise UserError("int8 needs calibration images")
        quantize_graph(g, onnx_path, calib_pixels)
    return g


def calibration_pixels(data_dir, n):
    """n training images (never test images), a fixed random subset: uint8 [n, 784]."""
    from ..data import load_mnist

    images, _ = load_mnist("train", data_dir)
    n = max(1, min(int(n), len(images)))
    idx = np.sort(np.random.default_rng(0).choice(len(images), n, replace=False))
    return images[idx].reshape(n, -1)


def _command(onnx_path, out_dir, dtype, calib_images):
    from ..paths import GENERATED_DIR, shown

    cmd = f"mnist-mcu compile {shlex.quote(shown(onnx_path))} --backend native --dtype {dtype}"
    if Path(out_dir).resolve() != (GENERATED_DIR / f"native_{dtype}").resolve():
        cmd += f" --out {shlex.quote(shown(out_dir))}"
    if dtype == "int8":
        cmd += f" --calib-images {calib_images}"
    return cmd


def compile_native(onnx_path, out_dir, dtype="f32", data_dir=None, calib_images=2000, calib_pixels=None):
    """Generate the model library for onnx_path into out_dir; returns out_dir."""
    from .emit import emit_model
    from .manifest import model_json

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise UserError(f"model file {onnx_path} not found; run `mnist-mcu train` or pass an existing .onnx")
    outdir.check(out_dir)  # refuse a foreign --out before any work
    if dtype == "int8" and calib_pixels is None:
        calib_pixels = calibration_pixels(data_dir, calib_images)
    g = build_graph(onnx_path, dtype, calib_pixels)
    files, stats = emit_model(g, dtype, _command(onnx_path, out_dir, dtype, calib_images))
    files["model.json"] = model_json(g, dtype, onnx_path)
    outdir.write(out_dir, files)  # temp sibling, then swapped in; never replaces foreign files
    compile_native.last_stats = stats  # type: ignore[attr-defined]
    return out_dir


compile_native.last_stats = None  # type: ignore[attr-defined]


def compile_graph(onnx_model, entry="graph_run", command="compile_graph"):
    """Any float32 ONNX graph (path or ModelProto) -> (model.c text, graph), f32.
    The C defines `int <entry>(const float *const *in, float *const *out)` with the
    graph's inputs and outputs in ONNX order; constants stay static to the file."""
    from .emit import emit_model

    g = build_graph(onnx_model, "f32", image_input=False)
    files, _ = emit_model(g, "f32", command, entry=entry)
    return files["model.c"], g
