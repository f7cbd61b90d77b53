// Drives the pvl web view in headless Chromium (playwright-core + Debian's /usr/bin/chromium).
// Run by tests/tests/web_view.rs, which starts the testnet and runs the rounds; this script
// only looks, and fails (exit 1) on the first check that does not hold.
//
// Environment:
//   PVL_UI_LOGIN        one-time sign-in address (`pvl ui`)
//   PVL_WORKFLOW_TRACE  a completed 3-stage workflow's trace id
//   PVL_CONSENSUS_TRACE a completed committee round's trace id
//   PVL_BIG_TRACE       a trace of ~1,000 objects, whose render time is measured
//   PVL_PUBLISH         JSON argv of a command that publishes a round and prints its outcome
//                       as JSON (run while the trace list is open: the round must appear live)
//   PVL_SCREENSHOTS     folder for the screenshots
//   CHROMIUM            the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = name => {
  const v = process.env[name];
  if (!v) { console.error(`${name} is not set`); process.exit(2); }
  return v;
};
const login = env("PVL_UI_LOGIN");
const workflow = env("PVL_WORKFLOW_TRACE");
const consensus = env("PVL_CONSENSUS_TRACE");
const big = env("PVL_BIG_TRACE");
const publish = JSON.parse(env("PVL_PUBLISH"));
const shots = env("PVL_SCREENSHOTS");
mkdirSync(shots, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  console.log("ok   " + what);
}

