"""The `mnist-mcu` command line: one sub-command per stage of the data flow."""

import importlib
import sys

import click

from .errors import UserError

# Stage modules, each exposing a click command named `cli`.
STAGES = ["train", "compile", "evaluate", "benchmark", "run", "draw"]


@click.group()
@click.version_option(package_name="mnist-mcu")
def cli():
    """Train, compile, build and verify an MNIST classifier on a microcontroller."""


for _name in STAGES:
    try:
        _mod = importlib.import_module(f"mnist_mcu.{_name}")
    except ModuleNotFoundError as exc:  # a stage not written yet, or an optional dependency
        if exc.name and exc.name.startswith("mnist_mcu"):
            continue
        raise
    cli.add_command(_mod.cli)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="mnist-mcu", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # a bad option value: one line, like every other error
        where = f"mnist-mcu {exc.ctx.info_name}: " if exc.ctx and exc.ctx.parent else ""
        click.echo(f"error: {where}{exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(0)
