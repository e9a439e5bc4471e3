// The operator's page: a client of the daemon's JSON API, polled once a second.
// Every value is written with textContent or setAttribute, never parsed as markup: a key or body holding tags
// shows as its characters. The key lives in sessionStorage and is sent as the Bearer header; no cookies.
"use strict";

const KEY = "dispatcher.api_key";
const EVERY = 1000; // ms between polls
const HISTORY = 300; // seconds of throughput shown at most (the daemon keeps 5 minutes)
const MINUTE = 60; // seconds shown at least
const SLOWEST = 30000; // ms between looks at the campaigns at most, however slow they answer
const UNFINISHED = ["queued", "sending", "pending", "claimed", "paused", "scheduled"];
const OUTCOMES = ["delivered", "undelivered", "read", "opened", "clicked"]; // of sent rows: not counted twice
const FAILURES_EVERY = 3000; // ms between looks for new failures
const FAILURES = 10; // the newest shown
const EVENTS = 100; // of a found message, the first shown
const $ = (sel) => document.querySelector(sel);

const state = { key: sessionStorage.getItem(KEY) || "", timer: null, worker: "", campaigns: new Map(),
                providers: new Map(), history: new Map(), nextFailures: 0, nextCampaigns: 0 };

// -- small DOM helpers: text only -------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(text(c)));
  return node;
}

function text(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function setText(node, v) {
  const t = text(v);
  if (node.textContent !== t) node.textContent = t;
}

function number(n, digits = 0) {
  return typeof n === "number" && isFinite(n) ? n.toLocaleString("en", { maximumFractionDigits: digits }) : "—";
}

function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!isFinite(s)) return String(iso);
  return s < 90 ? `${Math.max(0, Math.round(s))} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago`
    : `${Math.round(s / 3600)} h ago`;
}

function duration(s) {
  if (!isFinite(s) || s < 0) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function note(node, msg) { // a sentence, or nothing at all
  if (node.textContent !== msg) node.textContent = msg;
}

function notice(msg, bad = false) {
  const n = $("#notice");
  note(n, msg);
  n.className = bad ? "notice error" : "notice";
}

// -- the API ----------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, cache: "no-store", credentials: "omit",
                                body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  const raw = await r.text();
  if (raw) {
    try { data = JSON.parse(raw); } catch { data = raw; }
  }
  if (r.status === 401 || r.status === 403) signOut(r.status === 403 ? "that key was refused" : "a key is needed");
  return { status: r.status, ok: r.ok, data };
}

function problem(res) {
  const d = res.data;
  if (d && typeof d === "object") return d.detail || d.error || d.title || `HTTP ${res.status}`;
  return `HTTP ${res.status}`;
}

function list(data, name) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[name])) return data[name];
  if (data && Array.isArray(data.items)) return data.items;
  return [];
}

// -- signing in and out -----------------------------------------------------------------------------
async function signIn(key) {
  state.key = key;
  const probe = await api("GET", "/v1/messages/0"); // any answer but 401/403 means the key is good
  if (probe.status === 401 || probe.status === 403) return;
  sessionStorage.setItem(KEY, key);
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#signout").hidden = false;
  note($("#login-error"), "");
  poll();
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  state.key = "";
  clearTimeout(state.timer);
  state.timer = null;
  $("#main").hidden = true;
  $("#signout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = why || "";
  $("input[name=api_key]").value = "";
}

// -- polling ----------------------------------------------------------------------------------------
async function poll() {
  clearTimeout(state.timer);
  if (!state.key) return;
  const jobs = [health(), campaigns(), metrics(), throughput(), failures()];
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed && state.key) notice(`cannot reach the daemon: ${failed.reason}`, true);
  if (state.key) state.timer = setTimeout(poll, EVERY);
}

async function health() {
  const r = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
  const h = await r.json();
  const badge = $("#health");
  setText(badge, h.status);
  badge.className = `badge state-${h.status}`;
  state.worker = h.worker;
  setText($("#worker"), `worker ${h.worker} · ${h.live_workers} live · ${number(h.in_flight)} in flight`);
  state.outbox = Object.entries(h.outbox || {}).map(([k, v]) => [k, number(v)]);
  providers(h.providers || []);
}

