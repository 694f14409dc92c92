//! Migration from format 1 (`cairn_store::migrate`): format-1 directories are written
//! here by a frozen copy of format 1's writer (the byte layouts of the release at commit
//! 03ebda0, written with raw heed: nothing of format 2 pretends), then migrated; the
//! result is read through the store as any service would. The end-to-end tests with the
//! format-1 release's own binaries are in the `cairn-tests` crate.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_store::migrate::{self, MigrateOptions};
use cairn_store::{
    ChangeOp, IndexKey, IndexQuery, Scan, Store, StoreError, StoreOptions, FORMAT_VERSION,
};
use heed::types::{Bytes, Str};
use heed::{Database, DatabaseFlags};

/// The format-1 writer, frozen: what the release at 03ebda0 wrote, byte for byte.
mod format1 {
    use super::*;

    pub struct Db<'a> {
        pub name: &'a str,
        pub id: u32,
        pub offline: bool,
        /// (name, JSON pointer, unique)
        pub indexes: Vec<(&'a str, &'a str, bool)>,
        pub retain_changes: u64,
        /// Every change, in seq order: (key, Some(value)) for a put, (key, None) for a
        /// delete. The documents are what replaying them leaves.
        pub changes: Vec<(&'a [u8], Option<Vec<u8>>)>,
        /// Changes removed by retention: the first `trimmed` seqs.
        pub trimmed: u64,
        /// Documents to store as they are, over what the changes leave: (key, stored
        /// value bytes = rev ‖ value, or anything to damage it).
        pub raw_docs: Vec<(&'a [u8], Vec<u8>)>,
    }

    /// A user: name, admin, password hash, grants (database, access: 1 read, 2 write).
    pub type User<'a> = (&'a str, bool, &'a str, Vec<(&'a str, u8)>);

    pub struct Dir<'a> {
        pub service_id: [u8; 16],
        pub epoch: u64,
        pub dbs: Vec<Db<'a>>,
        pub users: Vec<User<'a>>,
        pub session: ([u8; 32], &'a str),
        pub status_mode: &'a str,
    }

    fn catalog_record(
        id: u32,
        last_seq: u64,
        trimmed: u64,
        counts: [u64; 3],
        retain: u64,
    ) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(&id.to_be_bytes());
        for field in [
            1_700_000_000_000,
            last_seq,
            trimmed,
            counts[0],
            counts[1],
            counts[2],
            retain,
            0,
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out
    }

    fn change_record(op: u8, time: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let mut out = vec![op];
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(&u16::try_from(key.len()).unwrap().to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value.unwrap_or_default());
        out
    }

    fn user_record(admin: bool, hash: &str, grants: &[(&str, u8)]) -> Vec<u8> {
        let mut out = vec![1, u8::from(admin)];
        out.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        out.extend_from_slice(&u16::try_from(hash.len()).unwrap().to_be_bytes());
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(&u16::try_from(grants.len()).unwrap().to_be_bytes());
        for (db, access) in grants {
            out.push(u8::try_from(db.len()).unwrap());
            out.extend_from_slice(db.as_bytes());
            out.push(*access);
        }
        out
    }

    #[derive(serde::Serialize)]
    struct Config<'a> {
        offline: bool,
        indexes: Vec<IndexDef<'a>>,
        indexes_stale: bool,
    }

    #[derive(serde::Serialize)]
    struct IndexDef<'a> {
        name: &'a str,
        field: &'a str,
        unique: bool,
    }

    #[derive(serde::Serialize)]
    struct Job<'a> {
        id: u64,
        kind: &'a str,
        status: &'a str,
        progress_current: u64,
        progress_total: u64,
        progress_message: &'a str,
        error_message: Option<&'a str>,
        error_details: Option<&'a str>,
        result_location: Option<&'a str>,
        started_by: &'a str,
        started_on_ms: u64,
        finished_on_ms: Option<u64>,
        total_time_ms: Option<u64>,
        params: BTreeMap<&'a str, &'a str>,
        stats: BTreeMap<&'a str, u64>,
    }

    #[derive(serde::Serialize)]
    struct Status<'a> {
        mode: &'a str,
        current_message: &'a str,
        pending_maintenance_message: &'a str,
        set_by: &'a str,
        set_ms: u64,
    }

    pub fn write(dir: &Path, spec: &Dir) {
        let path = dir.join("store");
        std::fs::create_dir_all(&path).unwrap();
        let mut options = heed::EnvOpenOptions::new().read_txn_without_tls();
        options.max_dbs(16).map_size(1 << 30);
        // SAFETY: a fresh environment that nothing else opens.
        let env = unsafe { options.open(&path) }.unwrap();
        let wtxn = env.write_txn().unwrap();
        env.create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
            let meta: Database<Str, Bytes> = opener.create_database(wtxn, Some("meta"))?;
            let catalog: Database<Str, Bytes> = opener.create_database(wtxn, Some("catalog"))?;
            let docs: Database<Bytes, Bytes> = opener.create_database(wtxn, Some("docs"))?;
            let changes: Database<Bytes, Bytes> = opener.create_database(wtxn, Some("changes"))?;
            let users: Database<Str, Bytes> = opener.create_database(wtxn, Some("users"))?;
            let sessions: Database<Bytes, Bytes> =
                opener.create_database(wtxn, Some("sessions"))?;
            let jobs: Database<Bytes, Bytes> = opener.create_database(wtxn, Some("jobs"))?;
            let configs: Database<Str, Bytes> = opener.create_database(wtxn, Some("configs"))?;
            opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name("indexes")
                .flags(DatabaseFlags::DUP_SORT)
                .create(wtxn)?;
            meta.put(wtxn, "format_version", &1u32.to_be_bytes())?;
            meta.put(wtxn, "service_id", &spec.service_id)?;
            meta.put(wtxn, "created_ms", &1_700_000_000_000u64.to_be_bytes())?;
            let next_db = spec.dbs.iter().map(|d| d.id).max().unwrap_or(0) + 1;
            meta.put(wtxn, "next_database_id", &next_db.to_be_bytes())?;
            meta.put(wtxn, "next_job_id", &2u64.to_be_bytes())?;
            meta.put(wtxn, "epoch", &spec.epoch.to_be_bytes())?;
            let status = Status {
                mode: spec.status_mode,
                current_message: "moving house",
                pending_maintenance_message: "",
                set_by: "root",
                set_ms: 5,
            };
            meta.put(wtxn, "status", &rmp_serde::to_vec_named(&status).unwrap())?;
            for db in &spec.dbs {
                let mut current: BTreeMap<&[u8], (u64, Vec<u8>)> = BTreeMap::new();
                let mut log_bytes = 0u64;
                for (i, (key, value)) in db.changes.iter().enumerate() {
                    let seq = u64::try_from(i).unwrap() + 1;
                    let change_key = [&db.id.to_be_bytes()[..], &seq.to_be_bytes()].concat();
                    let op = if value.is_some() { 1 } else { 2 };
                    let record = change_record(op, 1_000 + seq, key, value.as_deref());
                    match value {
                        Some(value) => current.insert(key, (seq, value.clone())),
                        None => current.remove(key),
                    };
                    if seq > db.trimmed {
                        log_bytes += u64::try_from(change_key.len() + record.len()).unwrap();
                        changes.put(wtxn, &change_key, &record)?;
                    }
                }
                let mut doc_bytes = 0u64;
                let mut stored_docs: BTreeMap<Vec<u8>, Vec<u8>> = current
                    .iter()
                    .map(|(key, (rev, value))| {
                        (key.to_vec(), [&rev.to_be_bytes()[..], value].concat())
                    })
                    .collect();
                for (key, stored) in &db.raw_docs {
                    stored_docs.insert(key.to_vec(), stored.clone());
                }
                for (key, stored) in &stored_docs {
                    let doc_key = [&db.id.to_be_bytes()[..], key].concat();
                    doc_bytes += u64::try_from(doc_key.len() + stored.len()).unwrap();
                    docs.put(wtxn, &doc_key, stored)?;
                }
                let last_seq = u64::try_from(db.changes.len()).unwrap();
                let counts = [
                    u64::try_from(stored_docs.len()).unwrap(),
                    doc_bytes,
                    log_bytes,
                ];
                catalog.put(
                    wtxn,
                    db.name,
                    &catalog_record(db.id, last_seq, db.trimmed, counts, db.retain_changes),
                )?;
                let config = Config {
                    offline: db.offline,
                    indexes: db
                        .indexes
                        .iter()
                        .map(|(name, field, unique)| IndexDef {
                            name,
                            field,
                            unique: *unique,
                        })
                        .collect(),
                    indexes_stale: false,
                };
                configs.put(wtxn, db.name, &rmp_serde::to_vec_named(&config).unwrap())?;
            }
            for (name, admin, hash, grants) in &spec.users {
                users.put(wtxn, name, &user_record(*admin, hash, grants))?;
            }
            let (token_hash, user) = spec.session;
            let mut session = vec![1];
            session.extend_from_slice(&1u64.to_be_bytes());
            session.extend_from_slice(&u64::MAX.to_be_bytes());
            session.push(u8::try_from(user.len()).unwrap());
            session.extend_from_slice(user.as_bytes());
            sessions.put(wtxn, &token_hash, &session)?;
            let job = Job {
                id: 1,
                kind: "BACKUP",
                status: "COMPLETED",
                progress_current: 10,
                progress_total: 10,
                progress_message: "done",
                error_message: None,
                error_details: None,
                result_location: Some("/backups/b1"),
                started_by: "root",
                started_on_ms: 7,
                finished_on_ms: Some(9),
                total_time_ms: Some(2),
                params: BTreeMap::from([("name", "b1")]),
                stats: BTreeMap::new(),
            };
            jobs.put(
                wtxn,
                &1u64.to_be_bytes(),
                &rmp_serde::to_vec_named(&job).unwrap(),
            )?;
            Ok(heed::CommitOrAbort::<_, ()>::Commit(()))
        })
        .unwrap();
        env.prepare_for_closing().wait();
        std::fs::write(dir.join("cairn.toml"), "[limits]\nmax_connections = 77\n").unwrap();
        std::fs::create_dir_all(dir.join("certs/cas")).unwrap();
        std::fs::write(dir.join("certs/cas/acme.crt"), "not really a certificate\n").unwrap();
    }
}

