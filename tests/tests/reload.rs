//! End to end: reloading the settings of a running service (`cairn config reload` and
//! SIGHUP) with bad files (refused, nothing changes) and good ones (limits applied,
//! restart-only settings reported), and the automatic READ_ONLY for low free space
//! (a threshold above the file system's room) against the admin's own status, left
//! again after a reload lowers the threshold; with the real `cairn-service` and `cairn`.

use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_tests::cli::{Endpoint, Run};
use cairn_tests::process::{write_settings, ServiceProcess};
use serde_json::Value;

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since_epoch.as_millis()).unwrap()
}

/// How long a session of `user` logging in now lasts, in seconds (retried while the
/// connection of the previous command still holds the only slot).
fn session_ttl_secs(user: &Endpoint) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = now_ms();
        let run = user.run(&["-o", "json", "login"]);
        if run.stderr.contains("too_many_connections") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let login = run.ok().json();
        return (login["expires_ms"].as_u64().unwrap() - before) / 1000;
    }
}

/// Runs `check` until it returns true, for at most `limit`.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sighup(service: &ServiceProcess) {
    let pid = libc::pid_t::try_from(service.pid()).unwrap();
    // SAFETY: kill(2) on the pid of our own live child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
}

fn setting<'a>(changes: &'a Value, name: &str) -> Option<&'a Value> {
    changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["setting"] == name)
}

fn alice(service: &ServiceProcess, root: &Endpoint) -> Endpoint {
    root.run(&["db", "create", "notes"]).ok();
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "apw\n")
        .ok();
    root.run(&["user", "grant", "alice", "notes", "write"]).ok();
    Endpoint::tls(service, "alice:apw")
}

#[test]
fn a_bad_settings_file_is_refused_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let good = "[auth]\nsession_ttl_secs = 3600\n[status]\nmin_free_bytes = 0\n";
    write_settings(&dir, good);
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let alice = alice(&service, &root);
    let ttl = session_ttl_secs(&alice);
    assert!((3590..=3610).contains(&ttl), "{ttl}");

    for (text, needle) in [
        ("[auth\nsession_ttl_secs = 60\n", "cairn.toml"),
        ("[auth]\nsession_ttl_sec = 60\n", "session_ttl_sec"),
        (
            "[auth]\nsession_ttl_secs = \"soon\"\n",
            "line 2: invalid type",
        ),
        (
            "[auth]\nsession_ttl_secs = 60\n[limits]\nmax_connections = 0\n",
            "max_connections must be at least 1",
        ),
        (
            "[auth]\nsession_ttl_secs = 60\n[status]\nmin_free_percent = 150\n",
            "min_free_percent",
        ),
        (
            "[auth]\nsession_ttl_secs = 60\n[backup]\nschedule = \"every day\"\n",
            "not a cron schedule",
        ),
    ] {
        write_settings(&dir, text);
        let refused = root
            .run(&["config", "reload"])
            .fails(1, "invalid_settings (400)");
        assert!(
            refused.stderr.contains(needle) && refused.stderr.contains("cairn.toml"),
            "{text:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("nothing changed"),
            "{}",
            refused.stderr
        );
        assert_eq!(
            refused.stderr.trim().lines().count(),
            1,
            "{}",
            refused.stderr
        );
    }
    // SIGHUP with a bad file: refused too (logged).
    sighup(&service);
    std::thread::sleep(Duration::from_millis(300));

    // The service kept serving with the settings it had.
    let ttl = session_ttl_secs(&alice);
    assert!((3590..=3610).contains(&ttl), "{ttl}");
    alice.run(&["put", "notes", "k", "1"]).ok();
    let status = Endpoint::anonymous(&service)
        .run(&["-o", "json", "status"])
        .ok()
        .json();
    assert_eq!(status["status"], "READ_WRITE");
    assert_eq!(status["reasons"], Value::Array(vec![]));

    // Only admins reload.
    alice.run(&["config", "reload"]).fails(1, "forbidden (403)");

    // The good file again: nothing to change.
    write_settings(&dir, good);
    let result = root.run(&["-o", "json", "config", "reload"]).ok().json();
    assert_eq!(result["changed"], Value::Array(vec![]));
    assert_eq!(result["needs_restart"], Value::Array(vec![]));
    let text = root.run(&["config", "reload"]).ok();
    assert!(text.stdout.contains("nothing changed"), "{}", text.stdout);

    let (stopped, stderr) = service.stop().unwrap();
    assert!(stopped.success());
    assert!(stderr.contains("SIGHUP: settings not reloaded"), "{stderr}");
}