function pairs(dl, entries) {
  dl.replaceChildren(...entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// -- providers --------------------------------------------------------------------------------------
function providers(lanes) {
  const body = $("#providers tbody");
  const seen = new Set();
  for (const p of lanes) {
    const alias = String(p.provider);
    seen.add(alias);
    let row = state.providers.get(alias);
    if (!row) {
      row = el("tr", { "data-provider": alias }, ...Array.from({ length: 9 }, () => el("td")));
      state.providers.set(alias, row);
      body.append(row);
    }
    row.setAttribute("data-state", p.state);
    const c = row.children;
    setText(c[0], `${alias} (${p.kind || p.channel || "?"})`);
    setText(c[1], p.state);
    c[1].className = `state-${p.state}`;
    setText(c[2], ago(p.since));
    setText(c[3], p.code || p.reason ? `${p.code || ""} ${p.reason || ""}`.trim() : "");
    const limit = p.rate === 0 ? "unlimited" : number(p.rate, 1);
    setText(c[4], `${number(p.pace, 1)} / ${limit} per s`);
    setText(c[5], number(p.in_flight));
    setText(c[6], number(p.throttled));
    setText(c[7], number(p.retries));
    const last = p.last_error; // its last answer that was not a success, whatever became of the messages
    c[8].setAttribute("data-code", last ? last.code ?? "" : "");
    setText(c[8], last ? `${last.code || ""} ${last.error || ""} (${ago(last.at)})`.trim() : "");
  }
  for (const [alias, row] of state.providers) {
    if (!seen.has(alias)) { row.remove(); state.providers.delete(alias); }
  }
}

// -- campaigns --------------------------------------------------------------------------------------
// The campaigns' counts are a scan of the outbox: on a big one the page asks less often, so that it keeps
// the database busy a tenth of the time at most (0.4 s a look on a million rows: one every 4 s).
async function campaigns() {
  if (Date.now() < state.nextCampaigns) return;
  const t0 = Date.now();
  const r = await api("GET", "/v1/campaigns");
  state.nextCampaigns = Date.now() + Math.min(SLOWEST, 10 * (Date.now() - t0)) - EVERY / 2;
  if (!state.key) return;
  const empty = $("#campaigns-empty");
  if (!r.ok) { note(empty, `campaigns: ${problem(r)}`); return; }
  const all = list(r.data, "campaigns");
  note(empty, all.length ? "" : "no campaigns yet");
  const body = $("#campaigns tbody");
  const seen = new Set();
  for (const c of all) {
    const name = String(c.name ?? c.campaign ?? "");
    seen.add(name);
    let row = state.campaigns.get(name);
    if (!row) {
      row = campaignRow(name);
      state.campaigns.set(name, row);
      body.append(row);
    }
    fillCampaign(row, name, c);
  }
  for (const [name, row] of state.campaigns) {
    if (!seen.has(name)) { row.remove(); state.campaigns.delete(name); }
  }
}

function campaignRow(name) {
  const actions = el("td", {},
    el("button", { type: "button", "data-action": "pause" }, "pause"),
    el("button", { type: "button", "data-action": "resume" }, "resume"),
    el("button", { type: "button", "data-action": "cancel" }, "cancel"),
    el("button", { type: "button", "data-action": "retry-failed" }, "retry failed"));
  const row = el("tr", { "data-campaign": name, "data-sent": "0" }, el("td"), el("td"), el("td"),
                 el("td", {}, el("progress", { max: "1", value: "0" }), el("span")),
                 el("td", { class: "num" }), el("td", { class: "num" }), el("td", { class: "num" }),
                 el("td", { class: "num" }), actions);
  actions.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (b && name !== "") act(name, b.getAttribute("data-action"));
  });
  return row;
}

function countsOf(c) {
  const counts = c.counts || c.by_status || c.statuses || {};
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, Number(v) || 0]));
}

