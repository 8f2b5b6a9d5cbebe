// The local cloud console: plain JavaScript, no build step, nothing fetched from elsewhere.
// Views are drawn from the console's JSON API (/api/...); live changes come over one
// server-sent event stream (/api/stream). Every value is put into the page as text, never as HTML.
"use strict";

// ---- DOM ----------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "style") node.style.cssText = value; // CSSOM: allowed by the page's CSP
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function $(id) { return document.getElementById(id); }

// ---- API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, "Unreachable", "the local cloud does not answer; is it still running?");
  }
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  if (!response.ok) {
    const detail = (data && data.error) || {};
    if (response.status === 401) showBanner("This page's login has expired: open the console URL again (in the checkout: .venv/bin/python -m emulator console --open).");
    throw new ApiError(response.status, detail.code || "Error", detail.message || `HTTP ${response.status}`);
  }
  return data || {};
}

const enc = encodeURIComponent;

// ---- formatting -------------------------------------------------------------------------------

function toSeconds(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value;
  const text = String(value).replace(/\.(\d{3})\d*(Z|[+-]\d\d:\d\d)$/, ".$1$2");
  const parsed = Date.parse(text);
  return Number.isNaN(parsed) ? null : parsed / 1000;
}

function relative(seconds) {
  if (seconds === null) return "–";
  const delta = Date.now() / 1000 - seconds;
  const ago = delta >= 0;
  const d = Math.abs(delta);
  let text;
  if (d < 5) return "just now";
  if (d < 60) text = `${Math.round(d)} s`;
  else if (d < 3600) text = `${Math.round(d / 60)} min`;
  else if (d < 86400) text = `${Math.round(d / 3600)} h`;
  else text = `${Math.round(d / 86400)} d`;
  return ago ? `${text} ago` : `in ${text}`;
}

function timeCell(value) {
  const seconds = toSeconds(value);
  const node = h("span", { class: "reltime", title: seconds ? new Date(seconds * 1000).toLocaleString() : "" }, relative(seconds));
  if (seconds !== null) node.dataset.time = String(seconds);
  return node;
}

setInterval(() => {
  for (const node of document.querySelectorAll(".reltime[data-time]")) {
    node.textContent = relative(Number(node.dataset.time));
  }
}, 5000);

const STATUS_TONES = {
  assigned: "ok", assigning: "warn", failed: "bad", disabled: "", enabled: "ok",
  connected: "ok", offline: "", active: "ok", retired: "bad", denied: "bad",
  invalid_request: "bad", retry_later: "warn", unknown: "",
};

function pill(text, tone) {
  const chosen = tone !== undefined ? tone : (STATUS_TONES[String(text).toLowerCase()] ?? "info");
  return h("span", { class: `pill ${chosen}` }, text);
}

function httpPill(status) {
  if (status === null || status === undefined) return pill("no answer", "bad");
  const tone = status < 300 ? "ok" : status === 429 || status >= 500 ? "warn" : "bad";
  return pill(`HTTP ${status}`, tone);
}

function compactJson(value) {
  // One line with a space after each colon and comma: real newlines only ever come from the
  // indentation (JSON escapes those inside strings), so removing them changes no value.
  const text = JSON.stringify(value, null, 1);
  if (text === undefined) return "null";
  return text.replace(/([{[])\n */g, "$1").replace(/\n *([}\]])/g, "$1").replace(/\n */g, " ");
}

