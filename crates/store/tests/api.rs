//! Behaviour of the public `Store` API on a real environment in a temporary directory:
//! databases, documents, conditions, scans, batches, change logs, retention, reopening,
//! and every kind of bad input (each gets its own error and changes nothing).

use std::ops::Bound;
use std::path::Path;

use cairn_store::{
    ChangeOp, Op, Retention, Scan, ScanRange, Store, StoreError, StoreOptions, Write, Written,
    MAX_GRANTS,
};

/// msgpack of a small positive integer.
fn int(n: u8) -> Vec<u8> {
    assert!(n < 128);
    vec![n]
}

/// msgpack of a short string.
fn text(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut out = vec![0xa0 | u8::try_from(s.len()).expect("shorter than 32")];
    out.extend_from_slice(s.as_bytes());
    out
}

fn new_store(dir: &Path) -> Store {
    Store::create(dir, StoreOptions::default()).unwrap()
}

fn keys(page: &cairn_store::ScanPage) -> Vec<&str> {
    page.docs.iter().map(|d| d.key.as_str()).collect()
}

#[test]
fn create_open_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let meta = {
        let store = new_store(dir.path());
        assert_eq!(store.meta().format_version, cairn_store::FORMAT_VERSION);
        assert_eq!(store.meta().service_id.len(), 32);
        store.meta().clone()
    };
    assert!(matches!(
        Store::create(dir.path(), StoreOptions::default()),
        Err(StoreError::StoreExists { .. })
    ));
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.meta(), &meta, "the service id survives a reopen");
    let empty = tempfile::tempdir().unwrap();
    let err = Store::open(empty.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NoStore { .. }), "{err}");
}

#[test]
fn a_snapshots_version_changes_with_every_commit_and_every_opening_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("d").unwrap();
    let version = |store: &Store| store.snapshot().unwrap().version().unwrap();
    let before = store.snapshot().unwrap();
    assert_eq!(before.version().unwrap(), version(&store));
    store.put("d", "k", &int(1), None).unwrap();
    let after = version(&store);
    assert_ne!(before.version().unwrap(), after, "a put commits");
    // A write refused (a stale rev) commits nothing.
    assert!(store.put("d", "k", &int(2), Some(999)).is_err());
    assert_eq!(version(&store), after);
    // Opened again, it is another opening: an environment put in another's place may
    // number its commits alike, and its snapshots are never taken for the old one's.
    drop((before, store));
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_ne!(version(&store), after);
    assert_eq!(version(&store), version(&store));
}

#[test]
fn a_second_open_in_one_process_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = new_store(dir.path());
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::DirectoryInUse { .. })
    ));
}

#[test]
fn databases_create_list_info_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("beta").unwrap();
    store.create_database("alpha").unwrap();
    let names: Vec<String> = store
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(matches!(
        store.create_database("alpha"),
        Err(StoreError::DatabaseExists { .. })
    ));

    store.put("alpha", "k1", &text("hello"), None).unwrap();
    store.put("alpha", "k2", &int(2), None).unwrap();
    store.delete("alpha", "k2", None).unwrap();
    let info = store.database_info("alpha").unwrap();
    assert_eq!(info.doc_count, 1);
    assert_eq!(info.last_seq, 3);
    assert_eq!(info.oldest_seq, 1);
    // One document: 4-byte id + "k1", 8-byte rev + 4-byte checksum + 6-byte value.
    assert_eq!(info.doc_bytes, (4 + 2 + 8 + 4 + 6) as u64);
    assert!(info.log_bytes > 0);

    store.drop_database("alpha").unwrap();
    assert!(matches!(
        store.database_info("alpha"),
        Err(StoreError::DatabaseMissing { .. })
    ));
    assert!(matches!(
        store.drop_database("alpha"),
        Err(StoreError::DatabaseMissing { .. })
    ));
    // A new database of the same name starts empty: no documents, no log.
    store.create_database("alpha").unwrap();
    assert_eq!(store.get("alpha", "k1").unwrap(), None);
    assert!(store.changes("alpha", 0, 100).unwrap().is_empty());
    assert_eq!(store.database_info("alpha").unwrap().last_seq, 0);
    assert_eq!(store.list_databases().unwrap().len(), 2);
}

