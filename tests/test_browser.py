"""The draw page in a real browser (Debian's chromium, headless, over the DevTools protocol)
against the real CNN firmware under QEMU. Digits are drawn with pointer events along
strokes made from MNIST test digits (skeleton -> ordered strokes, web/strokes.py).
Screenshots go to a temporary folder (printed at the end)."""

import shutil
import time

import numpy as np
import pytest
from mnist_mcu import data, draw
from mnist_mcu.web.strokes import digit_strokes, skeleton_paths, thin

ENV = "qemu_f405_cnn_int8"
PER_CLASS = 20  # the first 20 test digits of every class, in test-set order: 200 drawings
DELAY_MS = 20  # the page's pause after the last stroke (?delay=); a person gets 300 ms

# Resolves once the page has answered the drawing made of `n` strokes (or gave up).
WAIT = """new Promise(done => {
  const t0 = performance.now(), $ = id => document.getElementById(id);
  (function check() {
    const s = window.drawState;
    if (s.strokes >= %(n)d && !s.timer && s.done === s.seq && (s.result || s.error)) {
      const rows = $("probs").tBodies[0].rows.length;
      done({result: s.result, error: s.error, dev: $("dev-answer").textContent, host: $("host-answer").textContent,
            message: $("message").textContent, latency: $("latency").textContent, rows,
            notice: $("notice").hidden ? "" : $("notice").textContent,
            errorShown: !$("error").hidden, retryShown: !$("retry").hidden});
    } else if (performance.now() - t0 > %(ms)d) done(null);
    else setTimeout(check, 5);
  })();
})"""

PAGE_STATE = """(() => {
  const $ = id => document.getElementById(id);
  const blank = id => { const c = $(id), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                        for (let i = 0; i < d.length; i++) if (d[i]) return false; return true; };
  return {dev: $("dev-answer").textContent, host: $("host-answer").textContent, message: $("message").textContent,
          latency: $("latency").textContent, rows: $("probs").tBodies[0].rows.length,
          previewBlank: blank("preview"), padBlank: blank("pad"), overlayBlank: blank("overlay"),
          hint: !$("hint").hidden, errorShown: !$("error").hidden, result: window.drawState.result};
})()"""

PREVIEW = """(() => { const c = document.getElementById("preview"),
  d = c.getContext("2d").getImageData(0, 0, 28, 28).data;
  const out = []; for (let i = 0; i < d.length; i += 4) out.push(d[i]); return out; })()"""


# ---------------------------------------------------------------------- strokes (no browser)

def test_thinning_leaves_a_one_pixel_line():
    bar = np.zeros((20, 30), bool)
    bar[8:13, 3:27] = True
    skel = thin(bar)
    assert skel.sum() >= 15 and skel.sum(axis=0).max() == 1  # one pixel per column
    paths = skeleton_paths(skel)
    assert len(paths) == 1 and len(paths[0]) == skel.sum()


def test_digit_strokes_follow_the_digit(mnist_dir):
    images, labels = data.load_mnist("test", mnist_dir)
    one = images[np.nonzero(labels == 1)[0][0]]
    zero = images[np.nonzero(labels == 0)[0][0]]
    assert len(digit_strokes(one)) == 1
    strokes = digit_strokes(zero)
    assert len(strokes) == 1 and np.hypot(*np.subtract(strokes[0][0], strokes[0][-1])) < 40  # a closed loop
    for s in strokes:
        assert all(0 <= x <= 280 and 0 <= y <= 280 for x, y in s)
    assert digit_strokes(np.zeros((28, 28), np.uint8)) == []


# ---------------------------------------------------------------------- the page

class Page:
    def __init__(self, browser, server, link, shots):
        self.b, self.server, self.link, self.shots = browser, server, link, shots

    def draw_and_wait(self, strokes, pointer="mouse", wait_ms=15_000):
        self.b.click("#clear")
        self.b.draw(strokes, pointer=pointer)
        return self.b.evaluate(WAIT % {"n": len(strokes), "ms": wait_ms})

    def shot(self, name):
        self.b.screenshot(self.shots / f"{name}.png")


