//! `pvl-testnet demo`: a fresh testnet, every scenario end to end, each trace printed as a tree
//! with its analysis, exported (DOT, JSON, signed bundle) into one output folder and verified
//! offline, on the requester and on every other node that holds it. Exit 0 only if every
//! scenario completed and every trace verified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::procs;
use crate::scenarios::{self, Completed};
use crate::testnet::{Testnet, UpOptions};

/// Options of `demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Output folder (a fresh one under the temporary directory if `None`).
    pub out: Option<PathBuf>,
    /// Only the scenarios whose name contains this.
    pub only: Option<String>,
}

/// One scenario's result in `summary.json`.
#[derive(Debug, Serialize)]
struct ScenarioResult {
    name: &'static str,
    ok: bool,
    error: Option<String>,
    completed: Option<Completed>,
    verified_on: Vec<String>,
}

/// Runs the demo; returns an error if any scenario failed or any trace did not verify.
pub fn run(options: &DemoOptions, pvl_bin: PathBuf) -> Result<()> {
    let out = match &options.out {
        Some(out) => out.clone(),
        None => fresh_dir("pvl-demo")?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    out!("==> pvl:    {}", pvl_bin.display());
    out!("==> output: {}", out.display());
    let up = UpOptions::local(options.nodes, out.join("testnet"), Duration::from_secs(1));
    out!("==> starting {} nodes", options.nodes);
    procs::own(up.dir.clone());
    let testnet = Testnet::up(&up, pvl_bin)?;
    print_layout(&testnet);
    let requester = 0;
    let mut results = Vec::new();
    for scenario in scenarios::all() {
        if options
            .only
            .as_ref()
            .is_some_and(|only| !scenario.name.contains(only.as_str()))
        {
            continue;
        }
        out!("\n==> {}: {}", scenario.name, scenario.about);
        let result = match (scenario.run)(&testnet, requester) {
            Ok(completed) => {
                let dir = out.join(scenario.name);
                match report(&testnet, requester, &completed, &dir) {
                    Ok(verified_on) => ScenarioResult {
                        name: scenario.name,
                        ok: true,
                        error: None,
                        completed: Some(completed),
                        verified_on,
                    },
                    Err(e) => failed(scenario.name, Some(completed), &e),
                }
            }
            Err(e) => failed(scenario.name, None, &e),
        };
        results.push(result);
    }
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    out!("\n==> summary");
    for r in &results {
        let winner = r
            .completed
            .as_ref()
            .and_then(|c| c.provider.clone())
            .unwrap_or_else(|| "-".into());
        let verdict = if r.ok { "ok" } else { "FAILED" };
        out!(
            "  {:<26} {:<7} winner {:<8} verified on {} node(s){}",
            r.name,
            verdict,
            winner,
            r.verified_on.len(),
            r.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    out!("==> stopping the nodes (SIGTERM)");
    let killed = testnet.down()?;
    if !killed.is_empty() {
        bail!("nodes did not stop on SIGTERM: {}", killed.join(", "));
    }
    let failures = results.iter().filter(|r| !r.ok).count();
    if failures > 0 || results.is_empty() {
        bail!(
            "{failures} of {} scenario(s) failed (logs in {}/testnet/node-*/node.log)",
            results.len(),
            out.display()
        );
    }
    out!(
        "demo OK: {} scenario(s) completed and verified; exports in {}",
        results.len(),
        out.display()
    );
    Ok(())
}

fn failed(name: &'static str, completed: Option<Completed>, e: &anyhow::Error) -> ScenarioResult {
    out!("  FAILED: {e:#}");
    ScenarioResult {
        name,
        ok: false,
        error: Some(format!("{e:#}")),
        completed,
        verified_on: Vec::new(),
    }
}

fn print_layout(testnet: &Testnet) {
    out!(
        "{:<8} {:<9} {:<54} {:>12} {:>7} {:>8}",
        "NODE",
        "KEY",
        "PEER ID",
        "sha256 PRICE",
        "ETA ms",
        "REL bps"
    );
    for node in &testnet.state.nodes {
        let sha = node.builtin("sha256");
        out!(
            "{:<8} {:<9} {:<54} {:>12} {:>7} {:>8}",
            node.name,
            node.public_key
                .as_deref()
                .unwrap_or("?")
                .chars()
                .take(8)
                .collect::<String>(),
            node.peer_id,
            sha.map_or(0, |b| b.price),
            sha.map_or(0, |b| b.eta_ms),
            sha.map_or(0, |b| b.reliability_bps),
        );
    }
    out!(
        "node-0 is the bootstrap node and the requester; traces name signers by KEY (the first \
         8 hex digits of the public key)"
    );
}

/// Prints the trace and its analysis, writes the exports, verifies the bundle of every node that
/// holds the trace. Returns the nodes whose bundle verified.
fn report(testnet: &Testnet, requester: usize, c: &Completed, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    out!(
        "  completed by {} for {} in {} ms (awards: {}); trace {}",
        c.provider.as_deref().unwrap_or("?"),
        c.outcome["cost"],
        c.elapsed_ms,
        c.awards,
        c.trace_id
    );
    let id = c.trace_id.as_str();
    print!(
        "{}",
        indent(&testnet.cli(requester, &["trace", "show", id])?)
    );
    print!(
        "{}",
        indent(&testnet.cli(requester, &["trace", "analyze", id])?)
    );
    for format in ["dot", "json", "bundle"] {
        let file = dir.join(format!("trace.{format}"));
        let file = file.display().to_string();
        testnet.cli(
            requester,
            &["trace", "export", id, "--format", format, "--out", &file],
        )?;
    }
    let mut verified = Vec::new();
    for node in &testnet.state.nodes {
        let bundle = dir.join(format!("{}.bundle", node.name));
        let bundle_arg = bundle.display().to_string();
        let exported = testnet.cli(
            node.index,
            &[
                "trace",
                "export",
                id,
                "--format",
                "bundle",
                "--out",
                &bundle_arg,
            ],
        );
        if exported.is_err() && node.index != requester {
            // A node the intent never reached holds no trace; not an error of the trace.
            out!("  {}: holds no copy of the trace", node.name);
            continue;
        }
        exported?;
        let copy = verify_copy(testnet, node.index, &bundle_arg)?;
        if copy.gaps > 0 && node.index == requester {
            bail!(
                "the requester's copy is incomplete: {} link(s) to objects it lacks",
                copy.gaps
            );
        }
        if copy.gaps == 0 {
            out!(
                "  {:<8} bundle verifies: {} objects, every signature and link",
                node.name,
                copy.checked
            );
        } else {
            out!(
                "  {:<8} bundle verifies: {} objects, every signature; partial copy: {} link(s) \
                 to objects this node never received",
                node.name,
                copy.checked,
                copy.gaps
            );
        }
        verified.push(node.name.clone());
    }
    out!("  exports: {}/trace.{{dot,json,bundle}}", dir.display());
    Ok(verified)
}

/// What `pvl trace verify` found in one node's copy of a trace.
struct CopyCheck {
    /// Objects checked.
    checked: u64,
    /// Links to objects the copy lacks (`missing_parent`, `dangling_reference`): a node that
    /// took part in only some of the round holds only some of its objects.
    gaps: usize,
}

/// Runs `pvl trace verify --json` on a bundle; any problem other than a gap is an error.
fn verify_copy(testnet: &Testnet, index: usize, bundle: &str) -> Result<CopyCheck> {
    let node = testnet.node(index)?;
    let out = testnet.pvl.output(
        &node.dir,
        node.netns.as_deref(),
        &["trace", "verify", bundle, "--json"],
    )?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`pvl trace verify {bundle}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let (gaps, bad): (Vec<_>, Vec<_>) = problems
        .iter()
        .partition(|p| p["kind"] == "missing_parent" || p["kind"] == "dangling_reference");
    if !bad.is_empty() {
        bail!(
            "the trace as {} holds it does not verify: {}",
            node.name,
            serde_json::to_string(&bad)?
        );
    }
    Ok(CopyCheck {
        checked: report["checked"].as_u64().unwrap_or(0),
        gaps: gaps.len(),
    })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// A new directory `<tmp>/<prefix>-<unix seconds>-<pid>`.
pub fn fresh_dir(prefix: &str) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{secs}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