#[test]
fn bad_database_names_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    for bad in [
        "",
        "9lives",
        "UPPER",
        "has space",
        "dot.ted",
        &"a".repeat(65),
    ] {
        assert!(
            matches!(
                store.create_database(bad),
                Err(StoreError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            store.put(bad, "k", &int(1), None),
            Err(StoreError::InvalidName { .. })
        ));
    }
    assert!(store.list_databases().unwrap().is_empty());
}

#[test]
fn documents_put_get_delete_with_revs() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();

    let rev1 = store.put("db", "k", &int(1), Some(0)).unwrap();
    assert_eq!(rev1, 1);
    let doc = store.get("db", "k").unwrap().unwrap();
    assert_eq!((doc.rev, doc.value.clone()), (1, int(1)));

    // rev 0 means "must not exist".
    let err = store.put("db", "k", &int(2), Some(0)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::RevConflict {
                expected: 0,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = store.put("db", "k", &int(2), Some(7)).unwrap_err();
    assert!(matches!(
        err,
        StoreError::RevConflict {
            expected: 7,
            current: 1,
            ..
        }
    ));
    assert_eq!(
        store.get("db", "k").unwrap().unwrap().value,
        int(1),
        "unchanged"
    );

    let rev2 = store.put("db", "k", &int(2), Some(rev1)).unwrap();
    assert_eq!(rev2, 2);
    let err = store.delete("db", "k", Some(rev1)).unwrap_err();
    assert!(matches!(err, StoreError::RevConflict { .. }));
    let tombstone = store.delete("db", "k", Some(rev2)).unwrap();
    assert_eq!(tombstone, 3);
    assert_eq!(store.get("db", "k").unwrap(), None);
    assert!(matches!(
        store.delete("db", "k", None),
        Err(StoreError::NotFound { .. })
    ));
    // A failed write consumed no sequence number.
    assert_eq!(store.put("db", "k", &int(3), Some(0)).unwrap(), 4);
    assert!(matches!(
        store.put("nope", "k", &int(1), None),
        Err(StoreError::DatabaseMissing { .. })
    ));
}

#[test]
fn bad_keys_and_values_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_value_bytes: 1024,
        ..StoreOptions::default()
    };
    let store = Store::create(dir.path(), options).unwrap();
    store.create_database("db").unwrap();
    let before = store.database_info("db").unwrap();

    assert!(matches!(
        store.put("db", "", &int(1), None),
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put("db", &"k".repeat(401), &int(1), None),
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(store.put("db", &"k".repeat(400), &int(1), None).is_ok());
    assert!(matches!(
        store.get("db", ""),
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put("db", "k", &[0xc1], None),
        Err(StoreError::InvalidValue { .. })
    ));
    assert!(matches!(
        store.put("db", "k", &[0x01, 0x02], None),
        Err(StoreError::InvalidValue { .. })
    ));
    let mut big = vec![0xc6, 0, 0, 4, 1];
    big.extend(std::iter::repeat_n(0u8, 1025));
    assert!(matches!(
        store.put("db", "k", &big, None),
        Err(StoreError::ValueTooLarge { limit: 1024, .. })
    ));
    // Only the one valid put above changed anything.
    let after = store.database_info("db").unwrap();
    assert_eq!(after.last_seq, before.last_seq + 1);
    assert_eq!(after.doc_count, 1);
    assert!(store.get("db", "k").unwrap().is_none());
}

#[test]
fn batches_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.put("db", "a", &int(1), None).unwrap();

    let revs = store
        .batch(
            "db",
            vec![
                Op::Put {
                    key: "b".into(),
                    value: int(2),
                    rev: Some(0),
                },
                Op::Put {
                    key: "a".into(),
                    value: int(3),
                    rev: Some(1),
                },
                // Sees the put of "b" just above: its rev is 2.
                Op::Delete {
                    key: "b".into(),
                    rev: Some(2),
                },
            ],
        )
        .unwrap();
    assert_eq!(revs, [2, 3, 4]);
    assert_eq!(store.get("db", "a").unwrap().unwrap().value, int(3));
    assert_eq!(store.get("db", "b").unwrap(), None);

    // The last operation conflicts: nothing of the batch is applied.
    let err = store
        .batch(
            "db",
            vec![
                Op::Put {
                    key: "c".into(),
                    value: int(5),
                    rev: None,
                },
                Op::Delete {
                    key: "a".into(),
                    rev: Some(1),
                },
            ],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::RevConflict { .. }), "{err}");
    assert_eq!(store.get("db", "c").unwrap(), None);
    assert_eq!(store.database_info("db").unwrap().last_seq, 4);

    // A bad key anywhere refuses the whole batch before it is queued.
    let err = store
        .batch(
            "db",
            vec![
                Op::Put {
                    key: "d".into(),
                    value: int(5),
                    rev: None,
                },
                Op::Put {
                    key: String::new(),
                    value: int(5),
                    rev: None,
                },
            ],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }));
    assert_eq!(store.get("db", "d").unwrap(), None);
    assert!(matches!(
        store.batch("db", vec![]),
        Err(StoreError::InvalidArgument { .. })
    ));
}

