"""deepC 0.13 runtime prepared for a bare-metal (arm-none-eabi) build.

deepC's C++ runtime (the dnnc headers and its bundled Eigen 3.3.7) is fetched from
PyPI by tools/setup.sh into .deps/deepc/ and is never copied into the repository.
`prepare_runtime()` copies the headers the model library needs into the gitignored
.deps/deepc-arm/ and applies the edits below, idempotently (a stamp file records
the patch version and the source it was made from). Standard library only: this
module also runs inside PlatformIO's SCons (firmware/scripts/deepc_env.py).

Edits (each checks its anchor, so another deepC release fails loudly, not silently):
  core/macros.h   With DNNC_NO_STDIO defined, SPDLOG_ERROR/SPDLOG_WARN call the hook
                  `dnnc_report(level, line)` instead of writing to std::cout. On the
                  device stdout is the UART that carries the binary protocol, and the
                  hook lets model_run() return an error instead of a silent NULL tensor.
  core/tensor.h   With DNNC_NO_STDIO, <iostream>/<fstream>/<sstream> are not included and
                  the text-file methods (tensor::read/write, readTensor) are left out,
                  exactly as deepC already does for its SWIG build. <iostream>'s static
                  initialiser otherwise links libstdc++'s whole locale machinery
                  (about 200 KB of flash) into a firmware that never uses a stream.
  core/broadcast.h  Same: its one error message is built with a std::stringstream.
  operators/*.h   Headers that use std::stringstream themselves (Conv, Slice, LSTM, ...)
                  get `#include <sstream>`, so they still compile (with the streams cost).

What needs no header edit (handled by flags or by the generated code):
  - Eigen's temporaries: -DEIGEN_STACK_ALLOCATION_LIMIT=0 (heap, not alloca; see below).
  - Eigen's TensorRandom calls clock_gettime/::random: compile with -std=gnu++14 and
    -D_POSIX_TIMERS (newlib then declares them; nothing calls them, so no link need).
  - int32_t is `long` on arm-none-eabi, so deepC's `int32_t attr; op.setAttribute(..)`
    is ambiguous: the generator writes those attribute variables as `int`.
  - libstdc++'s <random> refers to getentropy: the generated library has a weak stub.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

PATCH_VERSION = "2"
EIGEN_SUBDIR = "packages/eigen-eigen-323c052e1731"

# Compiler settings for any translation unit that includes the prepared runtime.
CXX_STD = "gnu++14"
# EIGEN_STACK_ALLOCATION_LIMIT=0: Eigen would otherwise alloca() GEMM packing buffers of
# up to 128 KB on the stack (newlib defines alloca), far beyond a microcontroller stack;
# with 0 they come from the heap, where _sbrk bounds and measures them.
CPP_DEFINES = ["_POSIX_TIMERS", "DNNC_NO_STDIO", "EIGEN_STACK_ALLOCATION_LIMIT=0"]

_MACROS_ANCHOR = "#if defined(ARDUINO)\n#define SPDLOG_ERROR(msg)"
_MACROS_REPLACEMENT = """#if defined(DNNC_NO_STDIO)
/* mnist-mcu patch: no std::cout on the device; errors go to a hook. */
extern "C" void dnnc_report(int level, int line);
#define SPDLOG_ERROR(msg)                                                      \\
  { dnnc_report(2, __LINE__); }
#define SPDLOG_WARN(msg)                                                       \\
  { dnnc_report(1, __LINE__); }
#elif defined(ARDUINO)
#define SPDLOG_ERROR(msg)"""


class DeepcSetupError(Exception):
    """deepC is missing or is not the expected release."""


def deepc_home(root=None):
    """Folder holding the unpacked deepC 0.13 wheel (the one that contains deepC/)."""
    env = os.environ.get("DEEPC_HOME")
    if env:
        return Path(env)
    root = Path(root) if root else Path(__file__).resolve().parents[3]
    return root / ".deps" / "deepc"


def _check_source(src):
    pkg = src / "deepC"
    if not (pkg / "include" / "core" / "tensor.h").is_file() or not (pkg / EIGEN_SUBDIR / "Eigen").is_dir():
        raise DeepcSetupError(
            f"deepC 0.13 runtime not found under {src} (expected deepC/include and Eigen); run tools/setup.sh"
        )
    return pkg


def _fingerprint(pkg):
    h = hashlib.sha256(PATCH_VERSION.encode())
    for rel in ("include/core/macros.h", "include/core/tensor.h", "include/core/broadcast.h"):
        h.update((pkg / rel).read_bytes())
    return h.hexdigest()[:16]


