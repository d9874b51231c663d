"""PlatformIO pre: script of env qemu_an386_deepc (the deepC model library).

Prepares, idempotently, deepC 0.13's C++ runtime for arm-none-eabi (copied from
.deps/deepc/ into the gitignored .deps/deepc-arm/ and patched by
tools/mnist_mcu/deepc_patches; see that module for what is changed and why) and adds
to the C++ build:
  -isystem <dnnc headers> -isystem <Eigen 3.3.7>   (system: no warnings from them)
  -std=gnu++14 -D_POSIX_TIMERS                       (Eigen's TensorRandom needs them)
  -DDNNC_NO_STDIO                                    (deepC errors -> hook, not std::cout)
  -DEIGEN_STACK_ALLOCATION_LIMIT=0                   (Eigen temporaries on the heap, not alloca)
Exceptions and RTTI stay on (deepC's operators use try/catch); link needs stdc++.
"""

import importlib.util
import os
import sys

Import("env")  # noqa: F821  pylint: disable=undefined-variable

PROJECT_DIR = env.subst("$PROJECT_DIR")  # noqa: F821
PATCHES = os.path.join(PROJECT_DIR, "tools", "mnist_mcu", "deepc_patches", "__init__.py")
GENERATED = os.path.join(PROJECT_DIR, "firmware", "generated", "deepc")


def _fail(msg):
    sys.stderr.write("Error: %s\n" % msg)
    env.Exit(1)  # noqa: F821


def _load_patches():
    spec = importlib.util.spec_from_file_location("mnist_mcu_deepc_patches", PATCHES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if not os.path.isfile(os.path.join(GENERATED, "model_deepc.cpp")):
    _fail("%s has no generated model; run: mnist-mcu compile model/mlp.onnx --backend deepc" % GENERATED)

patches = _load_patches()
try:
    include_dir, eigen_dir = patches.prepare_runtime(
        dest=os.path.join(PROJECT_DIR, ".deps", "deepc-arm"),
        src=patches.deepc_home(PROJECT_DIR),
    )
except patches.DeepcSetupError as exc:
    _fail(str(exc))

env.Append(  # noqa: F821
    CXXFLAGS=[
        "-std=%s" % patches.CXX_STD,
        "-isystem", str(include_dir),
        "-isystem", str(eigen_dir),
    ]
    + ["-D%s" % d for d in patches.CPP_DEFINES]
    + patches.DEVICE_CXXFLAGS,
    LIBS=["stdc++"],
)
