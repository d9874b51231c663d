"""Host build of a generated model library (the bit-exact reference for the device).

    m = HostModel(gen_dir); probs = m.run(pixels_uint8)   # [N, 784] -> float32 [N, out]

The model's C and the one kernel library (firmware/lib/nnkernels, the same sources
every firmware env links) are compiled with the host gcc (-O2 -ffp-contract=off, as
on the device) into a shared library cached under build/native_host/<hash of the sources>/.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..paths import FIRMWARE_DIR, ROOT

CFLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared"]
CACHE_DIR = ROOT / "build" / "native_host"
KERNEL_LIB = FIRMWARE_DIR / "lib" / "nnkernels"
KERNEL_INCLUDE = KERNEL_LIB / "include"
HOST_CLOCK = Path(__file__).with_name("host_clock.c")   # model_clock() for the per-layer stamps


def kernel_sources() -> list[Path]:
    """The kernel library's C files (the library is linked whole, as on the device)."""
    return sorted((KERNEL_LIB / "src").glob("*.c"))


class _Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("backend", ctypes.c_char_p), ("dtype", ctypes.c_char_p),
                ("input_size", ctypes.c_uint16), ("output_size", ctypes.c_uint16)]


def build_shared(sources, include_dirs=(), cache_dir=CACHE_DIR, extra_flags=()):
    """Compile C sources into a cached shared library; returns its path."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise UserError(f"host C compiler '{cc}' not found; install gcc (apt-get install gcc) or set CC")
    h = hashlib.sha256()
    for f in sorted(Path(s) for s in sources):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    for d in [*include_dirs, *sorted({Path(s).parent for s in sources})]:
        for f in sorted(Path(d).glob("*.h")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(" ".join(CFLAGS + list(extra_flags) + [cc]).encode())
    out = Path(cache_dir) / h.hexdigest()[:16] / "libmodel.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [cc, *CFLAGS, *extra_flags, *[f"-I{d}" for d in include_dirs], *map(str, sources), "-o", tmp]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        raise UserError(f"host build failed: {res.stderr.strip().splitlines()[0] if res.stderr else res.returncode}")
    os.replace(tmp, out)
    return out


class HostModel:
    def __init__(self, gen_dir, cache_dir=CACHE_DIR):
        gen_dir = Path(gen_dir)
        sources = sorted(gen_dir.glob("*.c"))
        if not sources:
            raise UserError(f"no generated C sources in {gen_dir}; run `mnist-mcu compile --backend native`")
        self.path = build_shared([*sources, *kernel_sources(), HOST_CLOCK],
                                 [gen_dir, FIRMWARE_DIR / "include", KERNEL_INCLUDE], cache_dir)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.model_info.restype = ctypes.POINTER(_Info)
        self.lib.model_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.model_run.restype = ctypes.c_int
        info = self.lib.model_info().contents
        self.name, self.dtype = info.name.decode(), info.dtype.decode()
        self.input_size, self.output_size = int(info.input_size), int(info.output_size)
        if self.lib.model_init() != 0:
            raise UserError(f"model_init() failed for {gen_dir}")

    def run(self, pixels):
        px = np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8).reshape(-1, self.input_size))
        out = np.zeros((len(px), self.output_size), np.float32)
        run = self.lib.model_run
        pin, pout = px.ctypes.data, out.ctypes.data
        for i in range(len(px)):
            if run(pin + i * self.input_size, pout + i * 4 * self.output_size) != 0:
                raise UserError(f"model_run failed on image {i}")
        return out