function jsonNode(value, compact) {
  // Pretty (or, with `compact`, one-line) JSON with coloured tokens, built as text nodes.
  const pre = h("pre", { class: compact ? "json compact" : "json" });
  const text = compact ? compactJson(value) : JSON.stringify(value, null, 2);
  if (text === undefined) { pre.textContent = "null"; return pre; }
  const pattern = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    pre.append(text.slice(last, match.index));
    if (match[1] && match[2]) { pre.append(h("span", { class: "j-key" }, match[1]), match[2]); }
    else if (match[1]) pre.append(h("span", { class: "j-str" }, match[1]));
    else if (match[3]) pre.append(h("span", { class: "j-lit" }, match[3]));
    else pre.append(h("span", { class: "j-num" }, match[4]));
    last = match.index + match[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

function plural(count, word, many) {
  return `${count} ${count === 1 ? word : many || `${word}s`}`;
}

function hostNode(host, extraClass) {
  // A host name that wraps only before its domain ("contoso-hub" / ".azure-devices.net").
  const text = String(host || "");
  const dot = text.indexOf(".");
  if (dot < 1) return h("span", { class: `host ${extraClass || ""}` }, text || "–");
  return h("span", { class: `host ${extraClass || ""}`, title: text }, h("span", { class: "label" }, text.slice(0, dot)), h("wbr"),
    h("span", { class: "domain" }, text.slice(dot)));
}

function enrollmentNode(text) {
  // DPS's records name an enrollment as "group 'id'" or "individual 'id'".
  const match = /^(group|individual) '(.*)'$/.exec(String(text || ""));
  if (!match) return text || "–";
  return h("span", { class: "nowrap" }, h("span", { class: "muted" }, `${match[1]} `), h("span", { class: "mono" }, match[2]));
}

function jsonBox(title, value, open) {
  const details = h("details", { class: "json-box", open: !!open }, h("summary", {}, title), jsonNode(value));
  return details;
}

function commandLine(text) {
  const code = h("code", {}, text);
  const copy = h("button", { type: "button", title: "Copy", onclick: async () => {
    try { await navigator.clipboard.writeText(text); copy.textContent = "copied"; }
    catch (error) { copy.textContent = "select it"; }
    setTimeout(() => { copy.textContent = "copy"; }, 1500);
  } }, "copy");
  return h("div", { class: "command", title: "The operator command that does the same" }, h("span", { class: "prompt" }, "$"), code, copy);
}

function shellWord(word) {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${String(word).replace(/'/g, "'\\''")}'`;
}

function emulatorCommand(...words) {
  return [".venv/bin/python", "-m", "emulator", ...words].map(shellWord).join(" ");
}

function toast(message, bad) {
  const node = h("div", { class: `toast ${bad ? "bad" : ""}` }, message);
  $("toasts").append(node);
  setTimeout(() => node.remove(), bad ? 7000 : 3500);
}

function showBanner(message) {
  if (document.querySelector(".banner")) return;
  $("main").prepend(h("div", { class: "banner" }, message));
}

function failed(error) { toast(error.message || String(error), true); }

function armedButton(label, armedLabel, action, extraClass) {
  // A button that asks for a second click (no blocking dialogs).
  let timer = null;
  const button = h("button", { type: "button", class: `danger ${extraClass || ""}` }, label);
  button.addEventListener("click", async () => {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = armedLabel;
      timer = setTimeout(() => { button.classList.remove("armed"); button.textContent = label; }, 4000);
      return;
    }
    clearTimeout(timer);
    button.classList.remove("armed");
    button.textContent = label;
    button.disabled = true;
    try { await action(); } finally { button.disabled = false; }
  });
  return button;
}

// ---- tables -----------------------------------------------------------------------------------

// columns: [{key, label, value(row) -> sortable, cell(row) -> node/string, num}]
function sortableTable(columns, options) {
  const state = { key: options.sortKey || columns[0].key, descending: !!options.descending, rows: [], open: null };
  const head = h("tr");
  const body = h("tbody");
  const table = h("table", {}, h("thead", {}, head), body);
  const note = h("div", { class: "note" });
  for (const column of columns) {
    const th = h("th", { class: `sortable ${column.num ? "num" : ""}`, scope: "col", dataset: { key: column.key } }, column.label, h("span", { class: "arrow" }));
    th.addEventListener("click", () => {
      if (state.key === column.key) state.descending = !state.descending;
      else { state.key = column.key; state.descending = !!column.num; }
      draw();
    });
    head.append(th);
  }
  function valueOf(row, key) {
    const column = columns.find((c) => c.key === key);
    const value = column.value ? column.value(row) : row[key];
    return value === null || value === undefined ? "" : value;
  }
  function draw() {
    for (const th of head.children) {
      th.querySelector(".arrow").textContent = th.dataset.key === state.key ? (state.descending ? "▼" : "▲") : "";
    }
    const rows = [...state.rows].sort((a, b) => {
      const x = valueOf(a, state.key), y = valueOf(b, state.key);
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return state.descending ? -order : order;
    });
    clear(body);
    const limit = options.limit || 500;
    for (const row of rows.slice(0, limit)) {
      const id = options.id ? options.id(row) : null;
      const tr = h("tr", { class: options.detail ? "clickable" : "", dataset: id !== null ? { id } : {} });
      for (const column of columns) {
        tr.append(h("td", { class: column.num ? "num" : "" }, column.cell ? column.cell(row) : valueOf(row, column.key)));
      }
      body.append(tr);
      if (options.detail) {
        tr.addEventListener("click", (event) => {
          if (event.target.closest("a, button, details, input, select")) return;
          state.open = state.open === id ? null : id;
          draw();
        });
        if (state.open !== null && state.open === id) {
          tr.classList.add("open");
          body.append(h("tr", { class: "detail" }, h("td", { colspan: columns.length }, options.detail(row))));
        }
      }
    }
    if (!rows.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, options.empty || "Nothing yet.")));
    note.textContent = rows.length > limit ? `Showing ${limit} of ${rows.length}; sort or filter to see others.` : "";
  }
  return {
    node: h("div", {}, h("div", { class: "table-wrap" }, table), note),
    set(rows) { state.rows = rows; draw(); },
    redraw: draw,
  };
}

function bars(entries, alt) {
  const max = Math.max(1, ...entries.map((e) => e.count));
  if (!entries.length) return h("div", { class: "empty" }, "No devices yet.");
  return h("div", { class: "bars" }, entries.map((entry) => h("div", { class: "bar" },
    h("span", { class: "name", title: entry.name }, entry.name),
    h("span", { class: "track" }, h("span", { class: `fill ${alt ? "alt" : ""}`, style: `width:${(100 * entry.count / max).toFixed(1)}%` })),
    h("span", { class: "count" }, entry.count))));
}

function field(labelText, input) {
  return h("div", {}, h("label", {}, labelText), input);
}

function parseJsonInput(text, name) {
  if (!text.trim()) return undefined;
  try { return JSON.parse(text); } catch (error) { throw new Error(`${name}: not valid JSON (${error.message})`); }
}

// ---- live -------------------------------------------------------------------------------------

const live = {
  source: null,
  handlers: new Set(),
  scope: "",
  open(hub, device) {
    const scope = `${hub || ""}|${device || ""}`;
    if (this.source && this.scope === scope) return;
    if (this.source) this.source.close();
    this.scope = scope;
    const query = new URLSearchParams();
    if (hub) query.set("hub", hub);
    if (device) query.set("device", device);
    const indicator = $("live");
    this.source = new EventSource(`/api/stream?${query}`);
    this.source.onopen = () => { indicator.className = "live on"; indicator.textContent = "live"; };
    this.source.onerror = () => { indicator.className = "live off"; indicator.textContent = "reconnecting"; };
    this.source.onmessage = (message) => {
      let items;
      try { items = JSON.parse(message.data); } catch (error) { return; }
      for (const handler of [...this.handlers]) {
        try { handler(items); } catch (error) { failed(error); }
      }
    };
  },
  on(handler) { this.handlers.add(handler); return () => this.handlers.delete(handler); },
};

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ---- shared state --------------------------------------------------------------------------------

let info = { hubs: [], functions: false };

async function loadInfo() {
  info = await api("GET", "/api/info");
}

// ---- views ------------------------------------------------------------------------------------

function pageHead(title, subtitle) {
  return h("div", { class: "page-head" }, h("h1", {}, title), subtitle ? h("span", { class: "muted" }, subtitle) : null);
}

function statusCards(status) {
  const dps = status.dps;
  const cards = [
    h("div", { class: "card" }, h("div", { class: "label" }, "DPS"), h("div", { class: "value" }, `${dps.registrations} assigned`),
      h("div", { class: "sub" }, `${dps.assigning} in flight · ${dps.failed} failed · ${plural(dps.enrollments, "enrollment")}`),
      h("div", { class: "sub" }, `${dps.host} · ID scope ${dps.id_scope}`)),
  ];
  for (const hub of status.hubs) {
    cards.push(h("a", { class: "card hub-card", href: `#/hubs/${enc(hub.name)}`, dataset: { hub: hub.name } },
      h("div", { class: "label" }, hostNode(hub.name)),
      h("div", { class: "value" }, `${hub.connected} / ${hub.devices}`),
      h("div", { class: "sub" }, `connected / devices · ${plural(hub.messages_received, "message")}`)));
  }
  const faults = Object.keys(status.faults || {});
  cards.push(h("a", { class: "card", href: "#/drills" }, h("div", { class: "label" }, "Faults"),
    h("div", { class: "value" }, faults.length ? faults.length : "none"),
    h("div", { class: "sub" }, faults.length ? faults.join(", ") : "no drill running")));
  return cards;
}

function registrationStatus(row) {
  if (row.status === "failed") return h("span", {}, pill("failed"), " ", h("span", { class: "mono" }, row.error_code || ""));
  return pill(row.status || "unknown");
}

async function viewProvisioning(main) {
  main.append(pageHead("Provisioning", "registrations as DPS handles them, with the webhook's answers"));
  const cards = h("div", { class: "cards" });
  const filters = {
    status: h("select", { "aria-label": "Status" }, ["", "assigned", "assigning", "failed", "disabled"].map((s) => h("option", { value: s }, s || "any status"))),
    enrollment: h("select", { "aria-label": "Enrollment" }, h("option", { value: "" }, "any enrollment")),
    hub: h("select", { "aria-label": "Hub" }, h("option", { value: "" }, "any hub")),
    text: h("input", { type: "search", placeholder: "registration id", "aria-label": "Search" }),
  };
  const rows = new Map();
  const exchanges = [];
  const table = sortableTable([
    { key: "registration_id", label: "Registration id", cell: (r) => h("span", { class: "mono" }, r.registration_id) },
    { key: "enrollment", label: "Enrollment", cell: (r) => enrollmentNode(r.enrollment) },
    { key: "status", label: "Status", cell: registrationStatus },
    { key: "assigned_hub", label: "Hub", cell: (r) => r.assigned_hub && r.device_id ? h("a", { href: `#/device/${enc(r.assigned_hub)}/${enc(r.device_id)}`, title: "the device's page" }, hostNode(r.assigned_hub)) : (r.assigned_hub ? hostNode(r.assigned_hub) : "–") },
    { key: "substatus", label: "Substatus" },
    { key: "webhook", label: "Webhook", value: (r) => (r.webhook ? r.webhook.status || 0 : -1), cell: (r) => r.webhook ? h("span", { class: "nowrap" }, httpPill(r.webhook.status), ` ${r.webhook.latency_ms} ms`, r.webhook.attempt > 1 ? ` · call ${r.webhook.attempt}` : "") : h("span", { class: "muted" }, r.custom === false ? "not custom" : "–") },
    { key: "updated", label: "Updated", num: true, value: (r) => r.updated || 0, cell: (r) => timeCell(r.updated) },
  ], { sortKey: "updated", descending: true, id: (r) => r.registration_id.toLowerCase(), detail: registrationDetail, empty: "No registrations yet: provision a device (python -m simulator run --local)." });

  function registrationDetail(row) {
    const box = h("div", { class: "grid two" });
    const mine = exchanges.filter((e) => String(e.registration_id).toLowerCase() === row.registration_id.toLowerCase());
    const exchangePanel = h("div", {}, h("h3", {}, "Webhook exchanges"));
    if (!mine.length) exchangePanel.append(h("p", { class: "muted" }, "No webhook call kept for this registration (not custom allocation, or before the console started)."));
    for (const exchange of mine.slice(-5).reverse()) {
      exchangePanel.append(h("div", { class: "step" },
        h("div", {}, httpPill(exchange.status), ` call ${exchange.attempt} · ${exchange.latency_ms} ms · `, timeCell(exchange.time), exchange.error ? h("span", { class: "muted" }, ` · ${exchange.error}`) : null),
        jsonBox("request sent (keys masked)", exchange.request, false),
        exchange.answer !== null && exchange.answer !== undefined ? jsonBox("answer", exchange.answer, true) : null));
    }
    const record = h("div", {}, h("h3", {}, "DPS record"), jsonNode(row.record || row));
    const log = h("div", {}, h("h3", {}, "Registration log (Table storage)"));
    box.append(exchangePanel, h("div", {}, record, log));
    if (info.functions) {
      api("GET", `/api/log/devices/${enc(row.registration_id)}?limit=5`).then((answer) => {
        const entries = answer.registrations || [];
        if (!entries.length) { log.append(h("p", { class: "muted" }, "No log rows.")); return; }
        log.append(h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Outcome", "Rule", "Strategy", "Hub", "ms"].map((t) => h("th", {}, t)))),
          h("tbody", {}, entries.map((e) => h("tr", {}, h("td", {}, timeCell(e.time)), h("td", {}, pill(e.outcome)), h("td", { class: "rule" }, e.rule || "–"), h("td", {}, e.strategy || "–"), h("td", {}, e.hub || "–"), h("td", { class: "num" }, e.decision_ms))))));
      }).catch((error) => log.append(h("p", { class: "muted" }, error.message)));
    } else {
      log.append(h("p", { class: "muted" }, "The Functions app is not hosted here."));
    }
    return box;
  }

  function visible() {
    const f = { status: filters.status.value, enrollment: filters.enrollment.value, hub: filters.hub.value, text: filters.text.value.toLowerCase() };
    return [...rows.values()].filter((r) => (!f.status || r.status === f.status) && (!f.enrollment || r.enrollment === f.enrollment)
      && (!f.hub || r.assigned_hub === f.hub) && (!f.text || r.registration_id.toLowerCase().includes(f.text)));
  }
  const redraw = debounce(() => {
    const enrollments = new Set([...rows.values()].map((r) => r.enrollment).filter(Boolean));
    refill(filters.enrollment, enrollments, "any enrollment");
    refill(filters.hub, new Set([...info.hubs, ...[...rows.values()].map((r) => r.assigned_hub).filter(Boolean)]), "any hub");
    table.set(visible());
  }, 80);
  for (const control of Object.values(filters)) control.addEventListener("input", () => table.set(visible()));

  function merge(entry) {
    const key = entry.registration_id.toLowerCase();
    const row = rows.get(key) || { registration_id: entry.registration_id };
    Object.assign(row, entry);
    rows.set(key, row);
    return row;
  }

  async function loadStatus() {
    const status = await api("GET", "/api/admin/status");
    clear(cards).append(...statusCards(status));
  }

  const [registrations, kept] = await Promise.all([api("GET", "/api/admin/registrations"), api("GET", "/api/exchanges"), loadStatus()]);
  exchanges.push(...kept.exchanges);
  for (const entry of registrations.registrations) {
    const row = merge({ ...entry, updated: toSeconds(entry.last_updated) || (entry.seconds_since_start !== undefined ? Date.now() / 1000 - entry.seconds_since_start : null), record: entry });
    const last = exchanges.filter((e) => String(e.registration_id).toLowerCase() === row.registration_id.toLowerCase()).pop();
    if (last) row.webhook = last;
  }
  const refetch = new Set();
  let reloadAll = false;
  const fetchPending = debounce(async () => {
    const ids = [...refetch];
    refetch.clear();
    if (reloadAll || ids.length > 25) {
      reloadAll = false;
      const all = await api("GET", "/api/admin/registrations");
      for (const entry of all.registrations) merge({ ...entry, record: entry });
    } else {
      for (const id of ids) {
        try { const entry = await api("GET", `/api/admin/registrations/${enc(id)}`); merge({ ...entry, record: entry }); } catch (error) { /* gone */ }
      }
    }
    redraw();
    loadStatus().catch(() => {});
  }, 400);

  const stop = live.on((items) => {
    for (const item of items) {
      if (item.kind === "gap") { reloadAll = true; continue; }
      if (item.kind === "dps.webhook") {
        exchanges.push(item);
        if (exchanges.length > 1000) exchanges.shift();
        merge({ registration_id: item.registration_id, webhook: item, updated: item.time });
      } else if (item.kind === "dps.reply" && item.registration_id) {
        const body = item.body || {};
        const state = body.registrationState || {};
        const change = { registration_id: item.registration_id, updated: item.time };
        if (body.status) change.status = body.status;
        if (state.assignedHub) change.assigned_hub = state.assignedHub;
        if (state.deviceId) change.device_id = state.deviceId;
        if (state.substatus) change.substatus = state.substatus;
        if (state.errorCode) change.error_code = state.errorCode;
        merge(change);
        if (body.status && body.status !== "assigning") refetch.add(item.registration_id);
        else if (!rows.get(item.registration_id.toLowerCase()).enrollment) refetch.add(item.registration_id);
      } else if (item.kind === "hub.lifecycle") {
        statusSoon();
      }
    }
    if (refetch.size || reloadAll) fetchPending();
    redraw();
  });
  const timer = setInterval(() => loadStatus().catch(() => {}), 5000);
  const statusSoon = debounce(() => loadStatus().catch(() => {}), 300);

  main.append(cards, h("div", { class: "panel" },
    h("div", { class: "toolbar" }, h("h2", { class: "grow" }, "Registrations"), filters.status, filters.enrollment, filters.hub, filters.text),
    table.node));
  redraw();
  return () => { stop(); clearInterval(timer); };
}

