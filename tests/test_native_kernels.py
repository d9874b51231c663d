"""TFLite-Micro style kernel tests: each optimised kernel against its plain
reference kernel on the same vectors (odd sizes stress the loop tails), and the
deterministic math against its bit-exact numpy mirror.

The C kernel tests (firmware/test/test_kernels) run twice: built for the host here, and
on the emulated Cortex-M4 through `pio test -e qemu_f405_kernel_test` (the DSP assembly
path only exists there); both must pass and print the same output hashes."""

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_mcu.native.host import KERNEL_INCLUDE, build_shared, kernel_sources
from mnist_mcu.paths import FIRMWARE_DIR, ROOT
from mnist_mcu.native.quantize import expf, logf, pack_pairs, quantize_multiplier, requant_ref, softmax_ref

P = ctypes.c_void_p


@pytest.fixture(scope="module")
def lib():
    return ctypes.CDLL(str(build_shared(kernel_sources(), [KERNEL_INCLUDE])))


def ptr(a):
    return a.ctypes.data_as(P)


SIZES = [(1, 1), (2, 3), (3, 2), (7, 5), (37, 13), (100, 10), (784, 100)]


@pytest.mark.parametrize("n_in,n_out", SIZES)
def test_dense_f32_sparse_equals_reference(lib, n_in, n_out):
    rng = np.random.default_rng(n_in * 1000 + n_out)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    for relu in (0, 1):
        for zero_frac in (0.0, 0.6, 0.97, 1.0):   # dense, sparse, a few nonzero (batch tails), none
            x = rng.standard_normal(n_in).astype(np.float32)
            x[rng.random(n_in) < zero_frac] = 0
            ref, opt = np.zeros(n_out, np.float32), np.zeros(n_out, np.float32)
            lib.nn_dense_ref_f32(ptr(x), ptr(w), ptr(b), ptr(ref), n_in, n_out, relu)
            lib.nn_dense_f32(ptr(x), ptr(wt), ptr(b), ptr(opt), n_in, n_out, relu)
            assert np.array_equal(ref, opt)
            # pixels at an odd address: the kernel's 4-pixel zero test must not need alignment
            buf = np.zeros(n_in + 1, np.uint8)
            px = buf[1:]
            px[:] = rng.integers(0, 256, n_in)
            px[rng.random(n_in) < zero_frac] = 0
            lib.nn_dense_ref_f32(ptr(px.astype(np.float32)), ptr(w), ptr(b), ptr(ref), n_in, n_out, relu)
            lib.nn_dense_u8_f32(ptr(px), ptr(wt), ptr(b), ptr(opt), n_in, n_out, relu)
            assert np.array_equal(ref, opt)


@pytest.mark.parametrize("n_in,n_out", SIZES)
def test_dense_int8_pairs_equals_reference(lib, n_in, n_out):
    rng = np.random.default_rng(n_in * 7 + n_out)
    wq = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    bias = rng.integers(-50000, 50000, n_out).astype(np.int32)
    words = np.ascontiguousarray(pack_pairs(wq).T)     # one row of words per input pair
    nw = words.shape[1]
    assert nw == (n_out + 1) // 2
    ref, opt = np.zeros(n_out, np.int32), np.zeros(n_out, np.int32)
    for trial, zero_frac in enumerate((1.0, 0.3, 0.0, 0.9, 0.98)):   # all zero, ..., batch tails
        buf = np.zeros(n_in + 1, np.uint8)
        px = buf[1:]                                                   # odd address
        px[:] = rng.integers(0, 256, n_in)
        px[rng.random(n_in) < zero_frac] = 0
        lib.nn_dense_ref_u8(ptr(px), ptr(wq), ptr(bias), ptr(ref), n_in, n_out)
        lib.nn_dense_pairs_u8(ptr(px), n_in, ptr(words), nw, ptr(bias), ptr(opt), n_out)
        assert np.array_equal(ref, opt)
        assert np.array_equal(ref, bias + wq.astype(np.int64) @ px.astype(np.int64))
        zx = int(rng.integers(-128, 128))
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        x[rng.random(n_in) < max(zero_frac, 0.5 * (trial > 0))] = zx
        lib.nn_dense_ref_s8(ptr(x), zx, ptr(wq), ptr(bias), ptr(ref), n_in, n_out)
        lib.nn_dense_pairs_s8(ptr(x), zx, n_in, ptr(words), nw, ptr(bias), ptr(opt), n_out)
        assert np.array_equal(ref, opt)


