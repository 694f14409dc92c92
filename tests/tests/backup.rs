//! `cairn-backup` beside a real `cairn-service`: a backup taken while clients keep
//! writing through the service is consistent (every document agrees with its change log
//! up to the seq the manifest records), and `cairn-service BACKUP` starts on the backup
//! and serves its data.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_store::backup::read_manifest;
use cairn_store::{ChangeOp, Scan, Store, StoreOptions};
use cairn_tests::process::{binary, ServiceProcess};
use cairn_tests::raw::{field, map, RawConnection};
use rmpv::Value;

fn put(connection: &mut RawConnection, db: &str, key: &str, value: Value) {
    let args = map(&[("db", db.into()), ("key", key.into()), ("value", value)]);
    connection.call("put", args).unwrap();
}

/// Every document of every database of the backup `dir` equals its change log replayed
/// from seq 1 up to the manifest's last seq.
fn assert_consistent(dir: &Path) -> BTreeMap<String, u64> {
    let manifest = read_manifest(dir).unwrap();
    let store = Store::open_read_only(dir, StoreOptions::default()).unwrap();
    let mut last_seqs = BTreeMap::new();
    for entry in &manifest.databases {
        let mut model = BTreeMap::new();
        let mut seq = 0;
        loop {
            let changes = store.changes(&entry.name, seq, 10_000).unwrap();
            if changes.is_empty() {
                break;
            }
            for change in changes {
                assert_eq!(change.seq, seq + 1, "no gap");
                seq = change.seq;
                match change.op {
                    ChangeOp::Put => model.insert(change.key, (seq, change.value.unwrap())),
                    ChangeOp::Delete => model.remove(&change.key),
                };
            }
        }
        assert_eq!(seq, entry.last_seq, "database {}", entry.name);
        let docs: BTreeMap<String, (u64, Vec<u8>)> = store
            .scan(&entry.name, &Scan::all(100_000))
            .unwrap()
            .docs
            .into_iter()
            .map(|d| (d.key, (d.rev, d.value)))
            .collect();
        assert_eq!(docs, model, "database {}", entry.name);
        last_seqs.insert(entry.name.clone(), entry.last_seq);
    }
    last_seqs
}

#[test]
fn a_live_backup_is_consistent_and_a_service_starts_on_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    root.call("db.create", map(&[("name", "live".into())]))
        .unwrap();
    put(&mut root, "live", "fixed", "kept".into());

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (socket, stop) = (service.socket(), stop.clone());
            std::thread::spawn(move || {
                let mut connection = RawConnection::unix(&socket).unwrap();
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let value = Value::Binary(vec![u8::try_from(i % 256).unwrap(); 2000]);
                    put(&mut connection, "live", &format!("w{t}-{}", i % 50), value);
                    i += 1;
                }
                i
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let backup = scratch.path().join("backup");
    let output = Command::new(binary("cairn-backup", "cairn-backup").unwrap())
        .arg(&dir)
        .arg(&backup)
        .output()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let writes: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info = root
        .call("db.info", map(&[("name", "live".into())]))
        .unwrap();
    let final_seq = field(&info, "last_seq").and_then(Value::as_u64).unwrap();
    service.stop().unwrap();

    let last_seqs = assert_consistent(&backup);
    let at_backup = last_seqs["live"];
    assert!(
        1 < at_backup && at_backup < final_seq,
        "the copy caught the writers mid-way: {at_backup} of {final_seq} ({writes} writes)"
    );
    let verify = Command::new(binary("cairn-backup", "cairn-backup").unwrap())
        .arg("--verify")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(verify.status.success());

    // A backup is a working directory.
    let service = ServiceProcess::start(&backup, &[]).unwrap();
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    let doc = root
        .call(
            "get",
            map(&[("db", "live".into()), ("key", "fixed".into())]),
        )
        .unwrap();
    assert_eq!(field(&doc, "value"), Some(&Value::from("kept")));
    let info = root
        .call("db.info", map(&[("name", "live".into())]))
        .unwrap();
    assert_eq!(
        field(&info, "last_seq").and_then(Value::as_u64),
        Some(at_backup)
    );
    service.stop().unwrap();
}
