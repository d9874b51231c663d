"""End to end under QEMU with the real firmware: build (firmware.py), boot, stream MNIST,
compare with the host model. Quick subsets always; the full 10,000 images are @slow."""

import json

import numpy as np
import pytest
from conftest import QEMU_ENVS
from mnist_mcu import protocol as P
from mnist_mcu.evaluate import EvalOptions, evaluate
from mnist_mcu.qemu import Qemu

pytestmark = pytest.mark.qemu

QUICK = 300


@pytest.mark.parametrize("env_name", QEMU_ENVS)
def test_info_after_boot(build_env, env_name):
    env = build_env(env_name)
    with Qemu(env.elf, env.qemu_machine, timeout=5) as q:
        info = q.info
        assert info.version == P.VERSION and info.tick_unit == P.TICK_EMULATED
        assert (info.input_size, info.output_size) == (784, 10)
        assert info.backend == env.backend and info.dtype == env.dtype
        assert info.tick_hz > 0 and info.cpu_hz > 0
        assert 0 < info.flash_bytes < 1024 * 1024
        assert info.static_ram_bytes > 0 and info.stack_size_bytes > 0
        again = q.device.info()
        assert again.flash_bytes == info.flash_bytes


@pytest.mark.parametrize("env_name", QEMU_ENVS)
def test_quick_subset(build_env, env_name, mnist_dir, model_path, check_report, tmp_path):
    build_env(env_name)
    out = tmp_path / f"{env_name}.json"
    # model None: the env's float model (custom_model_onnx; model/mlp.onnx when absent)
    r = evaluate(EvalOptions(env=env_name, target="qemu", limit=QUICK, json_path=out, data_dir=mnist_dir, jobs=2,
                             build=False, progress=False))
    check_report(r, QUICK)
    on_disk = json.loads(out.read_text())
    assert on_disk["accuracy"] == r["accuracy"] and on_disk["env"] == env_name
    assert (tmp_path / f"{env_name}_confusion.png").stat().st_size > 1000
    assert (tmp_path / f"{env_name}_misclassified.png").stat().st_size > 1000
    assert r["resends"] == 0 and r["stray_errors"] == 0
    # the per-layer profile (issue 8): every layer counted every image, plotted next to the JSON
    layers = on_disk["layers"]
    assert layers and all(row["runs"] == QUICK and row["instructions_mean"] > 0 for row in layers)
    assert sum(row["instructions_mean"] for row in layers) <= r["instructions_per_inference"]
    assert (tmp_path / f"{env_name}_layers.png").stat().st_size > 1000


NATIVE_BUDGETS = {
    "qemu_f405_f32": {"instructions": 200_000, "flash": 340 * 1024, "ram": 8 * 1024},
    "qemu_f405_int8": {"instructions": 120_000, "flash": 96 * 1024, "ram": 8 * 1024},
    "qemu_f405_cnn_int8": {"instructions": 1_500_000, "flash": 80 * 1024, "ram": 24 * 1024},  # issue 10 budgets
}


@pytest.mark.slow
@pytest.mark.parametrize("env_name", QEMU_ENVS)
def test_full_test_set(build_env, env_name, mnist_dir, model_path, check_report, tmp_path):
    build_env(env_name)
    r = evaluate(EvalOptions(env=env_name, target="qemu", json_path=tmp_path / "r.json", data_dir=mnist_dir,
                             build=False, progress=False))
    check_report(r, 10000)
    print(f"\n{env_name}: {r['wall_seconds']:.1f} s wall, {r['images_per_second']:.0f} images/s, "
          f"accuracy {r['accuracy']:.4f}, instructions/inference {r['instructions_per_inference']:,.0f}")
    # Size and speed targets of the native backend. Instruction counts under -icount are
    # deterministic, so they can be asserted; wall time is measured by `mnist-mcu benchmark`.
    budget = NATIVE_BUDGETS.get(env_name)
    if budget:
        assert r["instructions_per_inference"] <= budget["instructions"]
        assert r["flash_bytes"] <= budget["flash"] and r["ram_bytes"] <= budget["ram"]