# C, H, W, M, KH, KW, sh, sw, pt, pb, pl, pr: the CNN's two layers, odd kernels and strides,
# asymmetric and large padding (windows that cover no input at all), a 1x1 kernel
CONVS = [(1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1), (8, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1),
         (3, 7, 5, 4, 2, 3, 1, 1, 0, 1, 1, 1), (4, 11, 9, 5, 3, 3, 2, 2, 0, 1, 1, 0),
         (2, 5, 6, 3, 5, 4, 2, 3, 3, 2, 4, 3), (5, 4, 4, 2, 1, 1, 1, 1, 0, 0, 0, 0),
         (2, 3, 3, 3, 3, 5, 1, 1, 2, 2, 2, 2)]


@pytest.mark.parametrize("geom", CONVS, ids=lambda g: "x".join(map(str, g)))
def test_conv2d_int8_equals_reference(lib, geom):
    C, H, W, M, KH, KW, sh, sw, pt, pb, pl, pr = geom
    OH, OW = (H + pt + pb - KH) // sh + 1, (W + pl + pr - KW) // sw + 1
    rng = np.random.default_rng(sum(geom))
    w = rng.integers(-127, 128, (M, C, KH, KW)).astype(np.int8)
    bias = rng.integers(-50000, 50000, M).astype(np.int32)
    mult = rng.integers(2**30, 2**31 - 1, M).astype(np.int32)
    shift = rng.integers(12, 24, M).astype(np.int8)
    dq = rng.random(M).astype(np.float32)
    for zx in (-128, -95, 0, 37, 127):
        x = rng.integers(-128, 128, (C, H, W)).astype(np.int8)
        x[rng.random(x.shape) < 0.5] = zx   # zero activations, as after ReLU
        args = (zx, ptr(w), ptr(bias), C, H, W, M, KH, KW, OH, OW, sh, sw, pt, pl)
        ref, opt = np.zeros(M * OH * OW, np.int8), np.ones(M * OH * OW, np.int8)
        lib.nn_conv2d_ref_s8(ptr(x), *args, ptr(mult), ptr(shift), -7, -128, 127, ptr(ref), None, None, 0)
        lib.nn_conv2d_s8(ptr(x), *args, ptr(mult), ptr(shift), -7, -128, 127, ptr(opt), None, None, 0)
        assert np.array_equal(ref, opt)
        for relu in (0, 1):   # dequantised float output (a conv feeding a float op)
            ref, opt = np.zeros(M * OH * OW, np.float32), np.ones(M * OH * OW, np.float32)
            lib.nn_conv2d_ref_s8(ptr(x), *args, None, None, 0, -128, 127, None, ptr(dq), ptr(ref), relu)
            lib.nn_conv2d_s8(ptr(x), *args, None, None, 0, -128, 127, None, ptr(dq), ptr(opt), relu)
            assert np.array_equal(ref.view(np.uint32), opt.view(np.uint32))


def test_requant_and_dequant_in_place(lib):
    """int8 layers keep their int32 accumulators in the output buffer."""
    rng = np.random.default_rng(4)
    n = 37
    acc = rng.integers(-2**20, 2**20, n).astype(np.int32)
    mult = rng.integers(2**30, 2**31 - 1, n).astype(np.int32)
    shift = rng.integers(10, 30, n).astype(np.int8)
    want = np.zeros(n, np.int8)
    lib.nn_requant_ch_s8(ptr(acc), ptr(want), n, 1, ptr(mult), ptr(shift), 3, -128, 127)
    buf = acc.copy()
    lib.nn_requant_ch_s8(ptr(buf), ptr(buf), n, 1, ptr(mult), ptr(shift), 3, -128, 127)
    assert np.array_equal(buf.view(np.int8)[:n], want)
    scale = rng.random(n).astype(np.float32)
    for relu in (0, 1):
        want = np.zeros(n, np.float32)
        lib.nn_dequant_ch_f32(ptr(acc), ptr(want), n, 1, ptr(scale), relu)
        buf = acc.copy()
        lib.nn_dequant_ch_f32(ptr(buf), ptr(buf), n, 1, ptr(scale), relu)
        assert np.array_equal(buf.view(np.float32), want)


def test_requant_matches_numpy(lib):
    rng = np.random.default_rng(3)
    acc = np.concatenate([rng.integers(-2**24, 2**24, 4000), [0, 1, -1, 2**31 - 1, -2**31]]).astype(np.int32)
    for r in (1e-6, 0.0037, 0.25, 0.5, 0.99999, 1.7, 300.0):
        m, s = quantize_multiplier(r)
        assert abs(m * 2.0 ** -s - r) <= r * 2 ** -30
        mult = np.full(1, m, np.int32)
        shift = np.full(1, s, np.int8)
        y = np.zeros(len(acc), np.int8)
        lib.nn_requant_ch_s8(ptr(acc), ptr(y), 1, len(acc), ptr(mult), ptr(shift), -5, -128, 127)
        assert np.array_equal(y, requant_ref(acc.astype(np.int64), m, s, -5, -128, 127))


