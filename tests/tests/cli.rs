//! End-to-end tests of the `cairn` CLI: real `cairn-service` processes driven by the real
//! `cairn` binary, over the unix socket (`--dir`) and over TLS (`--url ssl://...`). They
//! cover databases, documents (JSON in and out, conditional writes, all-or-nothing
//! batches), grants, logins and tokens (expired, revoked), client-certificate login,
//! change feeds (longpoll, continuous) and exit statuses (0, 1 with the service's error
//! code on stderr, 2 for usage errors). Every run of `cairn` is bounded in time.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_tests::cli::{cairn, Endpoint};
use cairn_tests::process::ServiceProcess;
use serde_json::Value;

/// JSON text as a value.
fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn start(dir: &std::path::Path) -> ServiceProcess {
    ServiceProcess::start(dir, &["--auth-passwd", "pw"]).expect("starting cairn-service")
}

/// The commands of databases and documents, on one endpoint.
fn data_commands(cli: &Endpoint, db: &str) {
    let created = cli
        .run(&["-o", "json", "db", "create", db, "--max-changes", "1000"])
        .ok()
        .json();
    assert_eq!(created["name"], db);
    assert_eq!(created["retention"]["max_changes"], 1000);
    cli.run(&["db", "create", db])
        .fails(1, "database_exists (409)");
    let listed = cli.run(&["-o", "json", "db", "list"]).ok().json();
    assert!(
        listed.as_array().unwrap().iter().any(|d| d["name"] == db),
        "{listed}"
    );
    let table = cli.run(&["db", "list"]).ok().stdout;
    assert!(table.starts_with("NAME") && table.contains(db), "{table}");

    // Values keep their key order, integer kinds and nesting through msgpack.
    let value = r#"{"title":"hello","n":-3,"f":1.5,"tags":["a","b"],"nested":{"z":null,"big":18446744073709551615}}"#;
    let rev = cli
        .run(&["-o", "json", "put", db, "doc1", value])
        .ok()
        .json()["rev"]
        .as_u64()
        .expect("put prints its rev");
    let got = cli.run(&["-o", "json", "get", db, "doc1"]).ok();
    assert_eq!(
        got.stdout.trim(),
        format!(r#"{{"key":"doc1","rev":{rev},"value":{value}}}"#)
    );
    let text = cli.run(&["get", db, "doc1"]).ok().stdout;
    assert!(
        text.starts_with(&format!("doc1  (rev {rev})\n{{\n  \"title\": \"hello\"")),
        "{text}"
    );

    // Conditional writes: a wrong rev changes nothing.
    let wrong = (rev + 10).to_string();
    cli.run(&["put", db, "doc1", "\"other\"", "--rev", &wrong])
        .fails(1, "cairn: error: rev_conflict (409)");
    cli.run(&["put", db, "doc1", "\"other\"", "--rev", "0"])
        .fails(1, "rev_conflict");
    assert_eq!(cli.value(db, "doc1"), json(value));
    let rev2 = cli
        .run(&[
            "-o",
            "json",
            "put",
            db,
            "doc1",
            "-2",
            "--rev",
            &rev.to_string(),
        ])
        .ok()
        .json()["rev"]
        .as_u64()
        .unwrap();
    assert!(rev2 > rev);
    assert_eq!(cli.value(db, "doc1"), json("-2"));
    cli.run(&["del", db, "doc1", "--rev", &rev.to_string()])
        .fails(1, "rev_conflict");
    let deleted = cli.run(&["-o", "json", "del", db, "doc1"]).ok().json();
    assert!(deleted["rev"].as_u64().unwrap() > rev2);
    cli.run(&["get", db, "doc1"]).fails(1, "not_found (404)");
    cli.run(&["del", db, "doc1"]).fails(1, "not_found");

    // A batch is all or nothing: its third operation fails, so nothing is applied.
    let docs_before = cli.run(&["-o", "json", "db", "info", db]).ok().json()["doc_count"].clone();
    let failing = concat!(
        "{\"op\":\"put\",\"key\":\"b1\",\"value\":1}\n",
        "{\"op\":\"put\",\"key\":\"b2\",\"value\":{\"x\":[true]}}\n",
        "{\"op\":\"put\",\"key\":\"b1\",\"value\":3,\"rev\":0}\n",
    );
    cli.run_with_stdin(&["batch", db], failing)
        .fails(1, "rev_conflict");
    cli.run(&["get", db, "b1"]).fails(1, "not_found");
    cli.run(&["get", db, "b2"]).fails(1, "not_found");
    let info = cli.run(&["-o", "json", "db", "info", db]).ok().json();
    assert_eq!(info["doc_count"], docs_before);
    let good = concat!(
        "{\"op\":\"put\",\"key\":\"b1\",\"value\":1}\n",
        "\n",
        "{\"op\":\"put\",\"key\":\"b2\",\"value\":{\"x\":[true]}}\n",
        "{\"op\":\"put\",\"key\":\"b3\",\"value\":\"three\",\"rev\":0}\n",
        "{\"op\":\"del\",\"key\":\"b3\"}\n",
        "{\"op\":\"put\",\"key\":\"b3\",\"value\":3}\n",
    );
    let revs = cli
        .run_with_stdin(&["-o", "json", "batch", db], good)
        .ok()
        .json()["revs"]
        .clone();
    assert_eq!(revs.as_array().map(Vec::len), Some(5), "{revs}");
    assert_eq!(cli.value(db, "b2"), json(r#"{"x":[true]}"#));

    // Scans: by prefix, limited, reversed, resumed.
    let page = cli
        .run(&["-o", "json", "scan", db, "--prefix", "b"])
        .ok()
        .json();
    let keys: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        (keys, &page["more"]),
        (vec!["b1", "b2", "b3"], &Value::Bool(false))
    );
    let first = cli
        .run(&["-o", "json", "scan", db, "--limit", "2"])
        .ok()
        .json();
    assert_eq!(first["docs"].as_array().unwrap().len(), 2);
    assert_eq!(first["more"], true);
    let rest = cli
        .run(&["-o", "json", "scan", db, "--after", "b2"])
        .ok()
        .json();
    assert_eq!(rest["docs"][0]["key"], "b3");
    let last = cli
        .run(&["-o", "json", "scan", db, "--reverse", "--limit", "1"])
        .ok()
        .json();
    assert_eq!(
        (&last["docs"][0]["key"], &last["docs"][0]["value"]),
        (&Value::from("b3"), &Value::from(3))
    );
    let text = cli.run(&["scan", db, "--limit", "1"]).ok();
    assert!(text.stdout.starts_with("KEY"), "{}", text.stdout);
    assert!(text.stderr.contains("--after \"b1\""), "{}", text.stderr);

    // The change log, as a page.
    let changes = cli
        .run(&["-o", "json", "changes", db, "--since", &rev2.to_string()])
        .ok()
        .json();
    let ops: Vec<(&str, &str)> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["op"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("del", "doc1"),
            ("put", "b1"),
            ("put", "b2"),
            ("put", "b3"),
            ("del", "b3"),
            ("put", "b3")
        ]
    );
    assert_eq!(changes["last_seq"], info["last_seq"].as_u64().unwrap() + 5);

    cli.run(&["db", "drop", db]).ok();
    cli.run(&["db", "info", db])
        .fails(1, "database_missing (404)");
    cli.run(&["put", db, "k", "1"]).fails(1, "database_missing");
}

#[test]
fn databases_and_documents_over_the_socket_and_tls() {
    let scratch = tempfile::tempdir().unwrap();
    let service = start(&scratch.path().join("data"));
    let unix = Endpoint::unix(&service);
    let status = unix.run(&["status"]).ok().stdout;
    assert!(status.contains("READ_WRITE"), "{status}");
    assert_eq!(
        unix.run(&["-o", "json", "status"]).ok().json()["status"],
        "READ_WRITE"
    );
    data_commands(&unix, "over_socket");
    // Over TLS as root, authenticated by the root client certificate.
    data_commands(&Endpoint::tls(&service, "root"), "over_tls");
    service.stop().unwrap();
}

#[test]
fn grants_logins_and_tokens() {
    let scratch = tempfile::tempdir().unwrap();
    let service = start(&scratch.path().join("data"));
    let root = Endpoint::unix(&service);
    let root_tls = Endpoint::tls(&service, "root");

    // The root certificate logs in over TLS without a password.
    let me = root_tls.run(&["-o", "json", "whoami"]).ok().json();
    assert_eq!(
        (&me["user"], &me["admin"], &me["via"]),
        (&"root".into(), &true.into(), &"certificate".into())
    );
    assert_eq!(
        root.run(&["whoami"]).ok().stdout.trim(),
        "root (admin) via socket"
    );

    root.run(&["db", "create", "shared"]).ok();
    root.run(&["put", "shared", "k", "\"v\""]).ok();
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "alice-pw\n")
        .ok();
    root_tls.run(&["user", "add", "carol"]).ok();
    let users = root_tls.run(&["-o", "json", "user", "list"]).ok().json();
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .unwrap();
    assert_eq!(
        (&alice["admin"], &alice["has_password"]),
        (&false.into(), &true.into())
    );
    let carol = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap();
    assert_eq!(carol["has_password"], false);

    // A password in the URL logs in; without a grant, alice is forbidden.
    let alice_pw = Endpoint::tls(&service, "alice:alice-pw");
    alice_pw
        .run(&["get", "shared", "k"])
        .fails(1, "forbidden (403)");
    let login = alice_pw.run(&["-o", "json", "login"]).ok().json();
    assert_eq!(login["user"], "alice");
    assert!(login["expires_ms"].as_u64().unwrap() > 0);

    // login --password-stdin prints the token alone; --token uses it.
    let token = Endpoint::tls(&service, "alice")
        .run_with_stdin(&["login", "--password-stdin"], "alice-pw\n")
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    let alice = Endpoint::tls(&service, "alice").token(&token);
    let me = alice.run(&["-o", "json", "whoami"]).ok().json();
    assert_eq!(
        (&me["user"], &me["via"]),
        (&"alice".into(), &"token".into())
    );
    alice
        .run(&["get", "shared", "k"])
        .fails(1, "forbidden (403)");

    // A read grant: get works, put does not.
    root.run(&["user", "grant", "alice", "shared", "read"]).ok();
    assert_eq!(alice.value("shared", "k"), json("\"v\""));
    alice
        .run(&["put", "shared", "k", "1"])
        .fails(1, "forbidden (403)");
    assert_eq!(root.value("shared", "k"), json("\"v\""));
    let listed = alice.run(&["-o", "json", "db", "list"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    root_tls
        .run(&["user", "grant", "alice", "shared", "write"])
        .ok();
    alice.run(&["put", "shared", "k", "1"]).ok();
    root_tls.run(&["user", "revoke", "alice", "shared"]).ok();
    alice.run(&["get", "shared", "k"]).fails(1, "forbidden");

    // Bad passwords.
    Endpoint::tls(&service, "alice:wrong")
        .run(&["login"])
        .fails(1, "bad_credentials (401)");
    Endpoint::tls(&service, "alice")
        .run_with_stdin(&["login", "--password-stdin"], "wrong\n")
        .fails(1, "bad_credentials (401)");
    Endpoint::tls(&service, "alice:wrong")
        .run(&["whoami"])
        .fails(1, "bad_credentials");

    // A login over the socket gives a token usable over TLS.
    let token2 = root
        .run_with_stdin(
            &["login", "--user", "alice", "--password-stdin"],
            "alice-pw\n",
        )
        .ok()
        .stdout
        .trim()
        .to_string();
    let alice2 = Endpoint::tls(&service, "alice").token(&token2);
    alice2.run(&["whoami"]).ok();

    // Revoked tokens are refused: alice revokes her own, root revokes the other.
    alice.run(&["logout"]).ok();
    alice.run(&["whoami"]).fails(1, "bad_credentials (401)");
    root.run(&["logout", &token2]).ok();
    alice2.run(&["whoami"]).fails(1, "bad_credentials (401)");

    // A new password replaces the old one; a deleted user cannot log in.
    root.run_with_stdin(&["user", "passwd", "alice", "--password-stdin"], "new-pw\n")
        .ok();
    alice_pw.run(&["login"]).fails(1, "bad_credentials");
    Endpoint::tls(&service, "alice:new-pw").run(&["login"]).ok();
    root_tls.run(&["user", "del", "alice"]).ok();
    Endpoint::tls(&service, "alice:new-pw")
        .run(&["login"])
        .fails(1, "bad_credentials");
    root.run(&["user", "del", "alice"]).fails(1, "not_found");
    service.stop().unwrap();
}

#[test]
fn expired_tokens_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start_with_env(
        &scratch.path().join("data"),
        &["--auth-passwd", "pw"],
        &[("CAIRN_SESSION_TTL_SECS", "2")],
    )
    .unwrap();
    let login = Endpoint::tls(&service, "root:pw")
        .run(&["-o", "json", "login"])
        .ok()
        .json();
    let token = login["token"].as_str().unwrap();
    let with_token = Endpoint::tls(&service, "root").token(token);
    // Over TLS without a client certificate, only the token authenticates.
    let no_cert = {
        let url = format!("ssl://{}/?hostname=localhost", service.tls_address);
        let certs = service.dir.join("certs").display().to_string();
        Endpoint {
            options: vec!["--url".into(), url, "--certdir".into(), certs],
        }
        .token(token)
    };
    let me = no_cert.run(&["-o", "json", "whoami"]).ok().json();
    assert_eq!((&me["user"], &me["via"]), (&"root".into(), &"token".into()));
    let expires_ms = login["expires_ms"].as_u64().unwrap();
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now_ms = u64::try_from(since_epoch.as_millis()).unwrap();
    std::thread::sleep(Duration::from_millis(
        expires_ms.saturating_sub(now_ms) + 200,
    ));
    no_cert.run(&["whoami"]).fails(1, "bad_credentials (401)");
    with_token
        .run(&["whoami"])
        .fails(1, "bad_credentials (401)");
    service.stop().unwrap();
}

/// Reads the lines of `child`'s stdout on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for `child` to exit, for at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("polling cairn") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn feeds(cli: &Endpoint, db: &str) {
    cli.run(&["db", "create", db]).ok();
    cli.run(&["put", db, "a", "1"]).ok();

    // A longpoll waits for the next change and returns it well before its timeout.
    let mut longpoll = cli.spawn(&[
        "-o",
        "json",
        "changes",
        db,
        "--since",
        "1",
        "--feed",
        "longpoll",
        "--timeout",
        "20",
    ]);
    let lines = lines_of(&mut longpoll);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        longpoll.try_wait().unwrap().is_none(),
        "the longpoll returned before any change"
    );
    let started = Instant::now();
    cli.run(&["put", db, "b", "{\"n\":2}"]).ok();
    let status = wait_for(&mut longpoll, Duration::from_secs(10)).expect("the longpoll returns");
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let page: Value = serde_json::from_str(&lines.recv().unwrap()).unwrap();
    assert_eq!(page["changes"][0]["key"], "b");
    assert_eq!(page["changes"][0]["value"]["n"], 2);
    assert_eq!(page["last_seq"], 2);

    // A continuous feed prints each change as one JSON line, in order.
    let mut feed = cli.spawn(&[
        "-o",
        "json",
        "changes",
        db,
        "--since",
        "1",
        "--feed",
        "continuous",
    ]);
    let lines = lines_of(&mut feed);
    cli.run(&["put", db, "c", "[3]"]).ok();
    cli.run(&["del", db, "a"]).ok();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line of the continuous feed within 10 s");
        let item: Value = serde_json::from_str(&line).unwrap();
        if item["type"] == "change" {
            seen.push((
                item["seq"].as_u64().unwrap(),
                item["op"].to_string(),
                item["key"].to_string(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            (2, "\"put\"".to_string(), "\"b\"".to_string()),
            (3, "\"put\"".to_string(), "\"c\"".to_string()),
            (4, "\"del\"".to_string(), "\"a\"".to_string()),
        ]
    );
    let _ = feed.kill();
    let _ = feed.wait();

    // With --timeout, a continuous feed ends by itself, with an end line.
    let run = cli
        .run(&[
            "-o",
            "json",
            "changes",
            db,
            "--since",
            "3",
            "--feed",
            "continuous",
            "--timeout",
            "0.3",
        ])
        .ok();
    let items: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items[0]["key"], "a");
    let end = items.last().unwrap();
    assert_eq!(
        (&end["type"], &end["reason"], &end["last_seq"]),
        (&"end".into(), &"canceled".into(), &4.into())
    );
}

