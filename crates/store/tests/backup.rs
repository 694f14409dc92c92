//! Backups, verification and restores through the public `cairn_store::backup` API, on
//! real directories: what a backup holds and skips, consistency under concurrent
//! writers, every kind of damage `verify_backup` must name, cancels that leave nothing,
//! restores that swap atomically or change nothing, and the read-only open that the
//! offline tool copies from.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cairn_store::backup::{
    create_backup, read_manifest, restore_backup, stage_restore, swap_in, verify_backup,
    BackupControl, Checksum, Manifest, Problem, MANIFEST_FILE,
};
use cairn_store::{ChangeOp, DirLock, Op, Scan, Store, StoreError, StoreOptions};

/// msgpack bin of `len` bytes of `fill`.
fn blob(len: usize, fill: u8) -> Vec<u8> {
    let mut value = vec![0xc6];
    value.extend_from_slice(
        &u32::try_from(len)
            .expect("test blobs are small")
            .to_be_bytes(),
    );
    value.extend(std::iter::repeat_n(fill, len));
    value
}

fn control() -> BackupControl {
    BackupControl::new("cairn-store-tests 0")
}

/// A working directory with a store holding two databases, a config, certificates
/// (one private key, mode 0600) and the runtime entries a backup must skip.
fn working_dir(root: &Path) -> (PathBuf, Store) {
    let dir = root.join("data");
    let store = Store::create(&dir, StoreOptions::default()).unwrap();
    store.create_database("alpha").unwrap();
    store.create_database("beta").unwrap();
    for i in 0..50u8 {
        store
            .put("alpha", &format!("k{i:02}"), &blob(3000, i), None)
            .unwrap();
    }
    store.delete("alpha", "k07", None).unwrap();
    store.put("beta", "only", &blob(10, 1), None).unwrap();
    fs::write(dir.join("cairn.toml"), "listen = []\n").unwrap();
    fs::create_dir_all(dir.join("certs/hosts")).unwrap();
    fs::write(dir.join("certs/hosts/localhost.crt"), "cert").unwrap();
    fs::write(dir.join("certs/hosts/localhost.key"), "secret").unwrap();
    fs::set_permissions(
        dir.join("certs/hosts/localhost.key"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::create_dir_all(dir.join("backups/older")).unwrap();
    fs::write(dir.join("backups/older/x"), "an older backup").unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::write(dir.join("tmp/scratch"), "scratch").unwrap();
    fs::write(dir.join("sock"), "").unwrap();
    fs::write(dir.join("service.lock"), "").unwrap();
    (dir, store)
}

/// Every file under `dir` (relative path and contents), leaving out `service.lock`,
/// which taking the directory's lock creates.
fn snapshot_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                if rel != "service.lock" {
                    out.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every document of every database of the backup agrees with its change log replayed
/// from seq 1 up to the last seq the manifest records.
fn assert_consistent(dir: &Path, manifest: &Manifest) {
    let store = Store::open_read_only(dir, StoreOptions::default()).unwrap();
    for entry in &manifest.databases {
        let info = store.database_info(&entry.name).unwrap();
        assert_eq!(
            (info.last_seq, info.doc_count),
            (entry.last_seq, entry.doc_count)
        );
        let mut model: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        let mut seq = 0;
        loop {
            let changes = store.changes(&entry.name, seq, 10_000).unwrap();
            if changes.is_empty() {
                break;
            }
            for change in changes {
                assert_eq!(change.seq, seq + 1, "no gap in the log");
                seq = change.seq;
                match change.op {
                    ChangeOp::Put => {
                        model.insert(change.key, (change.seq, change.value.unwrap()));
                    }
                    ChangeOp::Delete => {
                        model.remove(&change.key);
                    }
                }
            }
        }
        assert_eq!(seq, entry.last_seq, "the log ends at the manifest's seq");
        let docs = store.scan(&entry.name, &Scan::all(100_000)).unwrap().docs;
        let found: BTreeMap<String, (u64, Vec<u8>)> = docs
            .into_iter()
            .map(|d| (d.key, (d.rev, d.value)))
            .collect();
        assert_eq!(found, model, "documents of {} = replayed log", entry.name);
    }
}

#[test]
fn a_backup_holds_the_store_and_files_and_skips_runtime_entries() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    let dst = scratch.path().join("backup-1");
    let reports = Arc::new(AtomicU64::new(0));
    let counted = reports.clone();
    let control = control().with_progress(move |p| {
        assert!(p.bytes_done <= p.bytes_total, "{p:?}");
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let summary = create_backup(&store, &dir, &dst, &control).unwrap();
    assert!(
        reports.load(Ordering::SeqCst) >= 3,
        "a report per step at least"
    );
    assert!(summary.verified);
    assert_eq!(summary.path, dst);
    assert!(!scratch.path().join("backup-1.partial").exists());

    let manifest = read_manifest(&dst).unwrap();
    assert_eq!(manifest, summary.manifest);
    assert_eq!(manifest.service_id, store.meta().service_id);
    assert_eq!(manifest.format_version, cairn_store::FORMAT_VERSION);
    assert_eq!(manifest.tool, "cairn-store-tests 0");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "cairn.toml",
            "certs/hosts/localhost.crt",
            "certs/hosts/localhost.key",
            "store/data.mdb"
        ]
    );
    let names: Vec<(&str, u64, u64)> = manifest
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d.last_seq, d.doc_count))
        .collect();
    assert_eq!(names, [("alpha", 51, 49), ("beta", 1, 1)]);
    for skipped in ["backups", "tmp", "sock", "service.lock", "store/lock.mdb"] {
        assert!(!dst.join(skipped).exists(), "{skipped} is not copied");
    }
    let key_mode = fs::metadata(dst.join("certs/hosts/localhost.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "a private key stays private");
    assert_eq!(summary.bytes, manifest.bytes());
    // Compacted: never larger than the live environment.
    assert!(
        manifest.file("store/data.mdb").unwrap().size
            <= fs::metadata(dir.join("store/data.mdb")).unwrap().len()
    );

    let report = verify_backup(&dst).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.files, report.databases), (4, 2));
    assert_consistent(&dst, &manifest);
    drop(store);
    // A backup is a working directory: the store opens on it.
    let copy = Store::open(&dst, StoreOptions::default()).unwrap();
    assert_eq!(
        copy.get("alpha", "k03").unwrap().unwrap().value,
        blob(3000, 3)
    );
}

