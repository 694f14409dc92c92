//! The format-1 release as the tests of later formats get it (`cairn_tests::format1`):
//! its binaries, built once from commit 03ebda0; a working directory they populate,
//! which is format 1 on disk and holds what the fixture read back; the backup its job
//! wrote, which the old `cairn-backup` verifies; and the old service started on it
//! again, serving the same to its users by password and by session token.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Result;
use cairn_tests::cli::Endpoint;
use cairn_tests::format1;
use serde_json::{json, Value};

/// The names of a JSON array of objects with a "name".
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name"))
        .collect()
}

#[test]
fn the_format1_release_populates_a_format1_directory() -> Result<()> {
    let binaries = format1::binaries()?;
    let temp = tempfile::tempdir()?;
    let dir = temp.path().join("data");
    let fixture = format1::populate(&dir, 1)?;
    assert_eq!(fixture.dir, dir);

    // What the fixture read back.
    let dbs = &fixture.databases;
    assert_eq!(
        dbs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["archive", "notes", "people", "trimmed"]
    );
    assert_eq!(
        names(&fixture.db_list),
        ["archive", "notes", "people", "trimmed"]
    );
    let notes = &dbs["notes"];
    // 240 notes, 5 special keys, 80 overwrites, 35 deletes, 2 puts, a delete and a null.
    assert_eq!(notes.info["last_seq"], 364);
    assert_eq!(notes.docs.len(), 211);
    assert_eq!(notes.changes.len(), 364);
    assert_eq!(notes.trimmed_through, 0);
    let ops: Vec<&Value> = notes.changes.iter().map(|change| &change["op"]).collect();
    assert!(ops.contains(&&json!("put")) && ops.contains(&&json!("del")));
    let keys: Vec<&str> = notes
        .docs
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"clé/été 日本 🪨") && keys.contains(&"k".repeat(400).as_str()));
    assert!(!keys.contains(&"note-0014") && !keys.contains(&"note-0010"));
    let again = notes.docs.iter().find(|d| d["key"] == "note-0007").unwrap();
    assert_eq!(again["rev"], 362, "written again after its delete");
    let people = &dbs["people"];
    assert_eq!(people.docs.len(), 58);
    assert_eq!(people.config["indexes"].as_array().unwrap().len(), 3);
    assert_eq!(people.config["indexes"][0]["unique"], true);
    assert_eq!(people.config["indexes_stale"], false);
    let trimmed = &dbs["trimmed"];
    assert_eq!(trimmed.trimmed_through, 30);
    assert_eq!(trimmed.changes.len(), 10);
    assert_eq!(trimmed.changes[0]["seq"], 31);
    assert_eq!(trimmed.config["retention"]["max_changes"], 10);
    let archive = &dbs["archive"];
    assert_eq!(archive.docs.len(), 20);
    assert_eq!(
        archive.info["state"], "Online",
        "read before it went offline"
    );
    assert_eq!(archive.config["offline"], true);
    assert_eq!(fixture.db_list[0]["state"], "Offline");

    assert_eq!(
        names(&fixture.users),
        ["alice", "bob", "carol", "dave", "root"]
    );
    assert_eq!(
        fixture.users[0]["grants"],
        json!({"notes": "read", "people": "write"})
    );
    assert_eq!(fixture.users[2]["admin"], true);
    assert_eq!(fixture.users[3]["has_password"], false);
    assert_eq!(
        fixture
            .passwords
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    let jobs: Vec<(&Value, &Value)> = fixture
        .jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (&job["type"], &job["status"]))
        .collect();
    assert_eq!(
        jobs,
        [
            (&json!("BACKUP"), &json!("COMPLETED")),
            (&json!("RESYNC"), &json!("COMPLETED"))
        ]
    );
    assert_eq!(fixture.status["status"], "READ_WRITE");
    assert_eq!(fixture.status["currentMessage"], "format-1 fixture");
    assert_eq!(
        fixture.status["pendingMaintenanceMessage"],
        "migration to format 2"
    );
    assert_ne!(fixture.epoch, 0);

    // On disk: format 1, holding what the fixture read back.
    let stored = format1::stored(&dir)?;
    assert_eq!(stored.format_version, 1);
    let sum = |count: fn(&format1::DatabaseContent) -> usize| -> u64 {
        dbs.values()
            .map(|db| u64::try_from(count(db)).unwrap())
            .sum()
    };
    let expected = BTreeMap::from([
        ("catalog", 4),
        ("docs", sum(|db| db.docs.len())),
        ("changes", sum(|db| db.changes.len())),
        ("users", 5),
        ("sessions", 1),
        ("jobs", 2),
        // one per database, written when it was created
        ("configs", 4),
        // by_email, by_age and by_city of every person
        ("indexes", 3 * 58),
    ]);
    assert_eq!(stored.entries, expected);

    // The backup the job wrote is a format-1 directory that the old cairn-backup verifies.
    let verify = Command::new(&binaries.backup)
        .arg("--verify")
        .arg(&fixture.backup)
        .output()?;
    assert!(
        verify.status.success(),
        "format-1 cairn-backup --verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(format1::stored(&fixture.backup)?.format_version, 1);

    // The old service serves it again: to alice by password and by token, to root.
    let service = format1::start_service(&dir)?;
    let by_password = Endpoint::tls(&service, "alice:alice-format1-pw");
    let scan = by_password
        .run_program(
            &binaries.cli,
            &["-o", "json", "scan", "notes", "--limit", "1000"],
            "",
        )
        .ok()
        .json();
    assert_eq!(scan["docs"].as_array().unwrap(), &notes.docs);
    let by_token = Endpoint::tls(&service, "alice").token(&fixture.tokens["alice"]);
    let whoami = by_token
        .run_program(&binaries.cli, &["-o", "json", "whoami"], "")
        .ok()
        .json();
    assert_eq!(whoami["user"], "alice");
    assert_eq!(whoami["via"], "token");
    let root = Endpoint::unix(&service);
    let db_list = root
        .run_program(&binaries.cli, &["-o", "json", "db", "list"], "")
        .ok()
        .json();
    assert_eq!(db_list, fixture.db_list);
    let status = root
        .run_program(&binaries.cli, &["-o", "json", "status"], "")
        .ok()
        .json();
    assert_eq!(status, fixture.status);
    let (exit, stderr) = service.stop()?;
    assert!(exit.success(), "the format-1 service on SIGTERM: {stderr}");
    Ok(())
}
