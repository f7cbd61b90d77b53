#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Store behaviour: inserts, idempotence, orphans, indexes, queries, verify, corruption.

use std::collections::HashMap;

use pvl_protocol::fixtures::requester;
use pvl_protocol::{Kind, SignedObject};
use pvl_trace::{
    InsertOutcome, Pattern, ProblemKind, SCHEMA_VERSION, StoreConfig, TraceError, TraceStatus,
    TraceStore, testkit,
};

fn open() -> (tempfile::TempDir, TraceStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path().join("db")).unwrap();
    (dir, store)
}

fn bare(receipt: &SignedObject) -> SignedObject {
    // Rebuild the bare receipt from the countersigned one: same envelope, one signature.
    pvl_protocol::Envelope::clone(receipt.envelope())
        .sign(&testkit::provider_key(0))
        .unwrap()
}

#[test]
fn insert_and_read_back_a_trace_as_a_dag() {
    let (_d, store) = open();
    let objects = testkit::consensus().unwrap();
    let outcomes = store.insert_batch(&objects).unwrap();
    assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));
    assert_eq!(store.object_count().unwrap(), objects.len() as u64);
    let trace = objects[0].trace_id();
    let dag = store.trace(&trace).unwrap();
    assert_eq!(dag.len(), objects.len());
    assert!(dag.missing.is_empty());
    assert_eq!(dag.roots().len(), 1);
    assert_eq!(dag.roots()[0].id, trace);
    for o in &objects {
        let node = dag.node(&o.id()).unwrap();
        assert_eq!(node.parents, o.parents());
        assert_eq!(node.bytes, o.bytes());
        for p in o.parents() {
            assert!(dag.node(p).unwrap().children.contains(&o.id()));
            assert!(store.children(p).unwrap().contains(&o.id()));
        }
        assert_eq!(store.get(&o.id()).unwrap().unwrap(), *o);
    }
    // Time order.
    assert!(
        dag.nodes
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );
    assert_eq!(dag.objects().unwrap().len(), objects.len());
}

#[test]
fn idempotent_insert_and_countersigned_receipt_upgrade() {
    let (_d, store) = open();
    let objects = testkit::contract_net().unwrap();
    let receipt = objects.iter().find(|o| o.kind() == Kind::Receipt).unwrap();
    assert!(receipt.is_countersigned());
    let bare = bare(receipt);
    assert_eq!(bare.id(), receipt.id());
    assert!(!bare.is_countersigned());

    let without: Vec<_> = objects
        .iter()
        .filter(|o| o.id() != receipt.id())
        .cloned()
        .collect();
    store.insert_batch(&without).unwrap();
    assert_eq!(store.insert(&bare).unwrap(), InsertOutcome::Inserted);
    let n = store.object_count().unwrap();
    // Same objects again: nothing changes.
    assert!(
        store
            .insert_batch(&without)
            .unwrap()
            .iter()
            .all(|o| *o == InsertOutcome::Duplicate)
    );
    assert_eq!(store.insert(&bare).unwrap(), InsertOutcome::Duplicate);
    // The countersigned copy replaces the bare one...
    assert_eq!(store.insert(receipt).unwrap(), InsertOutcome::Upgraded);
    assert!(
        store
            .get(&receipt.id())
            .unwrap()
            .unwrap()
            .is_countersigned()
    );
    // ...and a late bare copy does not downgrade it.
    assert_eq!(store.insert(&bare).unwrap(), InsertOutcome::Duplicate);
    assert!(
        store
            .get(&receipt.id())
            .unwrap()
            .unwrap()
            .is_countersigned()
    );
    assert_eq!(store.object_count().unwrap(), n);
    // The same id twice in one batch is stored once.
    let (_d2, other) = open();
    let twice = vec![objects[0].clone(), objects[0].clone()];
    assert_eq!(
        other.insert_batch(&twice).unwrap(),
        vec![InsertOutcome::Inserted, InsertOutcome::Duplicate]
    );
    assert_eq!(other.object_count().unwrap(), 1);
    assert_eq!(other.check_integrity().unwrap(), 1);
    assert_eq!(store.check_integrity().unwrap(), n);
}