function fillCampaign(row, name, c) {
  const counts = countsOf(c);
  const sent = counts.sent ?? (Number(c.sent) || 0);
  const total = Number(c.total) || Object.entries(counts).reduce((a, [k, v]) => a + (OUTCOMES.includes(k) ? 0 : v), 0);
  const left = UNFINISHED.reduce((a, k) => a + (counts[k] || 0), 0);
  const recent = localRate(name, sent); // over the last seconds of polls; the API's is over a minute
  const rate = recent !== null ? recent : typeof c.rate === "number" ? c.rate : null;
  const st = String(c.state ?? c.status ?? "");
  row.setAttribute("data-sent", String(sent));
  row.setAttribute("data-state", st);
  const cells = row.children;
  setText(cells[0], name === "" ? "(no campaign)" : name);
  setText(cells[1], st);
  cells[1].className = `state-${st}`;
  setText(cells[2], Object.entries(counts).filter(([, v]) => v).map(([k, v]) => `${k} ${number(v)}`).join(" · ") ||
    "no messages");
  const bar = cells[3].firstChild;
  bar.max = Math.max(total, 1);
  bar.value = total - left;
  setText(cells[3].lastChild, ` ${total ? Math.floor((100 * (total - left)) / total) : 0}%`);
  setText(cells[4], rate === null ? "—" : `${number(rate, 1)}/s`);
  setText(cells[5], left === 0 ? "done" : rate ? duration(left / rate) : "—");
  const delivered = counts.delivered ?? c.delivered ?? c.delivery?.delivered, heard = delivered + (counts.undelivered || 0);
  setText(cells[6], heard > 0 && sent ? `${number((100 * delivered) / sent, 1)}%` : "—"); // none before any report
  const cost = c.cost || {}; // units times the provider's price: of the sent, of the delivered
  cells[7].setAttribute("data-cost", String(cost.sent ?? ""));
  setText(cells[7], typeof cost.sent !== "number" ? "—"
    : `${number(cost.sent, 4)} sent` + (heard > 0 ? ` · ${number(cost.delivered, 4)} delivered` : ""));
  const paused = st === "paused", over = st === "cancelled" || st === "done" || name === "";
  for (const b of row.querySelectorAll("button[data-action]")) {
    const a = b.getAttribute("data-action");
    b.disabled = a === "pause" ? paused || over : a === "resume" ? !paused || name === "" : a === "cancel" ? over
      : !(counts.failed > 0);
  }
}

// sent over the last ten seconds of polls, for a campaign whose API answer carries no rate
function localRate(name, sent) {
  const now = Date.now();
  const h = state.history.get(name) || [];
  h.push([now, sent]);
  while (h.length > 2 && now - h[0][0] > 10000) h.shift();
  state.history.set(name, h);
  const [t0, s0] = h[0];
  if (now - t0 < 3000) return null;
  return now > t0 ? Math.max(0, ((sent - s0) * 1000) / (now - t0)) : null;
}

const CONFIRM = {
  cancel: (n) => `Cancel campaign "${n}"? Its queued messages will not be sent. This cannot be undone.`,
  "retry-failed": (n) => `Send campaign "${n}"'s failed messages again?`,
};

async function act(name, action) {
  if (CONFIRM[action] && !window.confirm(CONFIRM[action](name))) return;
  const r = await api("POST", `/v1/campaigns/${encodeURIComponent(name)}/${action}`);
  if (!state.key) return;
  notice(r.ok ? `${action}: ${name}${r.data && r.data.retried !== undefined ? ` (${r.data.retried} messages)` : ""}`
    : `${action} ${name}: ${problem(r)}`, !r.ok);
  state.nextCampaigns = 0; // the row shows what the action did at once
  poll();
}