_TENSOR_INCLUDES = """#ifndef SWIGPYTHON
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <stdlib.h> // malloc, free
#endif"""
_TENSOR_INCLUDES_NEW = """#if defined(DNNC_NO_STDIO) /* mnist-mcu patch: no streams on the device */
#include <iosfwd>
#include <stdexcept>
#include <stdlib.h> // malloc, free
#elif !defined(SWIGPYTHON)
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <stdlib.h> // malloc, free
#endif"""
_TENSOR_FILE_BLOCKS = ("#ifndef SWIGPYTHON\n  // \\brief load tensor data from file.",
                       "#ifndef SWIGPYTHON\n// \\brief return a tensor of type T from a text file")
_NO_STDIO_GUARD = "#if !defined(SWIGPYTHON) && !defined(DNNC_NO_STDIO)"
_BROADCAST_MSG = re.compile(r"( *)std::stringstream errMsg;\n.*?SPDLOG_ERROR\(errMsg\.str\(\)\.c_str\(\)\);\n", re.S)


def _replace_once(text, old, new, what):
    if text.count(old) != 1:
        raise DeepcSetupError(f"deepC {what} is not the 0.13 version this patch expects")
    return text.replace(old, new)


def _patch_tensor(text):
    text = _replace_once(text, _TENSOR_INCLUDES, _TENSOR_INCLUDES_NEW, "core/tensor.h")
    for anchor in _TENSOR_FILE_BLOCKS:
        text = _replace_once(text, anchor, anchor.replace("#ifndef SWIGPYTHON", _NO_STDIO_GUARD), "core/tensor.h")
    return text


def _patch_broadcast(text):
    text = _replace_once(text, "#include <sstream>\n",
                         "#ifndef DNNC_NO_STDIO\n#include <sstream>\n#endif\n", "core/broadcast.h")
    blocks = _BROADCAST_MSG.findall(text)
    if len(blocks) != 1:
        raise DeepcSetupError("deepC core/broadcast.h is not the 0.13 version this patch expects")

    def repl(m):
        pad = m.group(1)
        return (f"#ifdef DNNC_NO_STDIO\n{pad}SPDLOG_ERROR(\"operands could not be broadcast together\");\n"
                f"#else\n{m.group(0)}#endif\n")

    return _BROADCAST_MSG.sub(repl, text)


def _patch_operator(text):
    if "std::stringstream" in text and "#include <sstream>" not in text:
        text = _replace_once(text, "#pragma once\n", "#pragma once\n#include <sstream> /* mnist-mcu patch */\n",
                             "operator header")
    return text


def _patch_macros(text):
    if _MACROS_REPLACEMENT in text:
        return text
    if text.count(_MACROS_ANCHOR) != 1:
        raise DeepcSetupError("deepC core/macros.h is not the 0.13 version this patch expects")
    return text.replace(_MACROS_ANCHOR, _MACROS_REPLACEMENT)


def prepare_runtime(dest=None, src=None):
    """Make (or reuse) the patched runtime; returns (dnnc_include_dir, eigen_dir)."""
    src = Path(src) if src else deepc_home()
    pkg = _check_source(src)
    dest = Path(dest) if dest else src.parent / "deepc-arm"
    stamp = dest / ".prepared"
    want = _fingerprint(pkg)
    inc, eigen = dest / "include", dest / "eigen"
    if stamp.is_file() and stamp.read_text().strip() == want and inc.is_dir() and eigen.is_dir():
        return inc, eigen
    tmp = dest.parent / f"{dest.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copytree(pkg / "include", tmp / "include")
    for part in ("Eigen", "unsupported"):
        shutil.copytree(pkg / EIGEN_SUBDIR / part, tmp / "eigen" / part)
    edits = [(tmp / "include" / "core" / "macros.h", _patch_macros),
             (tmp / "include" / "core" / "tensor.h", _patch_tensor),
             (tmp / "include" / "core" / "broadcast.h", _patch_broadcast)]
    edits += [(h, _patch_operator) for h in sorted((tmp / "include" / "operators").glob("*.h"))]
    for path, edit in edits:
        old = path.read_text()
        new = edit(old)
        if new != old:
            path.write_text(new)
    (tmp / ".prepared").write_text(want + "\n")
    if stamp.is_file() and stamp.read_text().strip() == want:  # made meanwhile by a parallel build
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest / "include", dest / "eigen"
