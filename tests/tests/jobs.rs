//! End to end: backup and restore jobs of a real `cairn-service`, driven by the real
//! `cairn` CLI. A backup is listed and verified; a restore brings the data back to the
//! backup's and refuses old change-log cursors; jobs are listed, filtered, waited for and
//! canceled; a second backup while one runs is refused with the running job's id; a job
//! running when the service is killed is FAILED ("interrupted") after the next start.

use cairn_tests::cli::Endpoint;
use cairn_tests::process::{write_settings, ServiceProcess};
use serde_json::Value;

/// JSON lines of `count` documents of about 1 KiB each, for `cairn batch`.
fn batch_lines(prefix: &str, count: usize) -> String {
    let filler = "x".repeat(1000);
    (0..count)
        .map(|i| format!("{{\"op\":\"put\",\"key\":\"{prefix}{i:06}\",\"value\":{{\"n\":{i},\"f\":\"{filler}\"}}}}\n"))
        .collect()
}

/// Loads `batches` batches of 5000 documents into `db`.
fn load(cli: &Endpoint, db: &str, prefix: &str, batches: usize) {
    for b in 0..batches {
        cli.run_with_stdin(&["batch", db], &batch_lines(&format!("{prefix}{b}-"), 5000))
            .ok();
    }
}

fn job(cli: &Endpoint, id: u64) -> Value {
    cli.run(&["-o", "json", "jobs", "show", &id.to_string()])
        .ok()
        .json()
}