def test_evaluate_and_benchmark_cli(build_env, mnist_dir, tmp_path):
    from click.testing import CliRunner
    from mnist_mcu.cli import cli

    build_env("qemu_f405_int8")
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", "--env", "qemu_f405_int8", "--limit", "40", "--no-build",
                              "--data-dir", mnist_dir, "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert "agreement 100.0000%" in res.output and "float model" in res.output
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["dtype"] == "int8" and "float_agreement" in r and r["images"] == 40
    res = runner.invoke(cli, ["benchmark", "--envs", "qemu_f405_int8", "--limit", "30", "--no-build",
                              "--data-dir", mnist_dir, "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert "qemu_f405_int8" in res.output and "img/s" in res.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert [e["env"] for e in b["envs"]] == ["qemu_f405_int8"] and b["envs"][0]["images"] == 30
    assert (tmp_path / "b.png").stat().st_size > 5000  # flash / RAM / instructions chart
    res = runner.invoke(cli, ["report", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "index.html").read_text()
    # the table, the chart and the env's three plots, embedded so the page works offline
    assert "qemu_f405_int8" in page and "instr/inf" in page and page.count("data:image/png;base64,") >= 4
    assert "not found" not in page


def test_every_image_encoding_gives_the_same_answer_on_the_device(build_env, mnist_dir):
    """The firmware decodes raw, zero-run and context (encoding 3) to the same pixels, refuses a
    damaged encoding-3 image with ERROR bad payload and the retired Huffman encoding 2 as an
    unknown encoding, then goes on answering."""
    from mnist_mcu import image_codec as C
    from mnist_mcu.evaluate import load_test_set
    from mnist_mcu.transport import DeviceErrorReply

    env = build_env("qemu_f405_int8")
    px, _ = load_test_set(mnist_dir, 40)
    with Qemu(env.elf, env.qemu_machine, timeout=5) as q:
        dev = q.device
        dev.retries = 0
        answers = {enc: dict(dev.infer_many(enumerate(px), window=2, encoding=enc))
                   for enc in P.ENCODINGS}
        for i in range(len(px)):
            outs = [answers[enc][i] for enc in answers]
            # same pixels, same work: ticks may differ by one from the timer's phase
            assert all(o.cls == outs[0].cls and np.array_equal(o.outputs, outs[0].outputs)
                       and abs(o.ticks - outs[0].ticks) <= 1 for o in outs), i
        good = C.encode(px[0])
        flipped = good[:30] + bytes([good[30] ^ 0x04]) + good[31:]
        for bad in (good[:-3], good + b"\x00", b"", good[:3], flipped, C.encode(np.full(784, 255, np.uint8))[:-1]):
            with pytest.raises(DeviceErrorReply) as err:
                dev.request(P.INFER, bytes([P.ENC_CONTEXT]) + bad)
            assert err.value.error.code == P.ERR_BAD_PAYLOAD and err.value.error.detail == 2
        with pytest.raises(DeviceErrorReply) as err:
            dev.request(P.INFER, bytes([2]) + good)  # version 3's Huffman code
        assert err.value.error.code == P.ERR_BAD_PAYLOAD and err.value.error.detail == 1
        assert dev.infer(px[0], encoding=P.ENC_CONTEXT).cls == answers[P.ENC_RAW][0].cls


def test_batches_on_the_device_answer_like_single_requests(build_env, mnist_dir):
    """INFER_BATCH on the real firmware (protocol version 5): the same class, outputs and (+-1)
    ticks as one INFER per image, in fewer bytes; images of every encoding in one batch; 150
    blank images in one frame; a damaged image ends its batch with ERROR bad payload after the
    images before it; an empty batch is a bad length; and the device goes on answering."""
    import itertools

    from mnist_mcu.evaluate import load_test_set
    from mnist_mcu.transport import DeviceErrorReply

    env = build_env("qemu_f405_int8")
    px, _ = load_test_set(mnist_dir, 48)
    with Qemu(env.elf, env.qemu_machine, timeout=5) as q:
        dev = q.device
        dev.retries = 0
        sent0 = dev.bytes_sent
        single = dict(dev.infer_many(enumerate(px), window=2, batch=1))
        sent1 = dev.bytes_sent
        batched = dict(dev.infer_many(enumerate(px), window=2, batch=8))
        assert sent1 - sent0 - (dev.bytes_sent - sent1) >= 4 * len(px)  # ~5.5 bytes per image fewer
        mixed = [(i, P.encode_images([px[i]], enc)[0]) for i, enc in zip(range(9), itertools.cycle(P.ENCODINGS))]
        by_enc = dict(dev.infer_payloads(mixed, window=1, batch=8))
        for answers in (batched, by_enc):
            for i, res in answers.items():
                assert (res.cls == single[i].cls and np.array_equal(res.outputs, single[i].outputs)
                        and abs(res.ticks - single[i].ticks) <= 1), i
        blank = dict(dev.infer_many(enumerate(np.zeros((150, 784), np.uint8)), window=1, batch=255))
        assert sorted(blank) == list(range(150)) and len({r.cls for r in blank.values()}) == 1
        good = [P.encode_image(p) for p in px[:3]]
        seen = []
        with pytest.raises(DeviceErrorReply) as err:
            for key, _ in dev.infer_payloads([(0, good[0]), (1, good[1][:-2]), (2, good[2])], batch=8):
                seen.append(key)
        assert seen == [0] and (err.value.error.code, err.value.error.detail) == (P.ERR_BAD_PAYLOAD, 2)
        with pytest.raises(DeviceErrorReply) as err:
            dev.request(P.INFER_BATCH, b"")
        assert (err.value.error.code, err.value.error.detail) == (P.ERR_BAD_PAYLOAD, 3)
        assert dev.infer(px[5]).cls == single[5].cls


def test_serial_target_against_a_hand_started_qemu_reports_instructions(build_env, mnist_dir, tmp_path):
    """Issue 9: the README's recipe (QEMU started by hand, evaluate --target serial socket://)
    printed QEMU's ticks as 'cycles/inference'. The firmware now says its ticks are emulated."""
    import subprocess
    import sys
    from pathlib import Path

    from mnist_mcu.qemu import free_port

    env = build_env("qemu_f405_f32")
    port = free_port()
    qemu = subprocess.Popen(["qemu-system-arm", "-M", env.qemu_machine, "-nographic", "-monitor", "none",
                             "-icount", "shift=0,align=off,sleep=off",
                             "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on", "-kernel", str(env.elf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run([str(Path(sys.executable).parent / "mnist-mcu"), "evaluate", "--env", env.name,
                              "--target", "serial", "--port", f"socket://127.0.0.1:{port}", "--no-build",
                              "--no-plots", "--limit", "30", "--data-dir", mnist_dir,
                              "--json", str(tmp_path / "s.json")],
                             capture_output=True, text=True, timeout=300)
    finally:
        qemu.kill()
        qemu.wait()
    assert out.returncode == 0, out.stderr
    assert "emulated instructions/inference" in out.stdout and "cycles" not in out.stdout, out.stdout
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["target"] == "serial" and r["tick_unit"] == "emulated instructions" and "cycles_per_inference" not in r


# the MAC-heavy layers each backend reports for the seed MLP and the CNN
EXPECTED_MACS = {"qemu_an386_deepc": [78_400, 1_000], "qemu_f405_f32": [78_400, 1_000],
                 "qemu_f405_int8": [78_400, 1_000], "qemu_f405_cnn_int8": [21_168, 84_672, 50_176, 640]}


@pytest.mark.parametrize("env_name", QEMU_ENVS)
def test_profile_per_layer_on_the_device(build_env, env_name, mnist_dir):
    """PROFILE (protocol 3): the layers' ticks add up to the INFER reply's ticks, the
    statistics count exactly the inferences since a clear, and a bad request is refused."""
    from mnist_mcu.evaluate import load_test_set
    from mnist_mcu.transport import DeviceErrorReply

    env = build_env(env_name)
    px, _ = load_test_set(mnist_dir, 25)
    with Qemu(env.elf, env.qemu_machine, timeout=5) as q:
        dev = q.device
        dev.retries = 0
        fresh = dev.profile()
        assert [p.macs for p in fresh if p.macs] == EXPECTED_MACS[env_name]
        assert all(p.runs == 0 and p.last == 0 and p.total == 0 and p.kept for p in fresh)
        assert dev.infer(px[0]).ticks > 0
        dev.clear_profile()
        ticks = [dev.infer(img).ticks for img in px[1:]]
        layers = dev.profile()
        assert all(p.runs == len(ticks) and p.count == len(layers) for p in layers)
        # the stamps sit inside the timed call: the layers cover all but the call overhead
        last = sum(p.last for p in layers)
        assert 0.97 * ticks[-1] <= last <= ticks[-1], (last, ticks[-1])
        total = sum(p.total for p in layers)
        assert 0.97 * sum(ticks) <= total <= sum(ticks), (total, sum(ticks))
        assert all(p.max * p.runs >= p.total for p in layers)
        heavy = max(layers, key=lambda p: p.total)
        assert heavy.macs == max(EXPECTED_MACS[env_name])
        for bad in (b"", b"\x00", b"\x00\x00\x00"):
            with pytest.raises(DeviceErrorReply) as err:
                dev.request(P.PROFILE, bad)
            assert (err.value.error.code, err.value.error.detail) == (P.ERR_BAD_PAYLOAD, 3)
        dev.clear_profile()
        assert all(p.runs == 0 and p.total == 0 and p.max == 0 for p in dev.profile())


def test_qemu_threads_share_one_cpu_per_instance(build_env):
    """Issue 9: all threads of one QEMU run on one CPU (a byte's hand-over between QEMU's I/O
    and vCPU threads is then a plain context switch: about a quarter less host CPU per byte),
    and several instances are spread over the CPUs this process may use."""
    import os
    from pathlib import Path

    from mnist_mcu.qemu import cpu_slot

    cpus = sorted(os.sched_getaffinity(0))
    assert [cpu_slot(i) for i in range(len(cpus) + 1)] == cpus + cpus[:1]
    env = build_env("qemu_f405_int8")
    with Qemu(env.elf, env.qemu_machine, timeout=5, cpu=cpu_slot(1)) as q:
        tasks = list(Path(f"/proc/{q.proc.pid}/task").iterdir())
        assert len(tasks) >= 2  # the I/O thread and the vCPU thread at least
        assert {t.name: os.sched_getaffinity(int(t.name)) for t in tasks} == {t.name: {cpu_slot(1)} for t in tasks}
        assert q.device.info().input_size == 784


def test_uart_on_a_unix_socket_and_cleaned_up(build_env, mnist_dir):
    """Issue 9: evaluate's QEMUs put the UART on a Unix socket (no TCP segment and ACK per
    byte: ~7 % less emulator CPU per wire byte); the same protocol runs over it, and the
    socket's folder goes with the instance."""
    from mnist_mcu.evaluate import load_test_set
    from mnist_mcu.evaluation.session import run_qemu

    env = build_env("qemu_f405_int8")
    with Qemu(env.elf, env.qemu_machine, timeout=5, unix_socket=True) as q:
        assert q.port is None and q.socket_path.is_socket()
        assert f"unix:{q.socket_path},server=on,wait=on" in q.command(None)
        assert q.device.url == f"unix:{q.socket_path}" and q.device.info().input_size == 784
    assert not q.socket_path.parent.exists()
    px, _ = load_test_set(mnist_dir, 20)
    run = run_qemu(env.elf, env.qemu_machine, px, jobs=2)
    assert (run.classes >= 0).all() and run.bytes_sent > 20 * 100 and run.resends == 0
