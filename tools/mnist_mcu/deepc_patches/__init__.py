"""deepC 0.13 runtime prepared for a bare-metal (arm-none-eabi) build.

deepC's C++ runtime (the dnnc headers and its bundled Eigen 3.3.7) is fetched from
PyPI by tools/setup.sh into .deps/deepc/ and is never copied into the repository.
`prepare_runtime()` copies the headers the model library needs into the gitignored
.deps/deepc-arm/ and applies the edits below, idempotently (a stamp file records
a hash of this module and of the source it was made from). Standard library only:
this module also runs inside PlatformIO's SCons (firmware/scripts/deepc_env.py).

Edits (each checks its anchor, so another deepC release fails loudly, not silently):
  core/macros.h   With DNNC_NO_STDIO defined, SPDLOG_ERROR/SPDLOG_WARN call the hook
                  `dnnc_report(level, line)` instead of writing to std::cout. On the
                  device stdout is the UART that carries the binary protocol, and the
                  hook lets model_run() return an error instead of a silent NULL tensor.
                  Also DNNC_TRY / DNNC_CATCH(x) / DNNC_INVALID_ARGUMENT(msg): `try`,
                  `catch (x)` and deepC's (never thrown) std::invalid_argument
                  temporaries, which become `if (true)`, `else` and an error report
                  when the code is compiled with -fno-exceptions / DNNC_LEAN.
  core/tensor.h   With DNNC_NO_STDIO, <iostream>/<fstream>/<sstream> are not included and
                  the text-file methods (tensor::read/write, readTensor) are left out,
                  exactly as deepC already does for its SWIG build. <iostream>'s static
                  initialiser otherwise links libstdc++'s whole locale machinery
                  (about 200 KB of flash) into a firmware that never uses a stream.
                  With DNNC_LEAN: no <random> (its double-precision normal distribution
                  fills INIT_RANDOM tensors, which no generated model creates: about
                  8 KB of soft-float code), error reports without std::to_string
                  messages, a bad index reports an error instead of throwing, and
                  t(i, j, ...) indexes without a heap-allocated index vector.
  core/placeHolder.h  With DNNC_LEAN a shape is taken over from the constructor's by-value
                  argument (tensor.h moves it on), not copied element by element.
                  dim(i) reads one dimension without copying the shape; tensor.h and the
                  operators use it for every x.shape()[i] (a heap copy each time).
  core/broadcast.h  Same as tensor.h: its one error message is built with a stringstream.
  operators/Gemm.h  With DNNC_LEAN, Y = alpha A'B' + beta C is computed as M
                  matrix-vector products straight into the result tensor (a classifier
                  runs batch 1: one GEMV), with C broadcast by indexing: no Eigen GEMM
                  (14 KB of flash, 20 KB of packing buffers on the heap) and no copy of C.
                  As in ONNX, A and B must be 2-D (deepC's rank-1 extension is left out).
  operators/Relu.h  With DNNC_LEAN, written straight into the result tensor (no Eigen
                  temporary, no same-type asType copy).
  operators/*.h   try/catch -> DNNC_TRY/DNNC_CATCH, std::invalid_argument(..);
                  -> DNNC_INVALID_ARGUMENT(..); headers that use std::stringstream
                  themselves (Conv, Slice, LSTM, ...) get `#include <sstream>`.

What needs no header edit (handled by flags or by the generated code):
  - NDEBUG / EIGEN_NO_DEBUG: no assert strings (and no printf pulled in by assert).
  - Eigen's temporaries: -DEIGEN_STACK_ALLOCATION_LIMIT=0 (heap, not alloca; see below).
  - Eigen's TensorRandom calls clock_gettime/::random: compile with -std=gnu++14 and
    -D_POSIX_TIMERS (newlib then declares them; nothing calls them, so no link need).
  - int32_t is `long` on arm-none-eabi, so deepC's `int32_t attr; op.setAttribute(..)`
    is ambiguous: the generator writes those attribute variables as `int`.
  - -fno-exceptions: libstdc++'s std::__throw_* helpers (which would link the
    unwinder) are replaced by the generated library (mnist_mcu.deepc_backend).
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

EIGEN_SUBDIR = "packages/eigen-eigen-323c052e1731"

# Compiler settings for any translation unit that includes the prepared runtime.
CXX_STD = "gnu++14"
# EIGEN_STACK_ALLOCATION_LIMIT=0: Eigen would otherwise alloca() GEMM packing buffers of
# up to 128 KB on the stack (newlib defines alloca), far beyond a microcontroller stack;
# with 0 they come from the heap, where _sbrk bounds and measures them.
# DNNC_LEAN: the microcontroller variants of the patched headers (see above); the host
# tests compile the same variants, so the host build checks the device's arithmetic.
CPP_DEFINES = ["_POSIX_TIMERS", "DNNC_NO_STDIO", "DNNC_LEAN", "NDEBUG", "EIGEN_NO_DEBUG",
               "EIGEN_STACK_ALLOCATION_LIMIT=0"]
# Only for the device build: the host tests keep exceptions (and so DNNC_TRY = try).
DEVICE_CXXFLAGS = ["-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]


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
    h = hashlib.sha256(Path(__file__).read_bytes())  # any edit of the patches re-prepares
    for rel in ("core/macros.h", "core/tensor.h", "core/placeHolder.h", "core/broadcast.h", "operators/Gemm.h",
                "operators/Relu.h"):
        h.update((pkg / "include" / rel).read_bytes())
    return h.hexdigest()[:16]


def _replace_once(text, old, new, what):
    if text.count(old) != 1:
        raise DeepcSetupError(f"deepC {what} is not the 0.13 version this patch expects")
    return text.replace(old, new)


def _lean_alternative(text, original, lean, what, pad=""):
    """Keep `original` for ordinary builds, use `lean` under DNNC_LEAN."""
    return _replace_once(text, original, f"#if defined(DNNC_LEAN){pad}\n{lean}#else\n{original}#endif\n", what)


# ------------------------------------------------------------------ core/macros.h
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
_MACROS_EXCEPTIONS = """
/* mnist-mcu patch: the operators' exception handling, also without exceptions. */
#if defined(__cpp_exceptions)
#define DNNC_TRY try
#define DNNC_CATCH(x) catch (x)
#else
#define DNNC_TRY if (true)
#define DNNC_CATCH(...) else
#endif
#if defined(DNNC_LEAN)
#define DNNC_INVALID_ARGUMENT(msg) SPDLOG_ERROR(msg)
#else
#define DNNC_INVALID_ARGUMENT(msg) std::invalid_argument(msg)
#endif
"""


def _patch_macros(text):
    if text.count(_MACROS_ANCHOR) != 1:
        raise DeepcSetupError("deepC core/macros.h is not the 0.13 version this patch expects")
    return text.replace(_MACROS_ANCHOR, _MACROS_REPLACEMENT) + _MACROS_EXCEPTIONS


# ------------------------------------------------------------------ core/tensor.h
_TENSOR_INCLUDES = """#ifndef SWIGPYTHON
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <stdlib.h> // malloc, free
#endif
#include <assert.h>
#include <random>"""
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
#endif
#include <assert.h>
#if !defined(DNNC_LEAN) /* mnist-mcu patch: INIT_RANDOM only */
#include <random>
#endif"""
_TENSOR_FILE_BLOCKS = ("#ifndef SWIGPYTHON\n  // \\brief load tensor data from file.",
                       "#ifndef SWIGPYTHON\n// \\brief return a tensor of type T from a text file")
