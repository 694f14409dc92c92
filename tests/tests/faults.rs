//! End to end, with faults injected by libfiu into real processes: when the disk fails a
//! commit (its `fdatasync`, or the `pwrite` of its pages, answers EIO), the write is not
//! acknowledged, the service turns READ_ONLY with the reason `io_error` naming the errno
//! (reads and admins go on), leaves it once a probe write reaches the disk, and after a
//! kill -9 and a restart holds every acknowledged write and none of the failed ones. A
//! backup job, or `cairn-backup`, on a failing disk fails and leaves nothing under its
//! name; a certificate is never half-written.

use std::time::{Duration, Instant};

use cairn_tests::cli::Endpoint;
use cairn_tests::fiu::{run_with_fault, FaultyService};
use cairn_tests::process::{write_settings, ServiceProcess};

const EIO: i32 = 5;

fn status(root: &Endpoint) -> serde_json::Value {
    root.run(&["-o", "json", "status"]).ok().json()
}

#[test]
fn a_failing_disk_turns_the_service_read_only_until_a_probe_write_succeeds() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(
        &dir,
        "[status]\nfree_space_check_secs = 1\nmin_free_bytes = 0\nmin_free_percent = 0\n",
    );
    let faulty = FaultyService::start(&dir, scratch.path(), &["--auth-passwd", "pw"]).unwrap();
    let root = Endpoint::unix(&faulty.service);
    root.run(&["db", "create", "notes"]).ok();
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "apw\n")
        .ok();
    root.run(&["user", "grant", "alice", "notes", "write"]).ok();
    // Alice logs in once: her later calls use the token (a login writes a session).
    let login = Endpoint::tls(&faulty.service, "alice:apw")
        .run(&["-o", "json", "login"])
        .ok()
        .json();
    let token = login["token"].as_str().unwrap().to_string();
    let alice = Endpoint::tls(&faulty.service, "alice").token(&token);
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for (round, point) in ["posix/io/sync/fdatasync", "posix/io/rw/pwrite"]
        .into_iter()
        .enumerate()
    {
        let key = format!("before-{round}");
        alice.run(&["put", "notes", &key, "1"]).ok();
        acknowledged.push(key);

        faulty.fail(point, EIO).unwrap();
        let key = format!("during-{round}");
        alice
            .run(&["put", "notes", &key, "2"])
            .fails(1, "io_error (503)");
        failed.push(key);
        let now = status(&root);
        assert_eq!(now["status"], "READ_ONLY", "{now}");
        let reason = &now["reasons"][0];
        assert_eq!(reason["code"], "io_error");
        assert!(
            reason["message"].as_str().unwrap().contains("os error 5"),
            "{reason}"
        );
        // Reads go on; non-admin writes are refused as read-only, not attempted.
        assert_eq!(alice.value("notes", "before-0"), serde_json::json!(1));
        alice
            .run(&["put", "notes", "refused", "3"])
            .fails(1, "read_only (503)");
        // Still failing: the probes fail too, and it stays READ_ONLY.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(status(&root)["status"], "READ_ONLY");

        faulty.heal(point).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = status(&root);
            if now["status"] == "READ_WRITE" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: a probe write did not clear io_error: {now}\n{}",
                faulty.service.stderr_so_far().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let key = format!("after-{round}");
        alice.run(&["put", "notes", &key, "4"]).ok();
        acknowledged.push(key);
    }

    // kill -9, then a restart without faults: every acknowledged write, no failed one.
    faulty.service.kill().unwrap();
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    for key in &acknowledged {
        root.run(&["get", "notes", key]).ok();
    }
    for key in failed.iter().chain(&["refused".to_string()]) {
        root.run(&["get", "notes", key]).fails(1, "not_found");
    }
    let (_, log) = service.stop().unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_backup_job_on_a_failing_disk_fails_and_leaves_nothing_under_its_name() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let faulty = FaultyService::start(&dir, scratch.path(), &[]).unwrap();
    let root = Endpoint::unix(&faulty.service);
    root.run(&["db", "create", "notes"]).ok();
    for i in 0..20 {
        root.run(&["put", "notes", &format!("k{i}"), "1"]).ok();
    }
    // The backup fsyncs its files (the store's commits use fdatasync): only it fails.
    faulty.fail("posix/io/sync/fsync", EIO).unwrap();
    let run = root.run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"]);
    let job: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout, run.stderr));
    assert_eq!(job["status"], "FAILED", "{job}");
    let error = job["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("os error 5"), "{job}");
    assert!(
        !dir.join("backups").join("b1").exists(),
        "a failed backup left b1"
    );
    // The job's disk failed, not the service: it stays READ_WRITE and keeps writing.
    assert_eq!(status(&root)["status"], "READ_WRITE");
    root.run(&["put", "notes", "after", "2"]).ok();

    faulty.heal("posix/io/sync/fsync").unwrap();
    let done = root
        .run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert!(dir
        .join("backups")
        .join("b1")
        .join("MANIFEST.json")
        .exists());
    faulty.service.stop().unwrap();
}

#[test]
fn certificates_are_never_half_written_when_the_disk_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let certs = scratch.path().join("certs");
    let easycert = cairn_tests::process::binary("cairn-easycert", "cairn-easycert").unwrap();
    let ca = |fault: Option<&str>| {
        let args = [
            "--certdir".as_ref(),
            certs.as_os_str(),
            "--ca".as_ref(),
            "acme".as_ref(),
        ];
        run_with_fault(&easycert, &args, fault, EIO).unwrap()
    };
    // The key and the certificate are written to temporary files, fsynced, then linked
    // into place: a failing fsync leaves nothing under their names.
    let failed = ca(Some("posix/io/sync/fsync"));
    assert!(
        !failed.status.success(),
        "easycert succeeded on a failing disk"
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("os error 5"), "{stderr}");
    let cas = certs.join("cas");
    let left: Vec<String> = std::fs::read_dir(&cas)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter().all(|name| !name.contains("acme")),
        "a failed CA left {left:?}"
    );
    // On a healthy disk the same command makes the CA.
    let made = ca(None);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(cas.join("acme.crt").exists() && cas.join("acme.key").exists());
}

#[test]
fn cairn_backup_on_a_failing_disk_fails_and_leaves_nothing_under_its_name() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "notes"]).ok();
    root.run(&["put", "notes", "k", "1"]).ok();
    let backup = cairn_tests::process::binary("cairn-backup", "cairn-backup").unwrap();
    let target = scratch.path().join("b1");
    let run = |fault: Option<&str>| {
        run_with_fault(&backup, &[dir.as_os_str(), target.as_os_str()], fault, EIO).unwrap()
    };
    // A live backup of a running service whose own fsyncs fail: refused with the
    // errno, and nothing under the target's name.
    let failed = run(Some("posix/io/sync/fsync"));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "cairn-backup succeeded: {stderr}");
    assert!(stderr.contains("os error 5"), "{stderr}");
    assert!(
        !target.exists(),
        "a failed backup left {}",
        target.display()
    );
    let made = run(None);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(target.join("MANIFEST.json").exists());
    service.stop().unwrap();
}