def test_expf_logf_bit_exact_and_accurate(lib):
    lib.nn_expf.restype = lib.nn_logf.restype = ctypes.c_float
    lib.nn_expf.argtypes = lib.nn_logf.argtypes = [ctypes.c_float]
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.uniform(-90, 0, 3000), rng.uniform(-1, 1, 1000), [0.0, -87.0, -86.9, -1e-8]])
    xs = xs.astype(np.float32)
    got = np.array([lib.nn_expf(float(v)) for v in xs], np.float32)
    assert np.array_equal(got.view(np.uint32), expf(xs).view(np.uint32))
    ok = xs > -80
    np.testing.assert_allclose(got[ok], np.exp(xs[ok].astype(np.float64)), rtol=3e-7)
    ys = rng.uniform(1, 1000, 3000).astype(np.float32)
    got = np.array([lib.nn_logf(float(v)) for v in ys], np.float32)
    assert np.array_equal(got.view(np.uint32), logf(ys).view(np.uint32))
    np.testing.assert_allclose(got, np.log(ys.astype(np.float64)), atol=3e-7)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_bit_exact(lib, log):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((50, 11)) * 8).astype(np.float32)
    y = np.zeros_like(x)
    fn = lib.nn_logsoftmax_f32 if log else lib.nn_softmax_f32
    fn(ptr(x), ptr(y), 50, 11)
    assert np.array_equal(y.view(np.uint32), softmax_ref(x, log=log).view(np.uint32))
    z = x.copy()                      # in place (the generated code runs it in `outputs`)
    fn(ptr(z), ptr(z), 50, 11)
    assert np.array_equal(z.view(np.uint32), y.view(np.uint32))
    z = x.astype(np.float64) - x.max(1, keepdims=True)
    want = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(y, want if log else np.exp(want), atol=1e-6)


KERNEL_TEST_DIR = FIRMWARE_DIR / "test" / "test_kernels"
KERNEL_TEST_ENV = "qemu_f405_kernel_test"
LINE_RE = re.compile(r"^(PASS|FAIL) (\S+) (.*)$", re.M)
EXPECTED_TESTS = {"dense_f32", "dense_s8", "requant", "dequant", "conv_s8", "maxpool_s8", "softmax_expf_logf"}


def _results(output):
    """{test name: (status, hash or failure)} from the kernel tests' output lines."""
    return {m.group(2): (m.group(1), m.group(3).strip()) for m in LINE_RE.finditer(output)}


@pytest.fixture(scope="module")
def host_results(tmp_path_factory):
    """The C kernel tests built with the host gcc (portable C path) and run."""
    exe = tmp_path_factory.mktemp("kt") / "kernel_tests"
    srcs = [*sorted(KERNEL_TEST_DIR.glob("*.c")), *kernel_sources()]
    cmd = [os.environ.get("CC", "gcc"), "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
           f"-I{KERNEL_INCLUDE}", f"-I{KERNEL_TEST_DIR}", *map(str, srcs), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    return res.returncode, res.stdout


def test_c_kernel_tests_pass_on_host(host_results):
    rc, out = host_results
    results = _results(out)
    failed = {k: v[1] for k, v in results.items() if v[0] != "PASS"}
    assert rc == 0 and not failed, failed or out
    assert set(results) == EXPECTED_TESTS
    assert re.search(r"^DONE %d 0$" % len(EXPECTED_TESTS), out, re.M)


@pytest.mark.qemu
def test_c_kernel_tests_pass_on_cortex_m4_with_pio_test(tmp_path, host_results):
    """`pio test` builds the same tests for the STM32F405 twin (SMLAD/SXTB16 path) and runs
    them in QEMU; the device's output hashes equal the host's (the same bits)."""
    if not shutil.which("qemu-system-arm"):
        pytest.skip("qemu-system-arm is not installed (apt-get install qemu-system-arm)")
    pio = Path(sys.executable).with_name("pio")
    env = dict(os.environ, PLATFORMIO_BUILD_DIR=str(tmp_path / "build"))
    res = subprocess.run([str(pio), "test", "-e", KERNEL_TEST_ENV], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    device = _results(out)
    failed = {k: v[1] for k, v in device.items() if v[0] != "PASS"}
    assert res.returncode == 0 and not failed, failed or out[-3000:]
    assert set(device) == EXPECTED_TESTS, out[-3000:]
    host = _results(host_results[1])
    assert {k: v[1] for k, v in device.items()} == {k: v[1] for k, v in host.items()}