function refill(select, values, anyLabel) {
  const current = select.value;
  const wanted = ["", ...[...values].sort()];
  const have = [...select.options].map((o) => o.value);
  if (wanted.join("\n") === have.join("\n")) return;
  clear(select).append(...wanted.map((v) => h("option", { value: v }, v || anyLabel)));
  select.value = wanted.includes(current) ? current : "";
}

async function viewEnrollments(main) {
  main.append(pageHead("Enrollments", "enrollment groups and individual enrollments; keys stay hidden until you ask"));
  const panel = h("div", { class: "panel" });
  main.append(panel);
  const lastCommand = h("div");
  async function load() {
    const answer = await api("GET", "/api/admin/enrollments");
    const table = sortableTable([
      { key: "id", label: "Id", cell: (e) => h("span", { class: "mono" }, e.id) },
      { key: "kind", label: "Kind" },
      { key: "allocation", label: "Allocation", cell: (e) => pill(e.allocation, "info") },
      { key: "hubs", label: "Linked hubs", value: (e) => e.hubs.join(", "), cell: (e) => h("div", {}, e.hubs.map((hub) => h("div", {}, hostNode(hub)))) },
      { key: "reprovision", label: "Reprovision" },
      { key: "enabled", label: "Status", value: (e) => (e.enabled ? 1 : 0), cell: (e) => pill(e.enabled ? "enabled" : "disabled") },
      { key: "initial_twin", label: "Initial twin", value: (e) => (e.initial_twin ? 1 : 0), cell: (e) => e.initial_twin ? jsonBox("tags and desired", e.initial_twin, false) : h("span", { class: "muted" }, e.allocation === "custom" ? "the webhook's" : "none") },
      { key: "actions", label: "", value: () => 0, cell: actions },
    ], { sortKey: "id", id: (e) => `${e.kind}/${e.id}`, empty: "No enrollments in the configuration." });
    table.set(answer.enrollments);
    clear(panel).append(table.node, lastCommand);
  }
  function actions(entry) {
    const individual = entry.kind === "individual" ? ["--individual"] : [];
    const base = `/api/admin/enrollments/${entry.kind}/${enc(entry.id)}`;
    const keyBox = h("div");
    const toggle = h("button", { type: "button", class: "small", onclick: async () => {
      const verb = entry.enabled ? "disable" : "enable";
      try {
        await api("POST", `${base}/${verb}`, {});
        toast(`${entry.id} ${verb}d`);
        await load();
        clear(lastCommand).append(commandLine(emulatorCommand(verb, entry.id, ...individual)));
      } catch (error) { failed(error); }
    } }, entry.enabled ? "Disable" : "Enable");
    const regenerate = (slot) => armedButton(`New ${slot} key`, `Confirm: replace the ${slot} key`, async () => {
      try {
        await api("POST", `${base}/regenerate-key`, { slot });
        toast(`new ${slot} key for ${entry.id}; devices holding keys derived from the old one are refused`);
        clear(lastCommand).append(commandLine(emulatorCommand("regenerate-key", entry.id, "--slot", slot, ...individual)));
      } catch (error) { failed(error); }
    }, "small");
    const reveal = h("button", { type: "button", class: "small", onclick: async () => {
      if (keyBox.firstChild) { clear(keyBox); reveal.textContent = "Reveal keys"; return; }
      try {
        const keys = await api("GET", `${base}/keys`);
        keyBox.append(h("div", { class: "secret" }, `primary: ${keys.primary_key}`), h("div", { class: "secret" }, `secondary: ${keys.secondary_key}`));
        reveal.textContent = "Hide keys";
      } catch (error) { failed(error); }
    } }, "Reveal keys");
    return h("div", {}, h("div", { class: "toolbar" }, toggle, regenerate("primary"), regenerate("secondary"), reveal), keyBox,
      entry.webhook_url ? h("div", { class: "note mono" }, `webhook ${entry.webhook_url}`) : null);
  }
  await load();
}