#[test]
fn out_of_order_children_are_kept_and_linked_when_parents_arrive() {
    let (_d, store) = open();
    let objects = testkit::workflow().unwrap();
    let trace = objects[0].trace_id();
    // Everything in reverse, one object at a time: every child arrives before its parent.
    for o in objects.iter().skip(1).rev() {
        store.insert(o).unwrap();
    }
    let orphans = store.orphans().unwrap();
    assert!(!orphans.is_empty());
    assert!(orphans.iter().all(|(_, parent)| *parent == trace));
    let dag = store.trace(&trace).unwrap();
    assert_eq!(dag.len(), objects.len() - 1);
    assert!(dag.missing.iter().all(|(_, p)| *p == trace));
    assert!(store.check_integrity().is_ok());
    // The root arrives: the graph is complete.
    store.insert(&objects[0]).unwrap();
    assert!(store.orphans().unwrap().is_empty());
    let dag = store.trace(&trace).unwrap();
    assert!(dag.missing.is_empty());
    assert_eq!(dag.len(), objects.len());
    assert!(!dag.node(&trace).unwrap().children.is_empty());
    assert!(store.verify_trace(&trace).unwrap().is_ok());
    assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
}

#[test]
fn orphan_and_parent_in_the_same_batch() {
    let (_d, store) = open();
    let mut objects = testkit::contract_net().unwrap();
    objects.reverse();
    store.insert_batch(&objects).unwrap();
    assert!(store.orphans().unwrap().is_empty());
    assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
}

