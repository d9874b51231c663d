"""`mnist-mcu compile`: ONNX -> a model library under firmware/generated/."""

from pathlib import Path

import click

from .errors import UserError
from .paths import GENERATED_DIR


def default_out_dir(backend, dtype):
    return GENERATED_DIR / ("deepc" if backend == "deepc" else f"native_{dtype}")


INPUT_VALUES = 28 * 28  # the firmware feeds one MNIST image


def check_io(onnx_path):
    """The firmware's contract (model.h): one input of 784 pixels, one output."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a damaged file
        raise UserError(f"{onnx_path} is not a readable ONNX model ({type(exc).__name__}); re-export it") from None
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise UserError(f"{onnx_path} has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                        "the firmware runs models with one image input and one output")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    values = 1
    for d in dims[1:]:
        values *= d or 0
    if len(dims) < 2 or values != INPUT_VALUES:
        shape = ["N" if d is None else d for d in dims]
        raise UserError(f"model input '{inputs[0].name}' has shape {shape}; the firmware feeds one 28x28 "
                        f"MNIST image ({INPUT_VALUES} values): export with an [N,1,28,28] or [N,784] input")


def compile_model(onnx_path, backend, dtype="f32", out_dir=None, data_dir=None, calib_images=2000):
    """Compile onnx_path with the chosen backend; returns the output folder."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"model file {onnx_path} not found; run `mnist-mcu train` or pass an existing .onnx")
    check_io(onnx_path)
    out_dir = Path(out_dir) if out_dir else default_out_dir(backend, dtype)
    if backend == "deepc":
        if dtype != "f32":
            raise UserError("the deepC backend only supports --dtype f32; use --backend native for int8")
        from .deepc_backend import compile_deepc

        return compile_deepc(onnx_path, out_dir)
    from .native import compile_native

    return compile_native(onnx_path, out_dir, dtype=dtype, data_dir=data_dir, calib_images=calib_images)


@click.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["deepc", "native"]), default="native", show_default=True)
@click.option("--dtype", type=click.Choice(["f32", "int8"]), default="f32", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="output folder (default: firmware/generated/<deepc|native_DTYPE>)")
@click.option("--data-dir", envvar="MNIST_DIR", default=None,
              help="MNIST root for int8 calibration (training images only) [env: MNIST_DIR]")
@click.option("--calib-images", type=click.IntRange(1, 60000), default=2000, show_default=True,
              help="training images used to calibrate int8 (1..60000)")
def cli(model, backend, dtype, out_dir, data_dir, calib_images):
    """Compile MODEL (ONNX) into C/C++ sources for the firmware."""
    out = compile_model(model, backend, dtype, out_dir, data_dir, calib_images)
    click.echo(f"wrote {out}")
