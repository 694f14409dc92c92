//! End to end: the service status an admin sets (READ_WRITE, READ_ONLY, DOWN) against
//! reads, writes, admin calls and unauthenticated calls, over TLS and the unix socket,
//! with the real `cairn-service` and `cairn`; the status survives a restart.

use cairn_tests::cli::Endpoint;
use cairn_tests::process::ServiceProcess;
use serde_json::Value;

#[test]
fn each_mode_against_reads_writes_admins_and_anonymous_callers() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "notes"]).ok();
    root.run(&["put", "notes", "k", "1"]).ok();
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "apw\n")
        .ok();
    root.run(&["user", "grant", "alice", "notes", "write"]).ok();
    let alice = Endpoint::tls(&service, "alice:apw");
    let anon = Endpoint::anonymous(&service);
    alice.run(&["put", "notes", "k", "2"]).ok();

    // READ_ONLY: reads work, non-admin writes get read_only with the message, admins write.
    let set = root
        .run(&[
            "-o",
            "json",
            "status",
            "set",
            "READ_ONLY",
            "--message",
            "moving disks",
        ])
        .ok()
        .json();
    assert_eq!(set["status"], "READ_ONLY");
    assert_eq!(alice.value("notes", "k"), Value::from(2));
    alice
        .run(&["put", "notes", "k", "3"])
        .fails(1, "read_only (503): moving disks");
    alice
        .run(&["del", "notes", "k"])
        .fails(1, "read_only (503)");
    root.run(&["put", "notes", "k", "4"]).ok();
    assert_eq!(alice.value("notes", "k"), Value::from(4));

    // DOWN: every non-admin call is refused with the message, before authentication.
    root.run(&[
        "status",
        "set",
        "DOWN",
        "--message",
        "maintenance",
        "--pending",
        "back at 04:00",
    ])
    .ok();
    alice
        .run(&["get", "notes", "k"])
        .fails(1, "unavailable (503): maintenance");
    anon.run(&["db", "list"])
        .fails(1, "unavailable (503): maintenance");
    let status = anon.run(&["-o", "json", "status"]).ok().json();
    assert_eq!(status["status"], "DOWN");
    assert_eq!(status["currentMessage"], "maintenance");
    assert_eq!(status["pendingMaintenanceMessage"], "back at 04:00");
    root.run(&["put", "notes", "k", "5"]).ok();
    assert_eq!(root.value("notes", "k"), Value::from(5));

    // Bad input changes nothing.
    root.run(&["status", "set", "SLEEPY"]).fails(2, "");
    let long = "x".repeat(257);
    root.run(&["status", "set", "READ_WRITE", "--message", &long])
        .fails(1, "256");
    assert_eq!(
        root.run(&["-o", "json", "status"]).ok().json()["status"],
        "DOWN"
    );

    // The status survives a restart.
    let (stopped, _) = service.stop().unwrap();
    assert!(stopped.success());
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let alice = Endpoint::tls(&service, "alice:apw");
    assert_eq!(
        root.run(&["-o", "json", "status"]).ok().json()["status"],
        "DOWN"
    );
    alice
        .run(&["get", "notes", "k"])
        .fails(1, "unavailable (503)");

    root.run(&["status", "set", "READ_WRITE"]).ok();
    alice.run(&["put", "notes", "k", "6"]).ok();
    assert_eq!(alice.value("notes", "k"), Value::from(6));
    let status = Endpoint::anonymous(&service)
        .run(&["-o", "json", "status"])
        .ok()
        .json();
    assert_eq!(status["status"], "READ_WRITE");
    assert_eq!(status["currentMessage"], "");
    service.stop().unwrap();
}
