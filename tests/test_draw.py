"""Draw-a-digit: preprocessing, request parsing, the threaded web server and its limits and
checks, the device links (a dead emulator restarted, a dead board a 503), and the CLI's
early errors. The QEMU tests run the real CNN firmware."""

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from mnist_mcu import data, draw
from mnist_mcu.errors import UserError
from mnist_mcu.paths import MODEL_DIR, ROOT
from mnist_mcu.protocol import TICK_EMULATED, InferResult, Info
from PIL import Image

ENV = "qemu_f405_cnn_int8"


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return data.load_mnist("test", mnist_dir)


def _as_drawing(img28, side=280):
    """An MNIST digit blown up to canvas size, as a person's drawing would arrive."""
    return np.asarray(Image.fromarray(img28).resize((side, side), Image.BILINEAR))


def _body(img):
    h, w = img.shape
    return json.dumps({"width": w, "height": h, "pixels": base64.b64encode(img.tobytes()).decode()}).encode()


# ---------------------------------------------------------------------- image and request parsing

def test_blank_drawing_is_blank():
    assert not draw.preprocess(np.zeros((280, 280), np.uint8)).any()


def test_preprocessed_drawings_are_recognised_like_mnist(mnist):
    images, labels = mnist
    model = draw.HostModel(MODEL_DIR / "mlp.onnx")
    pred = np.array([model.outputs(draw.preprocess(_as_drawing(im))).argmax() for im in images[:300]])
    assert (pred == labels[:300]).mean() > 0.93


def test_small_offcentre_drawing_is_centred_and_scaled():
    canvas = np.zeros((280, 280), np.uint8)
    canvas[10:60, 200:215] = 255  # a short stroke in a corner
    out, steps = draw.preprocess_steps(canvas)
    rows, cols = np.nonzero(out)
    assert rows.max() - rows.min() + 1 >= 19  # fitted into the 20-pixel box
    assert abs(rows.mean() - 14) < 1.5 and abs(cols.mean() - 14) < 1.5
    assert steps["box"] == [10, 200, 50, 15] and steps["fitted_shape"] == [20, 6]


def test_empty_and_near_empty_drawings_have_too_little_ink(mnist):
    canvas = np.zeros((280, 280), np.uint8)
    assert draw.too_little_ink(canvas)
    canvas[100:118, 100:118] = 255  # one dab of the 22-pixel brush
    assert draw.too_little_ink(canvas)
    canvas[:] = 0
    canvas[40:240, 138:142] = 255  # a thin "1" is a digit
    assert not draw.too_little_ink(canvas)
    assert not draw.too_little_ink(_as_drawing(mnist[0][0]))


