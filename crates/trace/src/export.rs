//! Exports: JSON, Graphviz DOT and Mermaid for people; a CBOR bundle for offline verification.
//!
//! The DOT and Mermaid drawings group objects the way the analysis sees them
//! ([`crate::analyse()`]): when a trace has two or more parts (workflow stages, parallel
//! shards, the reducer), or is a workflow or parallel run, each part's objects (sub-intents, offers, selection, award, progress,
//! done, receipt, part events) form one cluster named after its label, and every consensus
//! object (proposals, votes, certificates, ballot events) forms `cluster_consensus`.
//!
//! # Bundle
//!
//! The bundle format (one CBOR array: magic, version, trace id, the objects' wire bytes) is
//! defined by the protocol crate ([`pvl_protocol::Bundle`], SPEC.md §11) so that every
//! implementation has one reader. [`to_bundle`] writes one; [`verify_bundle`] reads one and
//! checks it with nothing but its bytes: every object decodes and verifies, states the
//! bundle's trace, and every parent and body reference resolves inside the bundle.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use pvl_protocol::{Bundle, ObjectId, SignedObject, TraceId};
use serde::Serialize;

use crate::analyse::{groups, label_of};
use crate::error::{Result, TraceError};
use crate::verify::{VerifyReport, verify_objects};

pub use pvl_protocol::{BUNDLE_MAGIC, BUNDLE_VERSION, MAX_BUNDLE_OBJECTS};

/// The JSON export of a trace.
#[derive(Debug, Serialize)]
pub struct JsonExport<'a> {
    /// The trace id.
    pub trace: TraceId,
    /// The objects (JSON view of the protocol crate).
    pub objects: &'a [SignedObject],
    /// `[parent, child]` edges.
    pub edges: Vec<[ObjectId; 2]>,
}

fn trace_of(objects: &[SignedObject]) -> TraceId {
    objects
        .iter()
        .find(|o| o.is_root())
        .or_else(|| objects.first())
        .map(SignedObject::trace_id)
        .unwrap_or(ObjectId([0; 32]))
}

fn edges(objects: &[SignedObject]) -> Vec<[ObjectId; 2]> {
    objects
        .iter()
        .flat_map(|o| o.parents().iter().map(move |p| [*p, o.id()]))
        .collect()
}

