// The fake's dashboard: the journal live (Server-Sent Events read with fetch, so the admin token
// travels in a header), fault rules, the client's grade and charts. Plain JS, no dependency.
// Everything the fake reports is untrusted text: it only ever reaches the page as textContent.
"use strict";

const TOKEN_KEY = "mock_server.admin_token";
const MAX_ROWS = 200;          // the request table never holds more rows than this
const RENDER_MS = 250;         // events are batched and drawn at most four times a second
const WINDOW_S = 60;           // the charts' time span
const RULES_MS = 2000;
const GRADE_MS = 10000;
const MAX_SESSIONS = 8;

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  lastId: null,
  retryMs: 1000,
  incoming: [],
  rows: 0,
  seen: 0,
  paused: false,
  filter: {},
  buckets: new Map(),   // second -> counts
  skew: null,           // server clock minus ours, seconds
  sessions: new Map(),  // session -> last seen (ms), for the grade panel
  rules: [],
  stats: {},
  presets: {},
  editing: null,
  locked: false,
};
let streamCtl = null;
const rowEntry = new WeakMap();

// -- the admin API ------------------------------------------------------------------------------

class Locked extends Error {}

async function api(method, path, body, asText) {
  const headers = {};
  if (state.token) headers["X-Admin-Token"] = state.token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = asText ? "text/plain; charset=utf-8" : "application/json";
    init.body = asText ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) { askToken(state.token ? "That token was refused." : ""); throw new Locked(); }
  let data = null;
  if ((resp.headers.get("content-type") || "").includes("json")) data = await resp.json();
  else if (resp.status !== 204) data = await resp.text();
  return { status: resp.status, ok: resp.ok, data };
}

function errorText(data) {
  if (data && data.error) return data.error.message;
  return typeof data === "string" ? data : "unexpected answer";
}

// -- the token ----------------------------------------------------------------------------------

// A refused call locks the page until a token is given; the header's button only offers to change it.
function askToken(message, optional) {
  if (!optional) {
    state.locked = true;
    setConn("locked", "admin token needed");
  }
  $("token-cancel").hidden = !optional;
  $("token-error").textContent = message || "";
  $("token-dialog").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token-input").value;
  if (!token) { $("token-error").textContent = "Enter the token the fake was started with."; return; }
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("token-dialog").hidden = true;
  state.locked = false;
  start();
});
$("token-button").addEventListener("click", () => askToken("", !state.locked));
$("token-cancel").addEventListener("click", () => { $("token-dialog").hidden = true; });

// -- the event stream ---------------------------------------------------------------------------

function setConn(s, text) { const el = $("conn"); el.dataset.state = s; el.textContent = text || s; }

async function connect() {
  if (streamCtl) streamCtl.abort();
  const ctl = streamCtl = new AbortController();
  const headers = { Accept: "text/event-stream" };
  if (state.token) headers["X-Admin-Token"] = state.token;
  let url = "/__admin/events";
  // A first connection replays the newest requests; a reconnection resumes where it stopped.
  if (state.lastId !== null) headers["Last-Event-ID"] = state.lastId;
  else url += "?limit=" + MAX_ROWS;
  setConn("connecting");
  try {
    const resp = await fetch(url, { headers, signal: ctl.signal, cache: "no-store" });
    if (resp.status === 401) { askToken(state.token ? "That token was refused." : ""); return; }
    if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
    setConn("live");
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      if (buf.indexOf("\r") >= 0) buf = buf.replace(/\r\n?/g, "\n");
      const blocks = buf.split("\n\n");
      buf = blocks.pop();
      for (const block of blocks) onBlock(block);
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
  }
  if (ctl.signal.aborted || state.locked) return;
  setConn("offline", "reconnecting");
  setTimeout(() => { if (streamCtl === ctl) connect(); }, state.retryMs);
}

function onBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line[0] === ":") continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "id") state.lastId = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) state.retryMs = Math.max(250, +value);
  }
  if (!data.length) return;
  if (event === "message") state.incoming.push(JSON.parse(data.join("\n")));
}

// -- filtering like the journal -----------------------------------------------------------------

