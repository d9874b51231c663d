"""The same checks as under QEMU, against a real flashed board: on --port, or a place of a
labgrid farm through labgrid's pytest plugin.

    pio run -e nucleo_f446re_f32 -t upload
    pytest -m hardware --port /dev/ttyACM0 --env nucleo_f446re_f32 [--hw-limit 0]

    pytest -m hardware --lg-env tools/farm/nucleo-env.yaml [--lg-coordinator HOST:PORT] [--env ENV]

With --lg-env the file's place is acquired for the session, flashed with the env through its
debug probe (an emulated place, without a probe, must already run it) and released at the end.
Skipped (with the reason) unless --port and --env, or --lg-env, are given.
"""

import os

import numpy as np
import pytest

from mnist_mcu import firmware
from mnist_mcu import protocol as P
from mnist_mcu.evaluate import EvalOptions, evaluate, load_test_set
from mnist_mcu.transport import Device, DeviceErrorReply

pytestmark = pytest.mark.hardware


@pytest.fixture(scope="session")
def board(request):
    """(serial URL, env name, image limit) of the device under test."""
    config = request.config
    if not (config.getoption("lg_env", default=None) or os.environ.get("LG_ENV")):
        yield request.getfixturevalue("hw")  # --port/--env (conftest), or the skip that explains both
        return
    from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY

    from mnist_mcu.farm import place_for_tests

    # the file as labgrid's plugin parsed it (with --lg-coordinator applied); not its `env`
    # fixture, which insists that the place is acquired before the session starts
    lg_env = config.stash[LABGRID_ENV_KEY]
    with place_for_tests(lg_env, config.getoption("--env")) as (place, env_name):
        yield place.url, env_name, config.getoption("--hw-limit") or None


def test_board_info(board):
    port, env_name, _ = board
    env = firmware.get_env(env_name)
    with Device(port, timeout=3) as dev:
        dev.reset_input()
        info = dev.wait_ready(total=5)
    assert (info.input_size, info.output_size) == (784, 10)
    assert info.backend == env.backend and info.dtype == env.dtype, \
        f"board runs {info.backend}/{info.dtype}; flash it with `pio run -e {env_name} -t upload`"
    if env.is_qemu:  # an emulated place of a farm
        assert info.tick_unit == P.TICK_EMULATED, "an emulator's ticks are emulated instructions"
    else:
        assert info.tick_unit == P.TICK_CYCLES, "on a board the ticks must be CPU cycles (DWT cycle counter)"


def test_board_accuracy_and_agreement(board, mnist_dir, model_path, check_report, tmp_path):
    port, env_name, limit = board
    r = evaluate(EvalOptions(env=env_name, target="serial", port=port, limit=limit,
                             json_path=tmp_path / f"{env_name}.json", data_dir=mnist_dir, model=model_path,
                             build=False, progress=False))
    check_report(r, limit or 10000)
    speed = (f"{r['cycles_per_inference']:,.0f} cycles ({r['ms_per_inference']:.3f} ms)" if "cycles_per_inference" in r
             else f"{r['instructions_per_inference']:,.0f} emulated instructions")
    print(f"\n{env_name} on {port}: accuracy {r['accuracy']:.4f}, {speed} per inference, RAM {r['ram_bytes']} B, "
          f"flash {r['flash_bytes']} B")


def test_board_survives_garbage_and_broken_frames(board, mnist_dir):
    port, _, _ = board
    px, _ = load_test_set(mnist_dir, 10)
    with Device(port, timeout=3, retries=0) as dev:
        dev.reset_input()
        dev.wait_ready(total=5)
        want = [dev.infer(p) for p in px]
        for i, p in enumerate(px):
            before = len(dev.stray_errors)
            dev.write_raw(b"\xff\x13\x37\x42\x00")  # undecodable: ERROR with seq 0
            dev.drain(0.3)
            assert len(dev.stray_errors) == before + 1
            res = dev.infer(p)
            assert res.cls == want[i].cls and np.array_equal(res.outputs, want[i].outputs)
        with pytest.raises(DeviceErrorReply) as exc:
            dev.request(0x55)
        assert exc.value.error.code == P.ERR_UNKNOWN_TYPE
        assert dev.resends == 0 and dev.info().version == P.VERSION
