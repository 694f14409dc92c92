//! End to end: the HTTPS JSON API of a real `cairn-service`, driven by real `curl` over
//! TLS with the service's CA, in HTTP/1.1 and HTTP/2, and over `DIR/http.sock`: the
//! seeds' calls (Sage's status, session and daemon routes; Sync Gateway's database
//! routes), documents and change feeds, the CLI on the same port at once, and hostile
//! requests that must be refused without changing anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use cairn_tests::cli::Endpoint;
use cairn_tests::curl::{Curl, HttpVersion};
use cairn_tests::process::ServiceProcess;
use serde_json::{json, Value};

/// Polls a daemon until it is COMPLETED (failing on FAILED or after a bound).
fn wait_completed(curl: &Curl, id: &Value) -> Value {
    for _ in 0..600 {
        let daemon = curl
            .get(&format!("/v1/admin/daemon/{id}"))
            .expect(200)
            .json();
        match daemon["status"].as_str() {
            Some("COMPLETED") => return daemon,
            Some("FAILED") | Some("CANCELED") => panic!("daemon ended badly: {daemon}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!("daemon {id} did not complete in 60 s");
}

fn seed_calls(version: HttpVersion) {
    let scratch = tempfile::tempdir().unwrap();
    let service =
        ServiceProcess::start(&scratch.path().join("data"), &["--auth-passwd", "pw"]).unwrap();
    let anonymous = Curl::tls(&service, version);

    // Status without a token, over the version asked for.
    let status = anonymous.get("/v1/admin/status").expect(200);
    let expected_version = match version {
        HttpVersion::Http1 => "1.1",
        HttpVersion::Http2 => "2",
    };
    assert_eq!(status.version, expected_version);
    let status = status.json();
    assert_eq!(status["status"], "READ_WRITE");
    assert_eq!(status["currentMessage"], "");
    assert_eq!(
        anonymous.get("/_up").expect(200).json()["status"],
        "READ_WRITE"
    );

    // Login as the seeds send it, then the sessionToken header.
    let session = anonymous
        .post("/v1/auth/session", r#"{"email": "root", "password": "pw"}"#)
        .expect(201)
        .json();
    let token = session["sessionToken"].as_str().unwrap().to_string();
    assert!(session["expiresOn"].as_u64().unwrap() > 0);
    anonymous
        .post(
            "/v1/auth/session",
            r#"{"username": "root", "password": "wrong"}"#,
        )
        .expect(401);
    let header = format!("sessionToken: {token}");
    let admin = anonymous.with(&["-H", &header]);
    assert_eq!(
        admin.get("/v1/auth/session").expect(200).json()["user"],
        "root"
    );

    // A database created offline, 412 when it exists, its config while offline.
    let created = admin
        .put("/notes/", r#"{"offline": true}"#)
        .expect(201)
        .json();
    assert_eq!(created["db_name"], "notes");
    assert_eq!(created["state"], "Offline");
    admin.put("/notes/", "{}").expect(412);
    let config = admin.get("/notes/_config").expect(200);
    assert_eq!(config.json()["offline"], true);
    let etag = config.header("etag").unwrap().to_string();
    let settings = r#"{"indexes": [{"name": "by_color", "field": "/color"}]}"#;
    admin
        .call(
            "PUT",
            "/notes/_config",
            Some(settings),
            &["-H", "If-Match: \"stale\""],
        )
        .expect(412);
    let set = admin
        .call(
            "PUT",
            "/notes/_config",
            Some(settings),
            &["-H", &format!("If-Match: {etag}")],
        )
        .expect(200);
    assert_ne!(set.header("etag").unwrap(), etag, "the settings changed");
    assert_eq!(set.json()["indexes"][0]["name"], "by_color");
    // A resync while offline is a job; while online, 503 as in the seed.
    let resync = admin.post("/notes/_resync", "").expect(201).json();
    assert_eq!(resync["type"], "RESYNC");
    wait_completed(&admin, &resync["id"]);
    let online = admin
        .post("/notes/_online", r#"{"delay": 0}"#)
        .expect(200)
        .json();
    assert_eq!(online["state"], "Online");
    admin.post("/notes/_resync", "").expect(503);

    // Documents: ETag is the rev, a stale rev is a 409, a batch, a scan and a find.
    let put = admin
        .put("/notes/apple", r#"{"color": "red", "n": 1}"#)
        .expect(201);
    assert_eq!(put.header("etag"), Some("\"1\""));
    let doc = admin.get("/notes/apple").expect(200);
    assert_eq!(doc.json()["value"], json!({"color": "red", "n": 1}));
    admin
        .call("PUT", "/notes/apple", Some("2"), &["-H", "If-Match: \"7\""])
        .expect(409);
    admin
        .call(
            "PUT",
            "/notes/apple?rev=1",
            Some(r#"{"color": "green"}"#),
            &[],
        )
        .expect(201);
    let bulk = r#"{"ops": [{"op": "put", "key": "kiwi", "value": {"color": "green"}},
                          {"op": "put", "key": "_under", "value": 3}]}"#;
    assert_eq!(
        admin.post("/notes/_bulk_docs", bulk).expect(201).json()["revs"],
        json!([3, 4])
    );
    let all = admin
        .get("/notes/_all_docs?startkey=_&limit=10")
        .expect(200)
        .json();
    let keys: Vec<&str> = all["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["_under", "apple", "kiwi"]);
    let found = admin
        .get("/notes/_find/by_color?key=green")
        .expect(200)
        .json();
    assert_eq!(found["docs"].as_array().unwrap().len(), 2);
    // Keys beginning with _ are reached through _doc, and only there.
    assert_eq!(
        admin.get("/notes/_doc/_under").expect(200).json()["value"],
        3
    );
    admin.get("/notes/_under").expect(400);
    admin.delete("/notes/_doc/_under").expect(200);

    // READ_ONLY with a message: writes get 503 with it and a Retry-After; reads go on.
    let alice_user = r#"{"name": "alice", "password": "apw"}"#;
    admin.post("/v1/admin/users", alice_user).expect(201);
    admin
        .put(
            "/v1/admin/users/alice/grants/notes",
            r#"{"access": "write"}"#,
        )
        .expect(200);
    let alice = anonymous.with(&["-u", "alice:apw"]);
    alice.put("/notes/pear", "1").expect(201);
    let read_only = r#"{"status": "READ_ONLY", "currentMessage": "moving disks", "pendingMaintenanceMessage": "back at 04:00"}"#;
    assert_eq!(
        admin.put("/v1/admin/status", read_only).expect(200).json()["status"],
        "READ_ONLY"
    );
    let refused = alice.put("/notes/pear", "2").expect(503);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.json()["error"], "read_only");
    assert!(refused.json()["reason"]
        .as_str()
        .unwrap()
        .contains("moving disks"));
    assert_eq!(alice.get("/notes/pear").expect(200).json()["value"], 1);
    let status = anonymous.get("/v1/admin/status").expect(200).json();
    assert_eq!(status["pendingMaintenanceMessage"], "back at 04:00");
    admin
        .put("/v1/admin/status", r#"{"status": "READ_WRITE"}"#)
        .expect(200);
    alice.put("/notes/pear", "2").expect(201);
    // Alice is no admin.
    alice.get("/v1/admin/daemon").expect(403);

    // A backup daemon polled to COMPLETED, then a restore of it.
    let backup = admin
        .post("/v1/admin/daemon/backup", r#"{"name": "nightly"}"#)
        .expect(201)
        .json();
    assert_eq!(backup["type"], "BACKUP");
    let done = wait_completed(&admin, &backup["id"]);
    assert!(done["totalTimeMS"].as_u64().is_some(), "{done}");
    assert_eq!(done["startedBy"], "root");
    let listed = admin
        .get("/v1/admin/daemon?type=BACKUP&status=completed")
        .expect(200)
        .json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == backup["id"]));
    assert!(admin
        .get("/v1/admin/backups")
        .expect(200)
        .body
        .contains("nightly"));
    admin.put("/notes/after-backup", "1").expect(201);
    let restore = admin
        .post("/v1/admin/daemon/restore", r#"{"url": "nightly"}"#)
        .expect(201)
        .json();
    wait_completed(&admin, &restore["id"]);
    admin.get("/notes/after-backup").expect(404);
    assert_eq!(admin.get("/notes/pear").expect(200).json()["value"], 2);

    // Logout: the token no longer works.
    admin.delete("/v1/auth/session").expect(200);
    let gone = admin.get("/v1/auth/session").expect(401);
    assert_eq!(gone.json()["error"], "bad_credentials");
    service.stop().unwrap();
}

#[test]
fn the_seeds_calls_work_with_curl_over_http1() {
    seed_calls(HttpVersion::Http1);
}

#[test]
fn the_seeds_calls_work_with_curl_over_http2() {
    seed_calls(HttpVersion::Http2);
}