#[test]
fn an_existing_target_is_refused_and_a_leftover_partial_is_replaced() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    let dst = scratch.path().join("b");
    fs::create_dir(&dst).unwrap();
    let error = create_backup(&store, &dir, &dst, &control()).unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    fs::remove_dir(&dst).unwrap();

    // What a killed run leaves behind.
    let partial = scratch.path().join("b.partial");
    fs::create_dir_all(partial.join("store")).unwrap();
    fs::write(partial.join("store/data.mdb"), b"half a copy").unwrap();
    create_backup(&store, &dir, &dst, &control()).unwrap();
    assert!(!partial.exists());
    assert!(verify_backup(&dst).unwrap().is_ok());

    let missing_parent = scratch.path().join("no/such/parent/b");
    let error = create_backup(&store, &dir, &missing_parent, &control()).unwrap_err();
    assert!(error.to_string().contains("create it first"), "{error}");
}

#[test]
fn a_backup_under_concurrent_writers_is_consistent() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let store = Store::create(&dir, StoreOptions::default()).unwrap();
    for db in ["one", "two", "three"] {
        store.create_database(db).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4usize)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let db = ["one", "two", "three"][t % 3];
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("t{t}-{}", i % 40);
                    let value = blob(2000 + i % 500, i.to_le_bytes()[0]);
                    match i % 7 {
                        3 => {
                            let _ = store.delete(db, &key, None);
                        }
                        5 => {
                            let ops = (0..5)
                                .map(|j| Op::Put {
                                    key: format!("{key}-{j}"),
                                    value: value.clone(),
                                    rev: None,
                                })
                                .collect();
                            store.batch(db, ops).unwrap();
                        }
                        _ => {
                            store.put(db, &key, &value, None).unwrap();
                        }
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut manifests = Vec::new();
    for n in 0..3 {
        let dst = scratch.path().join(format!("backup-{n}"));
        let summary = create_backup(&store, &dir, &dst, &control()).unwrap();
        manifests.push((dst, summary.manifest));
    }
    stop.store(true, Ordering::SeqCst);
    let writes: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(writes > 0);
    let mut seqs = Vec::new();
    for (dst, manifest) in &manifests {
        assert_consistent(dst, manifest);
        seqs.push(manifest.databases.iter().map(|d| d.last_seq).sum::<u64>());
    }
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    assert!(seqs[2] > 0, "the writers wrote during the backups");
}

/// Flips one bit of the byte at the middle of `path`.
fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn fresh_backup(scratch: &Path) -> PathBuf {
    let (dir, store) = working_dir(scratch);
    let dst = scratch.join("backup");
    create_backup(&store, &dir, &dst, &control()).unwrap();
    dst
}

fn problems(dir: &Path) -> Vec<Problem> {
    verify_backup(dir).unwrap().problems
}

