// pvl web view: pages over the node's control API (read-only; the session cookie authorises
// GET requests). Routes (in the URL fragment):
//   #/              traces, live (server-sent events), filtered by pattern, status, capability
//   #/trace/ID      one trace: its DAG, critical path, parts, offers, rounds, receipts, verification
//   #/live/ID       a round's timeline, filled in as its objects arrive
//   #/network       this node, its peers and the capability directory
"use strict";

const esc = PvlGraph.esc;
const app = document.getElementById("app");
const liveBadge = document.getElementById("live");
const short = s => (s ? String(s).slice(0, 8) : "—");
const ms = v => (v === null || v === undefined ? "—" : v + " ms");
let stream = null; // the page's EventSource, closed when the page changes
const MAX_LIST = 500; // most traces listed

class NotSignedIn extends Error {}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) throw new NotSignedIn();
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body.message || ""}`);
  return body;
}

function fail(e) {
  if (e instanceof NotSignedIn) {
    app.innerHTML = `<div class="error" id="signin">Not signed in. Run <code>pvl ui --dir &lt;node dir&gt;</code> and open the one-time address it prints.</div>`;
  } else {
    app.innerHTML = `<div class="error">${esc(e.message || e)}</div>`;
  }
}

function listen(query, onEvent) {
  if (stream) stream.close();
  stream = new EventSource("/v1/events" + query);
  stream.onopen = () => { liveBadge.className = "live on"; };
  stream.onerror = () => { liveBadge.className = "live off"; };
  stream.onmessage = m => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not JSON: ignore */ } };
}

function badge(status) { return `<span class="badge ${esc(status)}">${esc(status)}</span>`; }

// ---- traces -------------------------------------------------------------------------------

const filters = { pattern: "", status: "", capability: "" };
let known = new Set();

async function tracesPage() {
  app.innerHTML = `<h1>Traces</h1>
    <div class="filters">
      <label>pattern <select id="f-pattern"><option value="">any</option>${["contract-net", "auction", "workflow", "parallel", "consensus", "unknown"].map(p => `<option>${p}</option>`).join("")}</select></label>
      <label>status <select id="f-status"><option value="">any</option>${["open", "awarded", "done", "failed"].map(p => `<option>${p}</option>`).join("")}</select></label>
      <label>capability <input id="f-capability" placeholder="contains…" size="16"></label>
      <span class="muted" id="count"></span>
    </div>
    <table id="trace-list"><thead><tr><th>trace</th><th>pattern</th><th>capability</th><th>status</th><th>objects</th><th>tasks</th><th>started</th><th>took</th></tr></thead><tbody></tbody></table>`;
  for (const f of ["pattern", "status", "capability"]) {
    const input = document.getElementById("f-" + f);
    input.value = filters[f];
    input.addEventListener("input", () => { filters[f] = input.value; render(); });
  }
  let traces = [];
  let first = true;
  async function refresh() {
    traces = await api(`/v1/traces?limit=${MAX_LIST}`);
    render();
    first = false;
  }
  function render() {
    const body = document.querySelector("#trace-list tbody");
    if (!body) return;
    const shown = traces.filter(t =>
      (!filters.pattern || t.pattern === filters.pattern) &&
      (!filters.status || t.status === filters.status) &&
      (!filters.capability || (t.capability || "").includes(filters.capability)));
    body.innerHTML = shown.map(t => {
      const fresh = !first && !known.has(t.trace_id) ? " new" : "";
      return `<tr class="trace${fresh}" data-trace="${t.trace_id}" data-pattern="${esc(t.pattern)}" data-status="${esc(t.status)}">
        <td><a class="mono" href="#/trace/${t.trace_id}">${short(t.trace_id)}</a> <a class="muted" href="#/live/${t.trace_id}">timeline</a></td>
        <td>${esc(t.pattern)}</td><td>${esc(t.capability || "")}</td><td>${badge(t.status)}${t.failure_reason ? " " + esc(t.failure_reason) : ""}</td>
        <td>${t.objects}</td><td>${t.tasks}</td><td>${new Date(t.first_ms).toLocaleTimeString()}</td><td>${t.last_ms - t.first_ms} ms</td></tr>`;
    }).join("");
    for (const t of traces) known.add(t.trace_id);
    document.getElementById("count").textContent = `${shown.length} of ${traces.length}`;
  }
  // New objects: the list is read again, at most every 300 ms.
  let pending = null;
  listen("", ev => {
    if (ev.type !== "object" || pending) return;
    pending = setTimeout(() => { pending = null; refresh().catch(fail); }, 300);
  });
  await refresh();
}

// ---- one trace ----------------------------------------------------------------------------

function offersSection(trace) {
  const byIntent = new Map();
  const scores = new Map(); // offer id8 -> ranking attributes
  const rejected = new Map(); // offer id -> reason
  const winners = new Set();
  for (const o of trace.objects) {
    const b = o.body || {};
    if (o.kind === "offer") {
      if (!byIntent.has(b.intent)) byIntent.set(b.intent, []);
      byIntent.get(b.intent).push(o);
    } else if (o.kind === "event" && b.event_type === "selection") {
      for (const [k, v] of b.attrs || []) {
        if (k.startsWith("offer:")) scores.set(k.slice(6), Object.fromEntries(v.split(" ").map(kv => kv.split("="))));
        if (k === "winner") winners.add(v);
      }
    } else if (o.kind === "reject") {
      for (const r of [b, ...(b.more || [])]) if (r.offer) rejected.set(r.offer, `${r.code}: ${r.detail}`);
    } else if (o.kind === "task_start" && b.offer) {
      winners.add(b.offer);
    }
  }
  if (!byIntent.size) return "";
  let html = `<h2>Offers</h2>`;
  for (const [intent, offers] of byIntent) {
    html += `<p class="muted">for intent <span class="mono">${short(intent)}</span></p><table class="offers"><thead><tr><th>offer</th><th>provider</th><th>cost</th><th>eta</th><th>reliability</th><th>rank</th><th>score</th><th>result</th></tr></thead><tbody>`;
    for (const o of offers) {
      const s = scores.get(o.id.slice(0, 8)) || {};
      const result = winners.has(o.id) ? `<span class="approve">awarded</span>` : (rejected.has(o.id) ? `<span class="reject">rejected</span> ${esc(rejected.get(o.id))}` : "—");
      html += `<tr data-offer="${o.id}"><td class="mono">${short(o.id)}</td><td class="mono">${short(o.signer)}</td><td>${o.body.cost}</td><td>${ms(o.body.eta_ms)}</td><td>${o.body.reliability_bps / 100}%</td><td>${esc(s.rank || "—")}</td><td>${esc(s.score || "—")}</td><td>${result}</td></tr>`;
    }
    html += `</tbody></table>`;
  }
  return html;
}

function roundsSection(analysis) {
  if (!analysis.rounds || !analysis.rounds.length) return "";
  let html = `<h2>Consensus rounds</h2>`;
  for (const r of analysis.rounds) {
    html += `<div class="round" data-round="${r.round}"><p>Round ${r.round}: <b>${esc(JSON.stringify(r.outcome))}</b>, ${r.votes.length} vote(s) of ${r.members} member(s), threshold ${r.threshold}, decided in ${ms(r.latency_ms)}${r.certificate ? `, certificate <span class="mono">${short(r.certificate)}</span>` : ""}<br><span class="muted">${esc(r.action)}</span></p>
      <table class="votes"><thead><tr><th>member</th><th>vote</th><th>reason</th><th>at</th></tr></thead><tbody>` +
      r.votes.map(v => `<tr class="vote" data-member="${v.member}"><td class="mono">${short(v.member)}</td><td class="${v.approve ? "approve" : "reject"}">${v.approve ? "approve" : "reject"}</td><td>${esc(v.reason)}</td><td>+${v.at_ms - r.opened_at_ms} ms</td></tr>`).join("") +
      `</tbody></table></div>`;
  }
  return html;
}

function verification(v) {
  if (!v) return "not checked";
  if (v.ok) return `<span class="badge ok" id="verifies">verifies</span> (${v.checked} objects: signatures, ids and links)`;
  if (v.ok_as_partial_copy) return `<span class="badge partial" id="verifies">verifies as a partial copy</span> (${v.absent_links} link(s) to objects this node does not hold)`;
  return `<span class="badge bad" id="verifies">does not verify</span><ul>${v.problems.map(p => `<li>${esc(p)}</li>`).join("")}</ul>`;
}

async function tracePage(id) {
  const began = performance.now();
  const [trace, analysis] = await Promise.all([api(`/v1/traces/${id}`), api(`/v1/traces/${id}/analysis`)]);
  const fetched = performance.now();
  const s = trace.summary;
  const cp = analysis.critical_path || { steps: [], total_ms: 0 };
  const bn = analysis.bottleneck;
  const parts = analysis.parts || [];
  app.innerHTML = `<h1>Trace <span class="mono">${short(s.trace_id)}</span> ${badge(s.status)} <a class="muted" href="#/live/${s.trace_id}">timeline</a></h1>
    <dl class="summary">
      <dt>trace</dt><dd class="mono">${s.trace_id}</dd>
      <dt>pattern</dt><dd id="pattern">${esc(analysis.pattern)}${analysis.chosen_by_adaptive ? " (chosen by the adaptive rule: " + esc(analysis.chosen_by_adaptive.reasons.join("; ")) + ")" : ""}</dd>
      <dt>capability</dt><dd>${esc(s.capability || "")}</dd>
      <dt>objects</dt><dd>${s.objects}, over ${s.last_ms - s.first_ms} ms from ${new Date(s.first_ms).toISOString()}</dd>
      ${analysis.failure ? `<dt>failure</dt><dd class="reject">${esc(analysis.failure.reason)}</dd>` : ""}
      <dt>verification</dt><dd>${verification(analysis.verification)}</dd>
    </dl>
    <h2>Graph</h2>
    <p class="legend"><span class="crit">red</span>: critical path (${cp.steps.length} steps, ${cp.total_ms} ms) · <span class="bn">orange dashed</span>: bottleneck${bn ? ` (${esc(bn.label)} by <span class="mono">${short(bn.provider)}</span>)` : ""} · boxes: ${parts.length ? "workflow stages / parallel shards" : "none"} · hover a node for its body · <span id="render-info"></span></p>
    <div id="graph"></div>
    <h2>Critical path</h2>
    <ol id="critical-path">${cp.steps.map(st => `<li data-id="${st.id}">${esc(st.kind)} <b>${esc(st.label)}</b>${st.part ? " [" + esc(st.part) + "]" : ""} <span class="muted">+${st.since_previous_ms} ms</span></li>`).join("")}</ol>
    ${parts.length ? `<h2>Parts</h2><table id="parts"><thead><tr><th>part</th><th>kind</th><th>capability</th><th>provider</th><th>waited</th><th>ran</th><th>elapsed</th><th>awards</th><th>ok</th><th>critical</th></tr></thead><tbody>` +
      parts.map(p => `<tr class="part" data-part="${esc(p.label)}"><td>${esc(p.label)}</td><td>${esc(p.kind)}</td><td>${esc(p.capability || "")}</td><td class="mono">${short(p.provider)}</td><td>${ms(p.waited_ms)}</td><td>${ms(p.duration_ms)}</td><td>${ms(p.elapsed_ms)}</td><td>${p.awards}</td><td>${p.ok === null ? "—" : p.ok ? "yes" : "no: " + esc(p.failure || "")}</td><td>${p.on_critical_path ? "yes" : ""}</td></tr>`).join("") + `</tbody></table>` : ""}
    ${offersSection(trace)}
    ${roundsSection(analysis)}
    <h2>Tasks and receipts</h2>
    <table id="tasks"><thead><tr><th>task</th><th>label</th><th>provider</th><th>awarded</th><th>ran</th><th>ok</th><th>receipt</th></tr></thead><tbody>
    ${(analysis.tasks || []).map(t => `<tr><td class="mono">${short(t.task)}</td><td>${esc(t.label)}</td><td class="mono">${short(t.provider)}</td><td>+${t.awarded_at_ms - s.first_ms} ms</td><td>${t.started_at_ms && t.finished_at_ms ? t.finished_at_ms - t.started_at_ms + " ms" : "—"}</td><td>${t.ok === null ? "—" : t.ok ? "yes" : "no"}</td><td>${t.receipt ? `<span class="mono">${short(t.receipt)}</span> ${t.countersigned ? '<span class="badge ok">countersigned</span>' : '<span class="badge partial">provider only</span>'}` : "—"}</td></tr>`).join("")}
    </tbody></table>`;
  const drawn = PvlGraph.draw(document.getElementById("graph"), trace, analysis);
  const total = performance.now() - began;
  document.getElementById("render-info").textContent =
    `${drawn.objects} objects drawn in ${drawn.total_ms.toFixed(0)} ms (layout ${drawn.layout_ms.toFixed(0)} ms; data ${(fetched - began).toFixed(0)} ms)`;
  const graph = document.getElementById("graph");
  graph.dataset.rendered = s.trace_id;
  window.pvlRendered = { trace: s.trace_id, objects: drawn.objects, parts: drawn.parts, draw_ms: drawn.total_ms,
                         layout_ms: drawn.layout_ms, fetch_ms: fetched - began, total_ms: total };
}

// ---- a round's timeline -------------------------------------------------------------------

async function livePage(id) {
  app.innerHTML = `<h1>Timeline <span class="mono">${short(id)}</span> <a class="muted" href="#/trace/${esc(id)}">graph</a></h1>
    <p class="muted" id="tl-status">objects appear as this node records them</p><div class="timeline" id="timeline"></div>`;
  const rows = [];
  const seen = new Set();
  function add(o) {
    if (seen.has(o.id)) return;
    seen.add(o.id);
    rows.push(o);
    rows.sort((a, b) => a.timestamp_ms - b.timestamp_ms);
    const t0 = rows[0].timestamp_ms, span = Math.max(1, rows[rows.length - 1].timestamp_ms - t0);
    document.getElementById("timeline").innerHTML = rows.map(r => {
      const what = r.event_type || r.kind;
      return `<div class="row" data-id="${r.id}" data-kind="${esc(r.kind)}"><span>${esc(what)}</span><span class="mono">${short(r.signer)}</span>` +
        `<span class="track"><span class="mark" style="left:${(100 * (r.timestamp_ms - t0) / span).toFixed(2)}%"></span></span><span>+${r.timestamp_ms - t0} ms</span></div>`;
    }).join("");
    document.getElementById("tl-status").textContent = `${rows.length} object(s) over ${span} ms`;
  }
  // Subscribe first, then read what is already stored, so nothing falls between the two.
  listen(`?trace=${encodeURIComponent(id)}`, ev => {
    if (ev.type === "object") add(ev);
  });
  try {
    const trace = await api(`/v1/traces/${id}`);
    for (const o of trace.objects) add({ id: o.id, kind: o.kind, signer: o.signer, timestamp_ms: o.timestamp_ms, event_type: o.body && o.body.event_type });
  } catch (e) {
    if (e instanceof NotSignedIn) throw e;
    // Not stored yet: the stream fills it in.
  }
}

// ---- network ------------------------------------------------------------------------------

async function networkPage() {
  const [status, peers, caps] = await Promise.all([api("/v1/status"), api("/v1/peers"), api("/v1/capabilities")]);
  const now = Date.now();
  app.innerHTML = `<h1>Network</h1>
    <dl class="summary" id="reachability">
      <dt>peer id</dt><dd class="mono">${esc(status.peer_id)}</dd>
      <dt>network</dt><dd>${status.private ? "private (pre-shared key and allow-list)" : "public"}</dd>
      <dt>listening on</dt><dd class="mono">${status.listen_addrs.map(esc).join("<br>")}</dd>
      <dt>peers</dt><dd>${status.connected_peers} connected, ${status.routing_table} in the routing table</dd>
      <dt>topics</dt><dd class="mono">${status.topics.map(esc).join(", ")}</dd>
      <dt>store</dt><dd>${status.objects_stored} objects</dd>
      <dt>engine</dt><dd>${status.engine.runs_started} runs started, ${status.engine.runs_finished} finished, ${status.engine.refused} objects refused, ${status.engine.jobs_running} jobs running</dd>
    </dl>
    <h2>Peers</h2>
    <table id="peers"><thead><tr><th>peer</th><th>connected</th><th>addresses</th></tr></thead><tbody>
    ${peers.map(p => `<tr class="peer"><td class="mono">${esc(p.peer_id)}</td><td>${p.connected ? "yes" : "no"}</td><td class="mono">${p.addresses.map(esc).join("<br>")}</td></tr>`).join("")}
    </tbody></table>
    <h2>Capability directory</h2>
    <table id="capabilities"><thead><tr><th>capability</th><th>provider</th><th>price</th><th>max concurrent</th><th>input → output</th><th>ad expires in</th></tr></thead><tbody>
    ${caps.flatMap(c => c.providers.map(p => `<tr class="capability" data-capability="${esc(c.capability)}"><td>${esc(c.capability)}</td><td class="mono" title="${esc(p.peer_id)}">${short(p.provider)}</td><td>${p.price_base}${p.price_per_kib ? " + " + p.price_per_kib + "/KiB" : ""}</td><td>${p.max_concurrent}</td><td>${esc(p.input_desc)} → ${esc(p.output_desc)}</td><td>${Math.round((p.expires_at_ms - now) / 1000)} s</td></tr>`)).join("")}
    </tbody></table>`;
  listen("", ev => {
    if (ev.type === "peer_connected" || ev.type === "peer_disconnected") networkPage().catch(fail);
  });
}

// ---- routing ------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  if (stream) { stream.close(); stream = null; liveBadge.className = "live off"; }
  document.getElementById("nav-traces").className = hash === "#/" ? "active" : "";
  document.getElementById("nav-network").className = hash === "#/network" ? "active" : "";
  app.innerHTML = "<p>Loading…</p>";
  try {
    let m;
    if ((m = hash.match(/^#\/trace\/([0-9a-f]{8,64})$/))) await tracePage(m[1]);
    else if ((m = hash.match(/^#\/live\/([0-9a-f]{8,64})$/))) await livePage(m[1]);
    else if (hash === "#/network") await networkPage();
    else await tracesPage();
  } catch (e) {
    fail(e);
  }
}

window.addEventListener("hashchange", route);
route();