const userData = mkdtempSync(join(tmpdir(), "pvl-chromium-"));
// A fresh, empty profile for every run.
const context = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));

  // Without the sign-in, the view says how to sign in (the data routes answer 401).
  const base = new URL(login).origin;
  await page.goto(base + "/ui/");
  await page.waitForSelector("#signin");
  check(true, "before sign-in the view asks for `pvl ui`");

  // The one-time address signs in once.
  await page.goto(login);
  await page.waitForSelector("#trace-list tbody tr.trace");
  const cookies = await context.cookies();
  const session = cookies.find(c => c.name === "pvl_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "the session cookie is HttpOnly and SameSite=Strict");
  const again = await (await context.request.get(login, { maxRedirects: 0 })).status();
  check(again === 401, "the sign-in code is single-use (second use: " + again + ")");
  const post = await context.request.post(base + "/v1/intents", { data: { capability: "echo" } });
  check(post.status() === 401, "the cookie does not authorise a POST (" + post.status() + ")");

  // (a) The trace list shows the rounds, and filters.
  await page.waitForSelector(`tr[data-trace="${workflow}"]`);
  await page.waitForSelector(`tr[data-trace="${consensus}"]`);
  check(true, "the trace list shows the workflow and the consensus round");
  await page.selectOption("#f-pattern", "consensus");
  const shown = await page.$$eval("#trace-list tbody tr", rows => rows.map(r => r.dataset.pattern));
  check(shown.length > 0 && shown.every(p => p === "consensus"), "the pattern filter keeps consensus traces only");
  await page.selectOption("#f-pattern", "");
  await page.screenshot({ path: join(shots, "traces.png"), fullPage: true });

  // A round published now (its offers are collected for 3 s) appears without a reload, and its
  // timeline fills in while it runs.
  await page.evaluate(() => { window.__noReload = true; });
  const before = new Set(await page.$$eval("#trace-list tbody tr", rows => rows.map(r => r.dataset.trace)));
  const published = new Promise((resolve, reject) =>
    execFile(publish[0], publish.slice(1), { timeout: 60_000 }, (e, stdout) => e ? reject(e) : resolve(JSON.parse(stdout))));
  published.catch(() => {});
  const newRow = await page.waitForFunction(known => {
    const row = [...document.querySelectorAll("#trace-list tbody tr")].find(r => !known.includes(r.dataset.trace));
    return row ? row.dataset.trace : null;
  }, [...before], { timeout: 30_000 });
  const fresh = await newRow.jsonValue();
  check(await page.evaluate(() => window.__noReload === true), "the new round appeared live, without a reload");
  await page.screenshot({ path: join(shots, "traces-live.png"), fullPage: true });
  await page.click(`tr[data-trace="${fresh}"] a[href="#/live/${fresh}"]`);
  await page.waitForSelector("#timeline .row");
  const receiptAtOpen = await page.$$eval("#timeline .row[data-kind=receipt]", rs => rs.length);
  check(receiptAtOpen === 0, "the round is still running when its timeline opens");
  await page.waitForSelector("#timeline .row[data-kind=receipt]", { timeout: 30_000 });
  const rows = await page.$$eval("#timeline .row", rs => rs.length);
  check(rows > 5, `the running round's timeline filled in as its objects arrived (${rows} objects, receipt last)`);
  await page.screenshot({ path: join(shots, "timeline.png"), fullPage: true });
  const outcome = await published;
  check(outcome.trace_id === fresh && outcome.status === "completed", "the live row and timeline were the published round's");

  // (b) The workflow: its graph, stages grouped, critical path, bottleneck, verification.
  await page.goto(`${base}/ui/#/trace/${workflow}`);
  await page.waitForSelector(`#graph[data-rendered="${workflow}"]`);
  const groups = await page.$$eval("#graph .group", gs => gs.map(g => g.dataset.part));
  check(["fetch", "hash", "count"].every(s => groups.includes(s)), "the workflow graph groups its stages: " + groups.join(", "));
  const critical = await page.$$eval("#graph .node.critical", ns => ns.length);
  const path = await page.$$eval("#critical-path li", ls => ls.length);
  check(critical > 2 && critical === path, `the critical path is highlighted (${critical} nodes, ${path} steps)`);
  check(await page.$$eval("#graph .edge.critical", es => es.length) > 0, "critical edges are highlighted");
  check(await page.$$eval("#graph .node.bottleneck", ns => ns.length) === 1, "the bottleneck is marked");
  check(await page.$$eval("#parts tr.part", rs => rs.length) === 3, "the three stages are listed with their timings");
  check((await page.textContent("#verifies")).startsWith("verifies"), "the trace verifies");
  check(await page.$$eval("table.offers tr[data-offer]", rs => rs.length) >= 3, "offers are listed with scores and results");
  await page.screenshot({ path: join(shots, "trace-workflow.png"), fullPage: true });

  // (b) The consensus round: each vote.
  await page.goto(`${base}/ui/#/trace/${consensus}`);
  await page.waitForSelector(`#graph[data-rendered="${consensus}"]`);
  const votes = await page.$$eval(".round tr.vote", rs => rs.map(r => r.textContent));
  check(votes.length >= 3 && votes.every(v => /approve|reject/.test(v)), `the consensus round shows its ${votes.length} votes`);
  check(await page.$$eval("#graph .node[data-kind=vote]", ns => ns.length) === votes.length, "every vote is a node of the graph");
  await page.screenshot({ path: join(shots, "trace-consensus.png"), fullPage: true });

  // (c) The network.
  await page.goto(`${base}/ui/#/network`);
  await page.waitForSelector("#peers tr.peer");
  check(await page.$$eval("#peers tr.peer", rs => rs.length) >= 4, "the network page lists the peers");
  check(await page.$$eval("#capabilities tr.capability", rs => rs.length) >= 4, "the capability directory is shown");
  check((await page.textContent("#reachability")).includes("/ip4/"), "this node's addresses are shown");
  await page.screenshot({ path: join(shots, "network.png"), fullPage: true });

  // Render time of a ~1,000-object trace: from navigation until the graph is drawn.
  await page.goto(`${base}/ui/#/network`);
  await page.waitForSelector("#peers tr.peer");
  const started = Date.now();
  await page.goto(`${base}/ui/#/trace/${big}`);
  await page.waitForSelector(`#graph[data-rendered="${big}"]`, { timeout: 60_000 });
  const wall = Date.now() - started;
  const r = await page.evaluate(() => window.pvlRendered);
  console.log(`RENDER objects=${r.objects} total_ms=${r.total_ms.toFixed(0)} draw_ms=${r.draw_ms.toFixed(0)} layout_ms=${r.layout_ms.toFixed(0)} fetch_ms=${r.fetch_ms.toFixed(0)} wall_ms=${wall}`);
  await page.screenshot({ path: join(shots, "trace-1000.png") });
  check(errors.length === 0, "no script error on any page: " + errors.join("; "));
} catch (e) {
  failed = true;
  console.error(String(e && e.stack || e));
} finally {
  await context.close();
  rmSync(userData, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
