//! `cairn-backup` as a process, on real directories: a backup taken while writer
//! threads of another process keep writing is consistent; a SIGKILL part way leaves no
//! DST and a rerun succeeds; a flipped byte makes `--verify` fail naming the file;
//! restores refuse what they must and otherwise swap atomically; a full file system is
//! refused with the bytes needed and available; usage errors exit 2.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_store::backup::read_manifest;
use cairn_store::{ChangeOp, DirLock, Op, Scan, Store, StoreOptions};
use cairn_tests::tmpfs::with_tmpfs;
use serde_json::Value;

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-backup"));
    command.stdin(Stdio::null());
    command
}

/// Runs `cairn-backup` with `args` to completion.
fn run(args: &[&Path]) -> Output {
    command().args(args).output().expect("running cairn-backup")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts exit status `code` and returns stdout and stderr.
fn fails(output: Output, code: i32) -> (String, String) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {} stderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    (text(&output.stdout), text(&output.stderr))
}

/// msgpack bin32 of `len` bytes of `fill`.
fn blob(len: usize, fill: u8) -> Vec<u8> {
    let mut value = vec![0xc6];
    value.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    value.extend(std::iter::repeat_n(fill, len));
    value
}

/// A working directory with a store of `mib` MiB of 1 MiB documents in database
/// `big`, a few small ones in `small`, and a `cairn.toml`.
fn source(root: &Path, mib: usize) -> (PathBuf, Store) {
    let dir = root.join("data");
    let store = Store::create(&dir, StoreOptions::default()).unwrap();
    store.create_database("big").unwrap();
    store.create_database("small").unwrap();
    for chunk in 0..mib.div_ceil(10) {
        let ops = (0..10.min(mib - chunk * 10))
            .map(|i| Op::Put {
                key: format!("doc-{chunk}-{i}"),
                value: blob(1 << 20, u8::try_from(i).unwrap()),
                rev: None,
            })
            .collect();
        store.batch("big", ops).unwrap();
    }
    for i in 0..20u8 {
        store
            .put("small", &format!("k{i}"), &blob(100, i), None)
            .unwrap();
    }
    fs::write(dir.join("cairn.toml"), "# settings\n").unwrap();
    (dir, store)
}

/// Every file under `dir` with its contents, leaving out `service.lock` (taking the
/// directory's lock creates it) and LMDB's `store/lock.mdb`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel != "service.lock" && rel != "store/lock.mdb" {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every database of the backup `dir`: its documents equal its change log replayed up
/// to the last seq of the manifest.
fn assert_consistent(dir: &Path) {
    let manifest = read_manifest(dir).unwrap();
    let store = Store::open_read_only(dir, StoreOptions::default()).unwrap();
    for entry in &manifest.databases {
        let mut model = BTreeMap::new();
        let mut seq = 0;
        loop {
            let changes = store.changes(&entry.name, seq, 10_000).unwrap();
            if changes.is_empty() {
                break;
            }
            for change in changes {
                assert_eq!(change.seq, seq + 1);
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
    }
}

#[test]
fn a_backup_beside_live_writers_is_consistent_and_verifies() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = source(scratch.path(), 20);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u8)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{t}-{}", i % 30);
                    if i % 5 == 4 {
                        let _ = store.delete("small", &key, None);
                    } else {
                        store
                            .put(
                                "small",
                                &key,
                                &blob(5000, u8::try_from(i % 256).unwrap()),
                                None,
                            )
                            .unwrap();
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let seq_before = store.database_info("small").unwrap().last_seq;
    let dst = scratch.path().join("backup");
    let started = Instant::now();
    let stdout = ok(command()
        .arg(&dir)
        .arg(&dst)
        .args(["-o", "json"])
        .output()
        .unwrap());
    let took = started.elapsed();
    let seq_after = store.database_info("small").unwrap().last_seq;
    stop.store(true, Ordering::SeqCst);
    let writes: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(writes > 0);
    eprintln!("backup of 20 MiB beside {writes} writes in {took:?}");

    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["operation"], "backup");
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["files"], 2);
    assert_eq!(summary["databases"], 2);
    assert!(summary["bytes"].as_u64().unwrap() > 20 << 20);
    assert!(summary["seconds"].as_f64().is_some());
    assert_consistent(&dst);
    let manifest = read_manifest(&dst).unwrap();
    let seq = manifest.databases[1].last_seq;
    assert!(
        seq_before <= seq && seq <= seq_after && seq_before < seq_after,
        "copied at seq {seq}, between {seq_before} and {seq_after}"
    );
    assert!(manifest.tool.starts_with("cairn-backup "));
    assert_eq!(manifest.service_id, store.meta().service_id);

    let stdout = ok(run(&[Path::new("--verify"), &dst]));
    assert!(stdout.contains("verifies: 2 files"), "{stdout}");
    let stdout = ok(command()
        .arg("--verify")
        .arg(&dst)
        .args(["-o", "json"])
        .output()
        .unwrap());
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["problems"], Value::Array(vec![]));

    // A second backup to the same place is refused and changes nothing.
    let before = files(&dst);
    let (_, stderr) = fails(run(&[&dir, &dst]), 1);
    assert!(
        stderr.contains("already exists: name a new directory"),
        "{stderr}"
    );
    assert_eq!(files(&dst), before);
}

