"use strict";
// Draw with any pointer (mouse, pen, touch); after the last stroke the drawing is sent to
// /predict and the device's and the host's answers are shown side by side.
const $ = id => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d"), overlay = $("overlay").getContext("2d");
const BRUSH = 22;
// ?delay=MS: the pause after the last stroke before the drawing is sent (tests draw fast)
const query = new URLSearchParams(location.search), askDelay = Number(query.get("delay"));
const ASK_DELAY_MS = query.has("delay") && askDelay >= 0 && askDelay <= 2000 ? askDelay : 300;
// What the page is doing, for people reading the code and for the browser test.
const state = window.drawState = { seq: 0, done: 0, timer: null, result: null, error: null, strokes: 0, ink: false };
let pointer = null, last = null, lastBody = null;

function pos(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
function brush() {
  ctx.lineWidth = BRUSH; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#fff";
}
function segment(a, b) { ctx.beginPath(); ctx.moveTo(...a); ctx.lineTo(...b); ctx.stroke(); }

pad.addEventListener("pointerdown", e => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  if (pointer !== null) return;  // one pen at a time; a second finger is ignored
  pointer = e.pointerId;
  try { pad.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
  cancelAsk(); brush(); last = pos(e); segment(last, last);
  state.ink = true; $("hint").hidden = true;
});
pad.addEventListener("pointermove", e => {
  if (e.pointerId !== pointer) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const ev of (events.length ? events : [e])) { const p = pos(ev); segment(last, p); last = p; }
});
function endStroke(e) {
  if (e.pointerId !== pointer) return;
  if (e.type === "pointerup") { const p = pos(e); segment(last, p); }
  pointer = null; state.strokes++;
  scheduleAsk();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
pad.addEventListener("contextmenu", e => e.preventDefault());

function scheduleAsk() { cancelAsk(); state.timer = setTimeout(() => { state.timer = null; ask(); }, ASK_DELAY_MS); }
function cancelAsk() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

$("ask").onclick = () => { cancelAsk(); ask(); };
$("retry").onclick = () => { if (lastBody) send(lastBody); };
$("clear").onclick = clearAll;

function clearAll() {
  cancelAsk();
  state.seq++; state.done = state.seq;  // answers still on their way are dropped
  state.result = null; state.error = null; state.ink = false; state.strokes = 0; pointer = null;
  $("ask").disabled = false;
  ctx.clearRect(0, 0, pad.width, pad.height);
  overlay.clearRect(0, 0, pad.width, pad.height);
  $("hint").hidden = false;
  resetAnswer();
  $("notice").hidden = true;
}

function resetAnswer() {
  $("dev-answer").textContent = "\u2013"; $("host-answer").textContent = "\u2013";
  $("message").textContent = ""; $("latency").textContent = ""; $("float").textContent = "";
  $("probs").tBodies[0].replaceChildren();
  $("error").hidden = true; $("retry").hidden = true;
  for (const id of ["preview", "fitted"]) { const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height); }
  for (const id of ["step-box", "step-scale", "step-offset"]) $(id).textContent = "";
}

function ink() {
  const img = ctx.getImageData(0, 0, pad.width, pad.height).data, n = pad.width * pad.height;
  let s = "";
  for (let i = 0; i < n; i += 8192) {
    const chunk = new Uint8Array(Math.min(8192, n - i));
    for (let j = 0; j < chunk.length; j++) chunk[j] = img[4 * (i + j) + 3];  // alpha = ink
    s += String.fromCharCode.apply(null, chunk);
  }
  return btoa(s);
}

function ask() { send(JSON.stringify({ width: pad.width, height: pad.height, pixels: ink() })); }

