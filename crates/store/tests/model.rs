//! Model test: random sequences of operations (creates, drops, puts, deletes and batches
//! with conditions, scans, reopens) run against a real store and against a plain
//! `BTreeMap` model. After every step the store must hold exactly what the model holds;
//! at the end each database's change log, replayed from seq 0, must rebuild its documents.
//! Every database has a non-unique index on the whole value: `find` must agree with the
//! model too (exact values and a range, both directions). A mirror made from a copy of
//! the new store applies the store's journal at the end: it must hold the same bytes in
//! every table and agree with the model as well.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use cairn_store::journal::TableId;
use cairn_store::{
    ChangeOp, IndexDef, IndexKey, IndexQuery, Op, Retention, Scan, ScanRange, Store, StoreError,
    StoreOptions, Write,
};
use proptest::prelude::*;

const DATABASES: [&str; 2] = ["alpha", "beta"];
const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];

/// How a generated write picks its rev condition, resolved against the model.
#[derive(Debug, Clone)]
enum Condition {
    None,
    MustNotExist,
    Current,
    Stale(u64),
}

#[derive(Debug, Clone)]
enum ModelOp {
    Put {
        key: usize,
        value: u8,
        cond: Condition,
    },
    Delete {
        key: usize,
        cond: Condition,
    },
}

#[derive(Debug, Clone)]
enum Step {
    Create(usize),
    Drop(usize),
    Batch(usize, Vec<ModelOp>),
    Scan {
        db: usize,
        prefix: Option<usize>,
        start: Option<usize>,
        limit: usize,
        reverse: bool,
        after: Option<usize>,
    },
    Reopen,
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        3 => Just(Condition::None),
        1 => Just(Condition::MustNotExist),
        2 => Just(Condition::Current),
        1 => (1u64..30).prop_map(Condition::Stale),
    ]
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        3 => (0..KEYS.len(), 0u8..100, condition())
            .prop_map(|(key, value, cond)| ModelOp::Put { key, value, cond }),
        1 => (0..KEYS.len(), condition()).prop_map(|(key, cond)| ModelOp::Delete { key, cond }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let db = 0..DATABASES.len();
    prop_oneof![
        1 => db.clone().prop_map(Step::Create),
        1 => db.clone().prop_map(Step::Drop),
        8 => (db.clone(), proptest::collection::vec(model_op(), 1..4))
            .prop_map(|(db, ops)| Step::Batch(db, ops)),
        2 => (
            db,
            proptest::option::of(0..KEYS.len()),
            proptest::option::of(0..KEYS.len()),
            1usize..5,
            any::<bool>(),
            proptest::option::of(0..KEYS.len()),
        )
            .prop_map(|(db, prefix, start, limit, reverse, after)| Step::Scan {
                db, prefix, start, limit, reverse, after
            }),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Debug, Default, Clone)]
struct DatabaseModel {
    docs: BTreeMap<String, (u64, Vec<u8>)>,
    last_seq: u64,
}

type Model = BTreeMap<String, DatabaseModel>;

fn msgpack_int(n: u8) -> Vec<u8> {
    vec![n & 0x7f]
}

fn resolve(cond: &Condition, current: u64) -> Option<u64> {
    match cond {
        Condition::None => None,
        Condition::MustNotExist => Some(0),
        Condition::Current => Some(current),
        Condition::Stale(rev) => Some(*rev),
    }
}

/// Applies a batch to a copy of the model; `Err` names the error kind the store must give.
fn model_batch(db: &DatabaseModel, ops: &[Op]) -> Result<(DatabaseModel, Vec<u64>), &'static str> {
    let mut next = db.clone();
    let mut revs = Vec::new();
    for op in ops {
        let (key, expected) = match op {
            Op::Put { key, rev, .. } | Op::Delete { key, rev } => (key, *rev),
        };
        let current = next.docs.get(key).map(|d| d.0).unwrap_or(0);
        if expected.is_some_and(|e| e != current) {
            return Err("conflict");
        }
        next.last_seq += 1;
        match op {
            Op::Put { value, .. } => {
                next.docs
                    .insert(key.clone(), (next.last_seq, value.clone()));
            }
            Op::Delete { .. } => {
                if current == 0 {
                    return Err("not_found");
                }
                next.docs.remove(key);
            }
        }
        revs.push(next.last_seq);
    }
    Ok((next, revs))
}

fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::RevConflict { .. } => "conflict",
        StoreError::NotFound { .. } => "not_found",
        StoreError::DatabaseMissing { .. } => "missing",
        StoreError::DatabaseExists { .. } => "exists",
        _ => "other",
    }
}