function hubDevices(hub) {
  // A hub's devices, sortable, with its summary and command; `load()` fetches them again.
  const table = sortableTable([
    { key: "device_id", label: "Device id", cell: (d) => h("a", { class: "mono", href: `#/device/${enc(hub)}/${enc(d.device_id)}` }, d.device_id) },
    { key: "enabled", label: "Status", value: (d) => (d.enabled ? 1 : 0), cell: (d) => pill(d.enabled ? "enabled" : "disabled") },
    { key: "connected", label: "Connection", value: (d) => (d.connected ? 1 : 0), cell: (d) => pill(d.connected ? "connected" : "offline") },
  ], { sortKey: "device_id", limit: 200, empty: "No devices in this hub yet." });
  const summary = h("span", { class: "muted" });
  const node = h("div", { class: "panel", dataset: { hub } },
    h("div", { class: "toolbar" }, h("h2", { class: "grow" }, h("a", { href: `#/hubs/${enc(hub)}` }, hub)), summary),
    table.node, commandLine(emulatorCommand("devices", hub)));
  async function load() {
    const answer = await api("GET", `/api/admin/hubs/${enc(hub)}/devices`);
    const connected = answer.devices.filter((d) => d.connected).length;
    summary.textContent = `${connected} connected of ${plural(answer.devices.length, "device")}`;
    table.set(answer.devices);
  }
  return { node, load };
}

function onHubChange(hub, reload) {
  // Reload (debounced) when a device of `hub` (any hub when null) comes, goes, connects or leaves.
  const later = debounce(() => reload().catch(failed), 300);
  return live.on((items) => {
    if (items.some((i) => i.kind === "hub.lifecycle" && (hub === null || String(i.hub).toLowerCase() === hub.toLowerCase()))) later();
  });
}

async function viewHubs(main) {
  main.append(pageHead("Hubs & devices", "each hub with its devices; click a device for its twin, telemetry, C2D and methods"));
  const cards = h("div", { class: "cards" });
  const lists = h("div", { class: "stack" });
  main.append(cards, lists);
  const hubs = new Map();
  async function load() {
    const status = await api("GET", "/api/admin/status");
    clear(cards).append(...statusCards(status).slice(1, -1));
    for (const hub of status.hubs) {
      if (!hubs.has(hub.name)) { hubs.set(hub.name, hubDevices(hub.name)); lists.append(hubs.get(hub.name).node); }
    }
    await Promise.all([...hubs.values()].map((entry) => entry.load()));
  }
  await load();
  return onHubChange(null, load);
}

async function viewHub(main, hub) {
  main.append(pageHead(hub, "devices in this hub"), h("p", {}, h("a", { href: "#/hubs" }, "← all hubs")));
  const devices = hubDevices(hub);
  main.append(devices.node);
  await devices.load();
  return onHubChange(hub, devices.load);
}

function versioned(section) {
  const copy = { ...(section || {}) };
  const version = copy.$version;
  delete copy.$version;
  delete copy.$metadata;
  return { version, copy };
}