/// msgpack of a small map `{"n": n, "tag": tag}`.
fn doc(n: u8, tag: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0xa1, b'n', n & 0x7f, 0xa3, b't', b'a', b'g'];
    out.push(0xa0 | u8::try_from(tag.len()).unwrap());
    out.extend_from_slice(tag.as_bytes());
    out
}

fn spec<'a>(keys: &'a [Vec<u8>]) -> format1::Dir<'a> {
    let mut notes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let n = u8::try_from(i % 100).unwrap();
        notes.push((key.as_slice(), Some(doc(n, "a"))));
        if i % 7 == 0 {
            notes.push((key.as_slice(), Some(doc(n, "b"))));
        }
        if i % 11 == 0 {
            notes.push((key.as_slice(), None));
        }
    }
    let people: Vec<(&[u8], Option<Vec<u8>>)> = vec![
        (b"ann", Some(doc(1, "x"))),
        (b"bob", Some(doc(2, "y"))),
        (b"cy", Some(doc(3, "x"))),
        (b"bob", Some(doc(2, "z"))),
    ];
    let trimmed: Vec<(&[u8], Option<Vec<u8>>)> =
        (0..20).map(|i| (&b"t"[..], Some(doc(i, "t")))).collect();
    format1::Dir {
        service_id: [0xab; 16],
        epoch: 4242,
        dbs: vec![
            format1::Db {
                name: "people",
                id: 3,
                offline: false,
                indexes: vec![("by_n", "/n", true), ("by_tag", "/tag", false)],
                retain_changes: 0,
                changes: people,
                trimmed: 0,
                raw_docs: Vec::new(),
            },
            format1::Db {
                name: "notes",
                id: 1,
                offline: false,
                indexes: Vec::new(),
                retain_changes: 0,
                changes: notes,
                trimmed: 0,
                raw_docs: Vec::new(),
            },
            format1::Db {
                name: "trimmed",
                id: 2,
                offline: true,
                indexes: Vec::new(),
                retain_changes: 5,
                changes: trimmed,
                trimmed: 15,
                raw_docs: Vec::new(),
            },
        ],
        users: vec![
            (
                "root",
                true,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$cm9vdA",
                vec![],
            ),
            (
                "alice",
                false,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$YWxpY2U",
                vec![("notes", 1), ("people", 2)],
            ),
        ],
        session: ([9; 32], "alice"),
        status_mode: "READ_ONLY",
    }
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("note-{i:05}").into_bytes())
        .collect()
}