async function send(body) {
  lastBody = body;
  const seq = ++state.seq;
  $("ask").disabled = true;
  let status = 0, d;
  try {
    const r = await fetch("/predict", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    status = r.status;
    d = await r.json();
  } catch (err) {
    d = { error: `the server does not answer (${err.message}); is mnist-mcu draw still running?`, retry: true };
  }
  if (seq !== state.seq) return;  // cleared or redrawn meanwhile
  $("ask").disabled = false;
  if (status !== 200) { showError(d, status); } else { show(d); }
  state.done = seq;
}

function showError(d, status) {
  resetAnswer();
  state.result = null; state.error = { status, message: d.error || `HTTP ${status}` };
  $("error").textContent = d.error || `HTTP ${status}`;
  $("error").hidden = false;
  $("retry").hidden = !d.retry;
}

function show(d) {
  resetAnswer();
  state.result = d; state.error = null;
  paint($("preview"), d.image, 28, 28);
  showSteps(d.steps || {});
  if (d.notice) { $("notice").textContent = d.notice; $("notice").hidden = false; }
  if (d.status === "empty") { $("message").textContent = d.message; return; }
  $("dev-answer").textContent = d.status === "reject" ? "?" : d.device_class;
  $("host-answer").textContent = d.host_class;
  $("host-title").textContent = d.host_label;
  $("message").textContent = d.status === "reject" ? d.message : (d.device_class === d.host_class ? "" : "device and host disagree");
  $("latency").textContent = `${d.latency.text} per inference on the device`;
  if (d.float_class !== d.host_class || d.host_label.indexOf("int8") >= 0)
    $("float").textContent = `float model: ${d.float_class} (${d.float_probabilities[d.float_class].toFixed(3)})`;
  const body = $("probs").tBodies[0];
  d.device_probabilities.forEach((p, i) => {
    const h = d.host_probabilities[i], tr = document.createElement("tr");
    if (i === d.device_class) tr.className = "top";
    tr.append(cell(String(i)), bars(p, "dev"), bars(h, "host"));
    body.append(tr);
  });
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function bars(p, kind) {
  const td = cell(""), bar = document.createElement("span");
  td.className = "bars"; bar.className = `bar ${kind}`; bar.style.width = `${Math.round(70 * p)}px`;
  td.append(bar, document.createTextNode(p.toFixed(3)));
  return td;
}

function paint(canvas, pixels, w, h) {
  const c = canvas.getContext("2d"), im = c.createImageData(w, h);
  pixels.forEach((v, i) => im.data.set([v, v, v, 255], 4 * i));
  c.putImageData(im, 0, 0);
}

function showSteps(s) {
  overlay.clearRect(0, 0, pad.width, pad.height);
  if (!s.box) return;
  const [top, left, h, w] = s.box;
  overlay.setLineDash([6, 4]); overlay.strokeStyle = "#e94"; overlay.lineWidth = 2;
  overlay.strokeRect(left, top, w, h);
  $("step-box").textContent = `${w}\u00d7${h} px at (${left}, ${top})`;
  const [fh, fw] = s.fitted_shape, f = $("fitted");
  f.width = fw; f.height = fh; f.style.width = `${2 * fw}px`; f.style.height = `${2 * fh}px`;
  paint(f, s.fitted, fw, fh);
  $("step-scale").textContent = `${fw}\u00d7${fh} (\u00d7${s.scale})`;
  $("step-offset").textContent = `top-left at row ${s.offset[0]}, column ${s.offset[1]}`;
}

async function describe() {
  try {
    const d = await (await fetch("/device")).json();
    const unit = d.target === "qemu" ? "latency in executed instructions (emulator)"
      : `latency in \u00b5s and cycles at ${(d.cpu_hz / 1e6).toFixed(0)} MHz`;
    $("device").textContent = `${d.env}: ${d.board}, ${d.backend} ${d.dtype} \u00b7 ${unit}` +
      (d.status && d.status !== "ready" ? ` \u00b7 ${d.status}` : "");
    $("host-title").textContent = d.host_label || "";
  } catch (_) {
    $("device").textContent = "the server does not answer";
  }
}
describe();
setInterval(describe, 5000);
