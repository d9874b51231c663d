"""PlatformIO pre: script of every env: the application and the board support (protocol,
framing, image decoding, faults) are built at -Os, the model library and the kernels at the
env's own level (-O2 for the native envs). Only model_run is timed, and it runs no application
code, so this saves flash (about 1.1 KB on qemu_f405_int8 with the plain loops of handlers.c
and image.c; its target is 90 KB) without touching the instruction counts that matter."""

Import("env")  # noqa: F821  pylint: disable=undefined-variable


def _at_os(env, node):  # noqa: ARG001 - PlatformIO's middleware signature
    # no loop-to-memcpy/memset rewriting: the application's few byte loops would otherwise pull
    # in newlib's speed-tuned string functions (0.7 KB)
    flags = [f for f in env["CCFLAGS"] if f not in ("-O2", "-O3")] + ["-Os", "-fno-tree-loop-distribute-patterns"]
    return env.Object(node, CCFLAGS=flags)


for part in ("app", "bsp"):
    env.AddBuildMiddleware(_at_os, "*/firmware/%s/*" % part)  # noqa: F821