#[test]
fn scans_by_prefix_range_reverse_and_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.create_database("other").unwrap();
    let ops = ["a1", "a2", "a3", "b1", "b2", "c"]
        .iter()
        .map(|k| Op::Put {
            key: k.to_string(),
            value: text(k),
            rev: None,
        })
        .collect();
    store.batch("db", ops).unwrap();
    store.put("other", "a0", &int(0), None).unwrap();

    let all = store.scan("db", &Scan::all(100)).unwrap();
    assert_eq!(keys(&all), ["a1", "a2", "a3", "b1", "b2", "c"]);
    assert!(!all.more);

    let prefix = Scan {
        range: ScanRange::Prefix("a".into()),
        limit: 2,
        reverse: false,
        after: None,
    };
    let page = store.scan("db", &prefix).unwrap();
    assert_eq!((keys(&page), page.more), (vec!["a1", "a2"], true));
    let next = Scan {
        after: Some("a2".into()),
        ..prefix.clone()
    };
    let page = store.scan("db", &next).unwrap();
    assert_eq!((keys(&page), page.more), (vec!["a3"], false));

    let reverse = Scan {
        reverse: true,
        ..Scan::all(4)
    };
    let page = store.scan("db", &reverse).unwrap();
    assert_eq!(keys(&page), ["c", "b2", "b1", "a3"]);
    let page = store
        .scan(
            "db",
            &Scan {
                after: Some("a3".into()),
                ..reverse
            },
        )
        .unwrap();
    assert_eq!(keys(&page), ["a2", "a1"]);

    let range = Scan {
        range: ScanRange::Keys {
            start: Bound::Excluded("a1".into()),
            end: Bound::Included("b1".into()),
        },
        limit: 100,
        reverse: false,
        after: None,
    };
    assert_eq!(keys(&store.scan("db", &range).unwrap()), ["a2", "a3", "b1"]);
    let inverted = Scan {
        range: ScanRange::Keys {
            start: Bound::Included("z".into()),
            end: Bound::Included("a".into()),
        },
        ..range
    };
    assert!(store.scan("db", &inverted).unwrap().docs.is_empty());
    assert!(matches!(
        store.scan("db", &Scan::all(0)),
        Err(StoreError::InvalidArgument { .. })
    ));
    assert_eq!(
        store.scan("db", &Scan::all(3)).unwrap().docs[0].value,
        text("a1")
    );
}

