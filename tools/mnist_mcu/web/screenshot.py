"""`make screenshot`: the README's picture of the draw page (docs/draw.png).

Boots the CNN firmware under QEMU behind the draw server, draws an MNIST test digit into
the page with pointer events in headless chromium (the browser test's tools), opens the
preprocessing steps and saves a screenshot:

    python -m mnist_mcu.web.screenshot --out docs/draw.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from ..errors import UserError

WAIT = """new Promise(done => { const t0 = performance.now(); (function check() {
  const s = window.drawState;
  if (s.strokes > 0 && !s.timer && s.done === s.seq && (s.result || s.error))
    done(s.result ? s.result.status : s.error.message);
  else if (performance.now() - t0 > 20000) done("timeout"); else setTimeout(check, 10); })(); })"""


def take(out: Path, env_name: str, index: int, width: int, height: int, data_dir=None) -> str:
    from .. import data, draw
    from .. import firmware as fw
    from .browser import Chromium
    from .strokes import digit_strokes

    env = fw.get_env(env_name)
    images, _ = data.load_mnist("test", data_dir)
    if not 0 <= index < len(images):
        raise UserError(f"--index must be 0..{len(images) - 1}")
    if env.qemu_machine is None:
        raise UserError(f"{env_name} does not run under QEMU; the screenshot needs a QEMU env")
    link = draw.QemuLink(fw.build(env), env.qemu_machine)
    link.start()
    server = None
    try:
        int8_dir = env.model_dir if env.dtype == "int8" and env.backend == "native" else None
        rec = draw.Recogniser(link, env.model_onnx, int8_dir=int8_dir,
                              reject_threshold=draw.reject_threshold_for(env.model_onnx))
        server = draw.serve(rec, {"env": env.name}, port=0)
        with Chromium(width=width, height=height) as b:
            b.viewport(width, height)
            b.open(server.url() + "?delay=0")
            b.draw(digit_strokes(images[index]))
            status = b.evaluate(WAIT)
            if status not in ("ok", "reject"):
                raise UserError(f"the page did not answer the drawing: {status}")
            b.evaluate("document.getElementById('steps').open = true")
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
            os.close(fd)
            try:
                b.screenshot(Path(tmp))
                os.chmod(tmp, 0o644)  # mkstemp makes it private; this is a picture for the docs
                os.replace(tmp, out)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return status
    finally:
        if server:
            server.close()
        link.close()


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/draw.png"), show_default=True)
@click.option("--env", "env_name", default="qemu_f405_cnn_int8", show_default=True)
@click.option("--index", default=62, show_default=True, help="MNIST test image to draw (62: a 9, not drawn quite sure)")
@click.option("--width", default=1180, show_default=True)
@click.option("--height", default=500, show_default=True)
def main(out, env_name, index, width, height):
    """Screenshot of the draw page with a digit drawn in it."""
    try:
        take(out, env_name, index, width, height)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
