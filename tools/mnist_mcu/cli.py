"""The `mnist-mcu` command line: one sub-command per stage of the data flow.

Commands are registered explicitly: a module that fails to import is an error at start-up,
never a command that silently disappears. Their heavy dependencies are imported lazily
inside the commands, so this stays fast."""

import signal
import sys

import click

from . import benchmark, compile, draw, evaluate, report_page, robustness, run, train
from .errors import UserError

COMMANDS = [train.cli, compile.cli, evaluate.cli, benchmark.cli, report_page.cli, run.cli, draw.cli,
            robustness.cli]


@click.group()
@click.version_option(package_name="mnist-mcu")
def cli():
    """Train, compile, build and verify an MNIST classifier on a microcontroller."""


for _command in COMMANDS:
    cli.add_command(_command)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every `finally` (QEMU stop, temp files) runs."""


_running_at_signal = 0  # QEMU instances alive when Ctrl-C or SIGTERM arrived


def _note_running():
    global _running_at_signal
    qemu = sys.modules.get("mnist_mcu.qemu")
    _running_at_signal = qemu.live_count() if qemu else 0


def _on_sigterm(signum, frame):
    _note_running()
    raise Terminated()


def _on_sigint(signum, frame):
    _note_running()
    raise KeyboardInterrupt()


def _cleanup_note() -> str:
    """Stop any QEMU still running (the `finally`s normally have) and say so."""
    qemu = sys.modules.get("mnist_mcu.qemu")
    if qemu is not None:
        qemu.stop_everything()
    n = _running_at_signal
    return f"; stopped {n} QEMU instance{'s' if n != 1 else ''}" if n else ""


def main(argv=None):
    previous = signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, _on_sigint)
    try:
        cli.main(args=argv, prog_name="mnist-mcu", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo(f"error: interrupted{_cleanup_note()}", err=True)
        sys.exit(130)
    except Terminated:
        click.echo(f"error: terminated by SIGTERM{_cleanup_note()}", err=True)
        sys.exit(143)
    except click.UsageError as exc:  # a bad option value: one line, like every other error
        where = f"mnist-mcu {exc.ctx.info_name}: " if exc.ctx and exc.ctx.parent else ""
        click.echo(f"error: {where}{exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    sys.exit(0)
