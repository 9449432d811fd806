// netreduce dashboard: polls the JSON API, sorts the table, builds the job form from the params schema.
// Plain JS, no library, no outside asset.
"use strict";

const boot = JSON.parse(document.getElementById("dashboard-data").textContent);
const $ = (sel) => document.querySelector(sel);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const state = { rows: null, trials: new Map(), open: new Set(), sortKey: null, sortDir: 1, chosen: null, jobStatus: new Map(), techniques: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}

// The bearer token (NETREDUCE_API_TOKEN) lives in this browser's localStorage and goes with every request.
const TOKEN_KEY = "netreduce.apiToken";
const tokenInput = document.getElementById("api-token");
tokenInput.value = localStorage.getItem(TOKEN_KEY) || "";
tokenInput.addEventListener("change", () => localStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));

async function api(path, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...auth } });
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status}`), { status: r.status, body });
  return body;
}

// Same formats as compress/result_columns.py::format_value.
function fmt(value, kind) {
  if (kind === "front") return value ? "★" : "";
  if (value === null || value === undefined) return "—";
  if (kind === "int") return Number(value).toLocaleString("en-US");
  if (kind === "fixed2") return Number(value).toFixed(2);
  if (kind === "signed2") return (value >= 0 ? "+" : "") + Number(value).toFixed(2);
  if (kind === "ratio") return (100 * value).toFixed(1) + " %";
  if (kind === "speedup") return Number(value).toFixed(2) + "×";
  if (kind === "pvalue") return value < 0.001 ? "<0.001" : Number(value).toFixed(3);
  if (kind === "bool") return value ? "yes" : "no";
  if (kind === "params") return value === "{}" ? "" : String(value);
  return String(value);
}

const query = (params) => new URLSearchParams(params).toString();
const rowKey = (r) => `${r.job_id}|${r.label}`;

// ---- jobs: poll fast while something runs ----
function jobRow(j) {
  const pct = Math.round(100 * (j.progress || 0));
  const bar = el("div", { class: "bar" }, el("div", { style: `width: ${pct}%` }));
  const cancel = TERMINAL.has(j.status) ? "" : el("button", { class: "small", type: "button", "data-cancel": j.id, text: "cancel" });
  return el(
    "tr",
    { "data-job-id": j.id, "data-status": j.status },
    el("td", { text: j.id }),
    el("td", { text: j.technique }),
    el("td", {}, el("code", { text: j.base_model_id })),
    el("td", {}, el("span", { class: `badge status-${j.status}`, text: j.status })),
    el("td", { class: "progress-col" }, bar, ` ${pct} %`),
    el("td", { class: "stage", text: j.error || j.stage || "" }),
    el("td", {}, cancel),
  );
}

async function pollJobs() {
  let active = false;
  try {
    const page = await api("/jobs?limit=15");
    let finished = false;
    for (const j of page.items) {
      const before = state.jobStatus.get(j.id);
      // finished since the last poll, or first seen finished (submitted elsewhere: the CLI, another tab)
      if (TERMINAL.has(j.status) && (before === undefined || !TERMINAL.has(before))) finished = true;
      if (!TERMINAL.has(j.status)) active = true;
      state.jobStatus.set(j.id, j.status);
    }
    const body = $("#jobs-body");
    body.replaceChildren(...(page.items.length ? page.items.map(jobRow)
      : [el("tr", { class: "empty" }, el("td", { colspan: 7, class: "muted", text: "No jobs yet." }))]));
    $("#jobs-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (finished) {
      refreshModels();
      refreshComparison();
    }
  } catch (err) {
    $("#jobs-updated").textContent = `cannot reach the API (${err.message}); retrying`;
  }
  setTimeout(pollJobs, active ? 1000 : 4000);
}

$("#jobs-body").addEventListener("click", async (ev) => {
  const id = ev.target.getAttribute && ev.target.getAttribute("data-cancel");
  if (!id) return;
  ev.target.disabled = true;
  try { await api(`/jobs/${id}`, { method: "DELETE" }); } catch (err) { /* finished meanwhile: 409 */ }
});

async function refreshModels() {
  try {
    for (const m of await api("/models")) {
      const badge = document.querySelector(`li[data-model-id="${CSS.escape(m.id)}"] [data-field=status]`);
      if (badge) { badge.textContent = m.status; badge.className = `badge status-${m.status}`; }
    }
  } catch (err) { /* the next finished job tries again */ }
}

// ---- comparison table: sortable, front highlighted ----
function renderTable() {
  const rows = state.rows.map((r, i) => ({ r, i }));
  if (state.sortKey) {
    const k = state.sortKey;
    rows.sort((a, b) => {
      const va = a.r[k], vb = b.r[k];
      if (va === vb) return a.i - b.i;
      if (va === null || va === undefined) return 1; // missing values last, whichever the direction
      if (vb === null || vb === undefined) return -1;
      return (typeof va === "number" || typeof va === "boolean" ? (va > vb ? 1 : -1) : String(va).localeCompare(String(vb))) * state.sortDir;
    });
  }
  const body = $("#comparison-body");
  if (!rows.length) return;
  body.replaceChildren(...rows.flatMap(({ r }) => {
    const cls = [r.pareto && "pareto", r.technique === "baseline" && "baseline", rowKey(r) === state.chosen && "chosen"];
    const trials = r.technique === "baseline" ? [] : (state.trials.get(r.job_id) || []);
    const cells = boot.columns.map((c) => el("td", { class: `k-${c.kind}`, title: c.key === "params" ? r.params : null, text: fmt(r[c.key], c.kind) }));
    if (trials.length) {
      const open = state.open.has(r.job_id);
      const toggle = el("button", { type: "button", class: "trials-toggle", "data-job": String(r.job_id), "aria-expanded": String(open), title: "this search's trials", text: `${open ? "▾" : "▸"} ${trials.length}` });
      cells[0].prepend(toggle, " ");
    }
    const parent = el("tr", { class: cls.filter(Boolean).join(" ") }, ...cells);
    const children = trials.map((t) => {
      const tr = el("tr", { class: "trial", "data-trial-of": String(r.job_id) },
        ...boot.columns.map((c) => el("td", { class: `k-${c.kind}`, text: c.key === "pareto" ? "" : fmt(t[c.key], c.kind) })));
      tr.hidden = !state.open.has(r.job_id);
      return tr;
    });
    return [parent, ...children];
  }));
  for (const th of document.querySelectorAll("#comparison-table th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && state.sortDir === 1);
    th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDir === -1);
  }
}

async function refreshComparison() {
  if (!boot.model) return;
  try {
    const rows = await api(`/comparison?${query({ base_model_id: boot.model, objectives: boot.objectives })}`);
    const all = await api(`/comparison?${query({ base_model_id: boot.model, include_trials: "true" })}`);
    state.trials = new Map();
    for (const t of all.filter((x) => x.trial)) {
      if (!state.trials.has(t.job_id)) state.trials.set(t.job_id, []);
      state.trials.get(t.job_id).push(t);
    }
    const first = state.rows === null; // the server already drew the plot for the first table
    const changed = JSON.stringify(rows) !== JSON.stringify(state.rows);
    state.rows = rows;
    if (changed) {
      await refreshRecommendation(); // sets the chosen row, then the table is drawn once
      if (!first) refreshPlot();
    }
  } catch (err) { /* keep the last table */ }
}

function toggleTrials(ev) {
  const button = ev.target.closest(".trials-toggle");
  if (!button) return;
  const job = Number(button.dataset.job);
  if (state.open.has(job)) state.open.delete(job); else state.open.add(job);
  const open = state.open.has(job);
  button.setAttribute("aria-expanded", String(open));
  button.textContent = `${open ? "▾" : "▸"} ${button.textContent.replace(/^[▸▾]\s*/, "")}`;
  for (const tr of document.querySelectorAll(`#comparison-body tr[data-trial-of="${job}"]`)) tr.hidden = !open;
}

