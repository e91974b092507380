// The explorer page: query bar, time range, histogram, results, field sidebar, live
// tail. Every value from the logs is rendered as text (text.js); the page holds no
// inline script or handler (the server's CSP forbids them), only this module.

import { Histogram } from "./histogram.js";
import { el, formatTime, getField, leafPaths } from "./text.js";

const $ = (id) => document.getElementById(id);
const RANGES = new Set(["15m", "1h", "24h", "7d", "all"]);
const state = { q: "", range: "1h", from: "", to: "" };
const page = { gen: 0, next: null, range: null, position: null, loading: false, total: 0 };
const openFields = new Set();
const seenFields = new Set();
const topValues = new Map();
let info = { kind: "store", where: "", message_field: "message", default_fields: [] };
let histogram = null;
let live = null;
let pending = [];

// -- state <-> address ------------------------------------------------------------------

function params(extra = {}, range = null) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (range) {
    // The range a first page was resolved to (a relative range is fixed by then).
    if (range.from) p.set("from", range.from);
    if (range.to) p.set("to", range.to);
    if (!range.from && !range.to) p.set("range", "all");
  } else if (state.range === "abs") {
    if (state.from) p.set("from", state.from);
    if (state.to) p.set("to", state.to);
  } else {
    p.set("range", state.range);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) p.set(k, v);
  return p;
}

function readAddress() {
  const u = new URLSearchParams(location.search);
  state.q = u.get("q") || "";
  state.from = u.get("from") || "";
  state.to = u.get("to") || "";
  const range = u.get("range") || "1h";
  state.range = state.from || state.to ? "abs" : RANGES.has(range) ? range : "1h";
  $("query").value = state.q;
  $("range").value = state.range;
  $("absolute").hidden = state.range !== "abs";
  $("from").value = shownTime(state.from);
  $("to").value = shownTime(state.to);
}

function shownTime(text) {
  return /^\d+$/.test(text) ? formatTime(text) : text;
}

