//! A follower's writes on real environments: one store plays the source (its own
//! writes, its own change log), another the destination that applies that log through
//! `Write::SyncApply`. The destination ends with the same change log (seq, op, key,
//! value, time) and documents; resent changes are skipped, gaps and other lineages are
//! refused and change nothing, and migration mode is stored.

use std::path::Path;

use cairn_store::{
    Change, ChangeOp, FollowRecord, IndexDef, Op, Retention, Store, StoreError, StoreOptions,
    SyncLineage, SyncPosition, SyncStop, Write, Written,
};

fn new_store(dir: &Path) -> Store {
    Store::create(dir, StoreOptions::default()).unwrap()
}

/// msgpack of a short string.
fn text(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut out = vec![0xa0 | u8::try_from(s.len()).expect("shorter than 32")];
    out.extend_from_slice(s.as_bytes());
    out
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_string(),
        value: text(value),
        rev: None,
    }
}

fn follow(source: &Store) -> FollowRecord {
    FollowRecord {
        source_service_id: source.meta().service_id.clone(),
        source: "unix:///source/sock".to_string(),
        since_ms: 1,
    }
}

fn lineage(source: &Store, db: &str) -> SyncLineage {
    SyncLineage {
        service_id: source.meta().service_id.clone(),
        epoch: source.snapshot().unwrap().epoch().unwrap(),
        created_ms: source.database_info(db).unwrap().created_ms,
    }
}

fn position(source: &Store, db: &str, seq: u64) -> SyncPosition {
    let lineage = lineage(source, db);
    SyncPosition {
        source_service_id: lineage.service_id,
        source_epoch: lineage.epoch,
        seq,
        updated_ms: 0,
        source_created_ms: lineage.created_ms,
        stopped: None,
    }
}

/// The write that applies `changes` of the source's database `db`.
fn apply(source: &Store, db: &str, changes: &[Change]) -> Write {
    Write::SyncApply {
        db: db.to_string(),
        lineage: lineage(source, db),
        first_seq: changes[0].seq,
        ops: changes
            .iter()
            .map(|c| match c.op {
                ChangeOp::Put => Op::Put {
                    key: c.key.clone(),
                    value: c.value.clone().unwrap(),
                    rev: None,
                },
                ChangeOp::Delete => Op::Delete {
                    key: c.key.clone(),
                    rev: None,
                },
            })
            .collect(),
        times_ms: changes.iter().map(|c| c.time_ms).collect(),
    }
}

fn applied(written: Written) -> (u64, u64) {
    match written {
        Written::SyncApplied { seq, applied } => (seq, applied),
        other => panic!("a sync apply answered {other:?}"),
    }
}

/// Every document of `db` as (key, rev, value).
fn documents(store: &Store, db: &str) -> Vec<(String, u64, Vec<u8>)> {
    let page = store.scan(db, &cairn_store::Scan::all(10_000)).unwrap();
    page.docs
        .into_iter()
        .map(|d| (d.key, d.rev, d.value))
        .collect()
}

/// A source with database `db` holding some history, and a destination that follows
/// it with an empty database of the same name at position 0.
fn pair(db: &str) -> (tempfile::TempDir, Store, tempfile::TempDir, Store) {
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, dest) = (new_store(src_dir.path()), new_store(dst_dir.path()));
    source.create_database(db).unwrap();
    dest.create_database(db).unwrap();
    dest.write(Write::SyncAttach {
        follow: follow(&source),
        positions: vec![(db.to_string(), position(&source, db, 0))],
    })
    .unwrap();
    (src_dir, source, dst_dir, dest)
}

#[test]
fn the_destination_ends_with_the_sources_log_and_documents_and_resent_changes_are_skipped() {
    let (_s, source, _d, dest) = pair("app");
    source
        .batch("app", vec![put("a", "1"), put("b", "2"), put("c", "3")])
        .unwrap();
    source.delete("app", "b", None).unwrap();
    source.put("app", "a", &text("4"), None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    source.put("app", "d", &text("5"), None).unwrap();
    let log = source.changes("app", 0, 100).unwrap();
    assert_eq!(log.len(), 6);

    assert_eq!(
        applied(dest.write(apply(&source, "app", &log[..4])).unwrap()),
        (4, 4)
    );
    // Resent from seq 3 (a follower killed before it heard the answer): 3 and 4 are
    // skipped, 5 and 6 applied.
    assert_eq!(
        applied(dest.write(apply(&source, "app", &log[2..])).unwrap()),
        (6, 2)
    );
    assert_eq!(
        applied(dest.write(apply(&source, "app", &log)).unwrap()),
        (6, 0)
    );

    assert_eq!(
        dest.changes("app", 0, 100).unwrap(),
        log,
        "seq, op, key, value and time"
    );
    assert_eq!(documents(&dest, "app"), documents(&source, "app"));
    let (src_info, dst_info) = (
        source.database_info("app").unwrap(),
        dest.database_info("app").unwrap(),
    );
    assert_eq!(
        (dst_info.last_seq, dst_info.doc_count, dst_info.doc_bytes),
        (src_info.last_seq, src_info.doc_count, src_info.doc_bytes)
    );
    let positions = dest.snapshot().unwrap().sync_positions().unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].1.seq, 6);
}

