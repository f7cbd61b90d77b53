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

  // Lays out `nodes` (ids) and `edges` ([from, to]) with dagre, left to right; `sizes` gives
  // a node's size when it is not the default (a collapsed part).
  function layered(nodes, edges, sizes, big) {
    const g = new dagre.graphlib.Graph();
    // network-simplex ranks best; longest-path keeps big graphs fast.
    g.setGraph({ rankdir: "LR", nodesep: 8, ranksep: 36, marginx: 16, marginy: 24,
                 ranker: big ? "longest-path" : "network-simplex" });
    g.setDefaultEdgeLabel(() => ({}));
    for (const id of nodes) g.setNode(id, sizes.get(id) || { width: W, height: H });
    for (const [v, w] of edges) if (v !== w) g.setEdge(v, w);
    dagre.layout(g);
    return g;
  }

  // Positions every object: {pos: id -> {x, y} (centre), width, height, paths: "v>w" -> points}.
  //
  // A trace with parts (workflow stages, parallel shards) is laid out in two levels: each
  // part's objects on their own, then the parts, as single boxes of that size, with the
  // objects outside any part. A 1,000-object parallel job is then 60-odd small layouts and one
  // of 60-odd boxes instead of one layout of 1,000 nodes, and its shards read as stacked lanes.
  function layout(objects, part) {
    const ids = new Set(objects.map(o => o.id));
    const edges = [];
    for (const o of objects) for (const p of o.parents) if (ids.has(p)) edges.push([p, o.id]);
    const labels = new Set(part.values());
    const pos = new Map();
    const paths = new Map();
    if (labels.size < 2) {
      const g = layered(objects.map(o => o.id), edges, new Map(), objects.length > 300);
      for (const o of objects) { const n = g.node(o.id); pos.set(o.id, { x: n.x, y: n.y }); }
      for (const e of g.edges()) paths.set(e.v + ">" + e.w, g.edge(e).points);
      return { pos, paths, width: g.graph().width, height: g.graph().height };
    }
    const kind = new Map(objects.map(o => [o.id, o.kind]));
    const time = new Map(objects.map(o => [o.id, o.timestamp_ms]));
    const members = new Map();
    for (const o of objects) {
      const l = part.get(o.id);
      if (!l) continue;
      if (!members.has(l)) members.set(l, []);
      members.get(l).push(o.id);
    }
    // Parts of the same shape (a parallel job's shards, as a rule) share one layout: the
    // shape is the part's objects by depth and kind, and the n-th object of one takes the
    // n-th slot of the other.
    const inner = new Map();
    const sizes = new Map();
    const shapes = new Map();
    for (const [l, list] of members) {
      const set = new Set(list);
      const local = edges.filter(([v, w]) => set.has(v) && set.has(w));
      const depth = new Map(list.map(id => [id, 0]));
      for (let changed = true, rounds = 0; changed && rounds < list.length; rounds++) {
        changed = false;
        for (const [v, w] of local) {
          if (depth.get(w) < depth.get(v) + 1) { depth.set(w, depth.get(v) + 1); changed = true; }
        }
      }
      const slots = [...list].sort((a, b) => depth.get(a) - depth.get(b) || (kind.get(a) < kind.get(b) ? -1 : kind.get(a) > kind.get(b) ? 1 : 0) || time.get(a) - time.get(b));
      const shape = slots.map(id => depth.get(id) + kind.get(id)).join(",");
      let laid = shapes.get(shape);
      if (!laid) {
        const g = layered(slots, local, new Map(), false);
        laid = { nodes: slots.map(id => g.node(id)), width: g.graph().width, height: g.graph().height, paths: new Map() };
        const index = new Map(slots.map((id, i) => [id, i]));
        for (const e of g.edges()) laid.paths.set(index.get(e.v) + ">" + index.get(e.w), g.edge(e).points);
        shapes.set(shape, laid);
      }
      inner.set(l, { slots, local, laid });
      sizes.set("part:" + l, { width: laid.width, height: laid.height + 12 });
    }
    const top = v => (part.has(v) ? "part:" + part.get(v) : v);
    const outer = objects.filter(o => !part.has(o.id)).map(o => o.id).concat([...sizes.keys()]);
    const seen = new Set();
    const topEdges = [];
    for (const [v, w] of edges) {
      const key = top(v) + ">" + top(w);
      if (top(v) !== top(w) && !seen.has(key)) { seen.add(key); topEdges.push([top(v), top(w)]); }
    }
    const g = layered(outer, topEdges, sizes, outer.length > 300);
    for (const id of outer) {
      const n = g.node(id);
      if (!id.startsWith("part:")) { pos.set(id, { x: n.x, y: n.y }); continue; }
      const { slots, local, laid } = inner.get(id.slice(5));
      const dx = n.x - n.width / 2, dy = n.y - n.height / 2 + 12;
      slots.forEach((v, i) => pos.set(v, { x: laid.nodes[i].x + dx, y: laid.nodes[i].y + dy }));
      const index = new Map(slots.map((v, i) => [v, i]));
      for (const [v, w] of local) {
        const points = laid.paths.get(index.get(v) + ">" + index.get(w));
        if (points) paths.set(v + ">" + w, points.map(p => ({ x: p.x + dx, y: p.y + dy })));
      }
    }
    // Edges between levels: straight, from the right side of one object to the left of the other.
    for (const [v, w] of edges) {
      if (paths.has(v + ">" + w)) continue;
      const a = pos.get(v), b = pos.get(w);
      paths.set(v + ">" + w, [{ x: a.x + W / 2, y: a.y }, { x: b.x - W / 2, y: b.y }]);
    }
    return { pos, paths, width: g.graph().width, height: g.graph().height };
  }

  // Draws `trace` into `container`; returns what it drew (counts, layout and draw times).
  function draw(container, trace, analysis) {
    const began = performance.now();
    const objects = trace.objects;
    const t0 = Math.min(...objects.map(o => o.timestamp_ms));
    const part = partsOf(trace, analysis);
    const laid = layout(objects, part);
    const laidOut = performance.now();
    const g = { node: id => laid.pos.get(id) };
    const edges = laid.paths.size;

    const steps = (analysis.critical_path && analysis.critical_path.steps) || [];
    const critical = new Set(steps.map(s => s.id));
    const criticalEdges = new Set();
    for (let i = 1; i < steps.length; i++) criticalEdges.add(steps[i - 1].id + ">" + steps[i].id);
    const bottleneck = analysis.bottleneck && analysis.bottleneck.task;

    const out = [];
    out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(laid.width)}" height="${Math.ceil(laid.height)}" id="trace-svg">`);
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
    for (const [key, pts] of laid.paths) {
      const d = "M" + pts.map(p => p.x.toFixed(1) + "," + p.y.toFixed(1)).join("L");
      const cls = criticalEdges.has(key) ? "edge critical" : "edge";
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
               `<title>${esc(o.kind + " " + o.id + "\nsigner " + o.signer + "\n" + new Date(o.timestamp_ms).toISOString() + "\n" + JSON.stringify(o.body).slice(0, 300))}</title>` +
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