/// Rewrites the backup `dst`'s manifest as the version-1 manifest the release before
/// BLAKE3 wrote: SHA-256 of every file under `sha256`, no `checksum` field, and its own
/// SHA-256 under `manifest_sha256`.
fn rewrite_as_version_1(dst: &Path) {
    use sha2::{Digest, Sha256};
    let text = fs::read_to_string(dst.join(MANIFEST_FILE)).unwrap();
    let mut manifest: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap();
    let placeholder = "0".repeat(64);
    let mut v1 = serde_json::Map::new();
    for (field, value) in manifest.iter_mut() {
        match field.as_str() {
            "manifest_version" => {
                v1.insert(field.clone(), 1.into());
            }
            "checksum" => {}
            "manifest_checksum" => {
                v1.insert("manifest_sha256".into(), placeholder.clone().into());
            }
            "files" => {
                for file in value.as_array_mut().unwrap() {
                    let file = file.as_object_mut().unwrap();
                    let path = file["path"].as_str().unwrap().to_string();
                    let digest = hex::encode(Sha256::digest(fs::read(dst.join(path)).unwrap()));
                    let mode = file.remove("mode").unwrap();
                    file.remove("checksum");
                    file.insert("sha256".into(), digest.into());
                    file.insert("mode".into(), mode);
                }
                v1.insert(field.clone(), value.clone());
            }
            _ => {
                v1.insert(field.clone(), value.clone());
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&v1).unwrap();
    bytes.push(b'\n');
    let digest = hex::encode(Sha256::digest(&bytes));
    let sealed = String::from_utf8(bytes)
        .unwrap()
        .replace(&placeholder, &digest);
    fs::write(dst.join(MANIFEST_FILE), sealed).unwrap();
}

#[test]
fn a_version_1_backup_with_sha256_still_verifies_and_restores() {
    let scratch = tempfile::tempdir().unwrap();
    let dst = fresh_backup(scratch.path());
    rewrite_as_version_1(&dst);
    let manifest = read_manifest(&dst).unwrap();
    assert_eq!(
        (manifest.manifest_version, manifest.checksum),
        (1, Checksum::Sha256)
    );
    assert!(problems(&dst).is_empty());

    flip_byte(&dst.join("cairn.toml"));
    assert_eq!(
        problems(&dst)
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>(),
        ["cairn.toml: its SHA-256 does not match the manifest: the file was changed"]
    );
    flip_byte(&dst.join("cairn.toml"));

    let restored = scratch.path().join("restored");
    restore_backup(&dst, &restored, true).unwrap();
    let store = Store::open(&restored, StoreOptions::default()).unwrap();
    assert_eq!(
        store.get("beta", "only").unwrap().unwrap().value,
        blob(10, 1)
    );
}

#[test]
fn verify_names_each_damaged_missing_or_extra_file() {
    let scratch = tempfile::tempdir().unwrap();
    let dst = fresh_backup(scratch.path());

    flip_byte(&dst.join("store/data.mdb"));
    let found = problems(&dst);
    assert_eq!(
        found,
        [Problem::ChecksumMismatch {
            path: "store/data.mdb".to_string(),
            checksum: Checksum::Blake3,
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "store/data.mdb: its BLAKE3 does not match the manifest: the file was changed"
    );
    flip_byte(&dst.join("store/data.mdb"));
    assert!(problems(&dst).is_empty(), "flipped back");

    fs::write(dst.join("certs/hosts/localhost.crt"), "other").unwrap();
    assert_eq!(
        problems(&dst),
        [Problem::SizeMismatch {
            path: "certs/hosts/localhost.crt".to_string(),
            expected: 4,
            found: 5
        }]
    );
    fs::write(dst.join("certs/hosts/localhost.crt"), "cent").unwrap();
    assert_eq!(problems(&dst)[0].subject(), "certs/hosts/localhost.crt");
    fs::remove_file(dst.join("certs/hosts/localhost.crt")).unwrap();
    assert_eq!(
        problems(&dst),
        [Problem::MissingFile {
            path: "certs/hosts/localhost.crt".to_string()
        }]
    );
    fs::write(dst.join("certs/hosts/localhost.crt"), "cert").unwrap();

    fs::write(dst.join("certs/stray.pem"), "stray").unwrap();
    assert_eq!(
        problems(&dst),
        [Problem::ExtraFile {
            path: "certs/stray.pem".to_string()
        }]
    );
    fs::remove_file(dst.join("certs/stray.pem")).unwrap();
    // What a service started on the backup adds is not an extra file.
    fs::create_dir_all(dst.join("tmp")).unwrap();
    fs::write(dst.join("tmp/x"), "x").unwrap();
    assert!(problems(&dst).is_empty());

    flip_byte(&dst.join(MANIFEST_FILE));
    let found = problems(&dst);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject(), MANIFEST_FILE);
}

#[test]
fn verify_refuses_what_is_not_a_backup_or_is_in_use() {
    let scratch = tempfile::tempdir().unwrap();
    let error = verify_backup(&scratch.path().join("none")).unwrap_err();
    assert!(error.to_string().contains("no backup at"), "{error}");
    let error = verify_backup(scratch.path()).unwrap_err();
    assert!(error.to_string().contains("not a cairn backup"), "{error}");

    let dst = fresh_backup(scratch.path());
    let lock = DirLock::acquire(&dst).unwrap();
    assert!(matches!(
        verify_backup(&dst),
        Err(StoreError::DirectoryInUse { .. })
    ));
    drop(lock);
    assert!(verify_backup(&dst).unwrap().is_ok());
}

#[test]
fn a_canceled_backup_leaves_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    for step in [
        "copying the environment",
        "copying files",
        "checking databases",
    ] {
        let dst = scratch.path().join("canceled");
        let control = control();
        let cancel = control.cancel.clone();
        let control = control.with_progress(move |p| {
            if p.message == step {
                cancel.store(true, Ordering::SeqCst);
            }
        });
        let error = create_backup(&store, &dir, &dst, &control).unwrap_err();
        assert!(matches!(error, StoreError::Canceled), "{step}: {error:?}");
        assert!(!dst.exists() && !scratch.path().join("canceled.partial").exists());
    }
    // The store is untouched and a next backup works.
    let dst = scratch.path().join("after");
    create_backup(&store, &dir, &dst, &control()).unwrap();
}

#[test]
fn a_restore_swaps_in_the_backup_and_keeps_or_discards_the_replaced_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    let backup = scratch.path().join("backup");
    create_backup(&store, &dir, &backup, &control()).unwrap();
    store
        .put("alpha", "after-backup", &blob(5, 5), None)
        .unwrap();
    drop(store);

    let summary = restore_backup(&backup, &dir, true).unwrap();
    let replaced = summary.replaced.clone().expect("kept");
    assert!(replaced
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("data.replaced-"));
    assert_eq!(summary.dir, dir.canonicalize().unwrap());
    assert_eq!(summary.files, 4);
    // The runtime entries came along; the data is the backup's.
    assert_eq!(
        fs::read(dir.join("backups/older/x")).unwrap(),
        b"an older backup"
    );
    assert!(dir.join("tmp/scratch").exists() && dir.join("sock").exists());
    assert!(!dir.join(MANIFEST_FILE).exists());
    assert!(!scratch.path().join("data.restoring").exists());
    {
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        let copy = Store::open_read_only(&backup, StoreOptions::default()).unwrap();
        let epoch = |store: &Store| store.snapshot().unwrap().epoch().unwrap();
        assert_ne!(epoch(&store), epoch(&copy), "a restore begins a new epoch");
        let version = |store: &Store| store.snapshot().unwrap().version().unwrap();
        assert_ne!(
            version(&store),
            version(&copy),
            "and its state is another one"
        );
        assert!(store.get("alpha", "after-backup").unwrap().is_none());
        assert_eq!(store.database_info("alpha").unwrap().last_seq, 51);
        let old = Store::open(&replaced, StoreOptions::default()).unwrap();
        assert!(old.get("alpha", "after-backup").unwrap().is_some());
    }

    let summary = restore_backup(&backup, &dir, false).unwrap();
    assert_eq!(summary.replaced, None);
    let leftovers: Vec<_> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("data."))
        .collect();
    assert_eq!(leftovers.len(), 1, "only the first replaced: {leftovers:?}");

    // Into a directory that does not exist yet.
    let fresh = scratch.path().join("new/place");
    let summary = restore_backup(&backup, &fresh, true).unwrap();
    assert_eq!(summary.replaced, None);
    assert!(
        verify_backup(&backup).unwrap().is_ok(),
        "the backup is unchanged"
    );
    assert!(Store::open(&fresh, StoreOptions::default()).is_ok());
}