#[test]
fn the_change_log_records_every_change_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.put("db", "x", &int(1), None).unwrap();
    store.put("db", "y", &int(2), None).unwrap();
    store.delete("db", "x", None).unwrap();
    let changes = store.changes("db", 0, 100).unwrap();
    let summary: Vec<(u64, ChangeOp, &str, Option<Vec<u8>>)> = changes
        .iter()
        .map(|c| (c.seq, c.op, c.key.as_str(), c.value.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, ChangeOp::Put, "x", Some(int(1))),
            (2, ChangeOp::Put, "y", Some(int(2))),
            (3, ChangeOp::Delete, "x", None),
        ]
    );
    assert!(changes.iter().all(|c| c.time_ms > 0));
    assert_eq!(store.changes("db", 1, 1).unwrap()[0].seq, 2);
    assert!(store.changes("db", 3, 10).unwrap().is_empty());
    assert!(store.changes("db", 99, 10).unwrap().is_empty());
}

#[test]
fn retention_by_count_trims_and_reports_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store
        .create_database_with(
            "db",
            Retention {
                max_changes: Some(3),
                max_age_secs: None,
            },
        )
        .unwrap();
    for i in 0..10u8 {
        store.put("db", &format!("k{i}"), &int(i), None).unwrap();
    }
    let info = store.database_info("db").unwrap();
    assert_eq!((info.last_seq, info.oldest_seq), (10, 8));
    let kept: Vec<u64> = store
        .changes("db", 7, 100)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(kept, [8, 9, 10]);
    match store.changes("db", 6, 100) {
        Err(StoreError::ChangesCompacted { oldest, since, .. }) => {
            assert_eq!((oldest, since), (8, 6))
        }
        other => panic!("expected ChangesCompacted, got {other:?}"),
    }
    assert!(matches!(
        store.changes("db", 0, 100),
        Err(StoreError::ChangesCompacted { oldest: 8, .. })
    ));
    // Documents are untouched by log retention.
    assert_eq!(info.doc_count, 10);
    // The freed log bytes are accounted for: 3 entries remain.
    let per_entry = info.log_bytes / 3;
    assert_eq!(info.log_bytes, per_entry * 3);
}

#[test]
fn retention_by_age_trims_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.put("db", "old", &int(1), None).unwrap();
    // Written "now"; one second of age removes it once that second has passed. The
    // retention changes through the database's configuration, which needs it offline.
    store.set_offline("db", true).unwrap();
    store
        .set_database_config(
            "db",
            Vec::new(),
            Retention {
                max_changes: None,
                max_age_secs: Some(1),
            },
        )
        .unwrap();
    store.set_offline("db", false).unwrap();
    let mut trimmed = 0;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        trimmed = store.trim_changes().unwrap();
        if trimmed > 0 {
            break;
        }
    }
    assert_eq!(trimmed, 1);
    assert!(matches!(
        store.changes("db", 0, 10),
        Err(StoreError::ChangesCompacted { oldest: 2, .. })
    ));
    assert_eq!(store.database_info("db").unwrap().log_bytes, 0);
    assert!(store.get("db", "old").unwrap().is_some());
}

#[test]
fn a_retention_age_beyond_the_clock_keeps_everything() {
    for max_age_secs in [u64::MAX / 1000 + 1, u64::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(dir.path());
        store
            .create_database_with(
                "db",
                Retention {
                    max_changes: None,
                    max_age_secs: Some(max_age_secs),
                },
            )
            .unwrap();
        store.put("db", "old", &int(1), None).unwrap();
        store.put("db", "new", &int(2), None).unwrap();
        assert_eq!(store.trim_changes().unwrap(), 0, "{max_age_secs}");
        assert_eq!(
            store.changes("db", 0, 10).unwrap().len(),
            2,
            "{max_age_secs}"
        );
    }
}

#[test]
fn data_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = new_store(dir.path());
        store.create_database("db").unwrap();
        store.put("db", "k", &text("kept"), None).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.get("db", "k").unwrap().unwrap().value, text("kept"));
    assert_eq!(store.put("db", "k2", &int(1), None).unwrap(), 2);
}