function globToRegExp(glob) {
  let re = "^";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const j = glob.indexOf("]", i + 2);
      if (j < 0) { re += "\\["; continue; }
      let body = glob.slice(i + 1, j).replace(/\\/g, "\\\\");
      if (body[0] === "!") body = "^" + body.slice(1);
      re += "[" + body + "]";
      i = j;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(re + "$", "s");
}

function compileFilter(f) {
  const path = f.path ? globToRegExp(f.path) : null;
  const status = f.status ? f.status.toLowerCase() : null;
  return (e) => {
    if (f.session && e.session !== f.session) return false;
    if (path && !path.test(e.path)) return false;
    if (status) {
      if (e.status === null) return false;
      if (status.endsWith("xx") ? String(e.status)[0] !== status[0] : String(e.status) !== status) return false;
    }
    if (f.fault) {
      if (f.fault === "none") { if (e.fault !== null || e.rules.length) return false; }
      else if (e.fault !== f.fault && !e.rules.includes(f.fault)) return false;
    }
    return true;
  };
}
let matches = compileFilter({});

function clearFieldErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
}

// Show each {loc, msg} next to the field whose data-loc names it (or the nearest parent loc);
// the ones no field claims are returned.
function showFieldErrors(form, details, prefix) {
  const left = [];
  for (const d of details || []) {
    let loc = (d.loc || []).slice(prefix || 0).map(String);
    let field = null;
    while (!field) {
      const key = loc.join(".");
      field = [...form.querySelectorAll("[data-loc]")].find((el) => el.dataset.loc.split(" ").includes(key)) || null;
      if (field || !loc.length) break;
      loc = loc.slice(0, -1);
    }
    if (!field) { left.push(d); continue; }
    field.classList.add("invalid");
    const slot = field.parentElement.querySelector(".field-error");
    slot.textContent = d.msg;
  }
  return left;
}

let filterTimer = null;
$("filters").addEventListener("input", () => { clearTimeout(filterTimer); filterTimer = setTimeout(applyFilter, 300); });
$("filters").addEventListener("submit", (ev) => ev.preventDefault());

async function applyFilter() {
  const form = $("filters");
  const f = {};
  for (const name of ["session", "path", "status", "fault"]) {
    const v = form.elements[name].value.trim();
    if (v) f[name] = v;
  }
  clearFieldErrors(form);
  // The journal validates the filter (and answers with what it already holds).
  const query = new URLSearchParams({ ...f, limit: String(MAX_ROWS) });
  let res;
  try { res = await api("GET", "/__admin/requests?" + query); } catch (e) { return; }
  if (!res.ok) { showFieldErrors(form, res.data && res.data.error && res.data.error.details); return; }
  state.filter = f;
  matches = compileFilter(f);
  $("requests-body").textContent = "";
  state.rows = 0;
  const history = res.data.requests.filter((e) => e.completed);
  addRows(history.slice(-MAX_ROWS));
}

$("pause").addEventListener("click", () => {
  state.paused = !state.paused;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
});

// -- batched rendering --------------------------------------------------------------------------

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function statusClass(e) {
  if (e.status === null) return "sx";
  if (e.status === 429) return "s429";
  return "s" + String(e.status)[0];
}