#[test]
fn a_killed_backup_leaves_no_target_and_a_rerun_succeeds() {
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (dir, store) = source(scratch.path(), 200);
    drop(store);
    eprintln!("200 MiB source written in {:?}", started.elapsed());
    let dst = scratch.path().join("backup");
    let partial_copy = scratch.path().join("backup.partial/store/data.mdb");

    let mut child = command()
        .arg(&dir)
        .arg(&dst)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(&partial_copy).map_or(0, |m| m.len()) < 16 << 20 {
        assert!(Instant::now() < deadline, "the copy never started");
        assert!(child.try_wait().unwrap().is_none(), "finished too soon");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: kill(2) on the pid of our own live child.
    unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGKILL) };
    child.wait().unwrap();
    assert!(!dst.exists(), "no DST after a kill part way");

    let started = Instant::now();
    ok(run(&[&dir, &dst]));
    eprintln!("rerun: 200 MiB backup in {:?}", started.elapsed());
    assert!(!scratch.path().join("backup.partial").exists());
    let started = Instant::now();
    ok(run(&[Path::new("--verify"), &dst]));
    eprintln!("verified in {:?}", started.elapsed());
    assert_consistent(&dst);
}

/// Flips one bit of the byte in the middle of `path`.
fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_fails_verify_naming_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = source(scratch.path(), 2);
    let dst = scratch.path().join("backup");
    ok(run(&[&dir, &dst]));
    drop(store);
    for file in ["store/data.mdb", "cairn.toml", "MANIFEST.json"] {
        flip_byte(&dst.join(file));
        let (stdout, stderr) = fails(run(&[Path::new("--verify"), &dst]), 1);
        assert!(stdout.contains(&format!("  {file}: ")), "{file}: {stdout}");
        assert!(
            stderr.contains("does not verify") && stderr.contains("make a new backup"),
            "{stderr}"
        );
        let output = command()
            .arg("--verify")
            .arg(&dst)
            .args(["-o", "json"])
            .output()
            .unwrap();
        let (stdout, _) = fails(output, 1);
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["verified"], false);
        assert_eq!(report["problems"][0]["subject"], file);
        flip_byte(&dst.join(file));
    }
    ok(run(&[Path::new("--verify"), &dst]));
}

/// A database's last seq and its documents (key, rev, value).
type Contents = (u64, Vec<(String, u64, Vec<u8>)>);

/// Every database of the store in `dir` with its last seq and documents.
fn contents(dir: &Path) -> BTreeMap<String, Contents> {
    let store = Store::open_read_only(dir, StoreOptions::default()).unwrap();
    store
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|info| {
            let docs = store.scan(&info.name, &Scan::all(100_000)).unwrap().docs;
            let docs = docs.into_iter().map(|d| (d.key, d.rev, d.value)).collect();
            (info.name, (info.last_seq, docs))
        })
        .collect()
}