#[test]
fn a_group_answers_each_writer_with_its_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.put("db", "taken", &int(1), None).unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    // Queue many writes at once so that they share commits; every other one conflicts.
    for i in 0..200u32 {
        let sender = sender.clone();
        let write = Write::Batch {
            db: "db".into(),
            ops: vec![if i % 2 == 0 {
                Op::Put {
                    key: format!("k{i}"),
                    value: int(1),
                    rev: Some(0),
                }
            } else {
                Op::Put {
                    key: "taken".into(),
                    value: int(2),
                    rev: Some(0),
                }
            }],
        };
        store.submit(
            write,
            Box::new(move |outcome| sender.send((i, outcome)).unwrap()),
        );
    }
    drop(sender);
    let mut ok = 0;
    for (i, outcome) in receiver {
        match outcome {
            Ok(Written::Batch(_)) => {
                assert_eq!(i % 2, 0);
                ok += 1;
            }
            Err(StoreError::RevConflict { .. }) => assert_eq!(i % 2, 1),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(store.database_info("db").unwrap().doc_count, 101);
}

#[test]
fn a_full_map_is_an_error_not_a_crash_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        map_size: 1 << 20,
        ..StoreOptions::default()
    };
    let store = Store::create(dir.path(), options.clone()).unwrap();
    store.create_database("db").unwrap();
    let value = {
        let mut v = vec![0xc5, 0x10, 0x00];
        v.extend(std::iter::repeat_n(7u8, 4096));
        v
    };
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..1000 {
        match store.put("db", &format!("k{i:04}"), &value, None) {
            Ok(_) => acknowledged.push(format!("k{i:04}")),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let full = full.expect("a 1 MiB map fills up");
    assert!(matches!(full, StoreError::MapFull), "{full}");
    assert!(
        full.is_storage_full() && full.to_string().contains("map_size"),
        "{full}"
    );
    // The store still serves reads and small writes after the refusal.
    for key in &acknowledged {
        assert!(
            store.get("db", key).unwrap().is_some(),
            "{key} was acknowledged"
        );
    }
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(
        store.database_info("db").unwrap().doc_count,
        acknowledged.len() as u64
    );
}

/// Opens the raw LMDB environment of a working directory, as another program would.
fn raw_env(dir: &Path) -> heed::Env<heed::WithoutTls> {
    let path = dir.join(cairn_store::STORE_DIR);
    std::fs::create_dir_all(&path).unwrap();
    let mut options = heed::EnvOpenOptions::new().read_txn_without_tls();
    options.max_dbs(16).map_size(1 << 30);
    // SAFETY: the tests open an environment here only while no store has it open, and
    // nothing truncates or rewrites its files behind LMDB's back.
    unsafe { options.open(&path) }.unwrap()
}

#[test]
fn a_creation_cut_short_before_its_commit_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    // What a crash during the first start leaves: an environment with nothing committed.
    raw_env(dir.path()).prepare_for_closing().wait();
    assert!(dir.path().join("store/data.mdb").exists());
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::NoStore { .. })
    ));
    let store = Store::open_or_create(dir.path(), StoreOptions::default()).unwrap();
    store.create_database("db").unwrap();
    drop(store);
    let store = Store::open_or_create(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        store.list_databases().unwrap().len(),
        1,
        "opened, not created again"
    );

    let other = tempfile::tempdir().unwrap();
    raw_env(other.path()).prepare_for_closing().wait();
    assert!(Store::create(other.path(), StoreOptions::default()).is_ok());
}