#[test]
fn a_good_reload_applies_limits_and_reports_what_needs_a_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let listen = "listen = [\"ssl://127.0.0.1:0\"]\n";
    write_settings(
        &dir,
        &format!("{listen}[auth]\nsession_ttl_secs = 3600\n[status]\nmin_free_bytes = 0\n"),
    );
    let service = ServiceProcess::start_listening_from_file(&dir).unwrap();
    let root = Endpoint::unix(&service);
    let alice = alice(&service, &root);
    let ttl = session_ttl_secs(&alice);
    assert!((3590..=3610).contains(&ttl), "{ttl}");

    let extra_socket = dir.join("extra.sock");
    write_settings(
        &dir,
        &format!(
            "listen = [\"ssl://127.0.0.1:0\", \"unix://{}\"]\n[auth]\nsession_ttl_secs = 120\n[limits]\nmax_connections = 1\n[status]\nmin_free_bytes = 0\n[log]\nlevel = \"debug\"\n",
            extra_socket.display()
        ),
    );
    let result = root.run(&["-o", "json", "config", "reload"]).ok().json();
    assert!(result["file"].as_str().unwrap().ends_with("cairn.toml"));
    let ttl = setting(&result["changed"], "auth.session_ttl_secs").expect("ttl changed");
    assert_eq!((&ttl["old"], &ttl["new"]), (&"3600".into(), &"120".into()));
    let max = setting(&result["changed"], "limits.max_connections").expect("max changed");
    assert_eq!((&max["old"], &max["new"]), (&"1024".into(), &"1".into()));
    assert!(setting(&result["changed"], "log.level").is_some());
    let listen_change = setting(&result["needs_restart"], "listen").expect("listen reported");
    assert!(listen_change["new"]
        .as_str()
        .unwrap()
        .contains("extra.sock"));
    assert!(setting(&result["changed"], "listen").is_none());
    assert!(!extra_socket.exists(), "a listener needs a restart");

    // New sessions get the new time to live.
    assert!((110..=130).contains(&session_ttl_secs(&alice)));

    // One connection at most: a feed over TLS holds it, and the next TLS connection is
    // refused, while root's own socket never counts (an admin always gets in).
    let root_tls = Endpoint::tls(&service, "root");
    let follow = ["changes", "notes", "--feed", "continuous"];
    let mut feed: Child = root_tls.spawn(&follow);
    eventually(
        Duration::from_secs(10),
        "the feed takes the only slot",
        || {
            if feed.try_wait().unwrap().is_some() {
                // Refused: another command's connection held the slot; again.
                feed = root_tls.spawn(&follow);
                return false;
            }
            let run = root_tls.run(&["status"]);
            run.code == 1 && run.stderr.contains("too_many_connections")
        },
    );
    root.run(&["status"]).ok();
    feed.kill().unwrap();
    feed.wait().unwrap();
    eventually(Duration::from_secs(10), "the slot is free again", || {
        root_tls.run(&["status"]).code == 0
    });

    // SIGHUP reloads as well.
    write_settings(
        &dir,
        &format!("{listen}[auth]\nsession_ttl_secs = 60\n[status]\nmin_free_bytes = 0\n"),
    );
    sighup(&service);
    eventually(Duration::from_secs(10), "SIGHUP applies the file", || {
        (50..=70).contains(&session_ttl_secs(&alice))
    });
    // The text output names each change.
    write_settings(
        &dir,
        &format!("{listen}[auth]\nsession_ttl_secs = 90\n[status]\nmin_free_bytes = 0\n"),
    );
    let text: Run = root.run(&["config", "reload"]).ok();
    assert!(
        text.stdout
            .contains("changed: auth.session_ttl_secs: 60 -> 90"),
        "{}",
        text.stdout
    );

    let (stopped, stderr) = service.stop().unwrap();
    assert!(stopped.success());
    assert!(stderr.contains("setting changed by a reload"), "{stderr}");
    assert!(stderr.contains("SIGHUP: settings reloaded"), "{stderr}");
}

