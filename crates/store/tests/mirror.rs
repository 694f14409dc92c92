//! The journal on real environments: a leader store makes every kind of write (documents,
//! batches, databases created, configured, resynced and dropped, retention, users,
//! sessions, jobs, status, a new epoch), and a mirror made from a copy of its directory
//! applies the leader's journal entries through `Write::MirrorApply`. Every table of the
//! two environments then holds the same bytes. Entries that do not continue the
//! mirror's journal change nothing; a mirror takes no other write, a leader no entries;
//! the journal keeps its retention; positions are checked against the leader's history.

use std::path::Path;

use cairn_store::journal::{JournalPosition, Lineage, TableId};
use cairn_store::{
    IndexDef, JobKind, JobRecord, JournalEntry, Op, Retention, ServiceMode, ServiceStatus,
    SessionRecord, Store, StoreError, StoreOptions, UserRecord, Write, Written,
};

/// msgpack of a short string.
fn text(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut out = vec![0xa0 | u8::try_from(s.len()).expect("shorter than 32")];
    out.extend_from_slice(s.as_bytes());
    out
}

/// msgpack of `{"n": n}` (n < 128).
fn with_n(n: u8) -> Vec<u8> {
    assert!(n < 128);
    vec![0x81, 0xa1, b'n', n]
}

/// A leader in `leader_dir` and a mirror in `mirror_dir` made from a copy of it.
fn leader_and_mirror(
    leader_dir: &Path,
    mirror_dir: &Path,
    options: StoreOptions,
) -> (Store, Store) {
    drop(Store::create(leader_dir, options.clone()).unwrap());
    std::fs::create_dir_all(mirror_dir.join("store")).unwrap();
    std::fs::copy(
        leader_dir.join("store/data.mdb"),
        mirror_dir.join("store/data.mdb"),
    )
    .unwrap();
    let leader = Store::open(leader_dir, options.clone()).unwrap();
    let mirror = Store::open(mirror_dir, options).unwrap();
    mirror.set_mirror(true);
    (leader, mirror)
}