#[test]
fn another_format_version_is_refused_with_what_to_do() {
    for (found, advice) in [(1u32, "cairn-migrate --src"), (3, "upgrade cairn")] {
        let dir = tempfile::tempdir().unwrap();
        drop(new_store(dir.path()));
        let env = raw_env(dir.path());
        let wtxn = env.write_txn().unwrap();
        let meta: heed::Database<heed::types::Str, heed::types::Bytes> = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database(wtxn, Some("meta"))
                    .map(heed::CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let mut wtxn = env.write_txn().unwrap();
        meta.put(&mut wtxn, "format_version", &found.to_be_bytes())
            .unwrap();
        wtxn.commit().unwrap();
        env.prepare_for_closing().wait();

        let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
        match &err {
            StoreError::FormatMismatch {
                found: f, expected, ..
            } => {
                assert_eq!((*f, *expected), (found, cairn_store::FORMAT_VERSION))
            }
            other => panic!("expected FormatMismatch, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&format!("format {found}")), "{message}");
        assert!(message.contains(advice), "{message}");
        // Refused without a change: the version is still the one found.
        assert!(matches!(
            Store::open_or_create(dir.path(), StoreOptions::default()),
            Err(StoreError::FormatMismatch { .. })
        ));
    }
}

fn user(admin: bool) -> cairn_store::UserRecord {
    cairn_store::UserRecord {
        admin,
        locked: false,
        created_ms: 1,
        password_hash: Some("$argon2id$v=19$placeholder".to_string()),
        grants: Default::default(),
    }
}

#[test]
fn a_user_holds_at_most_max_grants() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let with_grants = |count: usize| cairn_store::UserRecord {
        grants: (0..count)
            .map(|i| (format!("db{i}"), cairn_store::Access::Read))
            .collect(),
        ..user(false)
    };
    let save = |name: &str, record, create| {
        store.write(Write::SaveUser {
            name: name.to_string(),
            record,
            create,
        })
    };
    let full = with_grants(MAX_GRANTS);
    save("alice", full.clone(), true).unwrap();
    let stored = || store.snapshot().unwrap().user("alice").unwrap();
    assert_eq!(stored(), Some(full.clone()));

    let error = save("alice", with_grants(MAX_GRANTS + 1), false).unwrap_err();
    assert!(
        matches!(
            &error,
            StoreError::TooManyGrants { user, grants, limit }
                if user == "alice" && *grants == MAX_GRANTS + 1 && *limit == MAX_GRANTS
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("revoke"), "{error}");
    assert_eq!(stored(), Some(full), "the refused record changed nothing");
    // A count a u16 cannot hold (it was stored as 0 grants before) is refused too.
    assert!(matches!(
        save("bob", with_grants(1 << 16), true),
        Err(StoreError::TooManyGrants { .. })
    ));
    assert_eq!(store.snapshot().unwrap().user("bob").unwrap(), None);
}

#[test]
fn users_and_sessions_are_stored_and_removed_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let save = |name: &str, record, create| {
        store.write(Write::SaveUser {
            name: name.to_string(),
            record,
            create,
        })
    };
    save("alice", user(false), true).unwrap();
    assert!(matches!(
        save("alice", user(true), true),
        Err(StoreError::UserExists { .. })
    ));
    assert!(matches!(
        save("bob", user(true), false),
        Err(StoreError::UserMissing { .. })
    ));
    assert!(matches!(
        save("Bad Name", user(true), true),
        Err(StoreError::InvalidName { .. })
    ));
    let mut granted = user(false);
    granted
        .grants
        .insert("db".to_string(), cairn_store::Access::Write);
    save("alice", granted.clone(), false).unwrap();
    assert_eq!(
        store.snapshot().unwrap().user("alice").unwrap(),
        Some(granted)
    );

    let session = |user: &str, expires_ms| cairn_store::SessionRecord {
        user: user.to_string(),
        created_ms: 1,
        expires_ms,
    };
    save("carol", user(false), true).unwrap();
    store
        .write(Write::SaveSession {
            token_hash: [1; 32],
            record: session("alice", 100),
        })
        .unwrap();
    store
        .write(Write::SaveSession {
            token_hash: [2; 32],
            record: session("alice", u64::MAX),
        })
        .unwrap();
    store
        .write(Write::SaveSession {
            token_hash: [3; 32],
            record: session("carol", u64::MAX),
        })
        .unwrap();
    assert_eq!(
        store.write(Write::PurgeSessions { now_ms: 100 }).unwrap(),
        Written::SessionsPurged(1)
    );
    let snapshot = store.snapshot().unwrap();
    assert_eq!(
        snapshot.session(&[1; 32]).unwrap(),
        None,
        "expired and purged"
    );
    assert_eq!(
        snapshot.session(&[2; 32]).unwrap(),
        Some(session("alice", u64::MAX))
    );
    drop(snapshot);

    store
        .write(Write::DeleteUser {
            name: "alice".to_string(),
        })
        .unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.user("alice").unwrap(), None);
    assert_eq!(
        snapshot.session(&[2; 32]).unwrap(),
        None,
        "sessions go with their user"
    );
    assert!(
        snapshot.session(&[3; 32]).unwrap().is_some(),
        "other users keep theirs"
    );
    let names: Vec<String> = snapshot
        .users()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["carol"]);
    assert_eq!(
        store
            .write(Write::DeleteSession {
                token_hash: [3; 32]
            })
            .unwrap(),
        Written::SessionDeleted(true)
    );
    assert_eq!(
        store
            .write(Write::DeleteSession {
                token_hash: [3; 32]
            })
            .unwrap(),
        Written::SessionDeleted(false)
    );
    assert!(matches!(
        store.write(Write::DeleteUser {
            name: "alice".to_string()
        }),
        Err(StoreError::UserMissing { .. })
    ));
}