async function viewDevice(main, hub, deviceId) {
  main.append(pageHead(deviceId, `device in ${hub}`), h("p", {}, h("a", { href: `#/hubs/${enc(hub)}` }, `← ${hub}`)));
  const identity = h("div", { class: "panel", id: "identity" });
  const twinPanel = h("div", { class: "panel", id: "twin" });
  const telemetryPanel = h("div", { class: "panel", id: "telemetry" });
  const c2dPanel = h("div", { class: "panel", id: "c2d" });
  const methodPanel = h("div", { class: "panel", id: "method" });
  main.append(h("div", { class: "columns" }, h("div", { class: "stack" }, identity, telemetryPanel), h("div", { class: "stack" }, twinPanel, c2dPanel, methodPanel)));
  let twin = null;
  const twinView = h("div");
  const desiredInput = h("textarea", { id: "desired-patch", "aria-label": "Desired properties patch", spellcheck: "false" }, "{}");
  const tagsInput = h("textarea", { id: "tags-patch", "aria-label": "Tags patch", spellcheck: "false" }, "{}");
  const twinResult = h("div", { class: "result" });

  async function loadDevice() {
    const device = await api("GET", `/api/admin/hubs/${enc(hub)}/devices/${enc(deviceId)}`);
    twin = device.twin;
    clear(identity).append(h("h2", {}, "Identity"), h("dl", { class: "kv" },
      h("dt", {}, "Device id"), h("dd", { class: "mono" }, device.device_id),
      h("dt", {}, "Hub"), h("dd", {}, device.hub),
      h("dt", {}, "Status"), h("dd", {}, pill(device.enabled ? "enabled" : "disabled")),
      h("dt", {}, "Connection"), h("dd", { id: "connection" }, pill(device.connected ? "connected" : "offline")),
      h("dt", {}, "Subscriptions"), h("dd", { class: "mono" }, device.subscriptions.length ? device.subscriptions.join("\n") : "none"),
      h("dt", {}, "Twin"), h("dd", {}, `version ${twin.version} · etag `, h("span", { class: "mono", id: "etag" }, twin.etag))),
      commandLine(emulatorCommand("show-device", hub, deviceId)));
    const desired = versioned(twin.properties.desired);
    const reported = versioned(twin.properties.reported);
    clear(twinView).append(
      h("h3", {}, "Tags"), jsonNode(twin.tags || {}),
      h("h3", {}, `Desired · $version ${desired.version}`), h("div", { id: "desired" }, jsonNode(desired.copy)),
      h("h3", {}, `Reported · $version ${reported.version}`), h("div", { id: "reported" }, jsonNode(reported.copy)));
  }
  const apply = h("button", { type: "button", class: "primary", id: "twin-apply", onclick: async () => {
    clear(twinResult);
    try {
      const desired = parseJsonInput(desiredInput.value, "desired");
      const tags = parseJsonInput(tagsInput.value, "tags");
      const body = { etag: twin.etag };
      if (desired && Object.keys(desired).length) body.desired = desired;
      if (tags && Object.keys(tags).length) body.tags = tags;
      await api("PATCH", `/api/twins/${enc(hub)}/${enc(deviceId)}`, body);
      toast("twin updated; the device gets the desired change");
      twinResult.append(commandLine(`python -c "from azure.iot.hub import IoTHubRegistryManager as R; from azure.iot.hub.models import Twin, TwinProperties; R.from_connection_string(CONN).update_twin(${JSON.stringify(deviceId)}, Twin(tags=${JSON.stringify(body.tags || null)}, properties=TwinProperties(desired=${JSON.stringify(body.desired || null)})), ${JSON.stringify(twin.etag)})"`));
      desiredInput.value = "{}";
      tagsInput.value = "{}";
      await loadDevice();
    } catch (error) {
      if (error.status === 412) twinResult.append(h("div", { class: "banner" }, "The twin changed since it was shown (its etag moved on): it is reloaded now; check it and apply again."));
      else failed(error);
      await loadDevice().catch(() => {});
    }
  } }, "Apply (etag-checked)");
  twinPanel.append(h("h2", {}, "Twin"), twinView, h("h3", {}, "Edit"),
    h("div", { class: "pair" }, field("Desired properties patch (null removes)", desiredInput), field("Tags patch", tagsInput)),
    h("div", { class: "toolbar", style: "margin-top:8px" }, apply, h("span", { class: "muted" }, "sent with If-Match: the etag shown above")), twinResult);

  // telemetry
  const counter = h("span", { id: "message-count", class: "pill info" }, "0 messages");
  let count = 0;
  const messages = [];
  const tbody = h("tbody", { id: "telemetry-rows" });
  telemetryPanel.append(h("div", { class: "toolbar" }, h("h2", { class: "grow" }, "Telemetry, newest first"), counter),
    h("div", { class: "table-wrap scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Received"), h("th", { class: "num" }, "#"), h("th", {}, "Body"), h("th", {}, "Properties"))), tbody)),
    commandLine(emulatorCommand("tail", hub, "--device", deviceId)));
  let pending = false;
  function drawTelemetry() {
    pending = false;
    counter.textContent = `${count} message${count === 1 ? "" : "s"}`;
    clear(tbody);
    if (!messages.length) tbody.append(h("tr", {}, h("td", { class: "empty", colspan: 4 }, "No telemetry yet; it appears here as it arrives.")));
    for (const message of messages.slice(-100).reverse()) {
      const body = message.body !== undefined ? message.body : `(base64) ${message.body_base64}`;
      tbody.append(h("tr", { class: "message" }, h("td", { class: "nowrap" }, timeCell(message.time)), h("td", { class: "num" }, message.seq),
        h("td", {}, bodyNode(body, message.truncated)), h("td", {}, propertiesNode(message.properties || {}, message.system_properties || {}))));
    }
  }
  function bodyNode(body, truncated) {
    // JSON on one line when short, else collapsible and pretty; anything else as text.
    let value;
    try { value = typeof body === "string" && /^\s*[[{]/.test(body) && !truncated ? JSON.parse(body) : undefined; } catch (error) { value = undefined; }
    if (value === undefined) return h("span", { class: "mono text" }, body, truncated ? h("span", { class: "muted" }, " … (cut)") : null);
    const line = compactJson(value);
    return line.length <= 120 ? jsonNode(value, true) : jsonBox(`${line.slice(0, 60)} …`, value, false);
  }
  function propertiesNode(application, system) {
    const names = Object.keys(application);
    const shown = names.length ? h("div", { class: "props" }, names.map((name) => h("span", { class: "prop" }, h("span", { class: "muted" }, `${name}=`), String(application[name])))) : null;
    const others = Object.keys(system).length ? h("details", { class: "more" }, h("summary", {}, plural(Object.keys(system).length, "system property", "system properties")), jsonNode(system)) : null;
    return shown || others ? h("div", {}, shown, others) : h("span", { class: "muted" }, "–");
  }
  function addMessages(list) {
    for (const message of list) {
      if (messages.length && message.seq <= messages[messages.length - 1].seq) continue;
      messages.push(message);
      count += 1;
    }
    while (messages.length > 200) messages.shift();
    if (!pending) { pending = true; requestAnimationFrame(drawTelemetry); }
  }

  // C2D
  const c2dBody = h("input", { id: "c2d-body", type: "text", placeholder: "message body", style: "width:100%" });
  const c2dProps = h("textarea", { id: "c2d-properties", placeholder: "name=value, one per line", style: "min-height:54px" });
  const c2dResult = h("div", { class: "result" });
  c2dPanel.append(h("h2", {}, "Cloud-to-device message"), field("Body", c2dBody), field("Properties", c2dProps),
    h("div", { class: "toolbar", style: "margin-top:8px" }, h("button", { type: "button", class: "primary", id: "c2d-send", onclick: async () => {
      clear(c2dResult);
      const properties = {};
      const words = [];
      for (const line of c2dProps.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
        const at = line.indexOf("=");
        if (at < 1) { failed(new Error(`properties: "${line}" is not name=value`)); return; }
        properties[line.slice(0, at)] = line.slice(at + 1);
        words.push("--property", line);
      }
      try {
        const answer = await api("POST", `/api/admin/hubs/${enc(hub)}/devices/${enc(deviceId)}/c2d`, { body: c2dBody.value, properties });
        c2dResult.append(h("p", {}, pill(answer.delivered ? "delivered" : "queued", answer.delivered ? "ok" : "warn"), ` message ${answer.message_id}`),
          commandLine(emulatorCommand("send-c2d", hub, deviceId, c2dBody.value, ...words)));
      } catch (error) { failed(error); }
    } }, "Send")), c2dResult);

  // direct method
  const methodName = h("input", { id: "method-name", type: "text", value: "reboot" });
  const methodPayload = h("textarea", { id: "method-payload", style: "min-height:54px", spellcheck: "false" }, "{}");
  const methodTimeout = h("input", { id: "method-timeout", type: "number", value: "30", min: "5", max: "300", style: "width:90px" });
  const methodResult = h("div", { class: "result", id: "method-result" });
  methodPanel.append(h("h2", {}, "Direct method"), h("div", { class: "row" }, field("Method", methodName), field("Timeout (s)", methodTimeout)), field("Payload (JSON)", methodPayload),
    h("div", { class: "toolbar", style: "margin-top:8px" }, h("button", { type: "button", class: "primary", id: "method-invoke", onclick: async (event) => {
      clear(methodResult);
      event.target.disabled = true;
      try {
        const payload = parseJsonInput(methodPayload.value, "payload");
        const answer = await api("POST", `/api/methods/${enc(hub)}/${enc(deviceId)}`, { method_name: methodName.value, payload: payload === undefined ? null : payload, timeout: Number(methodTimeout.value) });
        methodResult.append(h("p", {}, "device answered ", pill(`status ${answer.status}`, answer.status < 300 ? "ok" : "bad")), jsonBox("payload", answer.payload, true));
      } catch (error) {
        methodResult.append(h("p", {}, pill(error.code || "error", "bad"), ` ${error.message}`));
      } finally { event.target.disabled = false; }
      methodResult.append(commandLine(`python -c "from azure.iot.hub import IoTHubRegistryManager as R; from azure.iot.hub.models import CloudToDeviceMethod as M; print(R.from_connection_string(CONN).invoke_device_method(${JSON.stringify(deviceId)}, M(method_name=${JSON.stringify(methodName.value)}, payload=${methodPayload.value.trim() || "None"})))"`));
    } }, "Invoke")), methodResult);

  await loadDevice();
  const history = await api("GET", `/api/telemetry/${enc(hub)}/${enc(deviceId)}`);
  addMessages(history.messages);
  drawTelemetry();
  const reload = debounce(() => loadDevice().catch(() => {}), 150);
  live.open(hub, deviceId);
  return live.on((items) => {
    const fresh = [];
    for (const item of items) {
      if (item.kind === "hub.telemetry" && item.device_id === deviceId) fresh.push(item);
      else if (item.kind === "hub.telemetry.skipped") count += item.count; // a flood: newest shown
      else if ((item.kind === "hub.changed" || item.kind === "hub.lifecycle") && item.device_id === deviceId && String(item.hub).toLowerCase() === hub.toLowerCase()) reload();
    }
    if (fresh.length) addMessages(fresh);
  });
}

async function viewAllocation(main) {
  main.append(pageHead("Allocation", "where devices went, and what the policy would do"));
  const hubsPanel = h("div", { class: "panel" }, h("h2", {}, "Devices per hub"));
  const rulesPanel = h("div", { class: "panel" }, h("h2", {}, "Devices per rule"));
  const playPanel = h("div", { class: "panel", id: "playground" }, h("h2", {}, "Policy playground"), h("p", { class: "muted" }, "The hosted app's decision for a registration, without registering anything."));
  const movesPanel = h("div", { class: "panel", id: "moves" }, h("h2", {}, "What moves if a hub is added or drained"), h("p", { class: "muted" }, "Synthetic registration ids through the same policy, before and after."));
  main.append(h("div", { class: "grid two" }, hubsPanel, rulesPanel), h("div", { class: "grid two", style: "margin-top:16px" }, playPanel, movesPanel));

  const [status, enrollments, registrations] = await Promise.all([api("GET", "/api/admin/status"), api("GET", "/api/admin/enrollments"), api("GET", "/api/admin/registrations")]);
  hubsPanel.append(bars(status.hubs.map((hub) => ({ name: hub.name, count: hub.devices }))), commandLine(emulatorCommand("status")));
  if (info.functions) {
    api("GET", "/api/log/rules").then((answer) => {
      const byRule = new Map();
      for (const entry of answer.counts) byRule.set(entry.rule, (byRule.get(entry.rule) || 0) + entry.devices);
      rulesPanel.append(bars([...byRule].map(([name, count]) => ({ name, count })), true),
        h("h3", {}, "rule → hub"), h("table", {}, h("tbody", {}, answer.counts.map((c) => h("tr", {}, h("td", {}, c.rule), h("td", { class: "mono" }, c.hub), h("td", { class: "num" }, c.devices))))),
        h("p", { class: "note" }, `From the registration log in Table storage: the latest assignment of ${answer.sampled} of ${plural(answer.devices, "active device")}.`));
    }).catch((error) => rulesPanel.append(h("p", { class: "muted" }, error.message)));
  } else rulesPanel.append(h("p", { class: "muted" }, "Rules come from the registration log, which the hosted Functions app keeps; it is not hosted here."));

  const customs = enrollments.enrollments;
  const enrollmentSelect = () => h("select", {}, customs.map((e) => h("option", { value: `${e.kind}/${e.id}` }, `${e.kind} ${e.id} (${e.allocation})`)));
  const chosen = customs.find((e) => e.allocation === "custom");
  const sample = (registrations.registrations[0] || {}).registration_id || "breakroom499-contoso-tstrsd-007";

  // playground
  const idInput = h("input", { id: "play-id", type: "text", value: sample, style: "width:100%" });
  const playEnrollment = enrollmentSelect();
  if (chosen) playEnrollment.value = `${chosen.kind}/${chosen.id}`;
  const payloadInput = h("textarea", { id: "play-payload", placeholder: "optional: the device's payload as JSON", style: "min-height:54px" });
  const currentHub = h("select", { id: "play-current" }, h("option", { value: "" }, "none (first registration)"), info.hubs.map((hub) => h("option", { value: hub }, hub)));
  const playResult = h("div", { class: "result", id: "play-result" });
  playPanel.append(field("Registration id", idInput), h("div", { class: "row" }, field("Enrollment", playEnrollment), field("Current hub (re-provisioning)", currentHub)), field("Payload", payloadInput),
    h("div", { class: "toolbar", style: "margin-top:8px" }, h("button", { type: "button", class: "primary", id: "play-run", onclick: async () => {
      clear(playResult);
      try {
        const body = { registration_id: idInput.value.trim(), enrollment: playEnrollment.value || null, current_hub: currentHub.value || null };
        const payload = parseJsonInput(payloadInput.value, "payload");
        if (payload !== undefined) body.payload = payload;
        const answer = await api("POST", "/api/policy/decide", body);
        const d = answer.decision;
        append(playResult, [h("dl", { class: "kv" },
          h("dt", {}, "Outcome"), h("dd", {}, pill(d.outcome)),
          h("dt", {}, "Rule"), h("dd", { id: "play-rule" }, d.rule),
          d.outcome === "assigned" ? [h("dt", {}, "Strategy"), h("dd", {}, d.strategy), h("dt", {}, "Hub"), h("dd", { class: "mono", id: "play-hub" }, d.hub)] : [h("dt", {}, "Reason"), h("dd", {}, d.reason)],
          h("dt", {}, "Linked hubs"), h("dd", { class: "mono" }, answer.linked_hubs.join(", "))),
          d.initial_twin ? jsonBox("initial twin", d.initial_twin, true) : null, d.payload ? jsonBox("payload returned to the device", d.payload, true) : null,
          commandLine(answer.command)]);
      } catch (error) { failed(error); }
    } }, "Decide")), playResult);

  // what moves
  const template = h("input", { id: "moves-template", type: "text", value: sample.includes("-") ? `sim{n}-${sample.split("-").slice(1).join("-")}` : "device-{n}", style: "width:100%" });
  const countInput = h("input", { id: "moves-count", type: "number", value: "1000", min: "1", max: "5000", style: "width:100px" });
  const movesEnrollment = enrollmentSelect();
  if (chosen) movesEnrollment.value = `${chosen.kind}/${chosen.id}`;
  const firstHub = info.hubs[0] || "new-hub.azure-devices.net";
  const addInput = h("input", { id: "moves-add", type: "text", value: firstHub.replace(/^([^.]*)/, "$1-2"), style: "width:100%" });
  const drainSelect = h("select", { id: "moves-drain" }, info.hubs.map((hub) => h("option", { value: hub }, hub)));
  const mode = h("select", { id: "moves-mode" }, h("option", { value: "add" }, "add a hub"), h("option", { value: "drain" }, "drain a hub"));
  const movesResult = h("div", { class: "result", id: "moves-result" });
  const addField = field("Hub to add", addInput);
  const drainField = field("Hub to drain", drainSelect);
  drainField.hidden = true;
  mode.addEventListener("change", () => { addField.hidden = mode.value !== "add"; drainField.hidden = mode.value !== "drain"; });
  movesPanel.append(field("Synthetic ids ({n} is 0, 1, 2, …)", template), h("div", { class: "row" }, field("How many", countInput), field("Enrollment", movesEnrollment), field("Change", mode)), addField, drainField,
    h("div", { class: "toolbar", style: "margin-top:8px" }, h("button", { type: "button", class: "primary", id: "moves-run", onclick: async () => {
      clear(movesResult);
      try {
        const body = { template: template.value, count: Number(countInput.value), enrollment: movesEnrollment.value || null };
        if (mode.value === "add") body.add = addInput.value.trim(); else body.drain = drainSelect.value;
        const answer = await api("POST", "/api/policy/moves", body);
        const share = answer.count ? (100 * answer.moved / answer.count).toFixed(1) : "0";
        movesResult.append(h("p", {}, h("strong", { id: "moves-moved" }, `${answer.moved} of ${answer.count}`), ` would move (${share} %).`),
          h("div", { class: "grid two" }, h("div", {}, h("h3", {}, "now"), bars(Object.entries(answer.before).map(([name, count]) => ({ name, count })))),
            h("div", {}, h("h3", {}, "after"), bars(Object.entries(answer.after).map(([name, count]) => ({ name, count })), true))),
          answer.flows.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "from"), h("th", {}, "to"), h("th", { class: "num" }, "devices"))),
            h("tbody", {}, answer.flows.map((f) => h("tr", {}, h("td", {}, hostNode(f.from)), h("td", {}, hostNode(f.to)), h("td", { class: "num" }, f.count))))) : h("p", { class: "muted" }, "Nothing moves."));
      } catch (error) { failed(error); }
    } }, "Compare")), movesResult);
}