/// Sends the mirror every entry of the leader after its position, a few at a time.
fn catch_up(leader: &Store, mirror: &Store) -> u64 {
    loop {
        let position = mirror.snapshot().unwrap().journal_position().unwrap();
        let entries = leader
            .snapshot()
            .unwrap()
            .journal_entries(position.seq, 3, 1 << 20)
            .unwrap();
        if entries.is_empty() {
            return position.seq;
        }
        match mirror.write(Write::MirrorApply { entries }).unwrap() {
            Written::MirrorApplied { head, .. } => assert!(head > position.seq),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

fn digests(store: &Store) -> Vec<(TableId, u64, String)> {
    let snapshot = store.snapshot().unwrap();
    TableId::ALL
        .iter()
        .map(|&table| {
            let (entries, digest) = snapshot.table_digest(table).unwrap();
            (table, entries, digest)
        })
        .collect()
}

fn user(admin: bool) -> UserRecord {
    UserRecord {
        admin,
        locked: false,
        created_ms: 1,
        password_hash: Some("hash".to_string()),
        grants: Default::default(),
    }
}

/// Every kind of write a service makes.
fn write_everything(leader: &Store) {
    leader.create_database("alpha").unwrap();
    leader
        .create_database_with(
            "trimmed",
            Retention {
                max_changes: Some(5),
                max_age_secs: None,
            },
        )
        .unwrap();
    for i in 0..20u8 {
        leader
            .put("alpha", &format!("k{i:02}"), &with_n(i % 4), None)
            .unwrap();
        leader.put("trimmed", "same", &with_n(i), None).unwrap();
    }
    leader.delete("alpha", "k03", None).unwrap();
    leader
        .batch(
            "alpha",
            vec![
                Op::Put {
                    key: "b1".to_string(),
                    value: text("one"),
                    rev: None,
                },
                Op::Delete {
                    key: "k04".to_string(),
                    rev: None,
                },
            ],
        )
        .unwrap();
    // Indexes: configured offline, rebuilt by a resync, kept by later writes.
    leader.set_offline("alpha", true).unwrap();
    leader
        .set_database_config(
            "alpha",
            vec![IndexDef {
                name: "by_n".to_string(),
                field: "/n".to_string(),
                unique: false,
            }],
            Retention::default(),
        )
        .unwrap();
    leader.resync_chunk("alpha", None, 1000).unwrap();
    leader.resync_finish("alpha", 0).unwrap();
    leader.set_offline("alpha", false).unwrap();
    leader.put("alpha", "k05", &with_n(9), None).unwrap();
    // A database created and dropped.
    leader.create_database("gone").unwrap();
    leader.put("gone", "x", &text("x"), None).unwrap();
    leader.drop_database("gone").unwrap();
    // The service's own tables.
    leader
        .write(Write::SaveUser {
            name: "alice".to_string(),
            record: user(false),
            create: true,
        })
        .unwrap();
    leader
        .write(Write::SaveUser {
            name: "bob".to_string(),
            record: user(true),
            create: true,
        })
        .unwrap();
    leader
        .write(Write::DeleteUser {
            name: "bob".to_string(),
        })
        .unwrap();
    leader
        .write(Write::SaveSession {
            token_hash: [7; 32],
            record: SessionRecord {
                user: "alice".to_string(),
                created_ms: 1,
                expires_ms: u64::MAX,
            },
        })
        .unwrap();
    let Written::JobCreated(id) = leader
        .write(Write::CreateJob {
            record: JobRecord::queued(JobKind::Backup, "root", 5),
        })
        .unwrap()
    else {
        panic!("no job id")
    };
    leader
        .write(Write::FailInterruptedJobs { now_ms: 6 })
        .unwrap();
    assert_eq!(id, 1);
    leader
        .write(Write::SetStatus {
            status: ServiceStatus {
                mode: ServiceMode::ReadOnly,
                current_message: "maintenance".to_string(),
                pending_maintenance_message: String::new(),
                set_by: "root".to_string(),
                set_ms: 7,
            },
        })
        .unwrap();
    leader.write(Write::NewEpoch).unwrap();
    leader.trim_changes().unwrap();
}

#[test]
fn a_mirror_applying_the_journal_holds_the_same_bytes_in_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (leader, mirror) = leader_and_mirror(
        &tmp.path().join("leader"),
        &tmp.path().join("mirror"),
        StoreOptions::default(),
    );
    write_everything(&leader);
    let head = catch_up(&leader, &mirror);
    assert_eq!(
        head,
        leader.snapshot().unwrap().journal_position().unwrap().seq
    );
    assert!(head > 40, "every write made an entry: {head}");
    assert_eq!(digests(&leader), digests(&mirror));
    // What the mirror serves is what the leader serves.
    assert_eq!(
        mirror.database_info("alpha").unwrap(),
        leader.database_info("alpha").unwrap()
    );
    assert!(mirror.database_info("gone").is_err());
    let snapshot = mirror.snapshot().unwrap();
    assert!(snapshot.user("alice").unwrap().is_some());
    assert!(snapshot.user("bob").unwrap().is_none());
    assert_eq!(snapshot.status().unwrap().mode, ServiceMode::ReadOnly);
    assert_eq!(
        snapshot.epoch().unwrap(),
        leader.snapshot().unwrap().epoch().unwrap()
    );
    // The leader's later writes follow on.
    leader.put("alpha", "later", &text("later"), None).unwrap();
    catch_up(&leader, &mirror);
    assert_eq!(digests(&leader), digests(&mirror));
}

#[test]
fn a_mirror_takes_entries_only_and_a_leader_takes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (leader, mirror) = leader_and_mirror(
        &tmp.path().join("leader"),
        &tmp.path().join("mirror"),
        StoreOptions::default(),
    );
    leader.create_database("db").unwrap();
    assert!(matches!(
        mirror.create_database("db"),
        Err(StoreError::MirrorReadOnly)
    ));
    let entries = leader
        .snapshot()
        .unwrap()
        .journal_entries(0, 10, 1 << 20)
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(matches!(
        leader.write(Write::MirrorApply {
            entries: entries.clone()
        }),
        Err(StoreError::NotAMirror)
    ));
    // A gap, a damaged entry: refused, nothing written.
    leader.put("db", "a", &text("a"), None).unwrap();
    let second = leader
        .snapshot()
        .unwrap()
        .journal_entries(1, 10, 1 << 20)
        .unwrap();
    let before = digests(&mirror);
    assert!(matches!(
        mirror.write(Write::MirrorApply {
            entries: second.clone()
        }),
        Err(StoreError::JournalGap {
            expected: 1,
            got: 2
        })
    ));
    let mut damaged = entries[0].clone();
    *damaged.value.last_mut().unwrap() ^= 0x40;
    assert!(matches!(
        mirror.write(Write::MirrorApply {
            entries: vec![damaged]
        }),
        Err(StoreError::Corrupt { .. })
    ));
    let moved = JournalEntry {
        seq: 1,
        value: second[0].value.clone(),
    };
    assert!(mirror
        .write(Write::MirrorApply {
            entries: vec![moved]
        })
        .is_err());
    assert_eq!(before, digests(&mirror));
    // Promoted, the mirror writes (and journals) for itself.
    catch_up(&leader, &mirror);
    mirror.set_mirror(false);
    mirror.put("db", "b", &text("b"), None).unwrap();
    assert_eq!(
        mirror.snapshot().unwrap().journal_position().unwrap().seq,
        3
    );
}

#[test]
fn positions_are_checked_against_the_history_and_the_journal_keeps_its_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        journal_retain_bytes: 4096,
        ..StoreOptions::default()
    };
    let (leader, mirror) = leader_and_mirror(
        &tmp.path().join("leader"),
        &tmp.path().join("mirror"),
        options,
    );
    leader.create_database("db").unwrap();
    let start = JournalPosition {
        seq: 0,
        fingerprint: None,
    };
    assert_eq!(
        leader.snapshot().unwrap().journal_lineage(&start).unwrap(),
        Lineage::Continues
    );
    catch_up(&leader, &mirror);
    let position = mirror.snapshot().unwrap().journal_position().unwrap();
    assert_eq!(
        leader
            .snapshot()
            .unwrap()
            .journal_lineage(&position)
            .unwrap(),
        Lineage::Continues
    );
    // Past the head, or another entry at the same seq: diverged.
    let ahead = JournalPosition {
        seq: position.seq + 5,
        ..position
    };
    assert!(matches!(
        leader.snapshot().unwrap().journal_lineage(&ahead).unwrap(),
        Lineage::Diverged { .. }
    ));
    let other = JournalPosition {
        fingerprint: position.fingerprint.map(|(crc, epoch)| (crc ^ 1, epoch)),
        ..position
    };
    assert!(matches!(
        leader.snapshot().unwrap().journal_lineage(&other).unwrap(),
        Lineage::Diverged { .. }
    ));
    // Writes beyond the retention: the oldest entries go, the newest stays.
    for i in 0..200 {
        leader
            .put("db", &format!("key{i}"), &text("some value here"), None)
            .unwrap();
    }
    let snapshot = leader.snapshot().unwrap();
    let first = snapshot.journal_first().unwrap();
    let head = snapshot.journal_position().unwrap().seq;
    assert!(first > 1, "the oldest entries were trimmed");
    let kept = snapshot.journal_entries(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(kept.first().unwrap().seq, first);
    assert_eq!(kept.last().unwrap().seq, head);
    let bytes: usize = kept.iter().map(|e| e.value.len()).sum();
    assert!((4096 - 1024..=4096).contains(&bytes), "{bytes} bytes kept");
    assert!(matches!(
        snapshot.journal_lineage(&position).unwrap(),
        Lineage::Compacted { first: f } if f == first
    ));
    assert!(matches!(
        snapshot.journal_lineage(&start).unwrap(),
        Lineage::Compacted { .. }
    ));
}