/// Every file's bytes under `dir`.
fn snapshot_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn migrate(src: &Path, dest: &Path, options: &MigrateOptions) -> migrate::MigrationSummary {
    migrate::migrate(src, dest, options, &mut |_| {}).unwrap()
}

#[test]
fn everything_moves_and_the_source_is_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    let (src, dest) = (scratch.path().join("old"), scratch.path().join("new"));
    let keys = keys(300);
    format1::write(&src, &spec(&keys));
    let before = snapshot_files(&src);
    assert_eq!(migrate::directory_format(&src).unwrap(), 1);

    let summary = migrate(&src, &dest, &MigrateOptions::default());
    assert_eq!(
        snapshot_files(&src),
        before,
        "the source is unchanged, byte for byte"
    );
    assert_eq!(summary.source_service_id, "ab".repeat(16));
    assert_ne!(summary.dest_service_id, summary.source_service_id);
    assert_eq!((summary.source_format, summary.format), (1, FORMAT_VERSION));
    assert_eq!(summary.refused(), 0);
    assert_eq!(summary.files, 2, "cairn.toml and the certificate");
    assert_eq!(
        std::fs::read_to_string(dest.join("cairn.toml")).unwrap(),
        "[limits]\nmax_connections = 77\n"
    );

    let store = Store::open(&dest, StoreOptions::default()).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.epoch().unwrap(), 4242, "the epoch moves");
    let names: Vec<String> = store
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["notes", "people", "trimmed"]);

    // Documents with their revs, and change logs with their seqs, times and values.
    let notes = store.scan("notes", &Scan::all(10_000)).unwrap();
    let expected_notes = keys.len() - keys.len().div_ceil(11);
    assert_eq!(notes.docs.len(), expected_notes);
    let info = store.database_info("notes").unwrap();
    assert_eq!(info.doc_count, u64::try_from(expected_notes).unwrap());
    let log = store.changes("notes", 0, 100_000).unwrap();
    assert_eq!(u64::try_from(log.len()).unwrap(), info.last_seq);
    assert_eq!(
        (log[0].seq, log[0].time_ms, log[0].op),
        (1, 1001, ChangeOp::Put)
    );
    assert_eq!(log[0].value.as_deref(), Some(&doc(0, "a")[..]));
    for doc in &notes.docs {
        let change = &log[usize::try_from(doc.rev - 1).unwrap()];
        assert_eq!(
            (change.key.as_str(), change.value.as_deref()),
            (doc.key.as_str(), Some(&doc.value[..]))
        );
    }
    // Retention's trimming stays: the log starts after `trimmed_through`.
    let trimmed = store.database_info("trimmed").unwrap();
    assert_eq!(
        (trimmed.oldest_seq, trimmed.last_seq, trimmed.offline),
        (16, 20, true)
    );
    assert!(matches!(
        store.changes("trimmed", 3, 10),
        Err(StoreError::ChangesCompacted { oldest: 16, .. })
    ));
    // Indexes are built in format 2's layout and answer.
    let found = store
        .find(
            "people",
            &IndexQuery::exact("by_tag", IndexKey::Text("x".into()), 10),
        )
        .unwrap();
    let keys_found: Vec<&str> = found.docs.iter().map(|(_, d)| d.key.as_str()).collect();
    assert_eq!(keys_found, ["ann", "cy"]);
    // Users keep their password hashes and grants; sessions, jobs and the status move.
    let alice = snapshot.user("alice").unwrap().unwrap();
    assert_eq!(
        alice.password_hash.as_deref(),
        Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$YWxpY2U")
    );
    assert_eq!(alice.grants.len(), 2);
    assert_eq!(snapshot.session(&[9; 32]).unwrap().unwrap().user, "alice");
    assert_eq!(
        snapshot.jobs().unwrap()[0].result_location.as_deref(),
        Some("/backups/b1")
    );
    assert_eq!(snapshot.status().unwrap().current_message, "moving house");
    // Where the source's logs stood, for a follower.
    let offsets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("migration/offsets.json")).unwrap())
            .unwrap();
    assert_eq!(offsets["source_service_id"], "ab".repeat(16));
    assert_eq!(offsets["source_epoch"], 4242);
    assert_eq!(offsets["databases"]["trimmed"], 20);
    drop(snapshot);
    drop(store);

    // The counts agree; migrating again is refused, the store serves writes as usual.
    let counts = migrate::counts(&src, &dest).unwrap();
    assert!(counts
        .iter()
        .all(|c| c.dest.is_some_and(|d| d.documents == c.source.documents
            && d.changes == c.source.changes
            && d.last_seq == c.source.last_seq)));
    let again = migrate::migrate(&src, &dest, &MigrateOptions::default(), &mut |_| {}).unwrap_err();
    assert!(again.to_string().contains("finished migration"), "{again}");
    let store = Store::open(&dest, StoreOptions::default()).unwrap();
    assert_eq!(store.put("people", "dee", &doc(9, "x"), None).unwrap(), 5);
}