const FAULT_FIELDS = [
  ["throttle_seconds", "Throttle DPS for (s)", true],
  ["throttle_requests", "Throttle the next N DPS requests", true],
  ["retry_after", "retry-after of those (s)", true],
  ["webhook_latency", "Webhook latency (s)", true],
  ["refuse_seconds", "Refuse connections for (s)", false],
  ["refuse_connects", "Refuse the next N connections", false],
  ["drop_every", "Drop connections every (s)", false],
];

async function viewDrills(main) {
  main.append(pageHead("Drills", "faults and the key-rotation drill, one click away; each shows its operator command"));
  const faultsPanel = h("div", { class: "panel", id: "faults" }, h("h2", {}, "Fault injection"));
  const activePanel = h("div", { class: "panel", id: "active-faults" }, h("h2", {}, "Active faults"));
  const rotation = h("div", { class: "panel", id: "rotation" }, h("h2", {}, "Key-rotation drill"));
  main.append(h("div", { class: "grid two" }, faultsPanel, activePanel), h("div", { style: "margin-top:16px" }, rotation));
  const target = h("select", { id: "fault-target" }, h("option", { value: "dps" }, "dps"), info.hubs.map((hub) => h("option", { value: hub }, hub)));
  const inputs = {};
  const grid = h("div", { class: "fields" });
  for (const [name, label, dpsOnly] of FAULT_FIELDS) {
    inputs[name] = h("input", { type: "number", min: "0", step: "any", id: `fault-${name}`, placeholder: "off" });
    const wrapper = field(label, inputs[name]);
    wrapper.dataset.dpsOnly = dpsOnly ? "1" : "";
    grid.append(wrapper);
  }
  const command = h("div");
  function spec() {
    const body = {};
    for (const [name, , dpsOnly] of FAULT_FIELDS) {
      if (dpsOnly && target.value !== "dps") continue;
      const value = inputs[name].value.trim();
      if (value !== "") body[name] = Number(value);
    }
    return body;
  }
  function words(body) {
    return Object.entries(body).flatMap(([name, value]) => [`--${name.replace(/_/g, "-")}`, String(value)]);
  }
  function showCommand() { clear(command).append(commandLine(emulatorCommand("fault-set", target.value, ...words(spec())))); }
  function refreshFields() {
    for (const wrapper of grid.children) wrapper.hidden = wrapper.dataset.dpsOnly === "1" && target.value !== "dps";
    showCommand();
  }
  target.addEventListener("change", refreshFields);
  for (const input of Object.values(inputs)) input.addEventListener("input", showCommand);
  const result = h("div", { class: "result" });
  async function act(method, suffix, body, shown) {
    clear(result);
    try {
      const answer = await api(method, `/api/admin/faults/${enc(target.value)}${suffix}`, body);
      append(result, [h("p", {}, pill("done", "ok"), suffix === "/drop" ? ` dropped ${plural(answer.dropped, "connection")}` : ""), shown ? commandLine(shown) : null]);
      await loadActive();
    } catch (error) { failed(error); }
  }
  faultsPanel.append(field("Target (DPS, or a hub)", target), grid, command,
    h("div", { class: "toolbar", style: "margin-top:8px" },
      h("button", { type: "button", class: "primary", id: "fault-set", onclick: () => act("PUT", "", spec(), null) }, "Set faults"),
      h("button", { type: "button", id: "fault-clear", onclick: () => act("DELETE", "", undefined, emulatorCommand("fault-clear", target.value)) }, "Clear"),
      h("button", { type: "button", class: "danger", id: "fault-drop", onclick: () => act("POST", "/drop", {}, emulatorCommand("drop", target.value)) }, "Drop connections now")),
    result);
  refreshFields();

  const activeBody = h("div");
  activePanel.append(activeBody, commandLine(emulatorCommand("faults")));
  async function loadActive() {
    const answer = await api("GET", "/api/admin/faults");
    const entries = Object.entries(answer.faults);
    clear(activeBody);
    if (!entries.length) { activeBody.append(h("p", { class: "muted", id: "no-faults" }, "No fault is active.")); return; }
    activeBody.append(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Target"), h("th", {}, "Fault"), h("th", {}, "Left"))),
      h("tbody", {}, entries.map(([name, state]) => h("tr", { dataset: { target: name } }, h("td", { class: "mono" }, name),
        h("td", {}, Object.entries(state.spec).filter(([k, v]) => v && k !== "retry_after").map(([k, v]) => h("div", {}, `${k.replace(/_/g, " ")}: ${v}`))),
        h("td", {}, Object.entries(state).filter(([k, v]) => k.endsWith("_left") && v).map(([k, v]) => h("div", {}, `${k.replace(/_left$/, "").replace(/_/g, " ")}: ${typeof v === "number" ? Math.round(v * 10) / 10 : v}`))))))));
  }
  await loadActive();
  const timer = setInterval(() => loadActive().catch(() => {}), 2000);

  // key rotation
  const enrollments = (await api("GET", "/api/admin/enrollments")).enrollments.filter((e) => e.kind === "group");
  const group = h("select", { id: "rotation-group" }, enrollments.map((e) => h("option", { value: e.id }, e.id)));
  const device = "breakroom499-contoso-tstrsd-007";
  const regenerate = (slot) => armedButton(`Regenerate the ${slot} key`, "Confirm", async () => {
    try {
      await api("POST", `/api/admin/enrollments/group/${enc(group.value)}/regenerate-key`, { slot });
      toast(`new ${slot} key for ${group.value}`);
    } catch (error) { failed(error); }
  });
  const step = (title, text, ...rest) => h("div", { class: "step" }, h("h4", {}, title), h("p", { class: "muted" }, text), ...rest);
  rotation.append(field("Enrollment group", group), h("div", { class: "steps", style: "margin-top:10px" },
    step("1. Regenerate the primary key", "The device still connects: with settings.json it goes straight to its hub, which kept its keys.",
      regenerate("primary"), commandLine(emulatorCommand("regenerate-key", group.value || "GROUP", "--slot", "primary")), commandLine(".venv/bin/python -m simulator run --local")),
    step("2. Forget the hub", "Without settings.json, DPS refuses the primary derived key and the simulator falls back to the secondary.",
      commandLine("rm settings.json && .venv/bin/python -m simulator run --local")),
    step("3. Regenerate the secondary key", "Both keys are refused: the simulator exits with status 3 and says the keys must be re-derived.",
      regenerate("secondary"), commandLine(emulatorCommand("regenerate-key", group.value || "GROUP", "--slot", "secondary")), commandLine("rm settings.json && .venv/bin/python -m simulator run --local")),
    step("4. Re-derive the device's keys", "The factory derives new keys from the new group keys; the device registers again with its primary key.",
      commandLine(`.venv/bin/python -m simulator derive-key --local ${device} --force && .venv/bin/python -m simulator run --local`))));
  return () => clearInterval(timer);
}