function sortBy(key) {
  if (state.rows === null) return;
  state.sortDir = state.sortKey === key ? -state.sortDir : (key === "accuracy" || key === "pareto" ? -1 : 1);
  state.sortKey = key;
  renderTable();
}

$("#comparison-body").addEventListener("click", toggleTrials);
for (const th of document.querySelectorAll("#comparison-table th")) {
  th.addEventListener("click", () => sortBy(th.dataset.key));
  th.addEventListener("keydown", (ev) => { if (ev.key === "Enter") sortBy(th.dataset.key); });
}

// ---- plot and recommendation ----
function refreshPlot() {
  const img = $("#plot-img");
  if (!img || !boot.model) return;
  img.src = `/comparison/plot.svg?${query({ base_model_id: boot.model, x: $("#plot-x").value, t: Date.now() })}`;
}
$("#plot-x").addEventListener("change", refreshPlot);

async function refreshRecommendation() {
  if (!boot.model) return;
  const target = $("#rec-body");
  try {
    const rec = await api(`/recommendation?${query({
      base_model_id: boot.model, max_accuracy_drop: $("#rec-budget").value || "1", priority: $("#rec-priority").value,
      objectives: boot.objectives,
    })}`);
    state.chosen = rec.chosen ? rowKey(rec.chosen) : null;
    const dl = el("dl", {}, el("dt", { text: "constraint" }), el("dd", { text: rec.constraint }),
      el("dt", { text: "score" }), el("dd", { text: rec.score_formula }));
    if (rec.trade_off) dl.append(el("dt", { text: "trade-off" }), el("dd", { text: rec.trade_off.text }));
    if (rec.excluded.length) {
      const dd = el("dd");
      rec.excluded.forEach((e, i) => { if (i) dd.append(el("br")); dd.append(`${e.row.label}: ${e.detail}`); });
      dl.append(el("dt", { text: "excluded" }), dd);
    }
    const keep = rec.chosen ? el("p", { class: "keep" }, "Keep ", el("strong", { text: rec.chosen.label }))
      : el("p", { class: "keep" }, el("strong", { text: "No row qualifies." }));
    target.replaceChildren(keep, el("p", { text: rec.message }), dl);
    for (const id of ["#report-html", "#report-md"]) {
      const a = $(id);
      if (a) {
        const u = new URL(a.href);
        u.searchParams.set("max_accuracy_drop", $("#rec-budget").value || "1");
        u.searchParams.set("priority", $("#rec-priority").value);
        a.href = u.pathname + u.search;
      }
    }
  } catch (err) {
    const detail = err.body && err.body.detail ? JSON.stringify(err.body.detail) : err.message;
    target.replaceChildren(el("p", { class: "error", text: `cannot recommend: ${detail}` }));
  }
  if (state.rows) renderTable();
}
$("#rec-budget").addEventListener("change", refreshRecommendation);
$("#rec-priority").addEventListener("change", refreshRecommendation);