#[test]
fn indexes_by_signer_kind_and_time() {
    let (_d, store) = open();
    let mut objects = testkit::consensus().unwrap();
    objects.extend(testkit::auction().unwrap());
    store.insert_batch(&objects).unwrap();
    let receipts: Vec<_> = objects
        .iter()
        .filter(|o| o.kind() == Kind::Receipt)
        .collect();
    assert!(!receipts.is_empty());
    for receipt in &receipts {
        let signer = receipt.signer();
        let expected: Vec<_> = receipts
            .iter()
            .filter(|r| r.signer() == signer)
            .map(|r| r.id())
            .collect();
        assert_eq!(
            store.receipts_by_signer(&signer, usize::MAX).unwrap(),
            expected
        );
        assert_eq!(store.receipts_by_signer(&signer, 0).unwrap(), vec![]);
    }
    // The requester signed much, but no receipt.
    assert!(objects.iter().any(|o| o.signer() == requester().public()));
    assert!(
        store
            .receipts_by_signer(&requester().public(), usize::MAX)
            .unwrap()
            .is_empty()
    );
    let votes = store.by_kind(Kind::Vote, 0, u64::MAX).unwrap();
    assert_eq!(votes.len(), 2);
    let t0 = pvl_protocol::fixtures::T0;
    let early = store.by_time(t0, t0 + 500).unwrap();
    assert_eq!(
        early.len(),
        objects
            .iter()
            .filter(|o| o.timestamp_ms() < t0 + 500)
            .count()
    );
    assert!(
        store
            .by_kind(Kind::CapabilityAd, 0, u64::MAX)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bytes_batch_verifies_and_reports_each_input() {
    let (_d, store) = open();
    let objects = testkit::auction().unwrap();
    let mut inputs: Vec<Vec<u8>> = objects.iter().map(|o| o.bytes().to_vec()).collect();
    let bad = inputs.len() - 2;
    let last = inputs[bad].len() - 1;
    inputs[bad][last] ^= 1; // signature byte
    inputs.push(b"garbage".to_vec());
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let results = store.insert_bytes_batch(&refs).unwrap();
    assert_eq!(results.len(), inputs.len());
    assert!(matches!(results[bad], Err(TraceError::Invalid(_))));
    assert!(matches!(
        results.last().unwrap(),
        Err(TraceError::Invalid(_))
    ));
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        objects.len() - 1
    );
    assert!(!store.contains(&objects[bad].id()).unwrap());
    assert!(matches!(
        store.insert_bytes(b"nope"),
        Err(TraceError::Invalid(_))
    ));
}

#[test]
fn recent_traces_with_status() {
    let (_d, store) = open();
    let done = testkit::contract_net().unwrap();
    let failed = testkit::failed().unwrap();
    // An open trace: an intent only; an awarded one: cut after the award.
    let open_only = vec![
        testkit::intent(
            "open-cap",
            pvl_protocol::PatternHint::ContractNet,
            pvl_protocol::Strategy::LowestCost,
            None,
            &[],
            pvl_protocol::fixtures::T0 + 50_000,
            77,
        )
        .unwrap(),
    ];
    let auction = testkit::auction().unwrap();
    let cut = auction
        .iter()
        .position(|o| o.kind() == Kind::TaskStart)
        .unwrap();
    let awarded = auction[..=cut].to_vec();
    for t in [&done, &failed, &open_only, &awarded] {
        store.insert_batch(t).unwrap();
    }
    // A capability ad root is not a conversation.
    let ad = pvl_protocol::fixtures::sample_objects()
        .unwrap()
        .pop()
        .unwrap();
    store.insert(&ad).unwrap();
    let recent = store.recent_traces(10).unwrap();
    assert_eq!(recent.len(), 4, "{recent:?}");
    let status = |t: &[SignedObject]| {
        recent
            .iter()
            .find(|s| s.trace == t[0].trace_id())
            .map(|s| s.status)
    };
    assert_eq!(status(&done), Some(TraceStatus::Done));
    assert_eq!(status(&failed), Some(TraceStatus::Failed));
    assert_eq!(status(&open_only), Some(TraceStatus::Open));
    assert_eq!(status(&awarded), Some(TraceStatus::Awarded));
    // Newest first: the open intent is the latest activity.
    assert_eq!(recent[0].trace, open_only[0].id());
    assert_eq!(store.recent_traces(1).unwrap().len(), 1);
    let (_d2, clean) = open();
    clean
        .insert_batch(&testkit::contract_net().unwrap())
        .unwrap();
    let s = clean.recent_traces(5).unwrap();
    assert_eq!(s[0].status, TraceStatus::Done);
    assert_eq!(s[0].pattern, Pattern::ContractNet);
    assert_eq!(s[0].capability.as_deref(), Some("sha256"));
}

#[test]
fn provider_history_from_receipts() {
    let (_d, store) = open();
    store.insert_batch(&testkit::parallel(3).unwrap()).unwrap();
    store
        .insert_batch(&testkit::contract_net().unwrap())
        .unwrap();
    let p0 = testkit::provider_key(0).public();
    let h = store.provider_history(&p0).unwrap();
    // shard-0 of the parallel trace and the contract-net task.
    assert_eq!(h.tasks.len(), 2);
    assert_eq!(h.success_rate, 1.0);
    assert_eq!(h.countersigned, 2);
    // Only the contract-net award had a deadline (T0+5000; finished T0+1600).
    assert_eq!(h.on_time_rate, Some(1.0));
    // Latencies 500 (shard-0) and 1000 (contract-net): median 750.
    assert_eq!(h.median_latency_ms, Some(750));
    assert!(
        h.tasks
            .iter()
            .any(|t| t.capability.as_deref() == Some("transcode"))
    );
    let p2 = store
        .provider_history(&testkit::provider_key(2).public())
        .unwrap();
    assert_eq!(p2.tasks.len(), 1);
    assert_eq!(p2.median_latency_ms, Some(1000));
    assert_eq!(p2.on_time_rate, None);
    let nobody = store.provider_history(&requester().public()).unwrap();
    assert!(nobody.tasks.is_empty());
    assert_eq!(nobody.median_latency_ms, None);
}

#[test]
fn provider_history_counts_failures_and_late_tasks() {
    let (_d, store) = open();
    store.insert_batch(&testkit::failed().unwrap()).unwrap();
    let h = store
        .provider_history(&testkit::provider_key(0).public())
        .unwrap();
    assert_eq!(h.tasks.len(), 1);
    assert_eq!(h.success_rate, 0.0);
    assert!(!h.tasks[0].ok);
}

#[test]
fn capability_stats_per_pattern() {
    let (_d, store) = open();
    store.insert_batch(&testkit::parallel(4).unwrap()).unwrap();
    store.insert_batch(&testkit::auction().unwrap()).unwrap();
    store.insert_batch(&testkit::workflow().unwrap()).unwrap();
    let stats = store.capability_stats(None).unwrap();
    let find = |c: &str| stats.iter().find(|s| s.capability == c).unwrap();
    let t = find("transcode");
    assert_eq!(
        (t.pattern, t.count, t.success_rate),
        (Pattern::Parallel, 4, 1.0)
    );
    // Latencies 500, 750, 1000, 1250.
    assert_eq!(t.median_latency_ms, 875);
    assert_eq!(t.mean_latency_ms, 875.0);
    assert_eq!(find("render").pattern, Pattern::Auction);
    assert_eq!(find("resize").pattern, Pattern::Workflow);
    assert_eq!(find("compress").median_latency_ms, 3000);
    let only = store.capability_stats(Some("render")).unwrap();
    assert_eq!(only.len(), 1);
}

fn key_text(chunk_key: &[u8]) -> String {
    format!("t/{}", hex::encode(&chunk_key[1..]))
}

#[test]
fn verify_names_a_tampered_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let objects = testkit::contract_net().unwrap();
    let trace = objects[0].trace_id();
    let victim = objects.iter().find(|o| o.kind() == Kind::TaskDone).unwrap();
    let chunk_key;
    {
        let store = TraceStore::open(&path).unwrap();
        store.insert_batch(&objects).unwrap();
        assert!(store.verify_trace(&trace).unwrap().is_ok());
        // Flip a signature byte in the stored value via the raw path.
        let mut bytes = victim.bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        chunk_key = store.replace_raw_for_tests(&victim.id(), &bytes).unwrap();
        assert_eq!(
            store.chunk_key_of(&victim.id()).unwrap(),
            Some(chunk_key.clone())
        );
        let report = store.verify_trace(&trace).unwrap();
        assert_eq!(report.bad_objects(), vec![victim.id()], "{report:?}");
        assert_eq!(report.problems[0].kind, ProblemKind::BadSignature);
        assert_eq!(report.checked, objects.len());
        // Put the original back.
        store
            .replace_raw_for_tests(&victim.id(), victim.bytes())
            .unwrap();
        assert!(store.verify_trace(&trace).unwrap().is_ok());
    }
    // Now flip a content byte on disk, through sled directly: the id no longer matches.
    {
        let db = testkit::open_sled(&path).unwrap();
        let tree = db.open_tree("pvl-trace").unwrap();
        let mut value = tree.get(&chunk_key).unwrap().unwrap().to_vec();
        let pos = value
            .windows(victim.bytes().len())
            .position(|w| w == victim.bytes())
            .unwrap();
        value[pos + victim.bytes().len() - 70] ^= 0x01;
        tree.insert(&chunk_key, value).unwrap();
        db.flush().unwrap();
    }
    let store = TraceStore::open(&path).unwrap();
    let report = store.verify_trace(&trace).unwrap();
    assert_eq!(report.bad_objects(), vec![victim.id()], "{report:?}");
    // Reading the object or the DAG is an error naming the key, never a panic.
    let err = store.get(&victim.id()).unwrap_err();
    assert!(
        matches!(&err, TraceError::Corrupt { key, .. } if *key == key_text(&chunk_key)),
        "{err}"
    );
    let err = store.trace(&trace).unwrap_err();
    assert!(err.to_string().contains(&key_text(&chunk_key)), "{err}");
    assert!(store.check_integrity().is_err());
}