_NO_STDIO_GUARD = "#if !defined(SWIGPYTHON) && !defined(DNNC_NO_STDIO)"
_TENSOR_RANDOM = """      std::default_random_engine generator;
      std::normal_distribution<double> distribution(127.5, 20.0);
      for (size_t i = 0; i < msize; i++)
        _mem_layout[i] = static_cast<T>(distribution(generator));
"""
_TENSOR_BAD_INDEX = """      std::string msg = "illegal tensor index " + std::to_string(index);
      msg += isnull() ? "on null tensor." : ".";
      throw std::out_of_range(msg.c_str());
      assert(msg.c_str()); // crash and burn.
"""
_TENSOR_BAD_INDEX_LEAN = """      SPDLOG_ERROR("illegal tensor index");
      static T bad_element; /* what a bad index reads and writes */
      return bad_element;
"""
_TENSOR_RESHAPE_MSG = """      std::string msg = "new reshape length " + std::to_string(newLength) +
                        " does not match tensor\\'s original length " +
                        std::to_string(this->length()) + ".\\n";
      SPDLOG_ERROR(msg.c_str());
"""
_TENSOR_INDICES_MSG = """        std::string msg = "number of supplied indices " +
                          std::to_string(indices.size()) +
                          " is more than rank of the tensor " +
                          std::to_string(this->rank()) + ".\\n";
        SPDLOG_ERROR(msg.c_str());
"""
_TENSOR_CALL = """                const INDEX w = 0, const INDEX u = 0) const {
"""
_TENSOR_CALL_LEAN = """    /* mnist-mcu patch: the same row-major index, without a heap-allocated vector */
    const INDEX idx[5] = {x, y, z, w, u};
    const size_t rank = this->_shape.size();
    if (rank == 0)
      return this->operator[](0); // reports the null tensor
    INDEX index = 0;
    for (size_t i = 0; i < rank; i++)
      index = index * this->_shape[i] + (i < 5 ? idx[i] : 0);
    return this->operator[](index);
"""


