"""The same checks as under QEMU, against a real flashed board.

    pio run -e nucleo_f446re_f32 -t upload
    pytest -m hardware --port /dev/ttyACM0 --env nucleo_f446re_f32 [--hw-limit 0]

Skipped (with the reason) unless --port and --env are given.
"""

import numpy as np
import pytest

from mnist_mcu import firmware
from mnist_mcu import protocol as P
from mnist_mcu.evaluate import EvalOptions, evaluate, load_test_set
from mnist_mcu.transport import Device, DeviceErrorReply

pytestmark = pytest.mark.hardware


def test_board_info(hw):
    port, env_name, _ = hw
    env = firmware.get_env(env_name)
    with Device(port, timeout=3) as dev:
        dev.reset_input()
        info = dev.wait_ready(total=5)
    assert (info.input_size, info.output_size) == (784, 10)
    assert info.backend == env.backend and info.dtype == env.dtype, \
        f"board runs {info.backend}/{info.dtype}; flash it with `pio run -e {env_name} -t upload`"
    assert info.tick_unit == P.TICK_CYCLES, "on a board the ticks must be CPU cycles (DWT cycle counter)"


def test_board_accuracy_and_agreement(hw, mnist_dir, model_path, check_report, tmp_path):
    port, env_name, limit = hw
    r = evaluate(EvalOptions(env=env_name, target="serial", port=port, limit=limit,
                             json_path=tmp_path / f"{env_name}.json", data_dir=mnist_dir, model=model_path,
                             build=False, progress=False))
    check_report(r, limit or 10000)
    print(f"\n{env_name} on {port}: accuracy {r['accuracy']:.4f}, {r['cycles_per_inference']:,.0f} cycles "
          f"({r['ms_per_inference']:.3f} ms) per inference, RAM {r['ram_bytes']} B, flash {r['flash_bytes']} B")


def test_board_survives_garbage_and_broken_frames(hw, mnist_dir):
    port, _, _ = hw
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