function timeOf(e) {
  const d = new Date(e.arrived_at * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function rowFor(e) {
  const tr = document.createElement("tr");
  tr.dataset.seq = e.seq;
  cell(tr, e.seq, "num");
  cell(tr, timeOf(e));
  cell(tr, e.method);
  cell(tr, e.query ? e.path + "?" + e.query : e.path, "wrap");
  cell(tr, e.status === null ? e.outcome : e.status, statusClass(e));
  cell(tr, e.fault);
  cell(tr, e.rule || (e.rules.length ? e.rules.join(", ") : null));
  cell(tr, e.duration_ms === null ? null : e.duration_ms.toFixed(1), "num");
  cell(tr, e.session);
  cell(tr, e.tenant);
  rowEntry.set(tr, e);
  return tr;
}

// Newest first, at most MAX_ROWS rows whatever the rate: new rows go on top, old ones drop off.
function addRows(entries) {
  if (!entries.length) return;
  const body = $("requests-body");
  const frag = document.createDocumentFragment();
  const start = Math.max(0, entries.length - MAX_ROWS);
  for (let i = entries.length - 1; i >= start; i--) frag.appendChild(rowFor(entries[i]));
  body.insertBefore(frag, body.firstChild);
  state.rows += entries.length - start;
  while (state.rows > MAX_ROWS) { body.lastChild.remove(); state.rows--; }
  $("shown").textContent = state.rows + " shown (newest first, at most " + MAX_ROWS + ")";
}

function bucketOf(sec) {
  let b = state.buckets.get(sec);
  if (!b) {
    b = { s2: 0, s3: 0, s4: 0, s429: 0, s5: 0, sx: 0, n: 0, injected: 0, actual: 0 };
    state.buckets.set(sec, b);
  }
  return b;
}

function account(e) {
  const finished = e.arrived_at + (e.duration_ms || 0) / 1000;
  const skew = finished - Date.now() / 1000;
  if (state.skew === null || skew > state.skew) state.skew = skew;
  const b = bucketOf(Math.floor(e.arrived_at));
  b[statusClass(e)] += 1;
  b.n += 1;
  b.injected += e.injected_delay_ms || 0;
  b.actual += e.duration_ms || 0;
  if (e.session) {
    // A new client: grade it soon rather than at the next periodic refresh.
    if (!state.sessions.has(e.session) && state.sessions.size < MAX_SESSIONS) gradeSoon();
    state.sessions.delete(e.session);  // re-inserted last: the map stays in recency order
    state.sessions.set(e.session, Date.now());
    if (state.sessions.size > 1000) state.sessions.delete(state.sessions.keys().next().value);
  }
}

let gradeTimer = null;
function gradeSoon() {
  if (gradeTimer === null) gradeTimer = setTimeout(() => { gradeTimer = null; refreshGrade(); }, 1000);
}

const pendingRows = [];
let tableDrawn = 0;

function render() {
  const batch = state.incoming;
  if (batch.length) {
    state.incoming = [];
    state.seen += batch.length;
    for (const e of batch) account(e);
    if (!state.paused) {
      for (const e of batch) if (matches(e)) pendingRows.push(e);
      if (pendingRows.length > MAX_ROWS) pendingRows.splice(0, pendingRows.length - MAX_ROWS);
    }
    $("seen").textContent = state.seen;
  }
  // Under a flood (a table's worth of new rows per batch) the table is redrawn once a second:
  // nobody reads faster, and the page stays responsive.
  const flood = pendingRows.length >= MAX_ROWS / 2;
  if (pendingRows.length && (!flood || Date.now() - tableDrawn >= 1000)) {
    addRows(pendingRows.splice(0));
    tableDrawn = Date.now();
  }
  const now = serverNow();
  const last = state.buckets.get(Math.floor(now) - 1);
  $("rate").textContent = last ? last.n : 0;
  for (const sec of state.buckets.keys()) if (sec < now - WINDOW_S - 2) state.buckets.delete(sec);
  if (!render.drawn || Date.now() - render.drawn >= (batch.length ? 500 : 1000)) {
    drawCharts(now);
    render.drawn = Date.now();
  }
}

function serverNow() { return Date.now() / 1000 + (state.skew || 0); }

// -- charts on canvas ---------------------------------------------------------------------------

const STATUS_SERIES = [
  ["s2", "2xx", "#3fb950"], ["s3", "3xx", "#58a6ff"], ["s4", "4xx", "#d29922"],
  ["s429", "429", "#bc8cff"], ["s5", "5xx", "#f85149"], ["sx", "no response", "#8b949e"],
];
const RULE_COLOURS = ["#f85149", "#d29922", "#bc8cff", "#58a6ff", "#3fb950", "#ff7b72", "#79c0ff", "#e3b341"];

function canvasContext(id) {
  const canvas = $(id);
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400, h = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function axes(ctx, w, h, max, unit) {
  const left = 40, bottom = h - 16;
  ctx.strokeStyle = "#2a313b";
  ctx.fillStyle = "#8a94a3";
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = bottom - f * (bottom - 6);
    ctx.beginPath(); ctx.moveTo(left, y + 0.5); ctx.lineTo(w, y + 0.5); ctx.stroke();
    const label = max * f;
    ctx.fillText((label >= 100 ? label.toFixed(0) : +label.toPrecision(2)) + (unit || ""), 2, y + 4);
  }
  ctx.fillText("-" + WINDOW_S + " s", left, h - 3);
  ctx.fillText("now", w - 22, h - 3);
  return { left, bottom, top: 6 };
}

function seconds(now) {
  const out = [];
  const end = Math.floor(now) - 1;  // the current second is still filling
  for (let s = end - WINDOW_S + 1; s <= end; s++) out.push(state.buckets.get(s) || null);
  return out;
}

function legend(id, items) {
  const box = $(id);
  const key = items.map((i) => i[0] + i[1]).join("|");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.textContent = "";
  for (const [label, colour] of items) {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = colour;
    span.appendChild(sw);
    span.appendChild(document.createTextNode(label));
    box.appendChild(span);
  }
}

function lines(id, now, series, unit) {
  const { ctx, w, h } = canvasContext(id);
  const secs = seconds(now);
  let max = 0;
  for (const [, fn] of series) for (const b of secs) if (b) max = Math.max(max, fn(b));
  max = niceMax(max);
  const { left, bottom, top } = axes(ctx, w, h, max, unit);
  const dx = (w - left) / (secs.length - 1);
  for (const [, fn, colour] of series) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    secs.forEach((b, i) => {
      const v = b ? fn(b) : 0;
      const x = left + i * dx, y = bottom - (v / max) * (bottom - top);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function drawCharts(now) {
  // Requests/s by status: stacked areas.
  {
    const { ctx, w, h } = canvasContext("chart-status");
    const secs = seconds(now);
    const max = niceMax(Math.max(0, ...secs.map((b) => (b ? b.n : 0))));
    const { left, bottom, top } = axes(ctx, w, h, max, "");
    const dx = (w - left) / (secs.length - 1);
    const base = secs.map(() => 0);
    for (const [key, , colour] of STATUS_SERIES) {
      const upper = secs.map((b, i) => base[i] + (b ? b[key] : 0));
      ctx.fillStyle = colour;
      ctx.globalAlpha = 0.75;
      ctx.beginPath();
      upper.forEach((v, i) => { const x = left + i * dx, y = bottom - (v / max) * (bottom - top); if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y); });
      for (let i = secs.length - 1; i >= 0; i--) ctx.lineTo(left + i * dx, bottom - (base[i] / max) * (bottom - top));
      ctx.closePath();
      ctx.fill();
      ctx.globalAlpha = 1;
      upper.forEach((v, i) => { base[i] = v; });
    }
    legend("legend-status", STATUS_SERIES.map(([, label, colour]) => [label, colour]));
  }
  const latency = [
    ["injected", (b) => (b.n ? b.injected / b.n : 0), "#d29922"],
    ["actual", (b) => (b.n ? b.actual / b.n : 0), "#58a6ff"],
  ];
  lines("chart-latency", now, latency, "");
  legend("legend-latency", latency.map(([l, , c]) => [l, c]));
  lines("chart-429", now, [["429", (b) => b.s429, "#bc8cff"]], "");
  legend("legend-429", [["429 responses/s", "#bc8cff"]]);
  drawRuleBars();
}

function drawRuleBars() {
  const { ctx, w, h } = canvasContext("chart-rules");
  const bars = state.rules.map((r, i) => [r.id, (state.stats[r.id] || {}).fired || 0, RULE_COLOURS[i % RULE_COLOURS.length]])
    .sort((a, b) => b[1] - a[1]).slice(0, 6);
  if (!bars.length) {
    ctx.fillStyle = "#8a94a3";
    ctx.fillText("no rules", 8, 20);
    legend("legend-rules", []);
    return;
  }
  const max = niceMax(Math.max(...bars.map((b) => b[1])));
  const rowH = Math.min(22, (h - 4) / bars.length);
  const left = Math.min(150, w * 0.4);
  bars.forEach(([id, n, colour], i) => {
    const y = 2 + i * rowH;
    ctx.fillStyle = "#8a94a3";
    ctx.fillText(id.length > 22 ? id.slice(0, 21) + "…" : id, 2, y + rowH * 0.65);
    ctx.fillStyle = colour;
    const bw = ((w - left - 50) * n) / max;
    ctx.fillRect(left, y + 3, Math.max(1, bw), rowH - 6);
    ctx.fillStyle = "#d8dee6";
    ctx.fillText(String(n), left + bw + 4, y + rowH * 0.65);
  });
  legend("legend-rules", [["total injected since the rule was loaded", "#8a94a3"]]);
}

// -- rules --------------------------------------------------------------------------------------

function describeWhen(r) {
  const parts = [];
  const m = r.match || {};
  if (m.method) parts.push([].concat(m.method).join("|"));
  parts.push(m.path || "*");
  if (m.session) parts.push("session " + m.session);
  if (m.tenant) parts.push("tenant " + m.tenant);
  if (r.probability !== undefined && r.probability !== null) parts.push("p=" + r.probability);
  if (r.every_nth) parts.push("every " + r.every_nth + "th");
  if (r.after) parts.push("after " + r.after);
  if (r.times) parts.push(r.times + " times");
  if (r.window) parts.push("from " + r.window.start_s + " s for " + r.window.duration_s + " s");
  return parts.join(" ");
}

function describeFault(r) {
  const f = r.fault;
  if (!f) return "sequence of " + (r.sequence || []).length;
  const extra = Object.entries(f).filter(([k]) => k !== "type").map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v));
  return [f.type, ...extra].join(" ");
}

function button(label, onClick, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

async function refreshRules() {
  if (state.locked) return;
  let res;
  try { res = await api("GET", "/__admin/faults"); } catch (e) { return; }
  if (!res.ok) return;
  state.rules = res.data.rules;
  state.stats = res.data.stats || {};
  $("seed").textContent = res.data.seed;
  const body = $("rules-body");
  body.textContent = "";
  for (const r of state.rules) {
    const tr = document.createElement("tr");
    tr.dataset.rule = r.id;
    // A disabled rule keeps its row, place and counters; it is shown greyed.
    const enabled = r.enabled !== false;
    if (!enabled) {
      tr.classList.add("off");
      tr.title = "disabled: matches nothing until enabled";
    }
    const st = state.stats[r.id] || { matched: 0, fired: 0 };
    cell(tr, r.id);
    cell(tr, describeWhen(r), "wrap");
    cell(tr, describeFault(r), "wrap");
    cell(tr, st.matched, "num");
    cell(tr, st.fired, "num");
    const td = document.createElement("td");
    const path = "/__admin/faults/" + encodeURIComponent(r.id);
    td.appendChild(button("Edit", () => editRule(r)));
    td.appendChild(button(enabled ? "Disable" : "Enable", () => ruleAction("PATCH", path, { enabled: !enabled }),
      enabled ? "stop this rule matching, keeping its place and counters" : "let this rule match again"));
    td.appendChild(button("Delete", () => ruleAction("DELETE", path)));
    tr.appendChild(td);
    body.appendChild(tr);
  }
  $("rules-empty").hidden = state.rules.length > 0;
  drawRuleBars();
}

async function ruleAction(method, path, body) {
  $("rules-error").textContent = "";
  let res;
  try { res = await api(method, path, body); } catch (e) { return null; }
  if (!res.ok) $("rules-error").textContent = errorText(res.data);
  await refreshRules();
  return res;
}

async function loadPresets() {
  let res;
  try { res = await api("GET", "/__admin/ui/presets"); } catch (e) { return; }
  if (!res.ok) return;
  const box = $("presets");
  for (const el of box.querySelectorAll("button")) el.remove();
  for (const [name, rules] of Object.entries(res.data.presets)) {
    box.appendChild(button(name, () => ruleAction("POST", "/__admin/faults", { rules }), "add the " + name + " preset's rules"));
  }
}

function formNumber(form, name) {
  const raw = form.elements[name].value.trim();
  if (raw === "") return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;  // not a number: the parser names the field
}

$("rule-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  clearFieldErrors(form);
  $("form-error").textContent = "";
  const rule = { fault: { type: form.elements.type.value } };
  const id = form.elements.id.value.trim();
  if (id) rule.id = id;
  const match = {};
  if (form.elements.method.value) match.method = form.elements.method.value;
  if (form.elements.path.value.trim()) match.path = form.elements.path.value.trim();
  if (Object.keys(match).length) rule.match = match;
  for (const name of ["probability", "every_nth", "times"]) {
    const v = formNumber(form, name);
    if (v !== undefined) rule[name] = v;
  }
  for (const name of ["status", "retry_after", "hang_s", "fraction", "bytes_per_s"]) {
    const v = formNumber(form, name);
    if (v !== undefined) rule.fault[name] = v;
  }
  const delay = formNumber(form, "delay_ms");
  if (delay !== undefined) {
    if (rule.fault.type === "latency") rule.fault.fixed_ms = delay;
    else rule.fault.latency = { fixed_ms: delay };
  }
  const res = await ruleAction("POST", "/__admin/faults", rule);
  if (!res) return;
  $("rules-error").textContent = "";
  if (res.ok) { form.reset(); return; }
  const left = showFieldErrors(form, res.data && res.data.error && res.data.error.details);
  if (left.length || !(res.data.error && res.data.error.details)) $("form-error").textContent = errorText(res.data);
});

function editRule(r) {
  state.editing = r.id;
  $("paste-box").open = true;
  $("paste-title").textContent = "Edit rule " + r.id + " (JSON or YAML)";
  $("paste").value = JSON.stringify(r, null, 2);
  $("paste-submit").textContent = "Save";
  $("paste-cancel").hidden = false;
  $("paste-errors").textContent = "";
  $("paste").focus();
}

function stopEditing() {
  state.editing = null;
  $("paste-title").textContent = "Add rules as YAML or JSON";
  $("paste-submit").textContent = "Add";
  $("paste-cancel").hidden = true;
}
$("paste-cancel").addEventListener("click", () => { stopEditing(); $("paste").value = ""; });

function pasteErrors(items) {
  const list = $("paste-errors");
  list.textContent = "";
  for (const text of items) {
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
  }
  $("paste").classList.toggle("invalid", items.length > 0);
}

$("paste-submit").addEventListener("click", async () => {
  const text = $("paste").value;
  pasteErrors([]);
  if (!text.trim()) { pasteErrors(["Paste a rule, a list of rules or {rules: [...]}."]); return; }
  let value;
  try { value = JSON.parse(text); } catch (notJson) {
    let res;
    try { res = await api("POST", "/__admin/ui/yaml", text, true); } catch (e) { return; }
    if (!res.ok) { pasteErrors([errorText(res.data)]); return; }
    value = res.data.value;
  }
  if (Array.isArray(value)) value = { rules: value };
  let res;
  if (state.editing) res = await ruleAction("PUT", "/__admin/faults/" + encodeURIComponent(state.editing), value);
  else res = await ruleAction("POST", "/__admin/faults", value);
  if (!res) return;
  $("rules-error").textContent = "";
  if (res.ok) { $("paste").value = ""; stopEditing(); return; }
  const details = res.data && res.data.error && res.data.error.details;
  pasteErrors(details ? details.map((d) => (d.loc.length ? d.loc.join(".") + ": " : "") + d.msg) : [errorText(res.data)]);
});

// -- the client's grade -------------------------------------------------------------------------

function sessionOptions() {
  const select = $("grade-session");
  const chosen = select.value;
  const recent = [...state.sessions.keys()].reverse().slice(0, 50);
  if (chosen && !recent.includes(chosen)) recent.push(chosen);
  const wanted = ["", ...recent];
  const current = [...select.options].map((o) => o.value);
  if (wanted.join("\n") !== current.join("\n")) {
    select.textContent = "";
    for (const s of wanted) {
      const opt = document.createElement("option");
      opt.value = s;
      opt.textContent = s || "all sessions";
      select.appendChild(opt);
    }
    select.value = chosen;
  }
  return recent.slice(0, MAX_SESSIONS);
}

async function refreshGrade() {
  if (state.locked) return;
  const recent = sessionOptions();
  const session = $("grade-session").value;
  let res;
  try { res = await api("GET", "/__admin/compliance" + (session ? "?session=" + encodeURIComponent(session) : "")); } catch (e) { return; }
  if (!res.ok) return;
  const r = res.data;
  $("verdict").textContent = r.verdict;
  $("verdict").dataset.verdict = r.verdict;
  $("score").textContent = r.score + "%";
  $("grade-requests").textContent = r.requests;
  const list = $("findings");
  list.textContent = "";
  for (const f of r.findings) {
    const li = document.createElement("li");
    const head = document.createElement("div");
    const sev = document.createElement("b");
    sev.className = "sev-" + f.severity;
    sev.textContent = f.severity + " " + f.kind;
    head.appendChild(sev);
    head.appendChild(document.createTextNode(" — " + f.message + " (" + f.count + ")"));
    li.appendChild(head);
    const refs = document.createElement("div");
    refs.className = "refs";
    for (const req of f.requests) {
      const a = document.createElement("a");
      a.href = "#request-" + req.seq;
      a.textContent = "#" + req.seq;
      a.title = req.request_id;
      a.addEventListener("click", (ev) => { ev.preventDefault(); showRequestById(req.seq, req.request_id); });
      refs.appendChild(a);
    }
    li.appendChild(refs);
    list.appendChild(li);
  }
  if (!r.findings.length) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = r.requests ? "No findings." : "No requests yet.";
    list.appendChild(li);
  }
  const body = $("sessions-body");
  const rows = [];
  for (const s of recent) {
    let sr;
    try { sr = await api("GET", "/__admin/compliance?session=" + encodeURIComponent(s)); } catch (e) { return; }
    if (sr.ok) rows.push([s, sr.data]);
  }
  body.textContent = "";
  for (const [s, d] of rows) {
    const tr = document.createElement("tr");
    cell(tr, s);
    cell(tr, d.verdict, d.verdict === "pass" ? "s2" : "s5");
    cell(tr, d.score + "%", "num");
    cell(tr, d.requests, "num");
    tr.addEventListener("click", () => { $("grade-session").value = s; refreshGrade(); });
    body.appendChild(tr);
  }
}
$("grade-refresh").addEventListener("click", refreshGrade);
$("grade-session").addEventListener("change", refreshGrade);

// -- request details ----------------------------------------------------------------------------

function showDetails(e) {
  $("details-title").textContent = "#" + e.seq;
  const table = $("details-table");
  table.textContent = "";
  for (const [k, v] of Object.entries(e)) {
    const tr = document.createElement("tr");
    cell(tr, k);
    cell(tr, v === null ? null : typeof v === "object" ? JSON.stringify(v) : v);
    table.appendChild(tr);
  }
  $("details").hidden = false;
  for (const tr of document.querySelectorAll(".requests tr.selected")) tr.classList.remove("selected");
  const row = document.querySelector('.requests tr[data-seq="' + Number(e.seq) + '"]');
  if (row) row.classList.add("selected");
}

async function showRequestById(seq, requestId) {
  const row = document.querySelector('.requests tr[data-seq="' + Number(seq) + '"]');
  if (row && rowEntry.get(row)) { showDetails(rowEntry.get(row)); return; }
  let res;
  try { res = await api("GET", "/__admin/requests?request_id=" + encodeURIComponent(requestId)); } catch (e) { return; }
  const found = res.ok ? res.data.requests.find((e) => e.seq === seq) : null;
  if (found) showDetails(found);
}

$("requests-body").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr");
  if (tr && rowEntry.get(tr)) showDetails(rowEntry.get(tr));
});
$("details-close").addEventListener("click", () => { $("details").hidden = true; });

// -- start --------------------------------------------------------------------------------------

let timers = [];
function start() {
  for (const t of timers) clearInterval(t);
  timers = [
    setInterval(render, RENDER_MS),
    setInterval(refreshRules, RULES_MS),
    setInterval(refreshGrade, GRADE_MS),
  ];
  refreshRules().then(() => {
    if (state.locked) return;
    loadPresets();
    refreshGrade();
    connect();
  });
}
start();