#[test]
fn gaps_other_lineages_and_local_writes_are_refused_and_change_nothing() {
    let (_s, source, _d, dest) = pair("app");
    for i in 0..5 {
        source
            .put("app", &format!("k{i}"), &text("v"), None)
            .unwrap();
    }
    let log = source.changes("app", 0, 100).unwrap();
    let before = dest.changes("app", 0, 100).unwrap();

    let gap = dest.write(apply(&source, "app", &log[1..])).unwrap_err();
    assert!(
        matches!(
            gap,
            StoreError::SyncGap {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{gap}"
    );

    let mut other_epoch = apply(&source, "app", &log);
    if let Write::SyncApply { lineage, .. } = &mut other_epoch {
        lineage.epoch += 1;
    }
    let err = dest.write(other_epoch).unwrap_err();
    assert!(
        matches!(&err, StoreError::SyncLineage { reason, .. } if reason.contains("restored")),
        "{err}"
    );

    let mut recreated = apply(&source, "app", &log);
    if let Write::SyncApply { lineage, .. } = &mut recreated {
        lineage.created_ms += 1;
    }
    let err = dest.write(recreated).unwrap_err();
    assert!(
        matches!(&err, StoreError::SyncLineage { reason, .. } if reason.contains("created again")),
        "{err}"
    );

    let mut other_service = apply(&source, "app", &log);
    if let Write::SyncApply { lineage, .. } = &mut other_service {
        lineage.service_id = "0".repeat(32);
    }
    assert!(matches!(
        dest.write(other_service).unwrap_err(),
        StoreError::SyncLineage { .. }
    ));
    assert_eq!(dest.changes("app", 0, 100).unwrap(), before);

    // Migration mode refuses a client's write, in the transaction.
    let refused = dest.put("app", "local", &text("x"), None).unwrap_err();
    assert!(
        matches!(&refused, StoreError::MigrationInProgress { db, .. } if db == "app"),
        "{refused}"
    );
    // A write made while the mode was off moves the log past the position: the next
    // change is a gap, never applied over it.
    dest.write(Write::SyncDetach).unwrap();
    dest.put("app", "local", &text("x"), None).unwrap();
    dest.write(Write::SyncAttach {
        follow: follow(&source),
        positions: vec![],
    })
    .unwrap();
    let err = dest.write(apply(&source, "app", &log)).unwrap_err();
    assert!(matches!(err, StoreError::SyncGap { .. }), "{err}");
    // A follower of another service than the one migration mode names is refused.
    let mut foreign = apply(&source, "app", &log);
    if let Write::SyncApply { lineage, .. } = &mut foreign {
        lineage.service_id = "f".repeat(32);
    }
    assert!(matches!(
        dest.write(foreign).unwrap_err(),
        StoreError::SyncLineage { .. }
    ));
}

#[test]
fn a_delete_of_a_missing_document_logs_its_tombstone_and_offline_databases_take_changes() {
    let (_s, source, _d, dest) = pair("app");
    source.put("app", "gone", &text("v"), None).unwrap();
    source.put("app", "kept", &text("v"), None).unwrap();
    source.delete("app", "gone", None).unwrap();
    let log = source.changes("app", 0, 100).unwrap();
    dest.set_offline("app", true).unwrap();
    let refused = dest.put("app", "x", &text("v"), None).unwrap_err();
    assert!(matches!(refused, StoreError::MigrationInProgress { .. }));
    // Seq 1 applied as another key: the destination lacks "gone", as when a
    // migration left it out.
    let mut first = apply(&source, "app", &log[..1]);
    if let Write::SyncApply { ops, .. } = &mut first {
        ops[0] = put("other", "v");
    }
    dest.write(first).unwrap();
    assert_eq!(
        applied(dest.write(apply(&source, "app", &log[1..])).unwrap()),
        (3, 2)
    );
    let dest_log = dest.changes("app", 0, 100).unwrap();
    assert_eq!(dest_log[2], log[2], "the tombstone is logged");
    assert_eq!(dest.database_info("app").unwrap().doc_count, 2);
}

#[test]
fn a_change_the_indexes_cannot_hold_leaves_them_stale_instead_of_stopping_the_sync() {
    let (_s, source, _d, dest) = pair("app");
    dest.set_offline("app", true).unwrap();
    dest.set_database_config(
        "app",
        vec![IndexDef {
            name: "whole".to_string(),
            field: String::new(),
            unique: true,
        }],
        Retention::default(),
    )
    .unwrap();
    dest.set_offline("app", false).unwrap();
    // Two documents with the same value: the source (without the index) took both.
    source.put("app", "a", &text("same"), None).unwrap();
    source.put("app", "b", &text("same"), None).unwrap();
    let log = source.changes("app", 0, 100).unwrap();
    assert_eq!(
        applied(dest.write(apply(&source, "app", &log)).unwrap()),
        (2, 2)
    );
    assert!(dest.database_config("app").unwrap().indexes_stale);
    assert_eq!(documents(&dest, "app"), documents(&source, "app"));
}

#[test]
fn migration_mode_is_stored_refuses_another_source_and_ends_with_detach() {
    let (_s, source, dst_dir, dest) = pair("app");
    let stored = dest.snapshot().unwrap().follow().unwrap().unwrap();
    assert_eq!(stored.source_service_id, source.meta().service_id);

    let other = FollowRecord {
        source_service_id: "f".repeat(32),
        ..follow(&source)
    };
    let err = dest
        .write(Write::SyncAttach {
            follow: other,
            positions: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::FollowConflict { .. }), "{err}");

    // A stored stop survives a reopen, and the mode with it.
    dest.write(Write::SyncStopped {
        db: "app".to_string(),
        stop: Some(SyncStop {
            code: "resync_required".to_string(),
            message: "restored".to_string(),
            seq: 0,
            at_ms: 1,
        }),
    })
    .unwrap();
    drop(dest);
    let dest = Store::open(dst_dir.path(), StoreOptions::default()).unwrap();
    let snapshot = dest.snapshot().unwrap();
    assert_eq!(snapshot.follow().unwrap(), Some(stored.clone()));
    assert_eq!(
        snapshot.sync_positions().unwrap()[0]
            .1
            .stopped
            .as_ref()
            .unwrap()
            .code,
        "resync_required"
    );
    drop(snapshot);

    assert_eq!(
        dest.write(Write::SyncDetach).unwrap(),
        Written::SyncDetached(Some(stored))
    );
    assert_eq!(dest.snapshot().unwrap().follow().unwrap(), None);
    let err = dest
        .write(apply(
            &source,
            "app",
            &[Change {
                seq: 1,
                op: ChangeOp::Put,
                key: "k".to_string(),
                value: Some(text("v")),
                time_ms: 1,
            }],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFollowing), "{err}");
    // The position stays (where the data came from); a drop removes it.
    assert_eq!(dest.snapshot().unwrap().sync_positions().unwrap().len(), 1);
    dest.drop_database("app").unwrap();
    assert!(dest
        .snapshot()
        .unwrap()
        .sync_positions()
        .unwrap()
        .is_empty());
}

#[test]
fn a_database_the_source_created_is_created_with_its_position() {
    let (_s, source, _d, dest) = pair("app");
    source.create_database("later").unwrap();
    source.put("later", "k", &text("v"), None).unwrap();
    let create = Write::SyncCreateDatabase {
        name: "later".to_string(),
        retention: Retention::default(),
        offline: false,
        position: position(&source, "later", 0),
    };
    assert_eq!(
        dest.write(create.clone()).unwrap(),
        Written::DatabaseCreated
    );
    // Again (a follower killed before it heard the answer): nothing changes.
    assert_eq!(dest.write(create).unwrap(), Written::DatabaseCreated);
    let log = source.changes("later", 0, 100).unwrap();
    assert_eq!(
        applied(dest.write(apply(&source, "later", &log)).unwrap()),
        (1, 1)
    );
    assert_eq!(dest.changes("later", 0, 100).unwrap(), log);
}