// ---- job form, generated from the technique's params JSON schema ----
function fieldSpec(prop) {
  const options = prop.anyOf ? prop.anyOf.filter((v) => v.type !== "null") : [prop];
  const nullable = Boolean(prop.anyOf && prop.anyOf.some((v) => v.type === "null"));
  return { ...options[0], nullable, multi: options.length > 1 };
}

function paramField(name, prop) {
  const spec = fieldSpec(prop);
  const title = prop.title || name;
  const help = el("span", { class: "help", text: prop.description || "" });
  const dflt = prop.default === undefined ? null : prop.default;
  let input;
  if (spec.type === "boolean" && !spec.nullable) {
    input = el("input", { type: "checkbox", name, checked: dflt === true });
    return el("label", { class: "check" }, input, el("span", {}, title, help));
  }
  if (spec.enum) {
    input = el("select", { name });
    if (spec.nullable) input.append(el("option", { value: "", text: "(default)" }));
    for (const v of spec.enum) input.append(el("option", { value: v, text: v, selected: v === dflt }));
  } else if (spec.type === "boolean") {
    input = el("select", { name }, el("option", { value: "", text: "(default)" }),
      el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
  } else if ((spec.type === "integer" || spec.type === "number") && !spec.multi) {
    input = el("input", {
      type: "number", name, value: dflt ?? "", placeholder: dflt === null ? "default" : null,
      step: spec.type === "integer" ? "1" : "any", min: spec.minimum ?? null, max: spec.maximum ?? null,
    });
  } else {
    const json = spec.type === "array" || spec.type === "object" || spec.multi;
    input = el("input", {
      type: "text", name, value: dflt === null ? "" : json ? JSON.stringify(dflt) : dflt,
      placeholder: json ? "JSON, e.g. " + (spec.type === "array" ? '["conv1"]' : "0.5") : "",
    });
  }
  input.dataset.kind = spec.type === "integer" || spec.type === "number" ? (spec.multi ? "json" : "number")
    : spec.type === "boolean" ? "bool" : spec.type === "string" || spec.enum ? "string" : "json";
  return el("label", {}, title, help, input);
}

function renderParamFields() {
  const tech = state.techniques.find((t) => t.name === $("#job-technique").value);
  const box = $("#param-fields");
  box.replaceChildren(el("legend", { text: "Parameters" }));
  if (!tech) return;
  $("#technique-description").textContent = tech.description;
  for (const [name, prop] of Object.entries(tech.params_schema.properties || {})) {
    if (!tech.search && (name === "search" || name === "max_accuracy_drop")) continue;
    box.append(paramField(name, prop));
  }
}

function readParams() {
  const tech = state.techniques.find((t) => t.name === $("#job-technique").value);
  const props = tech.params_schema.properties || {};
  const params = {};
  for (const input of $("#param-fields").querySelectorAll("[name]")) {
    const name = input.name, dflt = props[name].default;
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.value.trim() === "") continue; // left empty: the default
    else if (input.dataset.kind === "number") value = Number(input.value);
    else if (input.dataset.kind === "bool") value = input.value === "true";
    else if (input.dataset.kind === "json") {
      try { value = JSON.parse(input.value); } catch (err) { throw new Error(`${name}: not valid JSON`); }
    } else value = input.value;
    if (JSON.stringify(value) !== JSON.stringify(dflt ?? null)) params[name] = value;
  }
  return params;
}