fn check_store_matches_model(store: &Store, model: &Model) {
    let names: Vec<String> = store
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, model.keys().cloned().collect::<Vec<_>>());
    for (name, db) in model {
        let page = store.scan(name, &Scan::all(100)).unwrap();
        let stored: BTreeMap<String, (u64, Vec<u8>)> = page
            .docs
            .into_iter()
            .map(|d| (d.key, (d.rev, d.value)))
            .collect();
        assert_eq!(&stored, &db.docs, "documents of {name}");
        let info = store.database_info(name).unwrap();
        assert_eq!(info.doc_count, db.docs.len() as u64);
        assert_eq!(info.last_seq, db.last_seq);
        let doc_bytes: usize = db
            .docs
            .iter()
            .map(|(k, (_, v))| 4 + k.len() + 8 + 4 + v.len())
            .sum();
        assert_eq!(info.doc_bytes, doc_bytes as u64, "doc_bytes of {name}");
        check_index_matches_model(store, name, db);
    }
}

/// The index "by_v" (the whole value, a small integer) against the model.
fn check_index_matches_model(store: &Store, name: &str, db: &DatabaseModel) {
    // (value, key) of every document, in index order.
    let entries: Vec<(f64, String)> = {
        let mut all: Vec<(u8, String)> = db
            .docs
            .iter()
            .map(|(k, (_, v))| (v[0], k.clone()))
            .collect();
        all.sort();
        all.into_iter().map(|(v, k)| (f64::from(v), k)).collect()
    };
    let mut probes: Vec<f64> = entries.iter().map(|(v, _)| *v).collect();
    probes.extend([0.0, 50.0]);
    for probe in probes {
        let page = store
            .find(
                name,
                &IndexQuery::exact("by_v", IndexKey::Number(probe), 100),
            )
            .unwrap();
        let got: Vec<String> = page.docs.into_iter().map(|(_, d)| d.key).collect();
        let want: Vec<String> = entries
            .iter()
            .filter(|(v, _)| *v == probe)
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(got, want, "find {probe} in {name}");
    }
    for reverse in [false, true] {
        let query = IndexQuery {
            index: "by_v".to_string(),
            start: Bound::Included(IndexKey::Number(10.0)),
            end: Bound::Excluded(IndexKey::Number(60.0)),
            limit: 3,
            reverse,
            after: None,
        };
        let page = store.find(name, &query).unwrap();
        let got: Vec<(IndexKey, String)> = page.docs.into_iter().map(|(v, d)| (v, d.key)).collect();
        let mut want: Vec<(IndexKey, String)> = entries
            .iter()
            .filter(|(v, _)| (10.0..60.0).contains(v))
            .map(|(v, k)| (IndexKey::Number(*v), k.clone()))
            .collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(page.more, want.len() > 3);
        want.truncate(3);
        assert_eq!(got, want, "range of {name}, reverse {reverse}");
    }
}

fn check_log_rebuilds_documents(store: &Store, model: &Model) {
    for (name, db) in model {
        let mut rebuilt: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        let mut since = 0;
        loop {
            let changes = store.changes(name, since, 7).unwrap();
            let Some(last) = changes.last() else { break };
            since = last.seq;
            for change in changes {
                match change.op {
                    ChangeOp::Put => {
                        rebuilt.insert(change.key, (change.seq, change.value.unwrap()));
                    }
                    ChangeOp::Delete => {
                        rebuilt.remove(&change.key);
                    }
                }
            }
        }
        assert_eq!(&rebuilt, &db.docs, "replayed log of {name}");
        assert_eq!(since, db.last_seq);
    }
}

fn expected_scan(db: &DatabaseModel, scan: &Scan) -> (Vec<String>, bool) {
    let mut keys: Vec<&String> = db
        .docs
        .keys()
        .filter(|k| match &scan.range {
            ScanRange::All => true,
            ScanRange::Prefix(p) => k.starts_with(p.as_str()),
            ScanRange::Keys { start, end } => {
                use std::ops::RangeBounds;
                (start.as_ref(), end.as_ref()).contains(k)
            }
        })
        .filter(|k| match &scan.after {
            None => true,
            Some(after) if scan.reverse => k.as_str() < after.as_str(),
            Some(after) => k.as_str() > after.as_str(),
        })
        .collect();
    if scan.reverse {
        keys.reverse();
    }
    let more = keys.len() > scan.limit;
    (keys.into_iter().take(scan.limit).cloned().collect(), more)
}

/// A mirror of the new store in `dir`: a copy of its environment, in `mirror_dir`.
fn mirror_of_new_store(dir: &Path, mirror_dir: &Path) -> Store {
    drop(Store::create(dir, StoreOptions::default()).unwrap());
    std::fs::create_dir_all(mirror_dir.join("store")).unwrap();
    std::fs::copy(
        dir.join("store/data.mdb"),
        mirror_dir.join("store/data.mdb"),
    )
    .unwrap();
    let mirror = Store::open(mirror_dir, StoreOptions::default()).unwrap();
    mirror.set_mirror(true);
    mirror
}