/// The trace as pretty JSON: `{"trace", "objects": [...], "edges": [[parent, child]..]}`.
pub fn to_json(objects: &[SignedObject]) -> Result<String> {
    let export = JsonExport {
        trace: trace_of(objects),
        objects,
        edges: edges(objects),
    };
    serde_json::to_string_pretty(&export).map_err(|e| TraceError::Export(e.to_string()))
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// The trace as a Graphviz `digraph` (render with `dot -Tsvg`). Parents not in `objects` are
/// drawn dashed. When the trace has two or more parts (workflow stages, parallel shards, the
/// reducer), or is a workflow or parallel run, each part's objects are drawn in a `subgraph "cluster_<label>"`; proposals,
/// votes, certificates and ballot events in `cluster_consensus`. The root intent and the
/// run-level events stay outside.
pub fn to_dot(objects: &[SignedObject]) -> String {
    let mut out = String::new();
    let trace = trace_of(objects);
    let _ = writeln!(out, "digraph \"trace_{}\" {{", trace.short());
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    let by_id: HashMap<ObjectId, &SignedObject> = objects.iter().map(|o| (o.id(), o)).collect();
    let groups = groups(objects);
    let mut clustered: HashSet<ObjectId> = HashSet::new();
    for (label, members) in &groups.parts {
        let name = if label == "consensus" {
            "part_consensus".to_string()
        } else {
            label.clone()
        };
        dot_cluster(&mut out, &name, label, members, &by_id);
        clustered.extend(members.iter().copied());
    }
    if !groups.consensus.is_empty() {
        dot_cluster(
            &mut out,
            "consensus",
            "consensus",
            &groups.consensus,
            &by_id,
        );
        clustered.extend(groups.consensus.iter().copied());
    }
    for o in objects.iter().filter(|o| !clustered.contains(&o.id())) {
        dot_node(&mut out, "  ", o);
    }
    let known: HashSet<ObjectId> = by_id.keys().copied().collect();
    for o in objects {
        for p in o.parents() {
            if !known.contains(p) {
                let _ = writeln!(
                    out,
                    "  \"{p}\" [label=\"missing\\n{}\", style=dashed];",
                    p.short()
                );
            }
            let _ = writeln!(out, "  \"{p}\" -> \"{}\";", o.id());
        }
    }
    out.push_str("}\n");
    out
}

fn dot_node(out: &mut String, indent: &str, o: &SignedObject) {
    let _ = writeln!(
        out,
        "{indent}\"{}\" [label=\"{}\\n{}\\n{}\\nby {}\"];",
        o.id(),
        o.kind(),
        escape_dot(&label_of(o)),
        o.id().short(),
        o.signer().short()
    );
}

fn dot_cluster(
    out: &mut String,
    name: &str,
    label: &str,
    members: &[ObjectId],
    by_id: &HashMap<ObjectId, &SignedObject>,
) {
    let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", escape_dot(name));
    let _ = writeln!(out, "    label=\"{}\";", escape_dot(label));
    let _ = writeln!(out, "    style=rounded;");
    for id in members {
        if let Some(o) = by_id.get(id) {
            dot_node(out, "    ", o);
        }
    }
    let _ = writeln!(out, "  }}");
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace('\n', " ")
}

/// The trace as a Mermaid `flowchart` (renders in Markdown viewers that support Mermaid).
/// Parts and consensus objects are grouped in `subgraph`s as in [`to_dot`].
pub fn to_mermaid(objects: &[SignedObject]) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut names: HashMap<ObjectId, String> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id(), format!("n{i}")))
        .collect();
    let by_id: HashMap<ObjectId, &SignedObject> = objects.iter().map(|o| (o.id(), o)).collect();
    let groups = groups(objects);
    let mut clustered: HashSet<ObjectId> = HashSet::new();
    let mut clusters: Vec<(&str, &[ObjectId])> = groups
        .parts
        .iter()
        .map(|(l, m)| (l.as_str(), m.as_slice()))
        .collect();
    if !groups.consensus.is_empty() {
        clusters.push(("consensus", groups.consensus.as_slice()));
    }
    for (i, (label, members)) in clusters.into_iter().enumerate() {
        let _ = writeln!(out, "  subgraph g{i} [\"{}\"]", escape_mermaid(label));
        for id in members {
            if let Some(o) = by_id.get(id) {
                mermaid_node(&mut out, "    ", &names, o);
            }
        }
        out.push_str("  end\n");
        clustered.extend(members.iter().copied());
    }
    for o in objects.iter().filter(|o| !clustered.contains(&o.id())) {
        mermaid_node(&mut out, "  ", &names, o);
    }
    let mut extra = objects.len();
    for o in objects {
        let child = names.get(&o.id()).cloned().unwrap_or_default();
        for p in o.parents() {
            let parent = match names.get(p) {
                Some(n) => n.clone(),
                None => {
                    let n = format!("n{extra}");
                    extra += 1;
                    let _ = writeln!(out, "  {n}[/\"missing<br/>{}\"/]", p.short());
                    names.insert(*p, n.clone());
                    n
                }
            };
            let _ = writeln!(out, "  {parent} --> {child}");
        }
    }
    out
}

fn mermaid_node(
    out: &mut String,
    indent: &str,
    names: &HashMap<ObjectId, String>,
    o: &SignedObject,
) {
    let name = names.get(&o.id()).cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "{indent}{name}[\"{}<br/>{}<br/>{}\"]",
        o.kind(),
        escape_mermaid(&label_of(o)),
        o.id().short()
    );
}

/// Encodes a bundle (see the module docs) of `objects`, which must be one trace.
pub fn to_bundle(objects: &[SignedObject]) -> Result<Vec<u8>> {
    Bundle::new(trace_of(objects), objects)
        .encode()
        .map_err(|e| TraceError::Export(e.to_string()))
}

/// A bundle checked offline.
#[derive(Debug)]
pub struct VerifiedBundle {
    /// The trace id the bundle states.
    pub trace: TraceId,
    /// The objects that decoded and verified.
    pub objects: Vec<SignedObject>,
    /// The verification report (signatures, trace membership, links).
    pub report: VerifyReport,
}

impl VerifiedBundle {
    /// Whether every object verified and every link resolved inside the bundle.
    pub fn is_ok(&self) -> bool {
        self.report.is_ok()
    }
}

/// Reads and verifies a bundle with nothing but its bytes. Fails if the bundle itself is
/// malformed ([`Bundle::decode`]); problems with individual objects are listed in the report.
pub fn verify_bundle(bytes: &[u8]) -> Result<VerifiedBundle> {
    let bundle = Bundle::decode(bytes).map_err(|e| TraceError::Bundle(e.to_string()))?;
    let items: Vec<(Option<ObjectId>, &[u8])> = bundle
        .objects
        .iter()
        .map(|w| (None, w.as_slice()))
        .collect();
    let report = verify_objects(bundle.trace, &items, &|_| None);
    let objects = bundle
        .objects
        .iter()
        .filter_map(|w| SignedObject::decode(w).ok())
        .collect();
    Ok(VerifiedBundle {
        trace: bundle.trace,
        objects,
        report,
    })
}