@pytest.fixture(scope="module")
def page(require_qemu, mnist_dir, tmp_path_factory):
    from mnist_mcu import firmware
    from mnist_mcu.web.browser import Chromium

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (bash tools/setup.sh installs it: apt-get install chromium)")
    env = firmware.get_env(ENV)
    shots = tmp_path_factory.mktemp("screenshots")
    link = draw.QemuLink(firmware.build(env), env.qemu_machine)  # copies the ELF it will restart
    link.start()
    server = browser = None
    try:
        rec = draw.Recogniser(link, env.model_onnx, int8_dir=env.model_dir,
                              reject_threshold=draw.reject_threshold_for(env.model_onnx))
        server = draw.serve(rec, {"env": ENV}, port=0)
        browser = Chromium(width=1100, height=700, profile_dir=tmp_path_factory.mktemp("chromium-profile"))
        browser.open(server.url() + f"?delay={DELAY_MS}")
        yield Page(browser, server, link, shots)
    finally:
        if browser:
            browser.close()
        if server:
            server.close()
        link.close()
        print(f"\nscreenshots of the draw page: {shots}")


@pytest.mark.qemu
def test_drawn_digits_device_agrees_with_host_and_is_accurate(page, mnist_dir):
    images, labels = data.load_mnist("test", mnist_dir)
    chosen = np.concatenate([np.nonzero(labels == c)[0][:PER_CLASS] for c in range(10)])
    right = agree = rejected = 0
    wrong = []
    t0 = time.monotonic()
    for k, idx in enumerate(chosen):
        strokes = digit_strokes(images[idx])
        pointer = "pen" if k % 10 == 5 else "mouse"  # pen events through the same handlers
        got = page.draw_and_wait(strokes, pointer)
        assert got is not None, f"test image {idx}: no answer within 15 s"
        assert got["error"] is None, f"test image {idx}: {got['error']}"
        res = got["result"]
        assert res["status"] in ("ok", "reject"), res["status"]
        # the page shows both answers and all probabilities, in instructions on the emulator
        assert got["host"] == str(res["host_class"]) and got["rows"] == 10
        assert got["dev"] == (str(res["device_class"]) if res["status"] == "ok" else "?")
        assert "instructions" in got["latency"]
        assert res["device_class"] == res["host_class"], f"test image {idx}: device and host disagree"
        assert res["device_outputs"] == res["host_outputs"]  # int8: bit-exact with its host build
        agree += 1
        rejected += res["status"] == "reject"
        if res["device_class"] == labels[idx]:
            right += 1
        else:
            wrong.append((int(idx), int(labels[idx]), res["device_class"]))
        if k % PER_CLASS == 0:
            assert page.b.evaluate(PREVIEW) == res["image"]  # the 28x28 image shown is the one sent
            page.shot(f"digit_{labels[idx]}_test{idx}")
    n = len(chosen)
    accuracy = right / n
    print(f"\ndrawn in the browser: {n} digits ({PER_CLASS} per class), device == host on {agree}, "
          f"accuracy {accuracy:.1%} vs labels, {rejected} 'not a digit', {time.monotonic() - t0:.0f} s; "
          f"wrong (test index, label, device): {wrong}")
    assert n >= 200 and agree == n
    assert accuracy >= 0.90


@pytest.mark.qemu
def test_touch_drawing(page, mnist_dir):
    images, labels = data.load_mnist("test", mnist_dir)
    for idx in (0, 1, 2):  # a 7, a 2, a 1
        got = page.draw_and_wait(digit_strokes(images[idx]), pointer="touch")
        assert got and got["result"]["status"] == "ok" and got["result"]["device_class"] == labels[idx]


@pytest.mark.qemu
def test_clear_resets_answer_bars_and_preview(page, mnist_dir):
    images, _ = data.load_mnist("test", mnist_dir)
    got = page.draw_and_wait(digit_strokes(images[0]))
    assert got["rows"] == 10 and got["dev"] == "7"
    page.b.click("#clear")
    s = page.b.evaluate(PAGE_STATE)
    assert s["dev"] == s["host"] == "\u2013" and s["rows"] == 0 and s["message"] == "" and s["latency"] == ""
    assert s["previewBlank"] and s["padBlank"] and s["overlayBlank"] and s["hint"] and s["result"] is None
    page.shot("cleared")


