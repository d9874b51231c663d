"""SCons build script of the mnist-mcu development platform.

Modelled on PlatformIO's official ARM platforms: the system arm-none-eabi
toolchain, a board-selected linker script, ELF -> BIN, "size", "upload"
(pyOCD or OpenOCD) and "qemu" (run the ELF in QEMU, UART on a TCP socket).
"""

import os
import subprocess
import sys

from SCons.Script import (  # pylint: disable=import-error
    COMMAND_LINE_TARGETS,
    AlwaysBuild,
    Builder,
    Default,
    DefaultEnvironment,
)

env = DefaultEnvironment()
board = env.BoardConfig()

# -- Toolchain and flags --------------------------------------------------------

machine_flags = ["-mcpu=%s" % board.get("build.cpu", "cortex-m4"), "-mthumb"]
if board.get("build.fpu", ""):
    machine_flags += ["-mfpu=%s" % board.get("build.fpu"), "-mfloat-abi=hard"]

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS="arm-none-eabi-as",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    GDB="arm-none-eabi-gdb",
    OBJCOPY="arm-none-eabi-objcopy",
    RANLIB="arm-none-eabi-gcc-ranlib",
    SIZETOOL="arm-none-eabi-size",
    ARFLAGS=["rc"],
    # Flash = everything loaded into flash; RAM = data + bss + reserved stack.
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPROGREGEXP=r"^(?:\.isr_vector|\.text|\.rodata|\.ARM\.extab|\.ARM\.exidx|\.init_array|\.fini_array|\.data)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.stack)\s+(\d+).*",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)

# Appended (not replaced) so that pre: extra scripts (e.g. deepc_env.py) keep
# whatever they added before this script runs.
env.Append(
    ASFLAGS=machine_flags,
    ASPPFLAGS=["-x", "assembler-with-cpp"],
    CCFLAGS=machine_flags
    + ["-Os", "-g", "-ffunction-sections", "-fdata-sections", "-Wall"],
    CFLAGS=["-std=c99"],
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU")],
    LINKFLAGS=machine_flags
    + [
        "-Os",
        "-nostartfiles",
        "--specs=nano.specs",
        "-Wl,--gc-sections",
        "-Wl,-Map,${BUILD_DIR}/firmware.map",
    ],
    LIBS=["c", "m", "gcc", "stdc++"],
)

# Linker script: board JSON "build.ldscript" (relative to the project), unless
# the env overrides it with board_build.ldscript. Its folder goes on the
# library path so scripts can INCLUDE the shared section layout.
if not env.get("LDSCRIPT_PATH"):
    env.Replace(LDSCRIPT_PATH=board.get("build.ldscript", ""))
ldscript = env.subst("$LDSCRIPT_PATH")
if ldscript and not os.path.isabs(ldscript):
    ldscript = os.path.join(env.subst("$PROJECT_DIR"), ldscript)
    env.Replace(LDSCRIPT_PATH=ldscript)
if ldscript:
    env.Append(LIBPATH=[os.path.dirname(ldscript)])

env.Append(
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction(
                "$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"
            ),
            suffix=".bin",
        )
    )
)

# -- Build ------------------------------------------------------------------------

target_elf = None
if "nobuild" in COMMAND_LINE_TARGETS:
    target_elf = os.path.join("$BUILD_DIR", "${PROGNAME}.elf")
    target_bin = os.path.join("$BUILD_DIR", "${PROGNAME}.bin")
else:
    target_elf = env.BuildProgram()
    target_bin = env.ElfToBin(os.path.join("$BUILD_DIR", "${PROGNAME}"), target_elf)

AlwaysBuild(env.Alias("nobuild", target_bin))
target_buildprog = env.Alias("buildprog", target_bin, target_bin)

target_size = env.AddPlatformTarget(
    "size",
    target_elf,
    env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE"),
    "Program Size",
    "Calculate program size",
)

# -- Upload (real boards) ------------------------------------------------------

protocol = env.subst("$UPLOAD_PROTOCOL") or board.get("upload.protocol", "")


def venv_tool(name):
    """A tool installed beside PlatformIO (e.g. pip's pyocd), else from PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return '"%s"' % path if os.path.isfile(path) else name


if protocol == "pyocd":
    env.Replace(
        UPLOADER=venv_tool("pyocd"),
        UPLOADERFLAGS=["flash", "-t", board.get("upload.pyocd_target", "")],
        UPLOADCMD="$UPLOADER $UPLOADERFLAGS $SOURCE",
    )
    upload_source = target_elf
elif protocol in ("stlink", "openocd"):
    env.Replace(
        UPLOADER="openocd",
        UPLOADERFLAGS=["-f", "interface/stlink.cfg"]
        + ["-f", "target/%s.cfg" % board.get("upload.openocd_target", "")],
        UPLOADCMD='$UPLOADER $UPLOADERFLAGS -c "program {$SOURCE} verify reset exit"',
    )
    upload_source = target_elf
else:
    env.Replace(
        UPLOADCMD='echo "No upload for board %s (protocol %r); use -t qemu for emulated boards" && exit 1'
        % (env.subst("$BOARD"), protocol)
    )
    upload_source = target_elf

env.AddPlatformTarget(
    "upload",
    upload_source,
    env.VerboseAction("$UPLOADCMD", "Uploading $SOURCE"),
    "Upload",
)

# -- QEMU ---------------------------------------------------------------------------


def qemu_machine():
    machine = env.GetProjectOption("custom_qemu_machine", "") or board.get(
        "qemu.machine", ""
    )
    return machine.strip()


def run_qemu(target, source, env):  # pylint: disable=unused-argument
    machine = qemu_machine()
    if not machine:
        sys.stderr.write(
            "Error: env %s has no custom_qemu_machine; it runs on a real board "
            "(use -t upload)\n" % env.subst("$PIOENV")
        )
        return 1
    port = os.environ.get("QEMU_PORT", "4444")
    cmd = [
        os.environ.get("QEMU_SYSTEM_ARM", "qemu-system-arm"),
        "-M", machine,
        "-nographic", "-monitor", "none",
        "-icount", "shift=0,align=off,sleep=off",
        "-serial", "tcp:127.0.0.1:%s,server=on,wait=on" % port,
        "-kernel", str(source[0]),
    ]  # fmt: skip
    print(" ".join(cmd))
    print(
        "QEMU waits for a client on 127.0.0.1:%s; connect with:\n"
        "  mnist-mcu evaluate --target serial --port socket://127.0.0.1:%s\n"
        "(Ctrl-C stops QEMU)" % (port, port)
    )
    sys.stdout.flush()
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


env.AddPlatformTarget(
    "qemu",
    target_elf,
    env.VerboseAction(run_qemu, "Running $SOURCE in QEMU"),
    "QEMU",
    "Run the firmware in QEMU, UART on tcp:127.0.0.1:$QEMU_PORT (default 4444)",
)

Default([target_buildprog, target_size])