/// Applies the journal of `store` to `mirror`, a few entries at a time, and checks that
/// every table of both holds the same bytes.
fn check_mirror_holds_the_same(store: &Store, mirror: &Store) {
    loop {
        let position = mirror.snapshot().unwrap().journal_position().unwrap();
        let entries = store
            .snapshot()
            .unwrap()
            .journal_entries(position.seq, 4, 1 << 20)
            .unwrap();
        if entries.is_empty() {
            break;
        }
        mirror.write(Write::MirrorApply { entries }).unwrap();
    }
    let digests = |s: &Store| {
        let snapshot = s.snapshot().unwrap();
        TableId::ALL.map(|table| snapshot.table_digest(table).unwrap())
    };
    assert_eq!(digests(store), digests(mirror));
}

fn run_steps(dir: &Path, mirror_dir: &Path, steps: &[Step]) {
    let mirror = mirror_of_new_store(dir, mirror_dir);
    let mut store = Some(Store::open(dir, StoreOptions::default()).unwrap());
    let mut model = Model::new();
    for step in steps {
        let live = store.as_ref().unwrap();
        match step {
            Step::Create(db) => {
                let name = DATABASES[*db];
                let outcome = live.create_database_offline(name, Retention::default());
                if model.contains_key(name) {
                    assert_eq!(outcome.map_err(|e| error_kind(&e)), Err("exists"));
                } else {
                    outcome.unwrap();
                    let by_v = IndexDef {
                        name: "by_v".to_string(),
                        field: String::new(),
                        unique: false,
                    };
                    live.set_database_config(name, vec![by_v], Retention::default())
                        .unwrap();
                    assert!(live.set_offline(name, false).unwrap());
                    model.insert(name.to_string(), DatabaseModel::default());
                }
            }
            Step::Drop(db) => {
                let name = DATABASES[*db];
                let outcome = live.drop_database(name);
                if model.remove(name).is_some() {
                    outcome.unwrap();
                } else {
                    assert_eq!(outcome.map_err(|e| error_kind(&e)), Err("missing"));
                }
            }
            Step::Batch(db, model_ops) => {
                let name = DATABASES[*db];
                let current = model.get(name).cloned().unwrap_or_default();
                // Conditions are resolved against the state the earlier ops leave.
                let mut shadow = current.docs.clone();
                let ops: Vec<Op> = model_ops
                    .iter()
                    .map(|op| match op {
                        ModelOp::Put { key, value, cond } => {
                            let key = KEYS[*key].to_string();
                            let rev = resolve(cond, shadow.get(&key).map(|d| d.0).unwrap_or(0));
                            shadow.insert(key.clone(), (0, vec![]));
                            Op::Put {
                                key,
                                value: msgpack_int(*value),
                                rev,
                            }
                        }
                        ModelOp::Delete { key, cond } => {
                            let key = KEYS[*key].to_string();
                            let rev = resolve(cond, shadow.get(&key).map(|d| d.0).unwrap_or(0));
                            shadow.remove(&key);
                            Op::Delete { key, rev }
                        }
                    })
                    .collect();
                let outcome = live.batch(name, ops.clone());
                match model.get(name) {
                    None => assert_eq!(outcome.map_err(|e| error_kind(&e)), Err("missing")),
                    Some(db_model) => match model_batch(db_model, &ops) {
                        Ok((next, revs)) => {
                            assert_eq!(outcome.unwrap(), revs);
                            model.insert(name.to_string(), next);
                        }
                        Err(kind) => assert_eq!(outcome.map_err(|e| error_kind(&e)), Err(kind)),
                    },
                }
            }
            Step::Scan {
                db,
                prefix,
                start,
                limit,
                reverse,
                after,
            } => {
                let name = DATABASES[*db];
                let range = match (prefix, start) {
                    (Some(p), _) => ScanRange::Prefix(KEYS[*p].to_string()),
                    (None, Some(s)) => ScanRange::Keys {
                        start: Bound::Included(KEYS[*s].to_string()),
                        end: Bound::Unbounded,
                    },
                    (None, None) => ScanRange::All,
                };
                let scan = Scan {
                    range,
                    limit: *limit,
                    reverse: *reverse,
                    after: after.map(|a| KEYS[a].to_string()),
                };
                let outcome = live.scan(name, &scan);
                match model.get(name) {
                    None => assert_eq!(outcome.map_err(|e| error_kind(&e)), Err("missing")),
                    Some(db_model) => {
                        let page = outcome.unwrap();
                        let got: Vec<String> = page.docs.into_iter().map(|d| d.key).collect();
                        assert_eq!((got, page.more), expected_scan(db_model, &scan), "{scan:?}");
                    }
                }
            }
            Step::Reopen => {
                drop(store.take());
                store = Some(Store::open(dir, StoreOptions::default()).unwrap());
            }
        }
        check_store_matches_model(store.as_ref().unwrap(), &model);
    }
    check_log_rebuilds_documents(store.as_ref().unwrap(), &model);
    check_mirror_holds_the_same(store.as_ref().unwrap(), &mirror);
    check_store_matches_model(&mirror, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_a_btreemap_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        run_steps(&dir.path().join("store"), &dir.path().join("mirror"), &steps);
    }
}