def _patch_tensor(text):
    text = _replace_once(text, _TENSOR_INCLUDES, _TENSOR_INCLUDES_NEW, "core/tensor.h")
    # the constructors hand their by-value shape on instead of copying it (no allocation)
    if text.count("      : placeHolder<T>(n, dimn), _ref(0x0), _mem_layout(") != 2:
        raise DeepcSetupError("deepC core/tensor.h is not the 0.13 version this patch expects")
    text = text.replace("      : placeHolder<T>(n, dimn), _ref(0x0)",
                        "      : placeHolder<T>(n, std::move(dimn)), _ref(0x0)")
    for anchor in _TENSOR_FILE_BLOCKS:
        text = _replace_once(text, anchor, anchor.replace("#ifndef SWIGPYTHON", _NO_STDIO_GUARD), "core/tensor.h")
    text = _lean_alternative(text, _TENSOR_RANDOM,
                             '      SPDLOG_ERROR("INIT_RANDOM is left out of this build (DNNC_LEAN)");\n',
                             "core/tensor.h")
    text = _lean_alternative(text, _TENSOR_BAD_INDEX, _TENSOR_BAD_INDEX_LEAN, "core/tensor.h")
    text = _lean_alternative(text, _TENSOR_RESHAPE_MSG,
                             '      SPDLOG_ERROR("new reshape length does not match the tensor\'s length.");\n',
                             "core/tensor.h")
    text = _lean_alternative(text, _TENSOR_INDICES_MSG,
                             '        SPDLOG_ERROR("more indices than the rank of the tensor.");\n',
                             "core/tensor.h")
    text = _dims_without_copies(text)
    # t(x, y, z, w, u): the lean body comes first and returns; the original stays below it
    text = _replace_once(text, _TENSOR_CALL, _TENSOR_CALL + "#if defined(DNNC_LEAN)\n" + _TENSOR_CALL_LEAN + "#else\n",
                         "core/tensor.h")
    end = "    return this->operator()(indices);\n  }\n  bool empty()"
    return _replace_once(text, end, end.replace("  }\n", "#endif\n  }\n"), "core/tensor.h")


# ------------------------------------------------------------- core/placeHolder.h
_SHAPE_INIT = "  void init(std::vector<DIMENSION> &dimn) {\n"


_SHAPE_GETTER = "  const std::vector<DIMENSION> shape() const { return _shape; }\n"


_SHAPE_INIT_LEAN = """#if defined(DNNC_LEAN)
    /* mnist-mcu patch: take the (by-value) shape over instead of copying it element by
     * element: no allocation per tensor, fewer short-lived blocks fragmenting the heap */
    if (std::find(dimn.begin(), dimn.end(), DIMENSION(0)) == dimn.end()) {
      _shape = std::move(dimn);
      return;
    }
    _shape.reserve(dimn.size());
#endif
"""


def _patch_placeholder(text):
    text = _replace_once(text, "#include <vector>\n", "#include <vector>\n#include <algorithm>\n#include <utility>\n",
                         "core/placeHolder.h")
    text = _replace_once(text, _SHAPE_INIT, _SHAPE_INIT + _SHAPE_INIT_LEAN, "core/placeHolder.h")
    # one dimension without copying the shape vector (shape() returns a copy)
    return _replace_once(text, _SHAPE_GETTER, _SHAPE_GETTER + "  DIMENSION dim(size_t i) const { return _shape[i]; }"
                         " /* mnist-mcu patch */\n", "core/placeHolder.h")


_SHAPE_INDEX = re.compile(r"(\.|->)shape\(\)\[([^\[\]]+)\]")