#[test]
fn damaged_documents_are_refused_and_dumped_and_the_rest_moves() {
    let scratch = tempfile::tempdir().unwrap();
    let (src, dest) = (scratch.path().join("old"), scratch.path().join("new"));
    let keys = keys(20);
    let mut dir = spec(&keys);
    let people = &mut dir.dbs[0];
    // A value that is not msgpack, a key that is not UTF-8, a rev beyond the log, and a
    // second holder of a unique value.
    people.raw_docs = vec![
        (b"broken", [&3u64.to_be_bytes()[..], &[0xc1]].concat()),
        (
            b"\xff\xfe",
            [&3u64.to_be_bytes()[..], &doc(7, "q")].concat(),
        ),
        (b"future", [&99u64.to_be_bytes()[..], &doc(8, "q")].concat()),
        (b"twin", [&2u64.to_be_bytes()[..], &doc(1, "q")].concat()),
    ];
    format1::write(&src, &dir);
    let dump = scratch.path().join("errors.jsonl");
    let options = MigrateOptions {
        dump_errors: Some(dump.clone()),
        ..MigrateOptions::default()
    };
    let summary = migrate(&src, &dest, &options);
    let people = summary
        .databases
        .iter()
        .find(|d| d.name == "people")
        .unwrap();
    assert_eq!((people.refused, people.documents), (4, 3));
    let reason = |key: &str| {
        let found = people.refusals.iter().find(|r| r.key == key);
        found.map_or("", |r| r.error.as_str())
    };
    assert!(
        reason("broken").contains("msgpack"),
        "{:?}",
        people.refusals
    );
    assert!(
        reason("\u{fffd}\u{fffd}").contains("UTF-8"),
        "{:?}",
        people.refusals
    );
    assert!(reason("future").contains("rev 99"), "{:?}", people.refusals);
    assert!(
        reason("twin").contains("held by \"ann\""),
        "{:?}",
        people.refusals
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines
        .iter()
        .any(|l| l["key_hex"] == "fffe" && l["db"] == "people"));

    // With the checks off the bytes move as they are; the unique index waits for a
    // resync.
    let dest2 = scratch.path().join("new2");
    let summary = migrate(
        &src,
        &dest2,
        &MigrateOptions {
            safety_off: true,
            ..MigrateOptions::default()
        },
    );
    let people = summary
        .databases
        .iter()
        .find(|d| d.name == "people")
        .unwrap();
    assert_eq!(
        (people.refused, people.documents, people.indexes_stale),
        (0, 7, true)
    );
    assert!(summary.safety_off);
}

