//! End to end: the HTTPS JSON API of a real `cairn-service`, driven by real `curl` over
//! TLS with the service's CA, in HTTP/1.1 and HTTP/2, and over `DIR/http.sock`: the
//! seeds' calls (Sage's status, session and daemon routes; Sync Gateway's database
//! routes), documents and change feeds, the CLI on the same port at once, and hostile
//! requests that must be refused without changing anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use cairn_tests::cli::Endpoint;
use cairn_tests::curl::{sample, Curl, HttpVersion};
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
    let progress = admin.get("/notes/_resync").expect(200).json();
    assert_eq!(
        (&progress["id"], &progress["status"]),
        (&resync["id"], &json!("COMPLETED"))
    );
    admin.get("/v1/_resync").expect(404);
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
    // DOWN: load balancers see 503 on /_up, non-admins are refused with the message.
    let down = r#"{"status": "DOWN", "currentMessage": "maintenance"}"#;
    admin.put("/v1/admin/status", down).expect(200);
    let up = anonymous.get("/_up").expect(503);
    assert_eq!(up.header("retry-after"), Some("5"));
    assert_eq!(
        alice.get("/notes/pear").expect(503).json()["reason"],
        "maintenance"
    );
    admin
        .put("/v1/admin/status", r#"{"status": "READ_WRITE"}"#)
        .expect(200);
    anonymous.get("/_up").expect(200);
    alice.put("/notes/pear", "2").expect(201);
    // Feeds: a page, a longpoll that returns at once, a cursor of another epoch refused.
    let page = alice
        .get("/notes/_changes?since=0&limit=2")
        .expect(200)
        .json();
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    let epoch = page["epoch"].as_u64().unwrap();
    let all = alice
        .get(&format!("/notes/_changes?since=0&epoch={epoch}"))
        .expect(200)
        .json();
    let last = all["last_seq"].as_u64().unwrap();
    let longpoll = format!(
        "/notes/_changes?feed=longpoll&since={}&timeout=100",
        last - 1
    );
    let polled = alice.get(&longpoll).expect(200).json();
    assert_eq!(polled["changes"][0]["seq"], last);
    let stale = format!("/notes/_changes?since=1&epoch={}", epoch.wrapping_add(1));
    assert_eq!(
        alice.get(&stale).expect(409).json()["error"],
        "resync_required"
    );
    alice.get("/notes/_changes?seq=1").expect(400);
    // Alice is no admin.
    alice.get("/v1/admin/daemon").expect(403);
    // Remembered credentials go stale with the user: a new password ends the old one.
    admin
        .put("/v1/admin/users/alice/password", r#"{"password": "apw2"}"#)
        .expect(200);
    alice.get("/notes/pear").expect(401);
    let alice = anonymous.with(&["-u", "alice:apw2"]);
    alice.get("/notes/pear").expect(200);

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

/// Reads a streaming curl's lines until `done` says so (bounded by the stream's end).
fn read_lines(child: &mut std::process::Child) -> Vec<Value> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line of the feed");
        if line.trim().is_empty() {
            continue;
        }
        let json = line.strip_prefix("data: ").unwrap_or(&line);
        if json.starts_with("event:") {
            continue;
        }
        lines.push(serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    lines
}

#[test]
fn the_cli_and_curl_share_the_port_and_feeds_end_cleanly_when_their_database_goes_offline() {
    let scratch = tempfile::tempdir().unwrap();
    let service =
        ServiceProcess::start(&scratch.path().join("data"), &["--auth-passwd", "pw"]).unwrap();
    let cli = Endpoint::tls(&service, "root:pw");
    cli.run(&["db", "create", "notes"]).ok();
    let h2 = Curl::tls(&service, HttpVersion::Http2).with(&["-u", "root:pw"]);
    let h1 = Curl::tls(&service, HttpVersion::Http1).with(&["-u", "root:pw"]);
    let mut lines = h2.spawn_stream("/notes/_changes?feed=continuous&heartbeat=200");
    let mut events = h1.spawn_stream("/notes/_changes?feed=eventsource&heartbeat=200");
    // The CLI's native connections and curl's HTTP ones on the same port at once.
    for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
        cli.run(&["put", "notes", key, value]).ok();
        assert_eq!(
            h1.get(&format!("/notes/{key}")).expect(200).json()["value"],
            json!(value.parse::<u64>().unwrap())
        );
    }
    // Both feeds have seen the three changes once the heartbeats say seq 3.
    std::thread::sleep(Duration::from_millis(600));
    let offline = h2.post("/notes/_offline", "").expect(200).json();
    assert_eq!(offline["state"], "Offline");
    for (name, child) in [("continuous", &mut lines), ("eventsource", &mut events)] {
        let items = read_lines(child);
        let status = child.wait().unwrap();
        assert!(status.success(), "curl -N for the {name} feed: {status}");
        let seqs: Vec<u64> = items
            .iter()
            .filter(|i| i["type"] == "change")
            .map(|i| i["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3], "{name}: every change once, in order");
        let end = items.last().unwrap();
        assert_eq!(end["type"], "end", "{name}: {items:?}");
        assert_eq!(end["reason"], "database_offline");
        assert_eq!(end["last_seq"], 3);
    }
    // An offline database answers its data routes with 503 database_offline.
    let refused = h1.get("/notes/a").expect(503).json();
    assert_eq!(refused["error"], "database_offline");
    service.stop().unwrap();
}

#[test]
fn the_unix_socket_is_roots_an_https_port_serves_http_alone_and_certificates_log_in() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(
        &scratch.path().join("data"),
        &[
            "--auth-passwd",
            "pw",
            "--listen",
            "ssl://127.0.0.1:0",
            "--listen",
            "https://127.0.0.1:0",
        ],
    )
    .unwrap();
    // DIR/http.sock: mode 0600, every request root's.
    let socket = service.dir.join("http.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let local = Curl::unix(&service);
    local.put("/local/", "").expect(201);
    assert!(local.get("/v1/admin/usage").expect(200).json()["databases"].is_array());

    // The https:// port: curl works, the native CLI finds no protocol in common.
    let https = service.https_address.clone().expect("an https listener");
    let curl = Curl::tls_address(&service, &https, HttpVersion::Http2);
    assert_eq!(curl.get("/_up").expect(200).version, "2");
    let certs = service.dir.join("certs").display().to_string();
    let url = format!("ssl://root:pw@{https}/?hostname=localhost");
    let native = cairn_tests::cli::cairn(
        &[
            "--url".into(),
            url,
            "--certdir".into(),
            certs,
            "status".into(),
        ],
        "",
    );
    assert_ne!(
        native.code, 0,
        "the native protocol on an https:// port: {}",
        native.stdout
    );

    // A client certificate logs in as its CN, with no token.
    let users = service.dir.join("certs").join("users");
    let cert = users.join("root.crt").display().to_string();
    let key = users.join("root.key").display().to_string();
    let with_cert = Curl::tls(&service, HttpVersion::Http1).with(&["--cert", &cert, "--key", &key]);
    assert_eq!(
        with_cert.get("/v1/auth/session").expect(200).json()["via"],
        "certificate"
    );
    Curl::tls(&service, HttpVersion::Http1)
        .get("/v1/admin/usage")
        .expect(401);
    service.stop().unwrap();
}

#[test]
fn hostile_http_is_refused_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    cairn_tests::process::write_settings(
        &dir,
        "[limits]\nunauthenticated_idle_secs = 1\nmax_connections = 4\n",
    );
    let service = ServiceProcess::start(&dir, &["--auth-passwd", "pw"]).unwrap();
    let root = Curl::tls(&service, HttpVersion::Http1).with(&["-u", "root:pw"]);
    let anonymous = Curl::tls(&service, HttpVersion::Http2);
    root.put("/notes/", "").expect(201);
    root.put("/notes/k", "1").expect(201);
    let before = root.get("/notes/").expect(200).json();

    // Oversized headers: refused (431) or closed, over both versions.
    let big = format!("X-Big: {}", "a".repeat(100 << 10));
    for curl in [&root, &anonymous] {
        let output = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", &big])
            .args(curl_options(&service))
            .arg(curl.url("/v1/admin/status"))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            code.starts_with('4') || code == "000",
            "oversized headers got {code}"
        );
    }
    // A body over the pre-authentication limit.
    let huge = format!(
        r#"{{"username": "root", "password": "{}"}}"#,
        "x".repeat(100 << 10)
    );
    assert_eq!(
        anonymous.post("/v1/auth/session", &huge).expect(413).json()["error"],
        "frame_too_large"
    );
    // Path tricks: dot segments and encoded slashes name keys, never files or routes.
    for curl in [&root, &anonymous] {
        let dotted = curl.call("GET", "/notes/../v1/admin/usage", None, &["--path-as-is"]);
        assert_eq!(dotted.expect(404).json()["error"], "not_found");
    }
    root.get("/notes/..%2F..%2Fstore%2Fdata.mdb").expect(404);
    let deleted = root.delete("/v1/admin/backups/..%2F..%2Fstore");
    assert!(
        deleted.status == 400 || deleted.status == 404,
        "{deleted:?}"
    );
    // A JSON bomb, malformed JSON and a body that is no object.
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        root.put("/notes/bomb", &bomb).expect(400).json()["error"],
        "bad_request"
    );
    root.put("/notes/bad", "{\"a\": ").expect(400);
    root.put("/notes/empty", "").expect(400);
    root.put("/v1/admin/status", "[1, 2]").expect(400);
    root.put("/v1/admin/status", r#"{"status": "SIDEWAYS"}"#)
        .expect(400);
    // A slow header: the connection is closed after the unauthenticated idle time.
    let mut slow = std::os::unix::net::UnixStream::connect(service.dir.join("http.sock")).unwrap();
    slow.write_all(b"GET /v1/admin/status HTTP/1.1\r\nHost: cairn\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a slow header was not cut off"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("READ_WRITE"),
        "{answer:?}"
    );
    // A silent HTTP/2 client is closed after the idle time too (no slot held for ever).
    let mut silent = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-alpn",
            "h2",
            "-connect",
            &service.tls_address,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut ended = false;
    while started.elapsed() < Duration::from_secs(8) {
        if silent.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = silent.kill();
    let _ = silent.wait();
    assert!(ended, "an idle HTTP/2 connection stayed open");
    // Over the connection limit: held TCP connections, then curl gets 503.
    let held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&service.tls_address).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let full = anonymous.get("/v1/admin/status").expect(503).json();
    assert_eq!(full["error"], "too_many_connections");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));

    // Nothing changed, and the service still answers.
    let after = root.get("/notes/").expect(200).json();
    assert_eq!(after["update_seq"], before["update_seq"]);
    assert_eq!(after["doc_count"], before["doc_count"]);
    assert_eq!(
        anonymous.get("/v1/admin/status").expect(200).json()["status"],
        "READ_WRITE"
    );
    service.stop().unwrap();
}

