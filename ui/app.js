// nclav web UI: no build step, no CDN. The token lives in sessionStorage and is sent only as
// an Authorization header (never in a URL). Logs stream with fetch() because EventSource
// cannot send headers.
"use strict";

const TOKEN_KEY = "nclav.token";
const $ = (selector) => document.querySelector(selector);
const svgNS = "http://www.w3.org/2000/svg";
let refreshTimer = null;
let logAbort = null;
let selected = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` } });
  if (response.status === 401) { logout("The token was not accepted."); throw new Error("unauthorized"); }
  return response;
}

async function json(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function el(tag, attributes = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(svgNS, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- Login ------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const value = $("#token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("#token").value = "";
  await start();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (refreshTimer) clearTimeout(refreshTimer);
  if (logAbort) logAbort.abort();
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message || "";
}

async function start() {
  let status;
  try { status = await json("/status"); } catch (error) { if (token()) logout(`Could not reach the server: ${error.message}`); return; }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("#server").textContent = `nclav ${status.version} · store ${status.store} · default cloud ${status.default_cloud}`;
  await refresh();
  await followHash();
}

// --- Graph ------------------------------------------------------------------------------

let lastResults = {};  // partition → result in the newest apply ("skipped", "failed", …)

async function refresh() {
  let busy = false;
  try {
    busy = await redraw();
  } finally {
    // While something runs the graph follows it closely; otherwise a slower poll is enough.
    if (refreshTimer) clearTimeout(refreshTimer);
    if (token()) refreshTimer = setTimeout(() => refresh().catch(() => {}), busy ? 1000 : 5000);
  }
}

async function redraw() {
  const [graph, status] = await Promise.all([json("/graph"), json("/status")]);
  const drift = status.drift || {};
  const checked = status.drift_checked_at ? ` · drift: ${drift["in-sync"] || 0} in sync, ${drift.drifted || 0} drifted, ${drift.error || 0} error(s)` : "";
  const reconcile = status.reconcile_in_progress ? ` · reconcile in progress (${status.reconcile_in_progress.holder})` : "";
  $("#summary").textContent = `${status.enclave_count} enclave(s)${reconcile}${checked}`;
  await Promise.all([refreshPlans(), refreshReconciles()]);
  drawGraph(graph);
  if (selected) await showDetail(selected.enclave, selected.partition, false);
  return !!status.reconcile_in_progress;
}

// Layers by dependency: a partition sits one column right of the furthest upstream it
// imports from, so every edge points right. Rows are ordered by the rows of their upstreams
// (a few barycenter sweeps) to keep edges short.
function layout(graph) {
  const nodes = [];
  for (const enclave of graph.enclaves) for (const partition of enclave.partitions) nodes.push({ key: `${enclave.id}/${partition.id}`, enclave, partition });
  const byKey = Object.fromEntries(nodes.map((n) => [n.key, n]));
  const upstreams = Object.fromEntries(nodes.map((n) => [n.key, []]));
  for (const edge of graph.edges) if (byKey[edge.from] && byKey[edge.to] && edge.from !== edge.to) upstreams[edge.from].push(edge.to);
  const layer = {};
  const visiting = new Set();
  const depth = (key) => {
    if (layer[key] !== undefined) return layer[key];
    if (visiting.has(key)) return 0;  // a cycle cannot be applied; draw it anyway
    visiting.add(key);
    layer[key] = upstreams[key].length ? 1 + Math.max(...upstreams[key].map(depth)) : 0;
    visiting.delete(key);
    return layer[key];
  };
  nodes.forEach((n) => depth(n.key));
  const layers = [];
  for (const n of nodes) (layers[layer[n.key]] = layers[layer[n.key]] || []).push(n.key);
  const row = {};
  layers.forEach((keys) => keys.forEach((key, index) => { row[key] = index; }));
  for (let sweep = 0; sweep < 4; sweep++) {
    for (const keys of layers.slice(1)) {
      const weight = (key) => (upstreams[key].length ? upstreams[key].reduce((sum, up) => sum + row[up], 0) / upstreams[key].length : row[key]);
      const weights = Object.fromEntries(keys.map((key) => [key, weight(key)]));
      keys.sort((a, b) => weights[a] - weights[b] || (a < b ? -1 : 1));
      keys.forEach((key, index) => { row[key] = index; });
    }
  }
  return { nodes, byKey, layers, layer, row };
}

function drawGraph(graph) {
  const svg = $("#graph");
  svg.replaceChildren();
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#90a4ae" }));
  defs.append(marker);
  svg.append(defs);
  const enclaves = $("#enclaves");
  enclaves.replaceChildren(...graph.enclaves.map((enclave) =>
    el("span", { class: `enclave-chip ${enclave.status}`, "data-enclave": enclave.id }, `${enclave.id} · ${enclave.cloud} · ${enclave.status}`)));
  if (graph.enclaves.every((enclave) => enclave.partitions.length === 0)) {
    svg.append(el("svg:text", { x: 20, y: 40 }, "Nothing applied yet: run `nclav apply <dir>`."));
    svg.setAttribute("viewBox", "0 0 600 80");
    svg.setAttribute("width", "600");
    svg.setAttribute("height", "80");
    return;
  }
  const { nodes, byKey, layers, layer, row } = layout(graph);
  const boxWidth = 200, boxHeight = 44, columnGap = 80, rowGap = 28, left = 20, top = 24;
  const x = (key) => left + layer[key] * (boxWidth + columnGap);
  const y = (key) => top + row[key] * (boxHeight + rowGap);
  const fit = (text, limit) => (text.length > limit ? text.slice(0, limit - 1) + "…" : text);
  // Edges first, so boxes are drawn over them. An edge leaves its upstream's right side, runs
  // down the gap after that column, along the lane above its importer's row, and down the gap
  // before the importer: it only ever travels through gaps, never across a box.
  const outgoing = {};
  graph.edges.forEach((edge) => { (outgoing[edge.to] = outgoing[edge.to] || []).push(edge); });
  for (const edge of graph.edges) {
    if (!byKey[edge.from] || !byKey[edge.to]) continue;
    const from = edge.to, to = edge.from;  // data flows from the exporter to the importer
    const siblings = outgoing[from];
    const spread = siblings.length > 1 ? (siblings.indexOf(edge) / (siblings.length - 1) - 0.5) : 0;
    const x1 = x(from) + boxWidth, y1 = y(from) + boxHeight / 2 + spread * (boxHeight - 12);
    const x2 = x(to), y2 = y(to) + boxHeight / 2;
    const gapOut = x1 + columnGap / 2 + spread * (columnGap / 3);
    let points;
    if (layer[to] === layer[from] + 1) {
      points = [[x1, y1], [gapOut, y1], [gapOut, y2], [x2, y2]];
    } else {
      const lane = y(to) - rowGap / 2 + spread * (rowGap / 3);
      const gapIn = x2 - columnGap / 2 - spread * (columnGap / 3);
      points = [[x1, y1], [gapOut, y1], [gapOut, lane], [gapIn, lane], [gapIn, y2], [x2, y2]];
    }
    const path = el("svg:path", {
      d: "M " + points.map((p) => p.join(" ")).join(" L "), class: "edge", "data-edge": `${edge.from}->${edge.to}`,
      "data-points": JSON.stringify(points),
    });
    path.append(el("svg:title", {}, `${edge.from} imports ${edge.export} as ${edge.alias}`));
    svg.append(path);
  }
  let width = 0, height = 0;
  for (const { key, enclave, partition } of nodes) {
    const bx = x(key), by = y(key);
    const last = lastResults[key];
    const group = el("svg:g", {
      class: "partition", "data-partition": key, "data-status": partition.status, "data-drift": partition.drift || "",
      "data-running": partition.running || "", "data-last-result": last || "", "data-box": JSON.stringify([bx, by, boxWidth, boxHeight]),
    });
    group.append(el("svg:rect", { x: bx, y: by, width: boxWidth, height: boxHeight, rx: 5, class: partition.status }));
    if (partition.drift === "drifted") group.append(el("svg:rect", { x: bx, y: by, width: boxWidth, height: boxHeight, rx: 5, class: "drifted-outline" }));
    if (partition.running) group.append(el("svg:rect", { x: bx - 3, y: by - 3, width: boxWidth + 6, height: boxHeight + 6, rx: 7, class: "running-outline" }));
    else if (last === "skipped") group.append(el("svg:rect", { x: bx - 3, y: by - 3, width: boxWidth + 6, height: boxHeight + 6, rx: 7, class: "skipped-outline" }));
    group.append(el("svg:text", { x: bx + 10, y: by + 18, class: "partition-name" }, fit(partition.id, 24)));
    const state = partition.running ? `${partition.running} running…` : partition.drift === "drifted" ? "drifted" : last === "skipped" ? "skipped in the last apply" : partition.status;
    group.append(el("svg:text", { x: bx + 10, y: by + 35, class: "partition-note" }, fit(`${enclave.id} · ${state}`, 32)));
    group.append(el("svg:title", {}, `${key}: ${partition.status}${partition.drift ? `, drift ${partition.drift}` : ""}${partition.running ? `, ${partition.running} running` : ""}`));
    group.addEventListener("click", () => showDetail(enclave.id, partition.id, true));
    svg.append(group);
    width = Math.max(width, bx + boxWidth);
    height = Math.max(height, by + boxHeight);
  }
  // Drawn at its natural size: a wide graph scrolls instead of shrinking its labels.
  svg.setAttribute("viewBox", `0 0 ${width + left} ${height + top}`);
  svg.setAttribute("width", String(width + left));
  svg.setAttribute("height", String(Math.max(120, height + top)));
  svg.dataset.layers = String(layers.length);
}

// --- Reconciles ---------------------------------------------------------------------------

let reconcileIndex = {};  // reconcile id (lower case) → its entry

async function refreshReconciles() {
  const listing = await json("/reconciles");
  reconcileIndex = Object.fromEntries(listing.reconciles.map((entry) => [entry.id.toLowerCase(), entry]));
  const rows = listing.reconciles.slice(0, 20).map((entry) => {
    const row = el("tr", { class: "reconcile", "data-reconcile": entry.id, "data-kind": entry.kind });
    for (const value of [entry.started_at, entry.kind, entry.message, entry.trigger || "—", entry.result]) row.append(el("td", {}, value));
    row.addEventListener("click", () => showReconcile(entry.id));
    return row;
  });
  $("#reconcile-list tbody").replaceChildren(...rows);
  // The newest apply's skipped partitions are marked on the graph.
  const newestApply = listing.reconciles.find((entry) => entry.kind === "apply");
  if (newestApply && newestApply.id !== lastResults.__id) {
    const page = await json(`/reconciles/${encodeURIComponent(newestApply.id)}`);
    lastResults = Object.fromEntries(page.partitions.map((line) => [line.partition, line.result]));
    lastResults.__id = newestApply.result === "running" ? null : newestApply.id;
  }
}

async function showReconcile(id) {
  const page = await json(`/reconciles/${encodeURIComponent(id)}`);
  $("#reconcile").hidden = false;
  $("#reconcile").dataset.reconcile = page.reconcile.id;
  $("#reconcile-title").textContent = `Reconcile ${page.reconcile.id}`;
  const seconds = page.reconcile.finished_at ? ((new Date(page.reconcile.finished_at) - new Date(page.reconcile.started_at)) / 1000).toFixed(1) : null;
  $("#reconcile-summary").textContent = `${page.reconcile.kind} · ${page.reconcile.message}: ${page.reconcile.result}` + (seconds > 0 ? ` (${seconds} s)` : "");
  $("#reconcile-trigger").textContent = page.reconcile.trigger ? `Started by ${page.reconcile.trigger}` : "";
  $("#reconcile-enclaves").replaceChildren(...page.enclaves.map((line) => el("li", {}, line)));
  const rows = page.partitions.map((line) => {
    const row = el("tr", { class: `outcome ${line.result}`, "data-partition": line.partition, "data-result": line.result });
    const duration = line.seconds !== undefined && line.seconds !== null ? `${line.seconds.toFixed(1)} s` : "—";
    for (const value of [line.partition, line.operation || "—", line.result, duration, line.reason]) row.append(el("td", {}, value));
    const cell = el("td");
    if (line.run_id) {
      const [enclave, name] = line.partition.split("/");
      const link = el("button", { class: "run-log" }, "log");
      link.addEventListener("click", () => openLog(enclave, name, line.run_id));
      cell.append(link);
    }
    row.append(cell);
    return row;
  });
  $("#reconcile-partitions tbody").replaceChildren(...rows);
  $("#reconcile").scrollIntoView({ behavior: "smooth" });
}

// --- Saved plans ------------------------------------------------------------------------

function planSummary(plan) {
  const changes = plan.partitions.flatMap((p) => p.changes);
  const count = (action) => changes.filter((c) => c.action === action).length;
  const deferred = plan.partitions.filter((p) => p.deferred).length;
  const parts = [`${count("create")} to add`, `${count("update")} to change`];
  if (count("replace")) parts.push(`${count("replace")} to replace`);
  parts.push(`${count("delete")} to destroy`);
  return parts.join(", ") + (deferred ? `; ${deferred} deferred` : "") + (plan.errors.length ? `; ${plan.errors.length} failed` : "");
}

async function refreshPlans() {
  const listing = await json("/plans");
  const rows = listing.plans.map((plan) => {
    const row = el("tr", { class: "plan", "data-plan": plan.id });
    for (const value of [plan.created_at, plan.id, planSummary(plan), plan.expires_at]) row.append(el("td", {}, value));
    row.addEventListener("click", () => showPlan(plan.id));
    return row;
  });
  $("#plan-list tbody").replaceChildren(...rows);
}

const SYMBOLS = { create: "+", update: "~", replace: "-/+", delete: "-", read: "<=" };

async function showPlan(id) {
  const plan = await json(`/plans/${encodeURIComponent(id)}`);
  $("#plan").hidden = false;
  $("#plan").dataset.plan = plan.id;
  $("#plan-title").textContent = `Plan ${plan.id}`;
  $("#plan-summary").textContent = plan.has_changes ? planSummary(plan) : "No changes.";
  $("#plan-destructions").replaceChildren(...plan.destructions.map((line) => el("li", {}, `destroys: ${line}`)));
  const blocks = [];
  for (const enclave of plan.enclaves) {
    blocks.push(el("p", { class: `enclave ${enclave.operation}` }, `enclave ${enclave.enclave}: ${enclave.operation}`));
  }
  for (const partition of plan.partitions) {
    const block = el("div", { class: "planned", "data-partition": partition.partition, "data-deferred": partition.deferred ? "true" : "false" });
    const head = el("h3", {}, `${partition.partition} (${partition.operation})`);
    block.append(head);
    if (partition.error) block.append(el("p", { class: "error" }, `plan failed: ${partition.error}`));
    else if (partition.deferred) block.append(el("p", { class: "deferred" }, `deferred: ${partition.deferred}`));
    else block.append(el("p", {}, partition.summary));
    const list = el("ul", { class: "changes" });
    for (const change of partition.changes) {
      list.append(el("li", { class: `change ${change.action}`, "data-action": change.action }, `${SYMBOLS[change.action] || "?"} ${change.address}`));
    }
    block.append(list);
    if (partition.run_id) {
      const [enclave, name] = partition.partition.split("/");
      const link = el("button", { class: "plan-log" }, "terraform's plan log");
      link.addEventListener("click", () => openLog(enclave, name, partition.run_id));
      block.append(link);
    }
    blocks.push(block);
  }
  $("#plan-partitions").replaceChildren(...blocks);
  $("#plan").scrollIntoView({ behavior: "smooth" });
}

// --- Partition detail -------------------------------------------------------------------

async function showDetail(enclave, partition, scroll) {
  selected = { enclave, partition };
  const base = `/enclaves/${encodeURIComponent(enclave)}/partitions/${encodeURIComponent(partition)}`;
  const [detail, runs, versions] = await Promise.all([
    json(`/enclaves/${encodeURIComponent(enclave)}`),
    json(`${base}/iac/runs?limit=20`),
    api(`/terraform/state/${encodeURIComponent(enclave)}/${encodeURIComponent(partition)}/versions`).then((r) => (r.ok ? r.json() : { versions: [] })),
  ]);
  $("#detail").hidden = false;
  $("#detail-title").textContent = `${enclave}/${partition}`;
  const state = (detail.partitions || []).find((p) => p.partition_id === partition);
  // A failure that started no terraform process has no run to open: its reason is here.
  const failed = state && state.status === "failed" && state.last_error;
  $("#detail-error").hidden = !failed;
  $("#detail-error").textContent = failed ? `Last apply failed: ${state.last_error}` : "";
  const drift = state && state.drift;
  $("#detail-drift").textContent = drift ? `Drift: ${drift.status} — ${drift.summary} (checked ${drift.checked_at})` : "Drift: never checked";
  const runRows = runs.runs.map((run) => {
    const trigger = reconcileIndex[(run.reconcile_id || "").toLowerCase()];
    const result = runResult(run, trigger);
    const row = el("tr", { class: `run ${result}`, "data-run": run.id, "data-status": run.status, "data-result": result });
    const duration = run.finished_at ? `${((new Date(run.finished_at) - new Date(run.started_at)) / 1000).toFixed(1)} s` : "running";
    const idCell = el("td", { class: "run-id", title: run.id }, run.id.slice(0, 8).toLowerCase());
    row.append(idCell);
    for (const value of [run.started_at, run.operation, result, duration, run.exit_code ?? "—"]) row.append(el("td", {}, String(value)));
    const cell = el("td", { class: "run-trigger" });
    if (trigger) {
      const link = el("button", { class: "reconcile-link", title: trigger.trigger || "" }, `${trigger.kind}: ${trigger.message}`);
      link.addEventListener("click", (event) => { event.stopPropagation(); showReconcile(trigger.id); });
      cell.append(link);
    } else {
      cell.textContent = run.operation === "plan" ? "nclav plan" : "—";
    }
    row.append(cell);
    row.addEventListener("click", () => openLog(enclave, partition, run.id));
    return row;
  });
  $("#runs tbody").replaceChildren(...runRows);
  const list = versions.versions || [];
  const versionRows = list.map((version, index) => {
    const row = el("tr", { class: "version", "data-version": version.version });
    for (const value of [version.version, version.serial, `${version.size} B`, version.created_at]) row.append(el("td", {}, String(value)));
    row.append(el("td", { class: "run-id", title: version.run_id || "" }, version.run_id ? version.run_id.slice(0, 8).toLowerCase() : "—"));
    const cell = el("td");
    const previous = list.find((other) => other.version < version.version && !list.some((v) => v.version > other.version && v.version < version.version));
    if (previous) {
      const button = el("button", { class: "state-diff" }, `diff with ${previous.version}`);
      button.addEventListener("click", () => showStateDiff(enclave, partition, previous.version, version.version));
      cell.append(button);
    }
    row.append(cell);
    return row;
  });
  $("#versions tbody").replaceChildren(...versionRows);
  if (scroll) $("#detail").scrollIntoView({ behavior: "smooth" });
}

// A drift check's plan that found changes (exit 2) is drift; any other plan's is changes.
function runResult(run, trigger) {
  if (run.operation === "plan" && run.status === "succeeded" && run.exit_code === 2) return trigger && trigger.kind === "drift" ? "drifted" : "changes";
  return run.status;
}

// --- State version diff -----------------------------------------------------------------

// Resource instances and outputs of a state document, by address.
function stateIndex(state) {
  const resources = {};
  for (const resource of state.resources || []) {
    const base = `${resource.module ? resource.module + "." : ""}${resource.mode === "data" ? "data." : ""}${resource.type}.${resource.name}`;
    for (const instance of resource.instances || []) {
      const key = base + (instance.index_key !== undefined ? `[${JSON.stringify(instance.index_key)}]` : "");
      resources[key] = instance.attributes || {};
    }
  }
  const outputs = {};
  for (const [name, output] of Object.entries(state.outputs || {})) outputs[name] = output.sensitive ? "(sensitive)" : output.value;
  return { resources, outputs };
}

function stateDiff(older, newer) {
  const short = (value) => { const text = JSON.stringify(value); return text === undefined ? "null" : text.length > 160 ? text.slice(0, 159) + "…" : text; };
  const lines = [{ kind: "meta", text: `serial ${older.serial} → ${newer.serial}` }];
  const a = stateIndex(older), b = stateIndex(newer);
  for (const key of [...new Set([...Object.keys(a.resources), ...Object.keys(b.resources)])].sort()) {
    if (!(key in a.resources)) { lines.push({ kind: "create", text: `+ ${key}` }); continue; }
    if (!(key in b.resources)) { lines.push({ kind: "delete", text: `- ${key}` }); continue; }
    const before = a.resources[key], after = b.resources[key];
    const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort().filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]));
    if (!changed.length) continue;
    lines.push({ kind: "update", text: `~ ${key}` });
    for (const name of changed) lines.push({ kind: "attribute", text: `    ${name}: ${short(before[name])} → ${short(after[name])}` });
  }
  for (const name of [...new Set([...Object.keys(a.outputs), ...Object.keys(b.outputs)])].sort()) {
    if (JSON.stringify(a.outputs[name]) === JSON.stringify(b.outputs[name])) continue;
    const sign = !(name in a.outputs) ? "+" : !(name in b.outputs) ? "-" : "~";
    lines.push({ kind: { "+": "create", "-": "delete", "~": "update" }[sign], text: `${sign} output ${name}: ${short(a.outputs[name])} → ${short(b.outputs[name])}` });
  }
  if (lines.length === 1) lines.push({ kind: "meta", text: "no resource or output changed" });
  return lines;
}

async function showStateDiff(enclave, partition, from, to) {
  const base = `/terraform/state/${encodeURIComponent(enclave)}/${encodeURIComponent(partition)}/versions`;
  const [older, newer] = await Promise.all([json(`${base}/${from}`), json(`${base}/${to}`)]);
  $("#state-diff").hidden = false;
  $("#state-diff").dataset.versions = `${from}..${to}`;
  $("#state-diff-title").textContent = `${enclave}/${partition}: state version ${from} → ${to}`;
  $("#state-diff-text").replaceChildren(...stateDiff(older, newer).map((line) => el("div", { class: `diff-line ${line.kind}` }, line.text)));
  $("#state-diff").scrollIntoView({ behavior: "smooth" });
}

// --- Log colour -------------------------------------------------------------------------

// Terraform's own colours, added here: runs are recorded with -no-color so logs stay plain.
function terraformClass(line) {
  const framed = line.startsWith("│ ") ? line.slice(2) : line;
  const trimmed = line.trimStart();
  if (framed.startsWith("Error: ")) return "tf-error";
  if (framed.startsWith("Warning: ")) return "tf-warning";
  if (/^(Apply complete!|Destroy complete!|No changes\.)/.test(line)) return "tf-done";
  if (line.startsWith("Plan: ") || trimmed.startsWith("# ")) return "tf-bold";
  if (/^(-\/\+|\+\/-|- )/.test(trimmed)) return "tf-delete";
  if (trimmed.startsWith("+ ")) return "tf-create";
  if (trimmed.startsWith("~ ")) return "tf-update";
  if (trimmed.startsWith("<= ")) return "tf-read";
  return null;
}

function logLine(text) {
  const kind = terraformClass(text);
  return kind ? el("span", { class: kind }, text + "\n") : document.createTextNode(text + "\n");
}

// --- Live log (SSE over fetch) ----------------------------------------------------------

async function openLog(enclave, partition, runID) {
  // A link that can be pasted: #/enclave/partition/runs/<id> opens this run's log.
  const link = `#/${encodeURIComponent(enclave)}/${encodeURIComponent(partition)}/runs/${encodeURIComponent(runID)}`;
  if (location.hash !== link) history.replaceState(null, "", link);
  $("#log-link").href = link;
  $("#log").dataset.file = `${enclave}-${partition}-${runID}.log`;
  if (logAbort) logAbort.abort();
  logAbort = new AbortController();
  const signal = logAbort.signal;
  $("#log").hidden = false;
  $("#log-title").textContent = `Run ${runID} of ${enclave}/${partition}`;
  $("#log-status").textContent = "streaming…";
  $("#log").dataset.state = "streaming";
  const text = $("#log-text");
  text.textContent = "";
  let lastEventID = null;
  // Reconnect with Last-Event-ID if the stream drops before the end event.
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
    const headers = lastEventID ? { "Last-Event-ID": lastEventID } : {};
    let response;
    try {
      response = await api(`/enclaves/${encodeURIComponent(enclave)}/partitions/${encodeURIComponent(partition)}/iac/runs/${runID}/stream`, { headers, signal });
    } catch (error) { if (signal.aborted) return; await new Promise((r) => setTimeout(r, 500)); continue; }
    if (!response.ok) { $("#log-status").textContent = `HTTP ${response.status}`; return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } catch (error) { break; }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let boundary;
      while ((boundary = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        let event = "message", data = [], id = null;
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
          else if (line.startsWith("data:")) data.push(line.slice(5));
          else if (line.startsWith("id: ")) id = line.slice(4);
        }
        if (id) lastEventID = id;
        if (event === "line") {
          const atBottom = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
          for (const line of data) text.append(logLine(line));
          if (atBottom) text.scrollTop = text.scrollHeight;
        } else if (event === "end") {
          const end = JSON.parse(data.join("\n"));
          $("#log-status").textContent = `run ${end.status}${end.exit_code !== null ? ` (exit ${end.exit_code})` : ""}`;
          $("#log").dataset.state = end.status;
          return;
        }
      }
    }
  }
}

// --- Deep links and download ------------------------------------------------------------

async function followHash() {
  const match = /^#\/([^/]+)\/([^/]+)\/runs\/([0-9A-Fa-f-]{36})$/.exec(location.hash);
  if (!match) return;
  const [enclave, partition, runID] = match.slice(1).map(decodeURIComponent);
  await showDetail(enclave, partition, false);
  await openLog(enclave, partition, runID);
}

function downloadLog() {
  const blob = new Blob([$("#log-text").textContent], { type: "text/plain" });
  const anchor = el("a", { href: URL.createObjectURL(blob), download: $("#log").dataset.file || "run.log" });
  anchor.click();
  setTimeout(() => URL.revokeObjectURL(anchor.href), 1000);
}

// --- Wiring -----------------------------------------------------------------------------

$("#login-form").addEventListener("submit", login);
$("#logout").addEventListener("click", () => logout());
$("#log-download").addEventListener("click", downloadLog);
addEventListener("hashchange", () => followHash());
if (token()) start();