// -- metrics: throughput, throttling, webhooks -------------------------------------------------------
function parseMetrics(body) {
  const out = [];
  for (const line of body.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function metrics() {
  const r = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
  const samples = parseMetrics(await r.text());
  const sum = (name, f = () => true) => samples.filter((s) => s.name === name && f(s.labels))
    .reduce((a, s) => a + s.value, 0);
  const has = (name) => samples.some((s) => s.name === name);
  pairs($("#outbox"), (state.outbox || []).concat([ // the counters are this worker's, since it started
    ["retried", number(sum("dispatcher_retries_total"))], ["deferred", number(sum("dispatcher_deferred_total"))],
    ["rescheduled", number(sum("dispatcher_rescheduled_total"))]]));
  if (has("dispatcher_webhook_backlog")) {
    pairs($("#webhooks"), [["backlog", number(sum("dispatcher_webhook_backlog"))],
                           ["oldest", duration(sum("dispatcher_webhook_oldest_seconds"))],
                           ["delivered", number(sum("dispatcher_webhook_events_delivered_total"))],
                           ["given up", number(sum("dispatcher_webhook_events_given_up_total"))]]);
  } else {
    pairs($("#webhooks"), [["webhooks", "not configured"]]);
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, content) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (content !== undefined) node.textContent = content;
  return node;
}

// the worker's rows finished a second over the last minutes, from its own counts (GET /v1/throughput)
async function throughput() {
  const r = await api("GET", "/v1/throughput");
  if (!state.key || !r.ok) return;
  const sent = r.data.sent || [], failed = r.data.failed || [];
  const active = sent.findIndex((v, i) => v || failed[i]); // the last minute, or since the first second with any
  const from = Math.max(0, sent.length - HISTORY, active < 0 ? sent.length - MINUTE : Math.min(active, sent.length - MINUTE));
  const s = sent.slice(from), f = failed.slice(from);
  const W = 600, H = 140, top = Math.max(1, ...s, ...f);
  const x = (i) => (s.length > 1 ? (i * W) / (s.length - 1) : 0);
  const y = (v) => H - 4 - (v / top) * (H - 20);
  const line = (vs) => vs.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const now = s.length ? s[s.length - 1] : 0, chart = $("#chart");
  chart.setAttribute("data-sent", String(s.reduce((a, v) => a + v, 0))); // what the lines add up to
  chart.setAttribute("data-failed", String(f.reduce((a, v) => a + v, 0)));
  chart.setAttribute("data-seconds", String(s.filter((v, i) => v || f[i]).length)); // seconds with any
  chart.replaceChildren(svg("polyline", { points: line(s), class: "sent" }),
                              svg("polyline", { points: line(f), class: "failed" }),
                              svg("text", { x: 4, y: 12 }, `${number(top, 0)}/s`),
                              svg("text", { x: W - 4, y: 12, "text-anchor": "end" },
                                  `now ${number(now, 0)}/s sent · ${number(f[f.length - 1] || 0, 0)}/s failed`));
  setText($("#chart-label"), `rows finished a second by worker ${state.worker || "?"}, last ${duration(s.length)}`);
}

// -- the last failures: the newest ten, read from the top (order=desc) -------------------------------
async function failures() {
  if (Date.now() < state.nextFailures) return;
  state.nextFailures = Date.now() + FAILURES_EVERY;
  const out = $("#failures-note");
  const r = await api("GET", `/v1/messages?status=failed,rejected&order=desc&limit=${FAILURES}`);
  if (!state.key) return;
  if (!r.ok) { note(out, `failures: ${problem(r)}`); return; }
  const latest = list(r.data, "messages");
  note(out, latest.length ? "" : "no failures");
  $("#failures tbody").replaceChildren(...latest.map((m) =>
    el("tr", { "data-id": m.id }, el("td", {}, m.id), el("td", {}, ago(m.finished_at)), el("td", {}, m.campaign),
       el("td", {}, m.provider), el("td", {}, m.status), el("td", {}, m.code), el("td", {}, m.error))));
}

// -- the finder -------------------------------------------------------------------------------------
async function find(q) {
  const out = $("#found");
  if (!q) { out.replaceChildren(); return; }
  let r = /^\d{1,18}$/.test(q) ? await api("GET", `/v1/messages/${q}`) : { status: 404 };
  if (r.status === 404) r = await api("GET", `/v1/messages?key=${encodeURIComponent(q)}`);
  if (!state.key) return;
  if (!r.ok) { out.replaceChildren(el("p", { class: "error" }, problem(r))); return; }
  const m = Array.isArray(r.data?.messages) ? r.data.messages[0] : r.data;
  if (!m) { out.replaceChildren(el("p", { class: "error" }, `no message '${q}'`)); return; }
  const fields = Object.entries(m).filter(([k]) => k !== "events");
  const dl = el("dl", { id: "found-message", "data-id": m.id });
  pairs(dl, fields.map(([k, v]) => [k, v]));
  const parts = [dl];
  const ev = await api("GET", `/v1/messages/${m.id}/events?limit=${EVENTS}`); // oldest first, as they happened
  if (!state.key) return;
  const events = ev.ok ? list(ev.data, "events") : [];
  parts.push(el("h3", {}, ev.ok ? `events${ev.data?.next_cursor ? ` (the first ${EVENTS})` : ""}`
    : `events: ${problem(ev)}`), el("table", { id: "found-events" }, el("tbody", {}, ...events.map((e) =>
    el("tr", { "data-event": e.event_id }, el("td", {}, e.at), el("td", {}, e.status), el("td", {}, e.provider),
       el("td", {}, e.code), el("td", {}, e.error))))));
  if (ev.ok && !events.length) parts.push(el("p", { class: "muted" }, "no events kept (retention_days)"));
  if (m.status === "queued") {
    const b = el("button", { type: "button", "data-action": "cancel-message" }, "cancel this message");
    b.addEventListener("click", () => cancelMessage(m.id, q));
    parts.push(b);
  }
  out.replaceChildren(...parts);
}

async function cancelMessage(id, q) {
  if (!window.confirm(`Cancel message ${id}? It will not be sent. This cannot be undone.`)) return;
  const r = await api("POST", `/v1/messages/${id}/cancel`); // 409 when it left the queue meanwhile
  if (!state.key) return;
  notice(r.ok ? `message ${id} cancelled` : `cancel ${id}: ${problem(r)}`, !r.ok);
  find(q);
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("input[name=api_key]").value.trim();
    if (key) signIn(key);
  });
  $("#find-form").addEventListener("submit", (e) => {
    e.preventDefault();
    find($("input[name=find]").value.trim());
  });
  $("#signout").addEventListener("click", () => signOut(""));
  if (state.key) signIn(state.key);
});