/// The TLS options of `Curl::tls` for a hand-made curl command.
fn curl_options(service: &ServiceProcess) -> Vec<String> {
    let (_, port) = service.tls_address.rsplit_once(':').unwrap();
    vec![
        "--cacert".into(),
        cairn_tests::curl::service_ca(service).display().to_string(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
    ]
}

#[test]
fn the_openapi_document_covers_every_route_and_validates() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(&scratch.path().join("data"), &[]).unwrap();
    let answer = Curl::tls(&service, HttpVersion::Http2)
        .get("/openapi.json")
        .expect(200);
    let document = answer.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (path, verb) in [
        ("/v1/admin/status", "put"),
        ("/v1/admin/daemon/{id}", "delete"),
        ("/{db}/_changes", "get"),
        ("/{db}/{key}", "put"),
    ] {
        assert!(
            document["paths"][path][verb].is_object(),
            "{verb} {path} is missing"
        );
    }
    let file = scratch.path().join("openapi.json");
    std::fs::write(&file, &answer.body).unwrap();
    let validator = cairn_tests::openapi_validator::validator().unwrap();
    let output = std::process::Command::new(validator)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the OpenAPI document does not validate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    service.stop().unwrap();
}

/// A free port on 127.0.0.1 (bound, then released for the service to take).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn metrics_count_routes_calls_and_commits_for_admins_metrics_users_and_the_metrics_listener() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let port = free_port();
    cairn_tests::process::write_settings(
        &dir,
        &format!("[metrics]\nusers = [\"scraper\"]\nlisten = \"http://127.0.0.1:{port}\"\n"),
    );
    let service = ServiceProcess::start(&dir, &["--auth-passwd", "pw"]).unwrap();
    let root = Curl::tls(&service, HttpVersion::Http2).with(&["-u", "root:pw"]);
    root.put("/notes/", "").expect(201);
    for i in 0..5 {
        root.put(&format!("/notes/secret-{i}"), "1").expect(201);
    }
    root.get("/notes/secret-0").expect(200);
    root.get("/notes/nothing").expect(404);
    root.post(
        "/v1/admin/users",
        r#"{"name": "scraper", "password": "spw"}"#,
    )
    .expect(201);
    root.post("/v1/admin/users", r#"{"name": "alice", "password": "apw"}"#)
        .expect(201);

    let text = root.get("/metrics").expect(200).body;
    // Requests by the matched route, never the raw path.
    assert_eq!(
        sample(
            &text,
            r#"cairn_http_requests_total{verb="PUT",route="/{db}/{key}",status="201"}"#
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"cairn_http_requests_total{verb="GET",route="/{db}/{key}",status="404"}"#
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("secret-"),
        "a raw path leaked into the metrics"
    );
    assert_eq!(
        sample(&text, r#"cairn_calls_total{method="put",outcome="ok"}"#),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"cairn_calls_total{method="get",outcome="not_found"}"#
        ),
        Some(1.0)
    );
    assert!(sample(&text, "cairn_commit_duration_seconds_count").unwrap() >= 5.0);
    assert!(sample(&text, "cairn_commit_group_requests_sum").unwrap() >= 5.0);
    assert_eq!(
        sample(&text, r#"cairn_database_documents{db="notes"}"#),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, r#"cairn_database_state{db="notes",state="Online"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"cairn_service_status{status="READ_WRITE"}"#),
        Some(1.0)
    );
    assert!(sample(&text, "cairn_connections").unwrap() >= 1.0);
    assert!(sample(&text, "cairn_environment_used_bytes").unwrap() > 0.0);
    assert!(text.trim_end().ends_with("# EOF"));

    // A metrics user reads them; another user may not; anonymous callers must log in.
    let scraper = Curl::tls(&service, HttpVersion::Http1).with(&["-u", "scraper:spw"]);
    scraper.get("/metrics").expect(200);
    Curl::tls(&service, HttpVersion::Http1)
        .with(&["-u", "alice:apw"])
        .get("/metrics")
        .expect(403);
    Curl::tls(&service, HttpVersion::Http1)
        .get("/metrics")
        .expect(401);

    // The plain-HTTP metrics listener serves /metrics alone, without authentication.
    let output = std::process::Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&output.stdout);
    assert!(
        sample(&plain, r#"cairn_database_documents{db="notes"}"#) == Some(5.0),
        "{plain}"
    );
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/v1/admin/status"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "404");
    service.stop().unwrap();
}
