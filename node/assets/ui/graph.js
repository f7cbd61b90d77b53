// pvl web view: a trace drawn as a DAG (dagre computes the layout; we draw plain SVG).
//
// Nodes are the trace's objects, edges their parent links. The analysis colours the critical
// path (red) and the bottleneck task (orange, dashed); objects are grouped by the workflow
// stage or parallel shard they belong to (a box around each part's objects).
"use strict";

const PvlGraph = (() => {
  const W = 132, H = 36;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // The part (stage, shard, reducer) each object belongs to: the part's own intent and task,
  // then whatever descends from them (first parent with a part wins), in time order.
  function partsOf(trace, analysis) {
    const part = new Map();
    for (const p of analysis.parts || []) {
      if (p.intent) part.set(p.intent, p.label);
      if (p.task) part.set(p.task, p.label);
    }
    for (const t of analysis.tasks || []) {
      if (t.label && t.task && !part.has(t.task)) part.set(t.task, t.label);
    }
    const root = trace.summary.trace_id;
    const objects = [...trace.objects].sort((a, b) => a.timestamp_ms - b.timestamp_ms);
    for (const o of objects) {
      if (part.has(o.id) || o.id === root) continue;
      const body = o.body || {};
      const attrs = Array.isArray(body.attrs) ? body.attrs : [];
      const stage = attrs.find(a => a[0] === "stage" || a[0] === "shard");
      if (stage) { part.set(o.id, stage[1]); continue; }
      if (body.intent && part.has(body.intent)) { part.set(o.id, part.get(body.intent)); continue; }
      if (body.task && part.has(body.task)) { part.set(o.id, part.get(body.task)); continue; }
      for (const p of o.parents) {
        if (p !== root && part.has(p)) { part.set(o.id, part.get(p)); break; }
      }
    }
    return part;
  }

  function label(o, t0) {
    const body = o.body || {};
    let what = o.kind;
    if (o.kind === "event" && body.event_type) what = body.event_type;
    else if (o.kind === "intent" && body.capability) what = "intent " + body.capability;
    else if (o.kind === "offer" && body.cost !== undefined) what = "offer " + body.cost;
    else if (o.kind === "vote") what = body.approve ? "vote ✔" : "vote ✘";
    else if (o.kind === "task_start" && body.label) what = "award " + body.label;
    return [what.slice(0, 22), o.signer.slice(0, 8) + " +" + (o.timestamp_ms - t0) + "ms"];
  }

  // Draws `trace` into `container`; returns what it drew (counts, layout and draw times).
  function draw(container, trace, analysis) {
    const began = performance.now();
    const objects = trace.objects;
    const t0 = Math.min(...objects.map(o => o.timestamp_ms));
    const ids = new Set(objects.map(o => o.id));
    const g = new dagre.graphlib.Graph();
    // network-simplex ranks best; longest-path keeps big traces (1,000 objects) fast.
    g.setGraph({ rankdir: "LR", nodesep: 8, ranksep: 36, marginx: 16, marginy: 24,
                 ranker: objects.length > 300 ? "longest-path" : "network-simplex" });
    g.setDefaultEdgeLabel(() => ({}));
    for (const o of objects) g.setNode(o.id, { width: W, height: H });
    let edges = 0;
    for (const o of objects) {
      for (const p of o.parents) if (ids.has(p)) { g.setEdge(p, o.id); edges++; }
    }
    dagre.layout(g);
    const laidOut = performance.now();

    const steps = (analysis.critical_path && analysis.critical_path.steps) || [];
    const critical = new Set(steps.map(s => s.id));
    const criticalEdges = new Set();
    for (let i = 1; i < steps.length; i++) criticalEdges.add(steps[i - 1].id + ">" + steps[i].id);
    const bottleneck = analysis.bottleneck && analysis.bottleneck.task;
    const part = partsOf(trace, analysis);

    const size = g.graph();
    const out = [];
    out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(size.width)}" height="${Math.ceil(size.height)}" id="trace-svg">`);
    // Part boxes, behind everything.
    const boxes = new Map();
    for (const o of objects) {
      const label = part.get(o.id);
      if (!label) continue;
      const n = g.node(o.id);
      const b = boxes.get(label) || { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity, n: 0 };
      b.x0 = Math.min(b.x0, n.x - W / 2); b.y0 = Math.min(b.y0, n.y - H / 2);
      b.x1 = Math.max(b.x1, n.x + W / 2); b.y1 = Math.max(b.y1, n.y + H / 2); b.n++;
      boxes.set(label, b);
    }
    for (const [label, b] of boxes) {
      out.push(`<g class="group" data-part="${esc(label)}"><rect x="${b.x0 - 6}" y="${b.y0 - 18}" width="${b.x1 - b.x0 + 12}" height="${b.y1 - b.y0 + 24}"></rect>` +
               `<text x="${b.x0}" y="${b.y0 - 6}">${esc(label)}</text></g>`);
    }
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      const d = "M" + pts.map(p => p.x.toFixed(1) + "," + p.y.toFixed(1)).join("L");
      const cls = criticalEdges.has(e.v + ">" + e.w) ? "edge critical" : "edge";
      out.push(`<path class="${cls}" d="${d}"></path>`);
    }
    for (const o of objects) {
      const n = g.node(o.id);
      const [l1, l2] = label(o, t0);
      let cls = "node k-" + o.kind;
      if (critical.has(o.id)) cls += " critical";
      if (o.id === bottleneck) cls += " bottleneck";
      const p = part.get(o.id);
      out.push(`<g class="${cls}" data-id="${o.id}" data-kind="${o.kind}"${p ? ` data-part="${esc(p)}"` : ""} transform="translate(${(n.x - W / 2).toFixed(1)},${(n.y - H / 2).toFixed(1)})">` +
               `<title>${esc(o.kind + " " + o.id + "\nsigner " + o.signer + "\n" + new Date(o.timestamp_ms).toISOString() + "\n" + JSON.stringify(o.body, null, 1).slice(0, 800))}</title>` +
               `<rect width="${W}" height="${H}"></rect><text x="6" y="14">${esc(l1)}</text><text x="6" y="28" class="mono">${esc(l2)}</text></g>`);
    }
    out.push("</svg>");
    container.innerHTML = out.join("");
    const drawn = performance.now();
    return { objects: objects.length, edges, parts: boxes.size, critical: critical.size,
             layout_ms: laidOut - began, total_ms: drawn - began };
  }

  return { draw, partsOf, esc };
})();