#[test]
fn change_feeds_over_the_socket_and_tls() {
    let scratch = tempfile::tempdir().unwrap();
    let service = start(&scratch.path().join("data"));
    feeds(&Endpoint::unix(&service), "feed_socket");
    feeds(&Endpoint::tls(&service, "root"), "feed_tls");
    service.stop().unwrap();
}

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("none").display().to_string();
    let run = |args: &[&str], stdin: &str| {
        cairn(
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            stdin,
        )
    };
    run(&["status"], "").fails(2, "--dir DIR");
    run(&["--dir", &dir, "--url", "unix:///x", "status"], "").fails(2, "cannot be used with");
    run(&["--dir", &dir, "frobnicate"], "").fails(2, "unrecognized subcommand");
    run(&["--url", "http://db1/", "status"], "").fails(2, "use ssl://");
    run(&["--dir", &dir, "put", "db", "k", "hello"], "").fails(2, "not JSON");
    run(&["--dir", &dir, "put", "db", "k", "-"], "{\"a\":").fails(2, "not JSON");
    run(
        &["--dir", &dir, "batch", "db"],
        "{\"op\":\"put\",\"key\":\"k\",\"value\":1}\n{bad\n",
    )
    .fails(2, "stdin line 2");
    run(&["--dir", &dir, "batch", "db"], "").fails(2, "no operations");
    run(&["--dir", &dir, "user", "passwd", "alice"], "pw\n").fails(2, "--password-stdin");
    run(
        &["--dir", &dir, "user", "add", "alice", "--password-stdin"],
        "",
    )
    .fails(2, "no password");
    run(&["--dir", &dir, "login"], "").fails(2, "login needs a password");
    run(&["--dir", &dir, "changes", "db", "--timeout", "soon"], "")
        .fails(2, "not a number of seconds");
    run(
        &["--dir", &dir, "user", "grant", "alice", "db", "admin"],
        "",
    )
    .fails(2, "invalid value");
    // Well-formed, but no service: exit 1.
    run(&["--dir", &dir, "status"], "").fails(1, "cannot connect");
    let help = run(&["--help"], "").ok().stdout;
    assert!(
        help.contains("Examples:") && help.contains("Exit status"),
        "{help}"
    );
    for command in [
        &["put"][..],
        &["db", "create"],
        &["user", "add"],
        &["changes"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        assert!(run(&args, "").ok().stdout.contains("Usage: cairn"));
    }
}
