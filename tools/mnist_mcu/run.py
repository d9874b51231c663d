"""`mnist-mcu run`: the whole device path for one backend in one command:
compile the ONNX model, build the firmware, stream the test set to the device."""

from pathlib import Path

import click

from . import firmware as fw
from . import outdir
from .compile import compile_model
from .errors import UserError
from .evaluate import EvalOptions, evaluate, summary_lines
from .outdir import output_file_option
from .paths import ROOT

# The QEMU environment that carries each backend's library by default.
DEFAULT_ENVS = {("deepc", "f32"): "qemu_an386_deepc", ("native", "f32"): "qemu_f405_f32",
                ("native", "int8"): "qemu_f405_int8"}


def pick_env(backend, dtype, env_name=None):
    name = env_name or DEFAULT_ENVS.get((backend, dtype))
    if name is None:
        raise UserError(f"no environment for --backend {backend} --dtype {dtype}; deepC supports f32 only")
    env = fw.get_env(name)
    if env.backend != backend or env.dtype != dtype:
        raise UserError(f"env {name} builds the {env.backend} {env.dtype} library, not {backend} {dtype}; "
                        f"pick a matching --env")
    return env


def compile_and_build(env, model, backend, dtype, data_dir) -> Path:
    """Transactional: compile into a temporary folder, build the env from it, then swap it in.
    On any failure the env's library folder and its last good firmware are as they were."""
    # staged outside firmware/: PlatformIO rebuilds everything when the source file list changes
    with outdir.staged(env.model_dir, where=ROOT / ".pio" / "stage") as stage:
        compile_model(model, backend, dtype, out_dir=env.model_dir, data_dir=data_dir)
        fw.build_staged(env, stage)
        outdir.swap_in(stage, env.model_dir)
    return env.model_dir


@click.command("run")
@click.option("--backend", type=click.Choice(["deepc", "native"]), default="deepc", show_default=True)
@click.option("--dtype", type=click.Choice(["f32", "int8"]), default="f32", show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="float ONNX model (default: the env's custom_model_onnx, else model/mlp.onnx)")
@click.option("--env", "env_name", default=None,
              help="platformio.ini environment (default: qemu_an386_deepc, qemu_f405_f32 or qemu_f405_int8)")
@click.option("--target", type=click.Choice(["qemu", "serial"]), default=None, help="default from the env")
@click.option("--port", default=None, help="serial port URL for --target serial")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test images")
@click.option("--data-dir", envvar="MNIST_DIR", default=None, help="MNIST root [env: MNIST_DIR]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, callback=output_file_option,
              help="report path (default reports/<env>.json)")
def cli(backend, dtype, model, env_name, target, port, limit, data_dir, json_path):
    """Compile MODEL with BACKEND, build the firmware and check it on the device."""
    env = pick_env(backend, dtype, env_name)
    model = Path(model) if model else env.model_onnx
    # into the env's own library folder (custom_model_dir), the one its firmware builds
    out = compile_and_build(env, model, backend, dtype, data_dir)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    click.echo(f"compiled {model} with {backend} {dtype} into {shown}")
    target = target or ("qemu" if env.is_qemu else "serial")
    # on a board the path includes flashing the new firmware
    report = evaluate(EvalOptions(env=env.name, target=target, port=port, limit=limit, data_dir=data_dir,
                                  model=model, upload=target == "serial", json_path=json_path))
    for line in summary_lines(report):
        click.echo(line)
    click.echo(f"{backend} {dtype} on {report['board']} ({env.name}): device accuracy "
               f"{report['accuracy']:.2%} on {report['images']} test images")