#[test]
fn verify_reports_broken_links() {
    let (_d, store) = open();
    let objects = testkit::contract_net().unwrap();
    let trace = objects[0].trace_id();
    // Leave out the award: progress, done and receipt name a task that is not there.
    let start = objects
        .iter()
        .find(|o| o.kind() == Kind::TaskStart)
        .unwrap();
    let rest: Vec<_> = objects
        .iter()
        .filter(|o| o.id() != start.id())
        .cloned()
        .collect();
    store.insert_batch(&rest).unwrap();
    let report = store.verify_trace(&trace).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::MissingParent)
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::DanglingReference)
    );
    let progress = objects
        .iter()
        .find(|o| o.kind() == Kind::TaskProgress)
        .unwrap();
    assert!(report.bad_objects().contains(&progress.id()));
}

#[test]
fn garbage_values_on_disk_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let objects = testkit::contract_net().unwrap();
    let trace = objects[0].trace_id();
    let other = testkit::parallel(2).unwrap();
    let (one_key, whole_key);
    {
        let store = TraceStore::open(&path).unwrap();
        store.insert_batch(&objects).unwrap();
        store.insert_batch(&other).unwrap();
        // One entry of a chunk replaced by garbage (framing intact).
        one_key = store
            .replace_raw_for_tests(&objects[1].id(), b"\xff\x00garbage")
            .unwrap();
        whole_key = store.chunk_key_of(&other[0].id()).unwrap().unwrap();
    }
    {
        let db = testkit::open_sled(&path).unwrap();
        let tree = db.open_tree("pvl-trace").unwrap();
        // A whole chunk replaced by garbage.
        tree.insert(&whole_key, &b"\x01\x02garbage"[..]).unwrap();
        // The object index of another object holds a value that is too short.
        let mut okey = vec![b'o'];
        okey.extend_from_slice(&objects[2].id().0);
        tree.insert(okey, &b"short"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = TraceStore::open(&path).unwrap();
    let named = |err: TraceError, expected: &str| match err {
        TraceError::Corrupt { key, .. } => assert!(key.starts_with(expected), "{key}"),
        other => panic!("expected Corrupt, got {other}"),
    };
    named(
        store.get(&objects[1].id()).unwrap_err(),
        &key_text(&one_key),
    );
    named(
        store.get_bytes(&objects[1].id()).unwrap_err(),
        &key_text(&one_key),
    );
    named(store.trace(&trace).unwrap_err(), &key_text(&one_key));
    named(
        store.trace_objects(&trace).unwrap_err(),
        &key_text(&one_key),
    );
    named(store.get(&objects[2].id()).unwrap_err(), "o/");
    named(
        store.get(&other[3].id()).unwrap_err(),
        &key_text(&whole_key),
    );
    named(
        store.trace(&other[0].id()).unwrap_err(),
        &key_text(&whole_key),
    );
    let report = store.verify_trace(&trace).unwrap();
    assert_eq!(report.bad_objects(), vec![objects[1].id()], "{report:?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Undecodable);
    let report = store.verify_trace(&other[0].id()).unwrap();
    let mut all: Vec<_> = other.iter().map(|o| o.id()).collect();
    all.sort();
    assert_eq!(report.bad_objects(), all);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Undecodable)
    );
    assert!(report.problems[0].detail.contains(&key_text(&whole_key)));
    assert!(store.check_integrity().is_err());
}