#[test]
fn an_interrupted_migration_finishes_as_an_uninterrupted_one_and_is_refused_meanwhile() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("old");
    let keys = keys(50);
    format1::write(&src, &spec(&keys));
    let whole = scratch.path().join("whole");
    migrate(&src, &whole, &MigrateOptions::default());

    let cut = scratch.path().join("cut");
    let interrupted = std::panic::catch_unwind(|| {
        let mut calls = 0;
        let _ = migrate::migrate(&src, &cut, &MigrateOptions::default(), &mut |_| {
            calls += 1;
            assert!(calls < 2, "killed after the first batch");
        });
    });
    assert!(interrupted.is_err());
    let refused = Store::open(&cut, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(refused, StoreError::MigrationUnfinished { .. }),
        "{refused}"
    );
    let without =
        migrate::migrate(&src, &cut, &MigrateOptions::default(), &mut |_| {}).unwrap_err();
    assert!(without.to_string().contains("add --from-last"), "{without}");
    let summary = migrate(
        &src,
        &cut,
        &MigrateOptions {
            from_last: true,
            ..MigrateOptions::default()
        },
    );
    assert!(summary.resumed);
    // The same logical content: every database's documents and log, and the users.
    let (a, b) = (
        Store::open(&whole, StoreOptions::default()).unwrap(),
        Store::open(&cut, StoreOptions::default()).unwrap(),
    );
    for db in ["notes", "people", "trimmed"] {
        assert_eq!(
            a.scan(db, &Scan::all(100_000)).unwrap(),
            b.scan(db, &Scan::all(100_000)).unwrap()
        );
        let since = a.database_info(db).unwrap().oldest_seq - 1;
        assert_eq!(
            a.changes(db, since, 100_000).unwrap(),
            b.changes(db, since, 100_000).unwrap()
        );
        assert_eq!(a.database_info(db).unwrap(), b.database_info(db).unwrap());
    }
    assert_eq!(
        a.snapshot().unwrap().users().unwrap(),
        b.snapshot().unwrap().users().unwrap()
    );
}

