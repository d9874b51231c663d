"""SCons build script of the mnist-mcu development platform.

Modelled on PlatformIO's official ARM platforms: the system arm-none-eabi
toolchain, a board-selected linker script, ELF -> BIN, "size", "upload"
(pyOCD or OpenOCD) and "qemu" (run the ELF in QEMU, UART on a TCP socket).
"""

import os
import re
import shutil
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

# Reserved stack: the linker script's default unless the env sets
# board_build.stack_size (bytes). INFO reports the painted high-water mark.
stack_size = str(board.get("build.stack_size", "")).strip()
if stack_size:
    env.Append(LINKFLAGS=["-Wl,--defsym=_stack_size=%s" % stack_size])

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
#
# openocd (default): the system OpenOCD with the board's own script, e.g.
#   openocd -f board/st_nucleo_f4.cfg -c "program firmware.elf verify reset exit"
#   (works offline: the Debian package carries the STM32F4 flash driver)
# stlink: the same OpenOCD with interface/stlink.cfg + target/<openocd_target>.cfg
# pyocd:  pyOCD, if it knows the target (a built-in one, or a CMSIS pack installed
#   with `pyocd pack install <part>`, which needs the network once)
# Every uploader runs with a time limit and without waiting for a probe, so a
# missing board fails at once with a message that says so.

protocol = env.subst("$UPLOAD_PROTOCOL") or board.get("upload.protocol", "")
UPLOAD_TIMEOUT = 180  # seconds; flashing 512 KB over an ST-LINK takes ~10 s

NO_PROBE_PATTERNS = (
    r"open failed",  # OpenOCD's ST-LINK/CMSIS-DAP driver: no probe on USB
    r"unable to find .*(probe|adapter|device)",
    r"no device found",
    r"No connected debug probes",  # pyOCD
    r"No target device available",
    r"LIBUSB_ERROR_ACCESS",
)


def venv_tool(name):
    """A tool installed beside PlatformIO (e.g. pip's pyocd), else from PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.isfile(path) else shutil.which(name)


def upload_cmd(source):
    elf = str(source[0])
    extra = env.subst("$UPLOAD_FLAGS").split() if env.subst("$UPLOAD_FLAGS") else []
    program = "program {%s} verify reset exit" % elf.replace("\\", "/")
    if protocol == "openocd":
        scripts = ["-f", "board/%s.cfg" % board.get("upload.openocd_board", "")]
        return "openocd", ["openocd"] + scripts + extra + ["-c", program]
    if protocol == "stlink":
        scripts = ["-f", "interface/stlink.cfg",
                   "-f", "target/%s.cfg" % board.get("upload.openocd_target", "")]
        return "openocd", ["openocd"] + scripts + extra + ["-c", program]
    if protocol == "pyocd":
        return "pyocd", ["pyocd", "flash", "--no-wait",
                         "-t", board.get("upload.pyocd_target", "")] + extra + [elf]
    return None, None


def pyocd_knows(exe, target):
    """True if pyOCD lists target (built in, or from an installed pack)."""
    try:
        out = subprocess.run([exe, "list", "--targets"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return True  # let the flash command itself report the problem
    return any(line.split()[:1] == [target] for line in out.splitlines())


def fail(msg):
    sys.stderr.write("Error: %s\n" % msg)
    sys.stderr.flush()
    return 1


def run_upload(target, source, env):  # pylint: disable=unused-argument
    custom = env.GetProjectOption("upload_command", "")
    if custom:  # the env's own upload_command wins, as on PlatformIO's platforms
        return env.Execute(env.VerboseAction(custom, "Uploading with upload_command"))
    tool, cmd = upload_cmd(source)
    if tool is None:
        return fail(
            "board %s cannot be flashed (upload protocol %r); emulated boards run "
            "with -t qemu" % (env.subst("$BOARD"), protocol)
        )
    exe = venv_tool(tool)
    if not exe:
        hint = "apt-get install openocd" if tool == "openocd" else "pip install pyocd"
        return fail("%s not found (%s), needed by upload_protocol = %s" % (tool, hint, protocol))
    cmd[0] = exe
    if tool == "pyocd" and "--pack" not in cmd and not pyocd_knows(exe, board.get("upload.pyocd_target", "")):
        target = board.get("upload.pyocd_target", "")
        return fail(
            "pyOCD has no target %r: install its CMSIS pack once with `pyocd pack install %s` "
            "(needs the network), pass `upload_flags = --pack <file.pack>`, or use the default "
            "upload_protocol = openocd" % (target, target)
        )
    print(" ".join('"%s"' % c if " " in c else c for c in cmd))
    sys.stdout.flush()
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=UPLOAD_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return fail("%s did not finish within %d s; is the board connected and powered?"
                    % (tool, UPLOAD_TIMEOUT))
    sys.stdout.write(proc.stdout)
    sys.stdout.flush()
    if proc.returncode == 0:
        return 0
    if any(re.search(p, proc.stdout, re.I) for p in NO_PROBE_PATTERNS):
        return fail(
            "no debug probe found: connect the %s's ST-LINK USB port (and check its "
            "udev permissions), then run the upload again" % board.get("name", "board")
        )
    return fail("%s failed (exit code %d); see its output above" % (tool, proc.returncode))


upload_source = target_elf
env.AddPlatformTarget(
    "upload",
    upload_source,
    env.VerboseAction(run_upload, "Uploading $SOURCE"),
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
        "-serial", "tcp:127.0.0.1:%s,server=on,wait=on,nodelay=on" % port,
        "-kernel", str(source[0]),
    ]  # fmt: skip
    print(" ".join(cmd))
    print(
        "QEMU waits for a client on 127.0.0.1:%s; connect with:\n"
        "  mnist-mcu evaluate --env %s --target serial --port socket://127.0.0.1:%s --no-build\n"
        "(Ctrl-C stops QEMU)" % (port, env.subst("$PIOENV"), port)
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