function writeAddress(push) {
  const url = "?" + params().toString();
  if (url === location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function readInputs() {
  state.q = $("query").value.trim();
  state.range = $("range").value;
  if (state.range === "abs") {
    // Keep the exact nanoseconds of a zoom unless the person edited the field.
    const from = $("from").value.trim();
    const to = $("to").value.trim();
    if (from !== shownTime(state.from)) state.from = from;
    if (to !== shownTime(state.to)) state.to = to;
  } else {
    state.from = "";
    state.to = "";
  }
}

// -- the API --------------------------------------------------------------------------

async function api(path, p) {
  const response = await fetch(`/api/${path}?${p.toString()}`, { credentials: "same-origin" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { error: `${response.status} ${response.statusText}` };
  }
  return { status: response.status, body };
}

// -- searching ------------------------------------------------------------------------

async function refresh(push) {
  if (push !== undefined) writeAddress(push);
  const gen = ++page.gen;
  stopLive();
  hideError();
  $("notice").hidden = true;
  $("results").replaceChildren();
  $("end").hidden = true;
  page.next = null;
  page.range = null;
  page.loading = true;
  document.body.classList.add("loading");
  const fields = [...new Set([...info.default_fields, ...openFields])];
  const [agg, res] = await Promise.all([
    api("aggregate", params({ top: fields.join(","), size: "5" })),
    api("search", params()),
  ]);
  if (gen !== page.gen) return;
  page.loading = false;
  document.body.classList.remove("loading");
  for (const answer of [agg, res]) {
    if (answer.status !== 200) {
      showError(answer.body);
      $("total").textContent = "";
      $("total").dataset.total = "";
      return;
    }
  }
  showAggregate(agg.body);
  showPage(res.body);
  if ($("live").getAttribute("aria-pressed") === "true") startLive();
}

function showError(body) {
  $("query-error").hidden = false;
  $("query-error-message").textContent = body.error || "error";
  $("query-error-caret").textContent = body.caret || "";
}

function hideError() {
  $("query-error").hidden = true;
}

function showAggregate(body) {
  page.total = body.total;
  showTotal();
  histogram.show(body);
  for (const [field, values] of Object.entries(body.top)) topValues.set(field, values);
  const notes = [];
  if (body.range.shifted) {
    const label = $("range").selectedOptions[0].textContent.toLowerCase();
    notes.push(
      `Nothing was stored in the ${label}: showing the same span up to the newest event ` +
        `(${formatTime(body.range.to)}).`,
    );
  }
  if (body.unknown_fields && body.unknown_fields.length) {
    notes.push(`No document in this range has the field ${body.unknown_fields.join(", ")}.`);
  }
  if (notes.length) {
    $("notice").hidden = false;
    $("notice").textContent = notes.join(" ");
  }
  renderFields();
}

function showTotal() {
  $("total").dataset.total = String(page.total);
  $("total").textContent = `${page.total.toLocaleString("en")} matches`;
}

function showPage(body) {
  page.next = body.next;
  page.range = body.range;
  if (page.position === null || body.position !== undefined) page.position = body.position;
  const rows = body.hits.map(row);
  $("results").append(...rows);
  for (const hit of body.hits) for (const f of leafPaths(hit.doc)) seenFields.add(f);
  $("end").hidden = page.next !== null || !$("results").childElementCount;
  renderFields();
  if (page.next) maybeMore();
}

async function loadMore() {
  if (page.loading || !page.next) return;
  page.loading = true;
  const gen = page.gen;
  const res = await api("search", params({ before: page.next }, page.range));
  page.loading = false;
  if (gen !== page.gen) return;
  if (res.status !== 200) {
    showError(res.body);
    return;
  }
  showPage(res.body);
}

function maybeMore() {
  const box = $("sentinel").getBoundingClientRect();
  if (box.top < window.innerHeight + 400) loadMore();
}

// -- one result -----------------------------------------------------------------------

function first(doc, ...paths) {
  for (const p of paths) {
    const v = getField(doc, p);
    if (typeof v === "string" && v) return v;
  }
  return "";
}

function messageOf(doc) {
  const v = getField(doc, info.message_field);
  if (v === undefined || v === null) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function row(hit) {
  const doc = hit.doc;
  const item = el("div", "row");
  item.setAttribute("role", "listitem");
  item.dataset.t = hit.t;
  item.dataset.id = hit.id;
  const line = el("div", "line");
  const source = [
    first(doc, "kubernetes.namespace", "kubernetes.namespace_name"),
    first(doc, "kubernetes.pod.name", "kubernetes.pod_name"),
    first(doc, "kubernetes.container.name", "kubernetes.container_name"),
  ].filter(Boolean);
  const level = first(doc, "level", "log.level", "severity");
  const stream = first(doc, "stream");
  line.append(
    el("span", "time", formatTime(hit.t)),
    el("span", "source", source.join("/") || first(doc, "log.file.path", "host.name")),
    el("span", `level level-${level.toLowerCase().replace(/[^a-z]/g, "")}`, level || stream),
    el("span", "msg", messageOf(doc)),
  );
  line.addEventListener("click", () => toggle(item, hit));
  item.append(line);
  return item;
}

function toggle(item, hit) {
  const open = item.querySelector(":scope > .detail");
  if (open) {
    open.remove();
    item.classList.remove("open");
    return;
  }
  item.classList.add("open");
  const detail = el("div", "detail");
  const json = JSON.stringify(hit.doc, null, 2);
  const pre = el("pre", "json", json);
  const copy = el("button", "copy", "Copy JSON");
  copy.type = "button";
  copy.addEventListener("click", () => copyText(json, pre, copy));
  const context = el("button", "context", "Show context");
  context.type = "button";
  context.addEventListener("click", () => showContext(hit));
  const bar = el("div", "actions");
  bar.append(copy, context);
  detail.append(bar, pre);
  item.append(detail);
}

async function copyText(text, pre, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    window.getSelection().selectAllChildren(pre); // no clipboard API (plain http): select it
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy JSON"), 1500);
}

async function showContext(hit) {
  const path = getField(hit.doc, "log.file.path");
  const offset = getField(hit.doc, "log.offset");
  const panel = $("context-panel");
  const lines = $("context-lines");
  panel.hidden = false;
  lines.replaceChildren();
  const p = new URLSearchParams({ t: hit.t });
  if (typeof path === "string" && typeof offset === "number") {
    // The line's file, by offset (ECS documents).
    p.set("path", path);
    p.set("offset", String(offset));
    $("context-title").textContent = `${path}: 50 lines before and after`;
  } else {
    // No file and offset (fluentd documents): the server takes the line's container.
    p.set("id", hit.id);
    const container = [
      first(hit.doc, "kubernetes.namespace_name", "kubernetes.namespace"),
      first(hit.doc, "kubernetes.pod_name", "kubernetes.pod.name"),
      first(hit.doc, "kubernetes.container_name", "kubernetes.container.name"),
    ].filter(Boolean);
    $("context-title").textContent = `container ${container.join("/")}: 50 lines before and after`;
  }
  const res = await api("context", p);
  if (res.status !== 200) {
    $("context-title").textContent = res.body.error || "error";
    $("context-panel").classList.add("failed");
    return;
  }
  $("context-panel").classList.remove("failed");
  for (const line of res.body.lines) {
    const div = el("div", line.current ? "context-line current" : "context-line");
    div.append(el("span", "time", formatTime(line.t)), el("span", "msg", messageOf(line.doc)));
    lines.append(div);
  }
  const current = lines.querySelector(".current");
  if (current) current.scrollIntoView({ block: "center" });
}

// -- field sidebar --------------------------------------------------------------------

function renderFields() {
  const skip = new Set(["@timestamp", info.message_field, "log.offset", "event.id"]);
  if (info.message_field === "log") skip.add("time"); // fluentd: a copy of @timestamp
  const names = [...new Set([...info.default_fields, ...openFields, ...seenFields])]
    .filter((f) => !skip.has(f))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const out = names.map((name) => {
    const box = el("div", "field");
    box.dataset.field = name;
    const title = el("button", "field-name", name);
    title.type = "button";
    title.addEventListener("click", () => openField(name));
    box.append(title);
    const values = topValues.get(name);
    if (values && (openFields.has(name) || info.default_fields.includes(name))) {
      const list = el("ul", "values");
      if (!values.length) list.append(el("li", "none", "no values in this range"));
      for (const [value, count] of values) {
        const li = el("li", "value");
        const plus = el("button", "filter-in", "+");
        plus.type = "button";
        plus.title = "only this value";
        plus.addEventListener("click", () => addTerm(name, value, false));
        const minus = el("button", "filter-out", "−");
        minus.type = "button";
        minus.title = "all but this value";
        minus.addEventListener("click", () => addTerm(name, value, true));
        const text = el("button", "value-text", String(value));
        text.type = "button";
        text.addEventListener("click", () => addTerm(name, value, false));
        li.append(plus, minus, text, el("span", "count", String(count)));
        list.append(li);
      }
      box.append(list);
    }
    return box;
  });
  $("fields").replaceChildren(...out);
}

function rank(name) {
  const k = info.default_fields.indexOf(name);
  return k < 0 ? 100 : k;
}

async function openField(name) {
  if (openFields.has(name) && !info.default_fields.includes(name)) {
    openFields.delete(name);
    renderFields();
    return;
  }
  openFields.add(name);
  const res = await api("aggregate", params({ top: name, size: "5" }));
  if (res.status === 200) topValues.set(name, res.body.top[name] || []);
  renderFields();
}

function quoteValue(value) {
  if (typeof value !== "string") return String(value);
  if (/^[^\s():"<>=\\*]+$/.test(value) && !/^(and|or|not)$/i.test(value)) return value;
  return '"' + value.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

function addTerm(field, value, negate) {
  let term = `${field}:${quoteValue(value)}`;
  if (negate) term = `not ${term}`;
  const q = $("query").value.trim();
  const base = /\bor\b/i.test(q) ? `(${q})` : q;
  $("query").value = q ? `${base} and ${term}` : term;
  readInputs();
  refresh(true);
}

// -- live tail ------------------------------------------------------------------------

function startLive() {
  stopLive();
  const extra = page.position !== null && page.position !== undefined ? { after: String(page.position) } : {};
  live = new EventSource(`/api/tail?${params(extra).toString()}`);
  live.addEventListener("message", (e) => {
    const hits = JSON.parse(e.data);
    page.total += hits.length;
    showTotal();
    if (atTop()) prepend(hits);
    else pending.push(...hits);
    liveStatus();
  });
  live.addEventListener("error", () => liveStatus("reconnecting…"));
  liveStatus();
}

function stopLive() {
  if (live) live.close();
  live = null;
  pending = [];
  liveStatus();
}

function atTop() {
  return window.scrollY < 40;
}

function prepend(hits) {
  const rows = hits.map(row).reverse(); // newest first
  $("results").prepend(...rows);
  for (const r of rows) r.classList.add("new");
}

function liveStatus(extra) {
  const status = $("live-status");
  if (!live) {
    status.hidden = true;
    return;
  }
  status.hidden = false;
  status.textContent = pending.length
    ? `Live: paused while you scroll, ${pending.length} new line(s) above; scroll to the top to see them.`
    : `Live: following new lines${extra ? " (" + extra + ")" : ""}.`;
  status.classList.toggle("paused", pending.length > 0);
}

window.addEventListener(
  "scroll",
  () => {
    if (live && pending.length && atTop()) {
      prepend(pending);
      pending = [];
      liveStatus();
    }
    if (page.next) maybeMore();
  },
  { passive: true },
);

// -- theme and keys -------------------------------------------------------------------

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem("kubelogs-theme", theme);
  } catch {
    // storage may be disabled: the theme lasts for this page only
  }
}

function initialTheme() {
  let saved = null;
  try {
    saved = localStorage.getItem("kubelogs-theme");
  } catch {
    saved = null;
  }
  if (saved === "light" || saved === "dark") return saved;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

document.addEventListener("keydown", (e) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("query").focus();
    $("query").select();
  } else if (e.key === "Escape" && document.activeElement === $("query")) {
    e.preventDefault();
    $("query").value = "";
    readInputs();
    refresh(true);
  } else if (e.key === "Escape") {
    $("context-panel").hidden = true;
  }
});

// -- start ----------------------------------------------------------------------------

async function start() {
  setTheme(initialTheme());
  histogram = new Histogram($("histogram"), [$("axis-start"), $("axis-step"), $("axis-end")], (from, to) => {
    state.range = "abs";
    state.from = String(from);
    state.to = String(to);
    $("range").value = "abs";
    $("absolute").hidden = false;
    $("from").value = shownTime(state.from);
    $("to").value = shownTime(state.to);
    refresh(true);
  });
  $("query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    readInputs();
    refresh(true);
  });
  $("range").addEventListener("change", () => {
    $("absolute").hidden = $("range").value !== "abs";
    if ($("range").value === "abs") {
      if (!$("from").value && page.range && page.range.from) $("from").value = formatTime(page.range.from);
      $("from").focus();
      return;
    }
    readInputs();
    refresh(true);
  });
  $("theme").addEventListener("click", () => {
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  });
  $("live").addEventListener("click", () => {
    const on = $("live").getAttribute("aria-pressed") !== "true";
    $("live").setAttribute("aria-pressed", String(on));
    if (on) startLive();
    else stopLive();
  });
  $("context-close").addEventListener("click", () => ($("context-panel").hidden = true));
  window.addEventListener("popstate", () => {
    readAddress();
    refresh();
  });
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }).observe($("sentinel"));
  const res = await api("info", new URLSearchParams());
  if (res.status === 200) info = res.body;
  $("where").textContent = ` in ${info.kind === "es" ? "Elasticsearch" : "the store"} ${info.where}`;
  readAddress();
  await refresh(false);
  document.body.dataset.ready = "true";
}

start();