#[test]
fn restores_refuse_bad_backups_and_held_directories_and_otherwise_swap() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, store) = source(scratch.path(), 2);
    let backup = scratch.path().join("backup");
    ok(run(&[&dir, &backup]));
    store
        .put("small", "after-backup", &blob(1, 1), None)
        .unwrap();
    drop(store);
    let restore = |backup: &Path, extra: &[&str]| {
        command()
            .arg("--restore")
            .arg(backup)
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let before = files(&dir);

    let (_, stderr) = fails(restore(&scratch.path().join("missing"), &[]), 1);
    assert!(stderr.contains("there is no backup at"), "{stderr}");
    flip_byte(&backup.join("store/data.mdb"));
    let (_, stderr) = fails(restore(&backup, &[]), 1);
    assert!(
        stderr.contains("does not verify") && stderr.contains("store/data.mdb"),
        "{stderr}"
    );
    flip_byte(&backup.join("store/data.mdb"));
    let lock = DirLock::acquire(&dir).unwrap();
    let (_, stderr) = fails(restore(&backup, &[]), 1);
    assert!(
        stderr.contains(&format!("in use by pid {}", std::process::id()))
            && stderr.contains("stop the service"),
        "{stderr}"
    );
    drop(lock);
    assert_eq!(files(&dir), before, "refused restores change nothing");
    assert_eq!(names_in(scratch.path()), ["backup", "data"]);

    let stdout = ok(restore(&backup, &["-o", "json"]));
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["operation"], "restore");
    assert_eq!(summary["verified"], true);
    let replaced = PathBuf::from(summary["replaced"].as_str().unwrap());
    assert!(replaced.is_dir());
    assert!(replaced
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("data.replaced-"));
    assert_eq!(
        files(&replaced),
        before,
        "the replaced directory is kept whole"
    );
    let mut expected = files(&backup);
    expected.remove("MANIFEST.json");
    // The environment gets a new change-log epoch: compare its contents instead.
    expected.remove("store/data.mdb");
    let without_env = |dir: &Path| {
        let mut found = files(dir);
        found.remove("store/data.mdb");
        found
    };
    assert_eq!(without_env(&dir), expected);
    assert_eq!(
        contents(&dir),
        contents(&backup),
        "the restored data is the backup's"
    );

    let stdout = ok(restore(&backup, &["--discard-replaced"]));
    assert!(stdout.contains("nothing was kept"), "{stdout}");
    assert_eq!(without_env(&dir), expected);
    assert_eq!(contents(&dir), contents(&backup));
    let names = names_in(scratch.path());
    assert_eq!(
        names.len(),
        3,
        "one replaced directory, kept once: {names:?}"
    );
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(store.get("small", "after-backup").unwrap().is_none());
    assert_eq!(store.database_info("big").unwrap().doc_count, 2);
}

#[test]
fn a_full_target_is_refused_with_bytes_needed_and_available() {
    with_tmpfs("4m", |small| {
        let scratch = tempfile::tempdir().unwrap();
        let (dir, store) = source(scratch.path(), 10);
        drop(store);
        let before = files(&dir);
        let dst = small.join("backup");
        let (_, stderr) = fails(run(&[&dir, &dst]), 1);
        assert!(
            stderr.contains("storage full: the backup needs")
                && stderr.contains("are available there")
                && stderr.contains("free some space"),
            "{stderr}"
        );
        assert!(names_in(small).is_empty(), "no DST, no DST.partial");
        assert_eq!(files(&dir), before, "the source is untouched");
    });
}

#[test]
fn usage_errors_exit_2_and_help_shows_examples() {
    let help = ok(command().arg("--help").output().unwrap());
    assert!(
        help.contains("Examples:") && help.contains("--restore"),
        "{help}"
    );
    for args in [
        &["only-one"][..],
        &["a", "b", "c"],
        &["--verify", "a", "b"],
        &["--restore", "a"],
        &["a", "b", "--discard-replaced"],
        &["--bogus"],
    ] {
        let output = command().args(args).output().unwrap();
        fails(output, 2);
    }
}
