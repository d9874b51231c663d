"""The issue targets `mnist-mcu benchmark` prints: each compared the right way round."""

from mnist_mcu import targets


def _run(**over):
    rows = {"qemu_f405_int8": {"env": "qemu_f405_int8", "instructions_per_inference": 21_999.0,
                               "flash_bytes": 90_001, "max_abs_diff": 0.0, "ort_int8_max_lsb": 1,
                               "total_seconds": 31.0, "emulator_idle_cpu_percent": 0.0},
            "qemu_f405_cnn_int8": {"env": "qemu_f405_cnn_int8", "accuracy": 0.9928, "float_accuracy": 0.9931}}
    for key, value in over.items():
        env, field = key.split("__")
        rows[env][field] = value
    return {"total_seconds": 149.0, "envs": list(rows.values())}


def _met(checks, env, key):
    return next(c["met"] for c in checks if c["env"] == env and c["key"] == key)


def test_each_target_compares_the_right_way_round():
    checks = targets.check(_run())
    assert _met(checks, "qemu_f405_int8", "instructions_per_inference") is True     # 21,999 <= 22,000
    assert _met(checks, "qemu_f405_int8", "flash_bytes") is False                   # 90,001 > 90,000
    assert _met(checks, "qemu_f405_int8", "total_seconds") is False                 # the '*' rows
    assert _met(checks, "qemu_f405_cnn_int8", "accuracy_drop_vs_float") is True     # 0.03 points
    assert _met(checks, "all", "total_seconds") is True
    # envs that did not run have no rows; a key the report lacks is "not measured" (None)
    assert not [c for c in checks if c["env"] == "qemu_an386_deepc"]
    assert _met(checks, "qemu_f405_cnn_int8", "total_seconds") is None


def test_a_miss_is_printed_as_missed():
    checks = targets.check(_run(qemu_f405_int8__instructions_per_inference=22_001.0,
                                qemu_f405_cnn_int8__accuracy=0.9900))
    assert _met(checks, "qemu_f405_int8", "instructions_per_inference") is False
    assert _met(checks, "qemu_f405_cnn_int8", "accuracy_drop_vs_float") is False
    text = targets.render(checks, 500)
    assert "MISSED" in text and "on 500 images" in text and "issue 8:" in text and "issue 9:" in text