#[test]
fn refusals_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("old");
    format1::write(&src, &spec(&keys(3)));
    // A format-2 directory is refused as a source, and a format-1 one by the store.
    let current = scratch.path().join("current");
    drop(Store::create(&current, StoreOptions::default()).unwrap());
    let error = migrate::migrate(
        &current,
        &scratch.path().join("x"),
        &MigrateOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, StoreError::Migration { .. })
            && error.to_string().contains("is format 2 already"),
        "{error}"
    );
    let error = Store::open(&src, StoreOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("run cairn-migrate --src"),
        "{error}"
    );
    // A destination that holds something else, and a source in use.
    let busy = scratch.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let error = migrate::migrate(&src, &busy, &MigrateOptions::default(), &mut |_| {}).unwrap_err();
    assert!(
        error.to_string().contains("does not exist or is empty"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    let lock = cairn_store::DirLock::acquire(&src).unwrap();
    let error = migrate::migrate(
        &src,
        &scratch.path().join("y"),
        &MigrateOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, StoreError::DirectoryInUse { pid: Some(_), .. }),
        "{error}"
    );
    drop(lock);
    assert!(!scratch.path().join("y").exists());
}

#[test]
fn a_migration_killed_before_its_first_commit_is_never_taken_for_an_empty_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("old");
    format1::write(&src, &spec(&keys(3)));
    // What a migration killed right after its mark leaves: the mark, then (killed a
    // little later) an environment whose creation never committed.
    let dest = scratch.path().join("new");
    std::fs::create_dir_all(dest.join("migration")).unwrap();
    std::fs::write(
        dest.join(migrate::STARTED_FILE),
        format!("{}\n", src.display()),
    )
    .unwrap();
    for with_environment in [false, true] {
        if with_environment {
            std::fs::create_dir_all(dest.join("store")).unwrap();
            let mut options = heed::EnvOpenOptions::new().read_txn_without_tls();
            options.max_dbs(16);
            // SAFETY: a fresh environment that nothing else opens.
            let env = unsafe { options.open(dest.join("store")) }.unwrap();
            env.prepare_for_closing().wait();
        }
        let files = |dir: &Path| snapshot_files(dir).into_keys().collect::<Vec<_>>();
        let before = files(&dest);
        for refused in [
            Store::open_or_create(&dest, StoreOptions::default()).unwrap_err(),
            Store::create(&dest, StoreOptions::default()).unwrap_err(),
            Store::open(&dest, StoreOptions::default()).unwrap_err(),
        ] {
            assert!(
                matches!(&refused, StoreError::MigrationUnfinished { from, .. } if *from == src.display().to_string()),
                "{refused}"
            );
        }
        // (LMDB may write its first meta pages into the empty environment.)
        assert_eq!(files(&dest), before, "no store is created");
        let without =
            migrate::migrate(&src, &dest, &MigrateOptions::default(), &mut |_| {}).unwrap_err();
        assert!(
            without.to_string().contains(&format!(
                "unfinished migration from {}: add --from-last",
                src.display()
            )),
            "{without}"
        );
    }
    let summary = migrate(
        &src,
        &dest,
        &MigrateOptions {
            from_last: true,
            ..MigrateOptions::default()
        },
    );
    assert_eq!(summary.refused(), 0);
    let store = Store::open(&dest, StoreOptions::default()).unwrap();
    assert_eq!(store.list_databases().unwrap().len(), 3);
}