#[test]
fn low_free_space_turns_the_service_read_only_until_the_cause_is_gone() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    // A threshold no file system meets: the whole file system (100%), at most 1 PiB.
    write_settings(
        &dir,
        "[status]\nmin_free_bytes = 1125899906842624\nmin_free_percent = 100\nfree_space_check_secs = 1\n",
    );
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let alice = alice(&service, &root);
    let anon = Endpoint::anonymous(&service);

    let status = anon.run(&["-o", "json", "status"]).ok().json();
    assert_eq!(status["status"], "READ_ONLY", "{status}");
    assert_eq!(status["admin_status"], "READ_WRITE");
    let reasons = status["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{status}");
    assert_eq!(reasons[0]["code"], "low_disk_space");
    assert!(reasons[0]["message"]
        .as_str()
        .unwrap()
        .contains("free some space"));
    assert!(reasons[0]["since_ms"].as_u64().unwrap() > 0);
    let text = anon.run(&["status"]).ok();
    assert!(text.stdout.contains("low_disk_space"), "{}", text.stdout);

    // Non-admin writes are refused with the reason; reads work; admins write.
    alice
        .run(&["put", "notes", "k", "1"])
        .fails(1, "read_only (503): read-only: free space");
    root.run(&["put", "notes", "k", "2"]).ok();
    assert_eq!(alice.value("notes", "k"), Value::from(2));

    // An admin's DOWN is stricter; back to READ_WRITE, the automatic READ_ONLY stays.
    let down = root
        .run(&[
            "-o",
            "json",
            "status",
            "set",
            "DOWN",
            "--message",
            "upgrade",
        ])
        .ok()
        .json();
    assert_eq!(down["status"], "DOWN");
    assert_eq!(down["reasons"].as_array().unwrap().len(), 1);
    alice
        .run(&["get", "notes", "k"])
        .fails(1, "unavailable (503): upgrade");
    let back = root
        .run(&["-o", "json", "status", "set", "READ_WRITE"])
        .ok()
        .json();
    assert_eq!(back["status"], "READ_ONLY");
    assert_eq!(back["admin_status"], "READ_WRITE");
    alice
        .run(&["put", "notes", "k", "3"])
        .fails(1, "read_only (503)");

    // A reload with a tiny threshold: READ_WRITE again, by itself.
    write_settings(
        &dir,
        "[status]\nmin_free_bytes = 1\nfree_space_check_secs = 1\n",
    );
    let result = root.run(&["-o", "json", "config", "reload"]).ok().json();
    assert!(setting(&result["changed"], "status.min_free_bytes").is_some());
    eventually(Duration::from_secs(10), "READ_WRITE again", || {
        anon.run(&["-o", "json", "status"]).ok().json()["status"] == "READ_WRITE"
    });
    let status = anon.run(&["-o", "json", "status"]).ok().json();
    assert_eq!(status["reasons"], Value::Array(vec![]));
    alice.run(&["put", "notes", "k", "4"]).ok();
    assert_eq!(alice.value("notes", "k"), Value::from(4));

    let (stopped, stderr) = service.stop().unwrap();
    assert!(stopped.success());
    // Logged at WARN, by the service, with the reason.
    for event in ["reason raised", "reason cleared"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(event))
            .unwrap_or_else(|| panic!("no {event:?} in {stderr}"));
        assert!(
            line.contains("WARN") && line.contains("low_disk_space") && line.contains("service"),
            "{line}"
        );
    }
}