def _dims_without_copies(text):
    """x.shape()[i] -> x.dim(i): the same value without a heap-allocated copy of the shape
    (deepC calls it in loop conditions, once per iteration)."""
    return _SHAPE_INDEX.sub(r"\1dim(\2)", text)


# --------------------------------------------------------------- core/broadcast.h
_BROADCAST_MSG = re.compile(r"( *)std::stringstream errMsg;\n"
                            r".*?SPDLOG_ERROR\(errMsg\.str\(\)\.c_str\(\)\);\n", re.DOTALL)


def _patch_broadcast(text):
    # <numeric>: std::accumulate, which deepC got through <random> (not included when lean)
    text = _replace_once(text, "#include <sstream>\n",
                         "#ifndef DNNC_NO_STDIO\n#include <sstream>\n#endif\n#include <numeric>\n", "core/broadcast.h")
    blocks = _BROADCAST_MSG.findall(text)
    if len(blocks) != 1:
        raise DeepcSetupError("deepC core/broadcast.h is not the 0.13 version this patch expects")

    def repl(m):
        pad = m.group(1)
        return (f"#ifdef DNNC_NO_STDIO\n{pad}SPDLOG_ERROR(\"operands could not be broadcast together\");\n"
                f"#else\n{m.group(0)}#endif\n")

    return _dims_without_copies(_BROADCAST_MSG.sub(repl, text))


# ------------------------------------------------------------- operators/Gemm.h
_GEMM_EIGEN = re.compile(r"    std::vector<size_t> aShape = transA \? .*?"
                         r"    result\.load\(eResult\.data\(\)\);\n", re.DOTALL)
_GEMM_LEAN = """    /* mnist-mcu patch: ONNX Gemm (2-D A and B) as M matrix-vector products straight into
     * the result (batch 1: one GEMV), C broadcast by indexing: no Eigen GEMM and its packing
     * buffers, no copy of C, no shape vectors. */
    if (!(this->template type_check<Ti1, float, double, int>()) || a.rank() != 2 || b.rank() != 2 ||
        c.rank() > 2) {
      SPDLOG_ERROR("tensor dimenions not appropriate for Gemm operator.");
      return NULL_TENSOR<To>;
    }
    const size_t M = a.dim(transA ? 1 : 0), K = a.dim(transA ? 0 : 1), N = b.dim(transB ? 0 : 1);
    const size_t cm = c.rank() == 2 ? c.dim(0) : 1, cn = c.rank() ? c.dim(c.rank() - 1) : 1;
    if (b.dim(transB ? 1 : 0) != K || (cm != 1 && cm != M) || (cn != 1 && cn != N)) {
      SPDLOG_ERROR("tensor dimenions not appropriate for Gemm operator.");
      return NULL_TENSOR<To>;
    }
    tensor<Ti1> result(std::vector<size_t>{M, N}, c.name());
    const Ti1 *pa = this->tensorMem(a), *pb = this->tensorMem(b), *pc = this->tensorMem(c);
    Ti1 *py = this->tensorMem(result);
    if (!py)
      return NULL_TENSOR<To>;
    // A'(i, k) = pa[i * ai + k * ak], B'(k, j) = pb[k * bk + j * bj]
    const size_t ai = transA ? 1 : K, ak = transA ? M : 1;
    const size_t bk = transB ? 1 : N, bj = transB ? K : 1;
    for (size_t i = 0; i < M; i++) {
      size_t j = 0;
      if (ak == 1 && bk == 1) // rows of A and of B (transB) contiguous: the batch-1 GEMV
        j = dnnc_gemv_rows(pa + i * ai, pb, py + i * N, N, K);
      for (; j < N; j++) {
        Ti1 s = 0;
        for (size_t k = 0; k < K; k++)
          s += pa[i * ai + k * ak] * pb[k * bk + j * bj];
        py[i * N + j] = s;
      }
      for (j = 0; j < N; j++) {
        const Ti1 cv = pc ? pc[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)] : Ti1(0);
        py[i * N + j] = static_cast<Ti1>(alpha * py[i * N + j] + beta * cv);
      }
    }
"""