#[test]
fn a_bad_restore_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    let backup = scratch.path().join("backup");
    create_backup(&store, &dir, &backup, &control()).unwrap();
    drop(store);
    let before = snapshot_files(&dir);

    let missing = restore_backup(&scratch.path().join("missing"), &dir, true).unwrap_err();
    assert!(missing.to_string().contains("no backup at"), "{missing}");
    flip_byte(&backup.join("store/data.mdb"));
    let corrupt = restore_backup(&backup, &dir, true).unwrap_err();
    let message = corrupt.to_string();
    assert!(
        matches!(corrupt, StoreError::BackupInvalid { .. }) && message.contains("store/data.mdb"),
        "{message}"
    );
    flip_byte(&backup.join("store/data.mdb"));

    let lock = DirLock::acquire(&dir).unwrap();
    let in_use = restore_backup(&backup, &dir, true).unwrap_err();
    assert!(
        matches!(in_use, StoreError::DirectoryInUse { .. }),
        "{in_use:?}"
    );
    drop(lock);

    let not_a_store = scratch.path().join("home");
    fs::create_dir(&not_a_store).unwrap();
    fs::write(not_a_store.join("notes.txt"), "mine").unwrap();
    let refused = restore_backup(&backup, &not_a_store, false).unwrap_err();
    assert!(refused.to_string().contains("no cairn store"), "{refused}");
    assert!(not_a_store.join("notes.txt").exists());

    assert_eq!(snapshot_files(&dir), before);
    let names: Vec<_> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".restoring") || n.contains(".replaced")),
        "{names:?}"
    );
}

