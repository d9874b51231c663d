"""The project's own microcontroller-grade C code generator ("native" backend).

    from mnist_mcu.native import compile_native
    compile_native(Path("model/mlp.onnx"), Path("firmware/generated/native_f32"), dtype="f32")

Pipeline (onnx2c's shape): graph.load -> graph.resolve (ops/<op>.py resolve())
-> passes.run_all -> [int8: quantize.quantize_graph] -> emit.emit_model (ops/<op>.py
emit()) -> files written to a temporary folder, then moved into place.
"""

import shlex
from pathlib import Path

import numpy as np

from .. import outdir
from ..errors import UserError

__all__ = ["compile_native", "build_graph"]


def build_graph(onnx_path, dtype="f32", calib_pixels=None):
    """ONNX -> resolved, optimised (and for int8 quantised) graph."""
    from . import graph as G
    from . import passes

    if dtype not in ("f32", "int8"):
        raise UserError(f"unknown dtype '{dtype}' for the native backend (use f32 or int8)")
    g = G.resolve(G.load(onnx_path))
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
    from ..compile import default_out_dir
    from ..paths import ROOT

    def rel(p):
        p = Path(p).resolve()
        try:
            return str(p.relative_to(ROOT))
        except ValueError:
            return str(p)

    cmd = f"mnist-mcu compile {shlex.quote(rel(onnx_path))} --backend native --dtype {dtype}"
    if Path(out_dir).resolve() != default_out_dir("native", dtype).resolve():
        cmd += f" --out {shlex.quote(rel(out_dir))}"
    if dtype == "int8":
        cmd += f" --calib-images {calib_images}"
    return cmd


def compile_native(onnx_path, out_dir, dtype="f32", data_dir=None, calib_images=2000, calib_pixels=None):
    """Generate the model library for onnx_path into out_dir; returns out_dir."""
    from .emit import emit_model

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise UserError(f"model file {onnx_path} not found; run `mnist-mcu train` or pass an existing .onnx")
    outdir.check(out_dir)  # refuse a foreign --out before any work
    if dtype == "int8" and calib_pixels is None:
        calib_pixels = calibration_pixels(data_dir, calib_images)
    g = build_graph(onnx_path, dtype, calib_pixels)
    files, stats = emit_model(g, dtype, _command(onnx_path, out_dir, dtype, calib_images))
    outdir.write(out_dir, files)  # temp sibling, then swapped in; never replaces foreign files
    compile_native.last_stats = stats
    return out_dir


compile_native.last_stats = None