async function viewLog(main) {
  main.append(pageHead("Registration log", "the Functions app's log and inventory in Table storage, next to DPS's records"));
  const panel = h("div", { class: "panel" });
  main.append(panel);
  if (!info.functions) { panel.append(h("p", { class: "muted" }, "The Functions app is not hosted by this local cloud, so its registration log cannot be read here.")); return; }
  const [inventory, registrations] = await Promise.all([api("GET", "/api/log/devices"), api("GET", "/api/admin/registrations")]);
  const dps = new Map(registrations.registrations.map((r) => [r.registration_id.toLowerCase(), r]));
  const rows = new Map();
  for (const device of inventory.devices) rows.set(device.registration_id.toLowerCase(), { registration_id: device.registration_id, log: device, dps: dps.get(device.registration_id.toLowerCase()) });
  for (const [key, record] of dps) if (!rows.has(key)) rows.set(key, { registration_id: record.registration_id, dps: record });
  const agree = (r) => !!(r.log && r.dps && r.dps.status === "assigned" && String(r.log.hub).toLowerCase() === String(r.dps.assigned_hub).toLowerCase());
  const table = sortableTable([
    { key: "registration_id", label: "Registration id", cell: (r) => h("span", { class: "mono" }, r.registration_id) },
    { key: "dps_status", label: "DPS", value: (r) => (r.dps ? r.dps.status : ""), cell: (r) => r.dps ? pill(r.dps.status) : h("span", { class: "muted" }, "not known to DPS") },
    { key: "dps_hub", label: "DPS hub", value: (r) => (r.dps ? r.dps.assigned_hub || "" : ""), cell: (r) => (r.dps && r.dps.assigned_hub ? hostNode(r.dps.assigned_hub) : "–") },
    { key: "log_hub", label: "Log hub", value: (r) => (r.log ? r.log.hub || "" : ""), cell: (r) => (r.log && r.log.hub ? hostNode(r.log.hub) : "–") },
    { key: "inventory", label: "Inventory", value: (r) => (r.log ? r.log.status : ""), cell: (r) => r.log ? pill(r.log.status) : h("span", { class: "muted nowrap" }, "no log row") },
    { key: "count", label: "Provisioned", num: true, value: (r) => (r.log ? r.log.provisioning_count : 0) },
    { key: "last", label: "Last provisioned", num: true, value: (r) => (r.log ? toSeconds(r.log.last_provisioned) || 0 : 0), cell: (r) => timeCell(r.log ? r.log.last_provisioned : null) },
    { key: "connection", label: "Connection", value: (r) => (r.log ? r.log.connection_state : ""), cell: (r) => (r.log ? r.log.connection_state : "–") },
    { key: "agree", label: "Agree", value: (r) => (agree(r) ? 1 : 0), cell: (r) => agree(r) ? pill("same hub", "ok") : pill("differs", "warn") },
  ], { sortKey: "last", descending: true, id: (r) => r.registration_id.toLowerCase(), detail: history, empty: "No registrations logged yet." });
  function history(row) {
    const box = h("div", {}, h("p", { class: "muted" }, "loading…"));
    api("GET", `/api/log/devices/${enc(row.registration_id)}?limit=20`).then((answer) => {
      clear(box).append(h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Outcome", "Hub", "Rule", "Strategy", "Re-provision", "Decision ms", "Reason"].map((t) => h("th", {}, t)))),
        h("tbody", {}, answer.registrations.map((e) => h("tr", {}, h("td", {}, timeCell(e.time)), h("td", {}, pill(e.outcome)), h("td", { class: "mono" }, e.hub || "–"), h("td", {}, e.rule || "–"), h("td", {}, e.strategy || "–"),
          h("td", {}, e.reprovision ? `from ${e.previous_hub}` : "no"), h("td", { class: "num" }, e.decision_ms), h("td", {}, e.reason || ""))))),
        commandLine(`curl -s -H "x-functions-key: $(cat .emulator/master-key)" ${info.functions_url}/api/devices/${enc(row.registration_id)}`));
    }).catch((error) => clear(box).append(h("p", { class: "muted" }, error.message)));
    return box;
  }
  table.set([...rows.values()]);
  panel.append(table.node, commandLine(`curl -s -H "x-functions-key: $(cat .emulator/master-key)" ${info.functions_url}/api/devices`));
}