function showErrors(target, detail) {
  if (!Array.isArray(detail)) { target.replaceChildren(el("p", { class: "error", text: String(detail) })); return; }
  const list = el("ul", { class: "error" });
  for (const d of detail) {
    const accepted = d.accepted ? ` (accepted: ${JSON.stringify(d.accepted)})` : "";
    list.append(el("li", { text: `${(d.loc || []).slice(1).join(".")}: ${d.msg}${accepted}` }));
  }
  target.replaceChildren(el("p", { class: "error", text: "The server refused the job:" }), list);
}

$("#job-technique").addEventListener("change", renderParamFields);
$("#job-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("#job-result"), button = $("#job-submit");
  button.disabled = true;
  try {
    const body = { base_model_id: $("#job-model").value, technique: $("#job-technique").value, params: readParams() };
    const job = await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.jobStatus.set(job.id, job.status);
    out.replaceChildren(el("p", { text: `Job #${job.id} (${job.technique}) queued.` }));
  } catch (err) {
    if (err.body && err.body.detail) showErrors(out, err.body.detail);
    else out.replaceChildren(el("p", { class: "error", text: err.message }));
  } finally {
    button.disabled = false;
  }
});

async function start() {
  for (const tr of document.querySelectorAll("#jobs-body tr[data-job-id]")) {
    state.jobStatus.set(Number(tr.dataset.jobId), tr.dataset.status);
  }
  try {
    state.techniques = await api("/techniques");
    renderParamFields();
  } catch (err) {
    $("#param-fields").replaceChildren(el("p", { class: "error", text: `cannot load /techniques: ${err.message}` }));
  }
  await refreshComparison();
  pollJobs();
}
start();