#[test]
fn the_commit_hook_hears_every_changed_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    store.set_commit_hook(std::sync::Arc::new(
        move |commits: &[cairn_store::DatabaseCommit]| {
            sink.lock().unwrap().extend(commits.iter().cloned());
        },
    ));
    store.create_database("db").unwrap();
    store.put("db", "k", &int(1), None).unwrap();
    store.put("db", "k", &int(2), Some(99)).unwrap_err();
    store.drop_database("db").unwrap();
    let heard = heard.lock().unwrap().clone();
    let summary: Vec<(&str, Option<u64>)> = heard
        .iter()
        .map(|c| (c.name.as_str(), c.last_seq))
        .collect();
    assert_eq!(summary, [("db", Some(0)), ("db", Some(1)), ("db", None)]);
}

#[test]
fn jobs_are_numbered_kept_and_failed_when_interrupted() {
    use cairn_store::{JobKind, JobRecord, JobStatus};
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let create = |kind| match store
        .write(Write::CreateJob {
            record: JobRecord::queued(kind, "root", 10),
        })
        .unwrap()
    {
        Written::JobCreated(id) => id,
        other => panic!("{other:?}"),
    };
    let first = create(JobKind::Backup);
    let second = create(JobKind::Restore);
    assert_eq!((first, second), (1, 2));
    let mut done = store.snapshot().unwrap().job(first).unwrap().unwrap();
    assert_eq!((done.id, done.status), (1, JobStatus::Queued));
    done.finish(JobStatus::Completed, 20);
    store
        .write(Write::SaveJob {
            record: done.clone(),
        })
        .unwrap();
    let mut ghost = done.clone();
    ghost.id = 99;
    assert!(matches!(
        store.write(Write::SaveJob { record: ghost }),
        Err(StoreError::NotFound { .. })
    ));
    drop(store);

    // After a restart, what had not finished is failed as interrupted; the rest stays.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        store
            .write(Write::FailInterruptedJobs { now_ms: 30 })
            .unwrap(),
        Written::JobsFailed(1)
    );
    let jobs = store.snapshot().unwrap().jobs().unwrap();
    let summary: Vec<(u64, JobStatus)> = jobs.iter().map(|j| (j.id, j.status)).collect();
    assert_eq!(summary, [(2, JobStatus::Failed), (1, JobStatus::Completed)]);
    assert!(jobs[0]
        .error_message
        .as_deref()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(jobs[0].total_time_ms, Some(20));
    assert_eq!(jobs[1], done);
    let third = match store
        .write(Write::CreateJob {
            record: JobRecord::queued(JobKind::Resync, "root", 40),
        })
        .unwrap()
    {
        Written::JobCreated(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(third, 3, "ids are never reused");
}