@pytest.mark.qemu
def test_empty_and_near_empty_canvas_say_draw_a_digit(page):
    page.b.click("#clear")
    page.b.click("#ask")
    got = page.b.evaluate(WAIT % {"n": 0, "ms": 10_000})
    assert got["result"]["status"] == "empty" and got["message"] == "draw a digit" and got["dev"] == "\u2013"
    got = page.draw_and_wait([[(140, 140), (141, 141)]])  # a dot
    assert got["result"]["status"] == "empty" and got["message"] == "draw a digit" and got["rows"] == 0
    page.shot("near_empty")


@pytest.mark.qemu
def test_reject_rule_shows_not_a_digit(page, mnist_dir):
    images, _ = data.load_mnist("test", mnist_dir)
    rec = page.server.recogniser
    saved, rec.reject_threshold = rec.reject_threshold, 1.01  # nothing is that sure
    try:
        got = page.draw_and_wait(digit_strokes(images[0]))
    finally:
        rec.reject_threshold = saved
    assert got["result"]["status"] == "reject" and got["message"] == "not a digit" and got["dev"] == "?"


@pytest.mark.qemu
def test_device_error_shows_message_and_retry(page, mnist_dir):
    images, _ = data.load_mnist("test", mnist_dir)
    rec = page.server.recogniser
    dead = draw.SerialLink("socket://127.0.0.1:9")  # a board that is not there
    saved, rec.link = rec.link, dead
    try:
        got = page.draw_and_wait(digit_strokes(images[0]))
        assert got["error"]["status"] == 503 and got["errorShown"] and got["retryShown"]
        assert "cannot be reached" in got["error"]["message"]
        page.shot("board_gone")
    finally:
        rec.link = saved
    page.b.click("#retry")
    got = page.b.evaluate(WAIT % {"n": 0, "ms": 10_000})
    assert got["result"]["device_class"] == 7 and not got["errorShown"] and not got["retryShown"]


@pytest.mark.qemu
def test_killed_emulator_recovers_within_10_s(page, mnist_dir):
    images, _ = data.load_mnist("test", mnist_dir)
    restarts = page.link.restarts
    page.link.qemu.proc.kill()
    t0 = time.monotonic()
    got = page.draw_and_wait(digit_strokes(images[0]), wait_ms=10_000)
    elapsed = time.monotonic() - t0
    assert got is not None and got["result"] and got["result"]["status"] == "ok", got
    assert got["result"]["device_class"] == 7 and "restarted" in got["notice"], got["notice"]
    assert elapsed < 10 and page.link.restarts == restarts + 1
    page.shot("emulator_restarted")


@pytest.mark.qemu
def test_phone_width_layout_and_touch(page, mnist_dir):
    images, _ = data.load_mnist("test", mnist_dir)
    b = page.b
    b.viewport(390, 844, mobile=True, scale=2)
    try:
        b.open(page.server.url() + f"?delay={DELAY_MS}")
        pad, answers = b.rect("#pad"), b.rect(".answers")
        assert 300 <= pad["w"] <= 390 and pad["x"] >= 0 and pad["x"] + pad["w"] <= 390
        assert answers["y"] >= pad["y"] + pad["h"]  # one column: the answers below the drawing
        assert b.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
        got = page.draw_and_wait(digit_strokes(images[0]), pointer="touch")
        assert got["result"]["device_class"] == 7
        b.screenshot(page.shots / "phone.png", full_page=True)
    finally:
        b.call("Emulation.clearDeviceMetricsOverride")
        b.viewport(1100, 700)
        b.open(page.server.url() + f"?delay={DELAY_MS}")


def test_screenshots_are_pngs_when_kept(tmp_path):
    """The screenshot helper writes real PNG files (checked without QEMU on a static page)."""
    from mnist_mcu.web.browser import Chromium

    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with Chromium(width=400, height=300, profile_dir=tmp_path / "profile") as b:
        b.open("data:text/html,<h1>hello</h1>")
        b.screenshot(tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