@pytest.mark.parametrize("body, why", [
    (b"not json", "malformed"),
    (b'{"width": 2, "height": 2, "pixels": "AAA="}', "bytes"),
    (b'{"width": 5000, "height": 1, "pixels": ""}', "sides"),
    (b'{"width": 1}', "integer"),
    (b'{"width": Infinity, "height": 1, "pixels": ""}', "not a number"),
    (b'{"width": 1e400, "height": 1, "pixels": ""}', "integer"),
    (b'{"width": NaN, "height": 1, "pixels": ""}', "not a number"),
    (b'{"width": 2.0, "height": 2, "pixels": "AAAAAA=="}', "integer"),
    (b'{"width": true, "height": 1, "pixels": "AA=="}', "integer"),
    (b'{"width": -3, "height": 1, "pixels": ""}', "sides"),
    (b'{"width": 1, "height": 1, "pixels": [0]}', "base64"),
    (b'{"width": 1, "height": 1, "pixels": "@@@@"}', "base64"),
    (b'[1, 2]', "object"),
    (b'\xff\xfe', "malformed"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
])
def test_malformed_requests_are_rejected(body, why):
    with pytest.raises(UserError, match=why):
        draw.decode_drawing(body)


def test_onnx_input_name_is_read_from_the_model(tmp_path):
    m = onnx.load(str(MODEL_DIR / "mlp.onnx"))
    old = m.graph.input[0].name
    m.graph.input[0].name = "pixels"
    for node in m.graph.node:
        node.input[:] = ["pixels" if i == old else i for i in node.input]
    path = tmp_path / "renamed.onnx"
    onnx.save(m, str(path))
    renamed, original = draw.HostModel(path), draw.HostModel(MODEL_DIR / "mlp.onnx")
    assert renamed.input_name == "pixels"
    img = np.zeros((28, 28), np.uint8)
    img[5:20, 12:15] = 255
    assert np.array_equal(renamed.outputs(img), original.outputs(img))


def test_a_model_that_is_no_28x28_classifier_is_one_line(tmp_path):
    m = onnx.load(str(MODEL_DIR / "mlp.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value = 27
    onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(UserError, match="28x28|cannot load"):
        draw.HostModel(tmp_path / "bad.onnx")
    with pytest.raises(UserError, match="not found"):
        draw.HostModel(tmp_path / "missing.onnx")


def test_reject_threshold_is_read_from_the_model_json(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert draw.reject_threshold_for(onnx_path) is None
    (tmp_path / "m.json").write_text(json.dumps({"reject_threshold": 0.7}))
    assert draw.reject_threshold_for(onnx_path) == 0.7
    (tmp_path / "m.json").write_text(json.dumps({"reject_threshold": "high"}))
    assert draw.reject_threshold_for(onnx_path) is None


def _info(tick_hz, cpu_hz, **kw):
    return Info(1, 784, 10, cpu_hz, tick_hz, 0, 0, 0, 0, 0, "m", "native", "int8", "b", **kw)


def test_latency_is_in_instructions_on_an_emulator_and_us_and_cycles_on_a_board():
    lat = draw.latency(553922, _info(168_000_000, 168_000_000), "qemu")
    assert lat["instructions"] == 3297155 and "instructions" in lat["text"]
    lat = draw.latency(18_000, _info(180_000_000, 180_000_000), "serial")  # ticks are cycles on a board
    assert lat["cycles"] == 18_000 and lat["us"] == pytest.approx(100.0) and "µs" in lat["text"]
    lat = draw.latency(1_000, _info(1_000_000, 180_000_000), "serial")  # a 1 MHz timer
    assert lat["cycles"] == 180_000 and lat["us"] == pytest.approx(1000.0)
    emulated = _info(168_000_000, 168_000_000, tick_unit=TICK_EMULATED)  # INFO says: an emulator
    assert draw.tick_unit(emulated, "serial") == "instructions"
    assert "instructions" in draw.latency(553922, emulated, "serial")["text"]


# ---------------------------------------------------------------------- the server (a stand-in link)

class _FakeLink:
    """Stands in for the device in these server tests only; QEMU runs it for real below."""

    target = "qemu"

    def __init__(self):
        self.fail = None
        self.calls = 0

    def infer(self, pixels):
        self.calls += 1
        if self.fail:
            raise draw.DeviceUnavailable(self.fail)
        return InferResult(cls=7, outputs=np.eye(10, dtype=np.float32)[7], ticks=168), None

    def latency(self, ticks):
        return draw.latency(ticks, _info(168_000_000, 168_000_000), "qemu")

    def describe(self):
        return {"board": "fake", "target": "qemu", "tick_hz": 168_000_000, "ticks_count": "instructions"}


def _request(base, path, body=None, headers=None, method=None):
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(base + path, data=body, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()) if "json" in r.headers["Content-Type"] else r.read()
    except urllib.error.HTTPError as err:
        assert err.headers["Content-Type"] == "application/json", err.headers
        return err.code, json.loads(err.read())


def _read_to_close(sock) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _raw(port, data: bytes, timeout=10.0) -> tuple[int, dict]:
    """Send raw bytes (requests urllib refuses to make); returns (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        reply = _read_to_close(s)
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head, head
    return status, json.loads(body)


@pytest.fixture
def server():
    link = _FakeLink()
    rec = draw.Recogniser(link, MODEL_DIR / "cnn.onnx")
    srv = draw.serve(rec, {"env": "fake"}, port=0, timeout=1.0)
    srv.link = link
    yield srv
    srv.close()


def test_server_serves_page_and_answers(server, mnist):
    base = server.url()
    page = urllib.request.urlopen(base, timeout=5).read().decode()
    assert "<canvas" in page and "/draw.js" in page
    js = urllib.request.urlopen(base + "draw.js", timeout=5).read().decode()
    assert "/predict" in js and "pointerdown" in js
    status, dev = _request(base, "device")
    assert status == 200 and dev["env"] == "fake" and dev["tick_hz"] == 168_000_000
    assert dev["ticks_count"] == "instructions" and dev["host_label"]
    status, res = _request(base, "predict", _body(_as_drawing(mnist[0][0])))
    assert status == 200 and res["status"] == "ok" and res["device_class"] == 7
    assert res["latency"]["instructions"] == 1000 and len(res["image"]) == 784
    assert res["host_class"] == mnist[1][0] and len(res["host_probabilities"]) == 10
    assert res["steps"]["box"] and len(res["steps"]["fitted"]) == np.prod(res["steps"]["fitted_shape"])


def test_empty_canvas_gets_draw_a_digit_without_asking_the_device(server):
    status, res = _request(server.url(), "predict", _body(np.zeros((280, 280), np.uint8)))
    assert status == 200 and res["status"] == "empty" and res["message"] == "draw a digit"
    assert "device_class" not in res and server.link.calls == 0


def test_reject_rule_says_not_a_digit(server, mnist):
    server.recogniser.reject_threshold = 0.5
    server.link.infer = lambda px: (InferResult(3, np.full(10, 0.1, np.float32), 5), None)
    status, res = _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])))
    assert status == 200 and res["status"] == "reject" and res["message"] == "not a digit"


@pytest.mark.parametrize("headers, body, code, why", [
    ("Content-Length: -1", b"{}", 400, "Content-Length"),
    ("Content-Length: abc", b"{}", 400, "Content-Length"),
    ("", b"", 400, "Content-Length is required"),
    (f"Content-Length: {draw.MAX_BODY + 1}", b"", 413, "limit"),
    ("Content-Length: 99999999999999999999", b"", 400, "Content-Length"),
    ("Transfer-Encoding: chunked", b"0\r\n\r\n", 400, "chunked"),
])
def test_bad_content_length_is_a_json_400(server, headers, body, code, why):
    extra = (headers + "\r\n") if headers else ""
    req = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
           f"{extra}\r\n").encode() + body
    status, res = _raw(server.port, req)
    assert status == code and why in res["error"]


@pytest.mark.parametrize("payload, why", [
    (b'{"width": Infinity, "height": 280, "pixels": ""}', "not a number"),
    (b'{"width": 1e400, "height": 280, "pixels": ""}', "integer"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"width": 2, "height": 2, "pixels": "AAA="}', "bytes"),
    (b'{"width": 280, "height": 280, "pixels": "!!"}', "base64"),
])
def test_bad_drawings_are_a_json_400(server, payload, why):
    status, res = _request(server.url(), "predict", payload)
    assert status == 400 and why in res["error"]
    assert server.link.calls == 0


def test_wrong_content_type_path_and_method(server):
    base = server.url()
    assert _request(base, "predict", b"{}", {"Content-Type": "text/plain"})[0] == 415
    assert _request(base, "nope", b"{}")[0] == 404
    assert _request(base, "nope")[0] == 404
    assert _request(base, "predict", b"{}", method="PUT")[0] == 405
    status, res = _raw(server.port, b"GET / HTTP/1.1 what\r\n\r\n")
    assert status == 400 and res["error"]
    status, res = _raw(server.port, b"BREW / HTTP/1.1\r\n\r\n")
    assert status == 501 and res["error"]


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example:8000"},  # DNS rebinding
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_requests_are_refused(server, mnist, headers):
    status, res = _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])), headers)
    assert status == 403 and ("refused" in res["error"] or "not this server" in res["error"])
    assert server.link.calls == 0
    if "Host" in headers:
        assert _request(server.url(), "", headers=headers)[0] == 403


def test_own_origin_is_accepted(server, mnist):
    origin = f"http://127.0.0.1:{server.port}"
    status, _ = _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])),
                         {"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert status == 200
    status, _ = _request(f"http://localhost:{server.port}/", "device")
    assert status == 200


def test_device_failure_is_a_json_503_with_retry(server, mnist):
    server.link.fail = "the board on /dev/ttyACM0 does not answer"
    status, res = _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])))
    assert status == 503 and res["retry"] is True and "does not answer" in res["error"]
    server.link.fail = None
    assert _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])))[0] == 200


def test_idle_and_stalled_clients_do_not_block_others(server, mnist):
    """One connection that says nothing and one POST stalled mid-body stay open while
    another client is served; then the socket timeout closes them (408 for the stalled one)."""
    server.socket_timeout = 3.0
    idle = socket.create_connection(("127.0.0.1", server.port))
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"wid".encode())
    try:
        time.sleep(0.2)  # both are being handled
        status, res = _request(server.url(), "predict", _body(_as_drawing(mnist[0][0])))
        assert status == 200 and res["device_class"] == 7
        for s in (idle, stalled):  # served while both still hang on
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(100)
            s.setblocking(True)
            s.settimeout(10)
        reply = _read_to_close(stalled)  # headers and body may come in separate segments
        assert b" 408 " in reply.split(b"\r\n")[0] and b"not received" in reply
        assert idle.recv(100) == b""  # closed by the server, no answer needed
    finally:
        idle.close()
        stalled.close()


def test_too_many_connections_get_a_503_not_a_hang(server):
    socks = []
    try:
        for _ in range(draw.MAX_CONNECTIONS):
            socks.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.3)
        status, res = _raw(server.port, f"GET / HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert status == 503 and "too many" in res["error"]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------- the CLI's early errors

def _draw_cli(*args, timeout=60):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "tools")}
    return subprocess.run([sys.executable, "-c", "import sys; from mnist_mcu.cli import main; main(sys.argv[1:])",
                           "draw", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env, check=False)


@pytest.mark.parametrize("listen, why", [("127.0.0.1:http", "port must be a number"),
                                         (":99999", "port must be a number"),
                                         ("[::1", "expected"), ("no.such.host.invalid:8000", "not an address")])
def test_bad_listen_address_is_one_line_before_anything_boots(listen, why):
    t0 = time.monotonic()
    res = _draw_cli("--listen", listen, "--no-build")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], res.stderr
    assert "Traceback" not in res.stderr and time.monotonic() - t0 < 30


def test_port_in_use_is_one_line_before_the_device_boots():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        res = _draw_cli("--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--env", ENV)
    assert res.returncode == 2 and "cannot listen" in res.stderr and "ready" not in res.stdout
    assert len(res.stderr.strip().splitlines()) == 1


def test_host_defaults_to_loopback():
    assert draw.parse_listen("8000", None) == ("127.0.0.1", 8000)
    assert draw.parse_listen("0.0.0.0:8001", None) == ("0.0.0.0", 8001)
    assert draw.parse_listen("8002", "::1") == ("::1", 8002)
    assert draw.parse_listen("[::1]:8003", None) == ("::1", 8003)
    with pytest.raises(UserError, match="different"):
        draw.parse_listen("10.0.0.1:8000", "127.0.0.1")


# ---------------------------------------------------------------------- real firmware under QEMU

@pytest.fixture
def cnn_env(require_qemu):
    """Built right before use: the ELF is copied by QemuLink at once (other builds may replace it)."""
    from mnist_mcu import firmware

    env = firmware.get_env(ENV)
    firmware.build(env)
    return env


@pytest.mark.qemu
def test_draw_qemu_device_agrees_with_host(cnn_env, mnist):
    """The real CNN firmware answers drawings through the web server, bit-exact with its host build."""
    images, labels = mnist
    link = draw.QemuLink(cnn_env.elf, cnn_env.qemu_machine)
    link.start()
    srv = draw.serve(draw.Recogniser(link, cnn_env.model_onnx, int8_dir=cnn_env.model_dir), {"env": ENV}, port=0)
    try:
        right = 0
        for img, label in zip(images[:20], labels[:20]):
            status, res = _request(srv.url(), "predict", _body(_as_drawing(img)))
            assert status == 200 and res["status"] == "ok"
            assert res["device_class"] == res["host_class"]
            assert res["device_outputs"] == res["host_outputs"]  # int8: the same integers
            assert 100_000 < res["latency"]["instructions"] < 1_500_000  # the CNN's device budget (issue 10)
            right += res["device_class"] == label
        assert right >= 18
        status, dev = _request(srv.url(), "device")
        assert dev["target"] == "qemu" and dev["ticks_count"] == "instructions" and dev["tick_hz"] > 0
    finally:
        srv.close()
        link.close()


@pytest.mark.qemu
def test_dead_emulator_is_restarted_and_the_page_is_told(cnn_env, mnist):
    link = draw.QemuLink(cnn_env.elf, cnn_env.qemu_machine)
    link.start()
    rec = draw.Recogniser(link, cnn_env.model_onnx)
    srv = draw.serve(rec, {"env": ENV}, port=0)
    body = _body(_as_drawing(mnist[0][0]))
    try:
        link.qemu.proc.kill()  # by the next request
        link.qemu.proc.wait()
        t0 = time.monotonic()
        status, res = _request(srv.url(), "predict", body)
        assert status == 200 and res["device_class"] == mnist[1][0], res
        assert "restarted" in res["notice"] and "killed by signal 9" in res["notice"]
        assert time.monotonic() - t0 < 10
        assert _request(srv.url(), "predict", body)[1]["notice"] is None  # said once
        link.watch()  # by the watchdog, before anyone asks
        link.qemu.proc.kill()
        deadline = time.monotonic() + 10
        while link.restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert link.restarts == 2 and link.qemu.alive()
        assert "restarted" in _request(srv.url(), "device")[1]["status"]
        assert "restarted" in _request(srv.url(), "predict", body)[1]["notice"]
    finally:
        srv.close()
        link.close()


@pytest.mark.qemu
def test_dead_board_is_a_503_and_retry_reconnects(cnn_env, mnist, tmp_path):
    """A 'board' on a serial URL (the firmware in a QEMU we start by hand on a fixed port):
    when it goes away the page gets a 503 with a retry; once it is back, the retry works."""
    from mnist_mcu.qemu import Qemu, free_port

    port = free_port()
    elf = shutil.copy2(cnn_env.elf, tmp_path / "firmware.elf")  # the same firmware for both boots
    cmd = Qemu(elf, cnn_env.qemu_machine).command(port)

    def board():
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        return proc

    proc = board()
    link = draw.SerialLink(f"socket://127.0.0.1:{port}")
    body = _body(_as_drawing(mnist[0][0]))
    srv = None
    try:
        link.start()
        srv = draw.serve(draw.Recogniser(link, cnn_env.model_onnx), {"env": ENV}, port=0)
        assert _request(srv.url(), "predict", body)[0] == 200
        # the unit is the one INFO names: this "board" is an emulator and says so
        assert "instructions" in _request(srv.url(), "predict", body)[1]["latency"]["text"]
        proc.kill()
        proc.wait()
        status, res = _request(srv.url(), "predict", body)
        assert status == 503 and res["retry"] is True and "does not answer" in res["error"], res
        status, res = _request(srv.url(), "predict", body)  # still gone: still a clear 503
        assert status == 503 and "cannot be reached" in res["error"], res
        proc = board()
        status, res = _request(srv.url(), "predict", body)  # the page's Retry
        assert status == 200 and res["device_class"] == mnist[1][0]
    finally:
        if srv:
            srv.close()
        link.close()
        proc.kill()
        proc.wait()