// ---- router -----------------------------------------------------------------------------------

let cleanup = null;
let generation = 0;

function stopView(stop) {
  if (typeof stop === "function") { try { stop(); } catch (error) { /* the old view is gone anyway */ } }
}

async function route() {
  // Each view draws into a container of its own: one still loading when the address changes
  // draws into a detached node, and its listeners are stopped as soon as it returns.
  const mine = ++generation;
  routedHash = location.hash;
  stopView(cleanup);
  cleanup = null;
  const main = h("div", { class: "view" });
  clear($("main")).append(main);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p));
  const name = parts[0] || "";
  const viewNames = { "": "provisioning", enrollments: "enrollments", hubs: "hubs", device: "hubs", allocation: "allocation", drills: "drills", log: "log" };
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === viewNames[name]);
  if (name !== "device") live.open(null, null);
  try {
    let result;
    if (name === "") result = await viewProvisioning(main);
    else if (name === "enrollments") result = await viewEnrollments(main);
    else if (name === "hubs" && parts[1]) result = await viewHub(main, parts[1]);
    else if (name === "hubs") result = await viewHubs(main);
    else if (name === "device" && parts[2]) result = await viewDevice(main, parts[1], parts.slice(2).join("/"));
    else if (name === "allocation") result = await viewAllocation(main);
    else if (name === "drills") result = await viewDrills(main);
    else if (name === "log") result = await viewLog(main);
    else main.append(pageHead("Not found"), h("p", {}, h("a", { href: "#/" }, "Back to provisioning")));
    if (mine === generation) cleanup = typeof result === "function" ? result : null;
    else stopView(result);
  } catch (error) {
    main.append(h("div", { class: "banner" }, error.message || String(error)));
  }
}

// The first view is drawn once /api/info has answered. An address that changes before then (a
// link followed while the page loads) is drawn by that first route, which reads location.hash
// then; its hashchange adds nothing. Without this, the view was drawn twice, and what was typed
// into the first drawing was lost when the second replaced it.
let routedHash = null;
const ready = new Promise((resolve) => window.addEventListener("DOMContentLoaded", resolve)).then(loadInfo);
ready.then(() => route(), (error) => showBanner(error.message));
window.addEventListener("hashchange", () => {
  ready.then(() => { if (location.hash !== routedHash) route(); }, () => {});
});