#[test]
fn stage_and_swap_are_the_two_halves_of_a_restore() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    let backup = scratch.path().join("backup");
    create_backup(&store, &dir, &backup, &control()).unwrap();
    let lock = DirLock::acquire(&dir).unwrap();
    // Staging works while the store is open: it does not touch the directory.
    let staged = stage_restore(&backup, &dir).unwrap();
    assert_eq!(staged, scratch.path().join("data.restoring"));
    assert!(dir.join("store/data.mdb").exists());
    drop(store);
    let replaced = swap_in(&staged, &dir, false).unwrap();
    assert_eq!(replaced, None);
    assert!(!staged.exists());
    // The lock file moved with the runtime entries: the lock is still held.
    assert!(matches!(
        DirLock::acquire(&dir),
        Err(StoreError::DirectoryInUse { .. })
    ));
    drop(lock);
    assert!(Store::open(&dir, StoreOptions::default()).is_ok());
}

#[test]
fn a_read_only_store_refuses_writes_and_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = working_dir(scratch.path());
    drop(store);
    let before = snapshot_files(&dir);
    let store = Store::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert_eq!(store.database_info("alpha").unwrap().doc_count, 49);
    let refused = store.put("alpha", "k", &blob(1, 1), None).unwrap_err();
    assert!(
        matches!(refused, StoreError::ReadOnly { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("read-only"), "{refused}");
    drop(store);
    let after = snapshot_files(&dir);
    let changed: Vec<_> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k) && k.as_str() != "store/lock.mdb")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");

    let empty = scratch.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(
        Store::open_read_only(&empty, StoreOptions::default()),
        Err(StoreError::NoStore { .. })
    ));
    assert!(!empty.join("store").exists());
}

#[test]
fn a_cancel_stops_a_big_copy_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let store = Store::create(&dir, StoreOptions::default()).unwrap();
    store.create_database("db").unwrap();
    let started = std::time::Instant::now();
    for batch in 0..10 {
        let ops = (0..10)
            .map(|i| Op::Put {
                key: format!("k{batch}-{i}"),
                value: blob(1 << 20, i),
                rev: None,
            })
            .collect();
        store.batch("db", ops).unwrap();
    }
    eprintln!("filled 200 MiB in {:?}", started.elapsed());

    let dst = scratch.path().join("backup");
    let started = std::time::Instant::now();
    let full = create_backup(&store, &dir, &dst, &control()).unwrap();
    eprintln!("backup of {} bytes in {:?}", full.bytes, started.elapsed());
    let started = std::time::Instant::now();
    assert!(verify_backup(&dst).unwrap().is_ok());
    eprintln!("verified in {:?}", started.elapsed());

    let dst = scratch.path().join("canceled");
    let control = control();
    let cancel = control.cancel.clone();
    let copy = scratch.path().join("canceled.partial/store/data.mdb");
    let canceler = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fs::metadata(&copy).map(|m| m.len()).unwrap_or(0) < 8 << 20 {
            assert!(std::time::Instant::now() < deadline, "the copy never began");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        cancel.store(true, Ordering::SeqCst);
        std::time::Instant::now()
    });
    let error = create_backup(&store, &dir, &dst, &control).unwrap_err();
    let canceled_at = canceler.join().unwrap();
    assert!(matches!(error, StoreError::Canceled), "{error:?}");
    let took = canceled_at.elapsed();
    eprintln!("stopped {took:?} after the cancel");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    assert!(!dst.exists() && !scratch.path().join("canceled.partial").exists());
}