#[test]
fn backup_then_restore_brings_the_data_back_and_refuses_old_cursors() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(&scratch.path().join("data"), &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "kept", "\"before\""]).ok();
    load(&cli, "notes", "bulk", 2);

    let done = cli
        .run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["type"], "BACKUP");
    assert!(done["location"].as_str().unwrap().ends_with("b1"));
    let list = cli.run(&["-o", "json", "backup", "list"]).ok().json();
    assert_eq!(list[0]["name"], "b1");
    assert_eq!(list[0]["databases"], 1);
    assert!(service.dir.join("backups/b1/MANIFEST.json").exists());

    // After the backup: a change, a new document, and a reader's cursor.
    cli.run(&["put", "notes", "kept", "\"after\""]).ok();
    cli.run(&["put", "notes", "later", "1"]).ok();
    let page = cli
        .run(&["-o", "json", "changes", "notes", "--limit", "100000"])
        .ok()
        .json();
    let (cursor, epoch) = (
        page["last_seq"].as_u64().unwrap(),
        page["epoch"].as_u64().unwrap(),
    );

    let restored = cli
        .run(&["-o", "json", "restore", "start", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(restored["status"], "COMPLETED", "{restored}");
    assert_eq!(cli.value("notes", "kept"), Value::from("before"));
    cli.run(&["get", "notes", "later"]).fails(1, "not_found");
    let info = cli.run(&["-o", "json", "db", "info", "notes"]).ok().json();
    assert_eq!(info["doc_count"], 10_001);

    // The old cursor is refused with a distinct error, with or without its epoch.
    let since = cursor.to_string();
    cli.run(&[
        "changes",
        "notes",
        "--since",
        &since,
        "--epoch",
        &epoch.to_string(),
    ])
    .fails(1, "resync_required");
    cli.run(&["changes", "notes", "--since", &since])
        .fails(1, "resync_required");
    let fresh = cli
        .run(&[
            "-o", "json", "changes", "notes", "--since", "0", "--limit", "1",
        ])
        .ok()
        .json();
    assert_ne!(
        fresh["epoch"].as_u64().unwrap(),
        epoch,
        "a restore draws a new epoch"
    );

    // The job history survived the restore, and filters work.
    let backups = cli
        .run(&["-o", "json", "jobs", "list", "--type", "BACKUP"])
        .ok()
        .json();
    assert_eq!(backups.as_array().unwrap().len(), 1, "{backups}");
    let completed = cli
        .run(&["-o", "json", "jobs", "list", "--status", "COMPLETED"])
        .ok()
        .json();
    assert_eq!(completed.as_array().unwrap().len(), 2, "{completed}");
    cli.run(&["jobs", "list", "--status", "DONE"])
        .fails(1, "bad_request");

    // Restoring a backup that does not exist changes nothing.
    cli.run(&["restore", "start", "nope"]).fails(1, "not_found");
    cli.run(&["restore", "start", "../data"])
        .fails(1, "own backup location");
    assert_eq!(cli.value("notes", "kept"), Value::from("before"));

    cli.run(&["backup", "delete", "b1"]).ok();
    assert!(!service.dir.join("backups/b1").exists());
    let (status, _) = service.stop().unwrap();
    assert!(status.success());
}

#[test]
fn one_backup_at_a_time_cancel_and_interrupted_jobs() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "big"]).ok();
    load(&cli, "big", "doc", 8);

    // Two backups at once: the second is refused and names the first.
    let first = cli
        .run(&["-o", "json", "backup", "start", "--name", "one"])
        .ok()
        .json();
    let first_id = first["id"].as_u64().unwrap();
    // (40 MB take a few hundred ms to copy and verify: the first is still running.)
    let second = cli
        .run(&["backup", "start", "--name", "two"])
        .fails(1, "conflict");
    assert!(
        second.stderr.contains(&format!("\"job\":{first_id}")),
        "{}",
        second.stderr
    );
    let waited = cli
        .run(&["-o", "json", "jobs", "wait", &first_id.to_string()])
        .ok()
        .json();
    assert_eq!(waited["status"], "COMPLETED");

    // Cancel: the job ends CANCELED and leaves nothing behind.
    let third = cli
        .run(&["-o", "json", "backup", "start", "--name", "three"])
        .ok()
        .json();
    let third_id = third["id"].as_u64().unwrap().to_string();
    cli.run(&["jobs", "cancel", &third_id]).ok();
    let ended = cli.run(&["-o", "json", "jobs", "wait", &third_id]);
    let ended_job: Value = serde_json::from_str(ended.stdout.trim()).unwrap();
    assert_eq!(ended_job["status"], "CANCELED", "{ended_job}");
    assert_eq!(ended.code, 1, "jobs wait exits 1 unless the job completed");
    assert!(!dir.join("backups/three").exists());
    assert!(!dir.join("backups/three.partial").exists());
    cli.run(&["jobs", "cancel", &first_id.to_string()])
        .fails(1, "conflict");

    // A job running when the service is killed is failed as interrupted at the next start.
    let fourth = cli
        .run(&["-o", "json", "backup", "start", "--name", "four"])
        .ok()
        .json();
    let fourth_id = fourth["id"].as_u64().unwrap();
    drop(service); // SIGKILL
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    let after = job(&cli, fourth_id);
    assert_eq!(after["status"], "FAILED", "{after}");
    assert!(after["error"]["message"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert!(
        !dir.join("backups/four.partial").exists(),
        "the next start cleans up"
    );
    service.stop().unwrap();
}

#[test]
fn non_admins_see_down_during_a_restore_and_the_service_comes_back() {
    use cairn_tests::raw::{field, map, RawConnection};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(&scratch.path().join("data"), &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "big"]).ok();
    load(&cli, "big", "doc", 8);
    cli.run_with_stdin(&["user", "add", "reader", "--password-stdin"], "pw\n")
        .ok();
    cli.run(&["user", "grant", "reader", "big", "read"]).ok();
    cli.run(&["backup", "start", "--name", "b1", "--wait"]).ok();

    let mut reader = RawConnection::tls(&service.tls_address, &service.dir.join("certs")).unwrap();
    reader
        .call(
            "login",
            map(&[("user", "reader".into()), ("password", "pw".into())]),
        )
        .unwrap();
    let seen = Arc::new(Mutex::new((0usize, 0usize, 0usize))); // (ok, unavailable, status DOWN)
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let get = map(&[("db", "big".into()), ("key", "doc0-000000".into())]);
            while !stop.load(Ordering::Relaxed) {
                let answer = reader.call("get", get.clone());
                let status = reader.call("status", rmpv::Value::Nil).unwrap();
                let mut seen = seen.lock().unwrap();
                match answer {
                    Ok(_) => seen.0 += 1,
                    Err(e)
                        if e.to_string()
                            .contains("unavailable (503): restore in progress") =>
                    {
                        seen.1 += 1
                    }
                    Err(e) => panic!("unexpected answer during a restore: {e}"),
                }
                if field(&status, "status").and_then(|s| s.as_str()) == Some("DOWN") {
                    seen.2 += 1;
                }
                drop(seen);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // After the restore the same connection is served again.
            reader.call("get", get).unwrap();
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let restored = cli
        .run(&["-o", "json", "restore", "start", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(restored["status"], "COMPLETED");
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let (ok, unavailable, down) = *seen.lock().unwrap();
    assert!(ok > 0, "reads worked before and after");
    assert!(
        unavailable > 0,
        "a non-admin read during the restore got 503"
    );
    assert!(down > 0, "status said DOWN during the restore");
    let status = cli.run(&["-o", "json", "status"]).ok().json();
    assert_eq!(status["status"], "READ_WRITE");
    service.stop().unwrap();
}

#[test]
fn scheduled_backups_keep_the_newest_two() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(&dir, "[backup]\nschedule = \"*/2 * * * * *\"\nkeep = 2\n");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "k", "1"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let done = cli
            .run(&[
                "-o",
                "json",
                "jobs",
                "list",
                "--type",
                "BACKUP",
                "--status",
                "COMPLETED",
            ])
            .ok()
            .json();
        let done = done.as_array().unwrap();
        if done.len() >= 3 {
            assert!(done.iter().all(|j| j["started_by"] == "scheduler"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three scheduled backups within 40 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // Each completed scheduled job pruned before it completed: two are left.
    let list = cli.run(&["-o", "json", "backup", "list"]).ok().json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "keep = 2 leaves two scheduled backups: {names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("scheduled-")));
    assert!(names[0] > names[1], "the newest first: {names:?}");
    service.stop().unwrap();
}

#[test]
fn a_backup_job_on_a_full_file_system_fails_clearly_and_the_service_serves_on() {
    cairn_tests::tmpfs::with_tmpfs("4m", |small| {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        write_settings(
            &dir,
            &format!("[backup]\ndir = {:?}\n", small.display().to_string()),
        );
        let service = ServiceProcess::start(&dir, &[]).unwrap();
        let cli = Endpoint::unix(&service);
        cli.run(&["db", "create", "big"]).ok();
        load(&cli, "big", "doc", 2);

        let failed = cli.run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"]);
        assert_eq!(failed.code, 1, "{}", failed.stderr);
        let job: Value = serde_json::from_str(failed.stdout.trim()).unwrap();
        assert_eq!(job["status"], "FAILED");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("bytes") && message.contains("available"),
            "{message}"
        );
        assert_eq!(
            std::fs::read_dir(small).unwrap().count(),
            0,
            "nothing left behind"
        );
        cli.run(&["put", "big", "after", "1"]).ok();
        assert_eq!(cli.value("big", "after"), Value::from(1));
        service.stop().unwrap();
    });
}

#[test]
fn a_restore_from_a_damaged_backup_fails_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(&scratch.path().join("data"), &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "k", "\"in the backup\""]).ok();
    cli.run(&["backup", "start", "--name", "b1", "--wait"]).ok();
    cli.run(&["put", "notes", "k", "\"after the backup\""]).ok();

    // One flipped byte in the backup's environment.
    let env = service.dir.join("backups/b1/store/data.mdb");
    let mut bytes = std::fs::read(&env).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&env, bytes).unwrap();

    let failed = cli.run(&["-o", "json", "restore", "start", "b1", "--wait"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let job: Value = serde_json::from_str(failed.stdout.trim()).unwrap();
    assert_eq!(job["status"], "FAILED", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("data.mdb"),
        "the error names the damaged file: {message}"
    );
    assert_eq!(cli.value("notes", "k"), Value::from("after the backup"));
    let status = cli.run(&["-o", "json", "status"]).ok().json();
    assert_eq!(status["status"], "READ_WRITE");
    service.stop().unwrap();
}