#[test]
fn schema_version_mismatch_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(TraceStore::open(&path).unwrap());
    {
        let db = testkit::open_sled(&path).unwrap();
        let tree = db.open_tree("pvl-trace").unwrap();
        assert_eq!(
            tree.get("vschema").unwrap().unwrap().as_ref(),
            SCHEMA_VERSION.to_be_bytes()
        );
        tree.insert("vschema", &(SCHEMA_VERSION + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    match TraceStore::open(&path) {
        Err(TraceError::SchemaMismatch { found, expected }) => {
            assert_eq!((found, expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

/// A schema 1 store (one `k/` key per kind per chunk, 8-byte `m/` values) is migrated at open:
/// the kinds move into the `m/` values, the `k/` keys go, and every query answers as before.
#[test]
fn a_schema_1_store_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut objects = testkit::consensus().unwrap();
    objects.extend(testkit::contract_net().unwrap());
    let votes_before;
    let receipts_before;
    {
        let store = TraceStore::open(&path).unwrap();
        store.insert_batch(&objects).unwrap();
        votes_before = store.by_kind(Kind::Vote, 0, u64::MAX).unwrap();
        receipts_before = store.by_kind(Kind::Receipt, 0, u64::MAX).unwrap();
        assert_eq!(votes_before.len(), 2);
        assert!(!receipts_before.is_empty());
    }
    // Rewrite it as schema 1 wrote it.
    {
        let db = testkit::open_sled(&path).unwrap();
        let tree = db.open_tree("pvl-trace").unwrap();
        rewrite_as_schema_2(&tree);
        let entries: Vec<_> = tree.scan_prefix(b"m").map(|e| e.unwrap()).collect();
        assert!(!entries.is_empty());
        for (k, v) in entries {
            assert_eq!(v.len(), 16, "schema 2 time-index values carry the kinds");
            let kinds = u64::from_be_bytes(v[8..16].try_into().unwrap());
            tree.insert(&k, &v[..8]).unwrap();
            for code in 0..64u8 {
                if kinds & (1 << code) != 0 {
                    let mut kkey = vec![b'k', code];
                    kkey.extend_from_slice(&k[1..]);
                    tree.insert(kkey, &v[..8]).unwrap();
                }
            }
        }
        tree.insert("vschema", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    {
        let store = TraceStore::open(&path).unwrap();
        assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
        assert_eq!(
            store.by_kind(Kind::Vote, 0, u64::MAX).unwrap(),
            votes_before
        );
        assert_eq!(
            store.by_kind(Kind::Receipt, 0, u64::MAX).unwrap(),
            receipts_before
        );
    }
    let db = testkit::open_sled(&path).unwrap();
    let tree = db.open_tree("pvl-trace").unwrap();
    assert_eq!(tree.scan_prefix(b"k").count(), 0);
    assert!(tree.scan_prefix(b"m").all(|e| e.unwrap().1.len() == 16));
    assert_current_schema(&tree);
}

/// Rewrites a closed schema 3 store the way schema 2 wrote it: 9-byte `o/` values (chunk and
/// flags), a `c/` claim naming the trace of every chunk, and a `v/chunk` counter instead of
/// `v/call`. Returns the next chunk number.
fn rewrite_as_schema_2(tree: &sled::Tree) -> u64 {
    for entry in tree.scan_prefix(b"o") {
        let (k, v) = entry.unwrap();
        assert_eq!(v.len(), 41, "schema 3 object locations carry the trace");
        tree.insert(&k, &v[32..]).unwrap();
    }
    for entry in tree.scan_prefix(b"t") {
        let (k, _) = entry.unwrap();
        let mut claim = vec![b'c'];
        claim.extend_from_slice(&k[33..41]);
        tree.insert(claim, &k[1..33]).unwrap();
    }
    let call = tree.remove("vcall").unwrap().unwrap();
    let next = u64::from_be_bytes(call[..8].try_into().unwrap()) + (call.len() as u64 - 8) / 32;
    tree.insert("vchunk", &next.to_be_bytes()).unwrap();
    tree.insert("vschema", &2u32.to_be_bytes()).unwrap();
    next
}

/// What a store looks like after the migrations: no claims, no chunk counter, 41-byte object
/// locations, signer index entries for receipts only, the current schema.
fn assert_current_schema(tree: &sled::Tree) {
    assert_eq!(tree.scan_prefix(b"c").count(), 0);
    assert!(tree.get("vchunk").unwrap().is_none());
    assert!(tree.scan_prefix(b"o").all(|e| e.unwrap().1.len() == 41));
    // The requester signs much in every trace, but no receipt.
    let requester = requester().public();
    assert!(
        signer_index(tree)
            .iter()
            .all(|(k, _)| k[1..33] != requester.0)
    );
    assert_eq!(
        tree.get("vschema").unwrap().unwrap().as_ref(),
        SCHEMA_VERSION.to_be_bytes()
    );
}

/// A schema 2 store (a `c/` claim per chunk, a `v/chunk` counter, objects located by chunk
/// number only) is migrated at open: reads answer as before, and later inserts take new chunk
/// numbers. One that crashed in the middle of an insert call (its chunks written, their
/// objects not yet indexed) has that call completed as well.
#[test]
fn a_schema_2_store_is_migrated_at_open_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for torn in [false, true] {
        let path = dir.path().join(format!("db-{torn}"));
        let mut first = testkit::consensus().unwrap();
        let mut second = testkit::contract_net().unwrap();
        // The last object of each comes later, into a new chunk of the same trace.
        let later = [first.pop().unwrap(), second.pop().unwrap()];
        {
            let store = TraceStore::open(&path).unwrap();
            store.insert_batch(&first).unwrap();
            store.insert_batch(&second).unwrap();
        }
        {
            let db = testkit::open_sled(&path).unwrap();
            let tree = db.open_tree("pvl-trace").unwrap();
            let next = rewrite_as_schema_2(&tree);
            if torn {
                // The second call's chunk was written, the crash came before its objects were
                // indexed and before the counters: its claim is at or past `v/chunk`.
                let chunk = next - 1;
                for o in &second {
                    let mut okey = vec![b'o'];
                    okey.extend_from_slice(&o.id().0);
                    tree.remove(okey).unwrap();
                }
                tree.insert("vchunk", &chunk.to_be_bytes()).unwrap();
                let count = first.len() as u64;
                tree.insert("vcount", &count.to_be_bytes()).unwrap();
                tree.insert("vopen", &[][..]).unwrap();
            }
            db.flush().unwrap();
        }
        let all = first.len() + second.len();
        {
            let store = TraceStore::open(&path).unwrap();
            assert_eq!(store.check_integrity().unwrap(), all as u64, "torn: {torn}");
            for o in first.iter().chain(&second) {
                assert_eq!(store.get(&o.id()).unwrap().unwrap().id(), o.id());
                assert_eq!(store.trace_of(&o.id()).unwrap(), Some(o.trace_id()));
            }
            assert_eq!(
                store.trace(&second[0].trace_id()).unwrap().len(),
                second.len()
            );
            // A later call takes chunk numbers of its own: a chunk number used again for
            // the same trace would overwrite a chunk and lose its objects.
            store.insert_batch(&later).unwrap();
            assert_eq!(store.check_integrity().unwrap(), all as u64 + 2);
            for (objects, last) in [(&first, &later[0]), (&second, &later[1])] {
                let held = store.trace(&last.trace_id()).unwrap().len();
                assert_eq!(held, objects.len() + 1);
            }
        }
        let db = testkit::open_sled(&path).unwrap();
        assert_current_schema(&db.open_tree("pvl-trace").unwrap());
    }
}

/// The signer index (`s/` keys and values) as stored.
fn signer_index(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.scan_prefix(b"s")
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Rewrites a closed store's signer index the way schema 3 wrote it: an entry for every
/// signer of every chunk, spanning that signer's objects in the chunk.
fn rewrite_as_schema_3(tree: &sled::Tree, objects: &[SignedObject]) {
    let mut spans: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    for o in objects {
        let mut okey = vec![b'o'];
        okey.extend_from_slice(&o.id().0);
        let location = tree.get(okey).unwrap().unwrap();
        // (signer, trace ‖ chunk) -> timestamps
        let key = [&o.signer().0[..], &location[..40]].concat();
        let ts = o.timestamp_ms();
        let span = spans.entry(key).or_insert((ts, ts));
        *span = (span.0.min(ts), span.1.max(ts));
    }
    for key in tree.scan_prefix(b"s").keys() {
        tree.remove(key.unwrap()).unwrap();
    }
    for (key, (lo, hi)) in spans {
        let skey = [&b"s"[..], &key[..32], &lo.to_be_bytes()[..], &key[32..]].concat();
        tree.insert(skey, &hi.to_be_bytes()[..]).unwrap();
    }
    tree.insert("vschema", &3u32.to_be_bytes()).unwrap();
}

/// A schema 3 store (a signer index entry for every signer of every chunk) is migrated at
/// open to the signer index schema 4 writes (receipts only), before and after a crash in the
/// middle of the migration; queries answer as before.
#[test]
fn a_schema_3_store_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut objects = testkit::contract_net().unwrap();
    // A later chunk holding the countersigned receipt, and another trace.
    let receipt = objects
        .iter()
        .position(|o| o.kind() == Kind::Receipt)
        .unwrap();
    let receipt = objects.remove(receipt);
    let provider = receipt.signer();
    objects.push(bare(&receipt));
    let later = [receipt];
    let others = testkit::auction().unwrap();
    let (schema_4, history) = {
        let store = TraceStore::open(&path).unwrap();
        store.insert_batch(&objects).unwrap();
        store.insert_batch(&later).unwrap();
        store.insert_batch(&others).unwrap();
        let history = store.provider_history(&provider).unwrap();
        assert!(!history.tasks.is_empty());
        store.close().unwrap();
        let db = testkit::open_sled(&path).unwrap();
        (signer_index(&db.open_tree("pvl-trace").unwrap()), history)
    };
    assert!(!schema_4.is_empty());
    let all: Vec<SignedObject> = objects
        .iter()
        .chain(&later)
        .chain(&others)
        .cloned()
        .collect();
    for cut_short in [true, false] {
        {
            let db = testkit::open_sled(&path).unwrap();
            let tree = db.open_tree("pvl-trace").unwrap();
            rewrite_as_schema_3(&tree, &all);
            let schema_3 = signer_index(&tree);
            assert!(schema_3.len() > 2 * schema_4.len(), "{}", schema_3.len());
            if cut_short {
                // The migration done for the first half of the entries (in key order), then
                // a crash: each of those replaced by its schema 4 entry, if it has one.
                for (k, _) in &schema_3[..schema_3.len() / 2] {
                    tree.remove(k).unwrap();
                    let same_chunk = |(k4, _): &&(Vec<u8>, Vec<u8>)| {
                        k4[1..33] == k[1..33] && k4[41..] == k[41..]
                    };
                    if let Some((k4, v4)) = schema_4.iter().find(same_chunk) {
                        tree.insert(k4, &v4[..]).unwrap();
                    }
                }
            }
            db.flush().unwrap();
        }
        {
            let store = TraceStore::open(&path).unwrap();
            assert_eq!(store.check_integrity().unwrap(), all.len() as u64 - 1);
            assert_eq!(store.provider_history(&provider).unwrap(), history);
            let receipts: Vec<_> = all
                .iter()
                .filter(|o| o.kind() == Kind::Receipt && o.signer() == provider)
                .map(|o| o.id())
                .collect();
            let mut by_signer = store.receipts_by_signer(&provider, usize::MAX).unwrap();
            by_signer.sort();
            by_signer.dedup();
            let mut expected = receipts.clone();
            expected.sort();
            expected.dedup();
            assert_eq!(by_signer, expected);
            assert!(by_signer.contains(&later[0].id()));
        }
        let db = testkit::open_sled(&path).unwrap();
        let tree = db.open_tree("pvl-trace").unwrap();
        assert_eq!(signer_index(&tree), schema_4, "cut short: {cut_short}");
        assert_current_schema(&tree);
    }
}

#[test]
fn data_survives_close_and_reopen_with_a_small_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let config = StoreConfig {
        cache_capacity: 1 << 20,
        ..StoreConfig::default()
    };
    let objects = testkit::synthetic(1, 200).unwrap();
    {
        let store = TraceStore::open_with(&path, config.clone()).unwrap();
        store.insert_batch(&objects).unwrap();
        store.close().unwrap();
    }
    let store = TraceStore::open_with(&path, config).unwrap();
    assert_eq!(store.object_count().unwrap(), 200);
    assert_eq!(store.trace(&objects[0].id()).unwrap().len(), 200);
    assert!(matches!(
        store.trace(&objects[1].id()),
        Err(TraceError::UnknownTrace(_))
    ));
    assert!(store.size_on_disk().unwrap() > 0);
}

#[test]
fn orphans_survive_reopen_and_are_resolved_by_a_later_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let objects = testkit::contract_net().unwrap();
    {
        let store = TraceStore::open(&path).unwrap();
        for o in objects[5..].iter().rev() {
            store.insert(o).unwrap();
        }
        // Only the award is still missing (progress waits for it).
        assert_eq!(
            store.orphans().unwrap(),
            vec![(objects[5].id(), objects[4].id())]
        );
        assert_eq!(
            store.children(&objects[4].id()).unwrap(),
            vec![objects[5].id()]
        );
    }
    let store = TraceStore::open(&path).unwrap();
    assert_eq!(store.orphans().unwrap().len(), 1);
    store.insert_batch(&objects[..5]).unwrap();
    assert!(store.orphans().unwrap().is_empty());
    assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
    let dag = store.trace(&objects[0].id()).unwrap();
    assert!(dag.missing.is_empty());
    assert_eq!(
        store.children(&objects[4].id()).unwrap(),
        vec![objects[5].id()]
    );
}

#[test]
fn traces_are_found_by_a_prefix_of_their_id() {
    let (_d, store) = open();
    let mut traces = Vec::new();
    for nonce in 0..40 {
        let objects = testkit::synthetic(nonce, 3).unwrap();
        traces.push(objects[0].trace_id());
        store.insert_batch(&objects).unwrap();
    }
    traces.sort();
    // The whole id and a long prefix find exactly their trace, whatever the case.
    let one = traces[7].to_string();
    assert_eq!(store.traces_with_prefix(&one, 10).unwrap(), vec![traces[7]]);
    assert_eq!(
        store
            .traces_with_prefix(&one[..12].to_uppercase(), 10)
            .unwrap(),
        vec![traces[7]]
    );
    // An odd number of digits works; a short prefix is ambiguous, and bounded by the limit.
    let digit = &one[..1];
    let sharing: Vec<_> = traces
        .iter()
        .filter(|t| t.to_string().starts_with(digit))
        .copied()
        .collect();
    assert_eq!(store.traces_with_prefix(digit, 100).unwrap(), sharing);
    assert_eq!(
        store.traces_with_prefix("", 5).unwrap(),
        traces[..5].to_vec()
    );
    // Not hex, or longer than an id: nothing.
    assert!(store.traces_with_prefix("xyz", 10).unwrap().is_empty());
    assert!(
        store
            .traces_with_prefix(&"a".repeat(65), 10)
            .unwrap()
            .is_empty()
    );
}

/// A damaged or missing `v/call` (the list of the last insert call's chunks) does not keep
/// the store from opening, even after a crash, and later inserts still take chunk numbers no
/// chunk has (found by a scan): nothing stored is overwritten.
#[test]
fn a_damaged_call_record_does_not_lose_chunks() {
    let dir = tempfile::tempdir().unwrap();
    for damage in [Some(&b"\x01\x02"[..]), None] {
        let path = dir.path().join(format!("db-{}", damage.is_some()));
        let mut objects = testkit::consensus().unwrap();
        let last = objects.pop().unwrap();
        {
            let store = TraceStore::open(&path).unwrap();
            for o in &objects {
                store.insert(o).unwrap();
            }
        }
        {
            let db = testkit::open_sled(&path).unwrap();
            let tree = db.open_tree("pvl-trace").unwrap();
            match damage {
                Some(garbage) => tree.insert("vcall", garbage).unwrap(),
                None => tree.remove("vcall").unwrap(),
            };
            tree.insert("vopen", &[][..]).unwrap();
            db.flush().unwrap();
        }
        let store = TraceStore::open(&path).unwrap();
        store.insert(&last).unwrap();
        let trace = last.trace_id();
        assert_eq!(store.trace(&trace).unwrap().len(), objects.len() + 1);
        for o in objects.iter().chain([&last]) {
            assert!(store.get(&o.id()).unwrap().is_some());
        }
    }
}
