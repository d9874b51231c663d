"""PlatformIO pre: script of every model env: with $MNIST_MCU_OUT set (the main job,
`make all`), build the env's model library from $MNIST_MCU_OUT/generated/<lib> instead
of the committed firmware/generated/<lib>, so a run never rewrites tracked files.
mnist_mcu.firmware.get_env() points evaluate's host reference at the same folder."""

import hashlib
import os
import sys

Import("env")  # noqa: F821  pylint: disable=undefined-variable

OUT = os.environ.get("MNIST_MCU_OUT", "").strip()
MODEL_DIR = env.GetProjectOption("custom_model_dir", "").strip()  # noqa: F821

if OUT and MODEL_DIR:
    project = env.subst("$PROJECT_DIR")  # noqa: F821
    out = OUT if os.path.isabs(OUT) else os.path.join(project, OUT)
    lib = os.path.basename(os.path.normpath(MODEL_DIR))
    alt = os.path.join(out, "generated", lib)
    if not os.path.isfile(os.path.join(alt, "model.json")):
        sys.stderr.write("Error: MNIST_MCU_OUT is set but %s holds no generated library; run "
                         "`make generate` (or unset MNIST_MCU_OUT to build the committed one)\n" % alt)
        env.Exit(1)  # noqa: F821
    # PlatformIO builds project sources only from under src_dir (firmware/), with the include
    # paths and flags of the project: reach the outside folder through an ignored symlink there.
    src = env.subst("$PROJECT_SRC_DIR")  # noqa: F821
    link = os.path.join(src, ".out-%s" % hashlib.sha1(out.encode()).hexdigest()[:8])
    target = os.path.join(out, "generated")
    if os.path.realpath(link) != os.path.realpath(target):
        tmp = "%s.%d" % (link, os.getpid())
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: parallel builds of other envs see a whole link
    committed = os.path.relpath(os.path.join(project, MODEL_DIR), src)
    env.Append(SRC_FILTER=["-<%s/>" % committed, "+<%s/%s/>" % (os.path.basename(link), lib)])  # noqa: F821
    print("Model library: %s (MNIST_MCU_OUT)" % alt)
