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
  if (refreshTimer) clearInterval(refreshTimer);
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
  refreshTimer = setInterval(refresh, 5000);
  await followHash();
}

// --- Graph ------------------------------------------------------------------------------

async function refresh() {
  const [graph, status] = await Promise.all([json("/graph"), json("/status")]);
  const drift = status.drift || {};
  const checked = status.drift_checked_at ? ` · drift: ${drift["in-sync"] || 0} in sync, ${drift.drifted || 0} drifted, ${drift.error || 0} error(s)` : "";
  const reconcile = status.reconcile_in_progress ? ` · reconcile in progress (${status.reconcile_in_progress.holder})` : "";
  $("#summary").textContent = `${status.enclave_count} enclave(s)${reconcile}${checked}`;
  drawGraph(graph);
  await Promise.all([refreshPlans(), refreshReconciles()]);
  if (selected) await showDetail(selected.enclave, selected.partition, false);
}

function drawGraph(graph) {
  const svg = $("#graph");
  svg.replaceChildren();
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#90a4ae" }));
  defs.append(marker);
  svg.append(defs);
  if (graph.enclaves.length === 0) {
    svg.append(el("svg:text", { x: 20, y: 40 }, "Nothing applied yet: run `nclav apply <dir>`."));
    svg.setAttribute("viewBox", "0 0 600 80");
    return;
  }
  const boxWidth = 190, boxHeight = 34, columnGap = 70, rowGap = 16, top = 48;
  const position = {};
  let height = 0;
  graph.enclaves.forEach((enclave, column) => {
    const x = 20 + column * (boxWidth + columnGap);
    const title = el("svg:text", { x, y: 24, class: "enclave-title", "data-enclave": enclave.id }, `${enclave.id} [${enclave.cloud}, ${enclave.status}]`);
    svg.append(title);
    enclave.partitions.forEach((partition, row) => {
      const y = top + row * (boxHeight + rowGap);
      const key = `${enclave.id}/${partition.id}`;
      position[key] = { x, y };
      const group = el("svg:g", { class: "partition", "data-partition": key, "data-status": partition.status, "data-drift": partition.drift || "" });
      group.append(el("svg:rect", { x, y, width: boxWidth, height: boxHeight, rx: 5, class: partition.status }));
      if (partition.drift === "drifted") group.append(el("svg:rect", { x, y, width: boxWidth, height: boxHeight, rx: 5, class: "drifted-outline" }));
      group.append(el("svg:text", { x: x + 10, y: y + 21 }, `${partition.id}${partition.drift === "drifted" ? " (drifted)" : ""}`));
      group.append(el("svg:title", {}, `${key}: ${partition.status}${partition.drift ? `, drift ${partition.drift}` : ""}`));
      group.addEventListener("click", () => showDetail(enclave.id, partition.id, true));
      svg.append(group);
      height = Math.max(height, y + boxHeight);
    });
  });
  for (const edge of graph.edges) {
    const from = position[edge.from], to = position[edge.to];
    if (!from || !to) continue;
    const sameColumn = from.x === to.x;
    const x1 = sameColumn ? from.x + boxWidth : (from.x < to.x ? from.x + boxWidth : from.x);
    const x2 = sameColumn ? to.x + boxWidth : (from.x < to.x ? to.x : to.x + boxWidth);
    const y1 = from.y + boxHeight / 2, y2 = to.y + boxHeight / 2;
    const bend = sameColumn ? x1 + 40 : (x1 + x2) / 2;
    const path = el("svg:path", { d: `M ${x1} ${y1} C ${bend} ${y1}, ${bend} ${y2}, ${x2} ${y2}`, class: "edge", "data-edge": `${edge.from}->${edge.to}` });
    path.append(el("svg:title", {}, `${edge.from} imports ${edge.export} as ${edge.alias}`));
    svg.append(path);
  }
  const width = 40 + graph.enclaves.length * (boxWidth + columnGap);
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 30}`);
}

// --- Reconciles ---------------------------------------------------------------------------

async function refreshReconciles() {
  const listing = await json("/reconciles");
  const rows = listing.reconciles.slice(0, 20).map((entry) => {
    const row = el("tr", { class: "reconcile", "data-reconcile": entry.id });
    for (const value of [entry.started_at, entry.id, entry.message, entry.result]) row.append(el("td", {}, value));
    row.addEventListener("click", () => showReconcile(entry.id));
    return row;
  });
  $("#reconcile-list tbody").replaceChildren(...rows);
}

async function showReconcile(id) {
  const page = await json(`/reconciles/${encodeURIComponent(id)}`);
  $("#reconcile").hidden = false;
  $("#reconcile").dataset.reconcile = page.reconcile.id;
  $("#reconcile-title").textContent = `Reconcile ${page.reconcile.id}`;
  const seconds = page.reconcile.finished_at ? ((new Date(page.reconcile.finished_at) - new Date(page.reconcile.started_at)) / 1000).toFixed(1) : null;
  // Event times are kept to the second: a shorter reconcile shows no duration.
  $("#reconcile-summary").textContent = `${page.reconcile.message}: ${page.reconcile.result}` + (seconds > 0 ? ` (${seconds} s)` : "");
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
    const row = el("tr", { class: "run", "data-run": run.id, "data-status": run.status });
    for (const value of [run.started_at, run.operation, run.status, run.exit_code ?? "—"]) row.append(el("td", {}, String(value)));
    row.addEventListener("click", () => openLog(enclave, partition, run.id));
    return row;
  });
  $("#runs tbody").replaceChildren(...runRows);
  const versionRows = (versions.versions || []).map((version) => {
    const row = el("tr", { class: "version" });
    for (const value of [version.version, version.serial, `${version.size} B`, version.created_at, version.run_id || "—"]) row.append(el("td", {}, String(value)));
    return row;
  });
  $("#versions tbody").replaceChildren(...versionRows);
  if (scroll) $("#detail").scrollIntoView({ behavior: "smooth" });
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
          text.append(document.createTextNode(data.join("\n") + "\n"));
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