_GEMM_CLASS = "template <typename To, typename Ti1, typename Ti2>\nclass Gemm "
_GEMV_ROWS = """#if defined(DNNC_LEAN)
/* mnist-mcu patch: y[j] = sum_k x[k] w[j][k] for the rows of w (n x k, row-major),
 * four rows per pass over x; a function of its own so that its loop keeps every
 * pointer in a register. Returns the rows done (a multiple of 4). */
template <typename T>
__attribute__((noinline)) size_t dnnc_gemv_rows(const T *x, const T *w, T *y, size_t n, size_t k) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4, w += 4 * k) {
    const T *w0 = w, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    const T *xp = x, *end = x + k;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    while (xp != end) {
      const T v = *xp++;
      s0 += v * *w0++;
      s1 += v * *w1++;
      s2 += v * *w2++;
      s3 += v * *w3++;
    }
    y[j] = s0;
    y[j + 1] = s1;
    y[j + 2] = s2;
    y[j + 3] = s3;
  }
  return j;
}
#endif

"""


def _patch_gemm(text):
    found = _GEMM_EIGEN.findall(text)
    if len(found) != 1:
        raise DeepcSetupError("deepC operators/Gemm.h is not the 0.13 version this patch expects")
    text = _lean_alternative(text, found[0], _GEMM_LEAN, "operators/Gemm.h")
    return _replace_once(text, _GEMM_CLASS, _GEMV_ROWS + _GEMM_CLASS, "operators/Gemm.h")


# ------------------------------------------------------------- operators/Relu.h
_RELU_EIGEN = """    tensor<Ti> result(input.shape(), input.name());
    DNNC_EIGEN_ARRAY_MAP(eigenVector, Ti, input);
    DNNC_EIGEN_VECTOR_CTOR(Ti) eResult;
    eResult.array() = eigenVector.array().unaryExpr(&relu_func);
    result.load(eResult.data());

    return result.template asType<To>();
"""
_RELU_LEAN = """    /* mnist-mcu patch: straight into the result, no temporaries */
    tensor<To> result(input.shape(), input.name());
    const Ti *in = this->tensorMem(input);
    To *out = this->tensorMem(result);
    for (size_t i = 0, n = input.length(); i < n; i++)
      out[i] = static_cast<To>(relu_func(in[i]));
    return result;
"""


def _patch_relu(text):
    return _lean_alternative(text, _RELU_EIGEN, _RELU_LEAN, "operators/Relu.h")


# ------------------------------------------------------------- every operator
_TRY = re.compile(r"\btry \{")
_CATCH = re.compile(r"\} catch \(([^()]*)\) \{")
_INVALID = re.compile(r"\bstd::invalid_argument\((\"[^\"]*\")\);")


def _patch_operator(text):
    if "std::stringstream" in text and "#include <sstream>" not in text:
        text = _replace_once(text, "#pragma once\n", "#pragma once\n#include <sstream> /* mnist-mcu patch */\n",
                             "operator header")
    text = _TRY.sub("DNNC_TRY {", text)
    text = _CATCH.sub(r"} DNNC_CATCH(\1) {", text)
    text = _INVALID.sub(r"DNNC_INVALID_ARGUMENT(\1);", text)
    return _dims_without_copies(text)


_SPECIFIC = {"Gemm.h": _patch_gemm, "Relu.h": _patch_relu}


def _edit_operator(name):
    special = _SPECIFIC.get(name)
    return (lambda text: _patch_operator(special(text))) if special else _patch_operator


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
    try:
        _prepare(pkg, tmp, want)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-patched left behind
        raise
    if stamp.is_file() and stamp.read_text().strip() == want:  # made meanwhile by a parallel build
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest / "include", dest / "eigen"


def _prepare(pkg, tmp, stamp):
    tmp.mkdir(parents=True)
    shutil.copytree(pkg / "include", tmp / "include")
    for part in ("Eigen", "unsupported"):
        shutil.copytree(pkg / EIGEN_SUBDIR / part, tmp / "eigen" / part)
    edits = [(tmp / "include" / "core" / "macros.h", _patch_macros),
             (tmp / "include" / "core" / "tensor.h", _patch_tensor),
             (tmp / "include" / "core" / "placeHolder.h", _patch_placeholder),
             (tmp / "include" / "core" / "broadcast.h", _patch_broadcast)]
    edits += [(h, _edit_operator(h.name)) for h in sorted((tmp / "include" / "operators").glob("*.h"))]
    for path, edit in edits:
        old = path.read_text()
        new = edit(old)
        if new != old:
            path.write_text(new)
    (tmp / ".prepared").write_text(stamp + "\n")
