//! End to end, with real sockets: password guessing is slowed (never locked out), and a
//! frame that trickles in is cut off while an idle authenticated connection is not.

use std::time::{Duration, Instant};

use cairn_proto::Message;
use cairn_tests::cli::Endpoint;
use cairn_tests::curl::{Curl, HttpVersion};
use cairn_tests::process::{write_settings, ServiceProcess};
use cairn_tests::raw::RawConnection;

/// Logs in over HTTP; returns the status and how long the attempt took.
fn login(curl: &Curl, user: &str, password: &str) -> (u16, Duration) {
    let body = format!(r#"{{"username": "{user}", "password": "{password}"}}"#);
    let started = Instant::now();
    let status = curl.post("/v1/auth/session", &body).status;
    (status, started.elapsed())
}

#[test]
fn password_guessing_is_slowed_down_but_never_locks_a_user_out() {
    let scratch = tempfile::tempdir().unwrap();
    let service =
        ServiceProcess::start(&scratch.path().join("data"), &["--auth-passwd", "pw"]).unwrap();
    let root = Endpoint::unix(&service);
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "right\n")
        .ok();
    let curl = Curl::tls(&service, HttpVersion::Http1);

    // Six failures cost nothing more than the password check itself.
    let mut check = Duration::MAX;
    for _ in 0..6 {
        let (status, took) = login(&curl, "alice", "wrong");
        assert_eq!(status, 401);
        check = check.min(took);
    }
    // From then on, each attempt waits first: 0.5 s, then 1 s.
    let (status, took) = login(&curl, "alice", "wrong");
    assert_eq!(status, 401);
    assert!(
        took >= check + Duration::from_millis(450),
        "the 7th attempt took {took:?}"
    );
    let shown = root
        .run(&["-o", "json", "user", "show", "alice"])
        .ok()
        .json();
    assert_eq!(shown["failed_logins"], 7);
    assert_eq!(shown["login_delay_ms"], 1000);
    assert!(shown["last_failed_login_ms"].as_u64().is_some());
    let text = root.run(&["user", "show", "alice"]).ok().stdout;
    assert!(
        text.contains("failed logins:  7") && text.contains("next login waits 1.0 s"),
        "{text}"
    );
    // The same address is slowed for another user too.
    let (status, took) = login(&curl, "root", "wrong");
    assert_eq!(status, 401);
    assert!(
        took >= check + Duration::from_millis(900),
        "another user from the address took {took:?}"
    );

    // Not locked out: the right password, after the wait, gets in and clears the count.
    let (status, took) = login(&curl, "alice", "right");
    assert_eq!(status, 201);
    assert!(
        took >= check + Duration::from_millis(900),
        "the right password took {took:?}"
    );
    let shown = root
        .run(&["-o", "json", "user", "show", "alice"])
        .ok()
        .json();
    assert_eq!(
        (&shown["failed_logins"], &shown["login_delay_ms"]),
        (&0.into(), &0.into())
    );
    root.run(&["user", "show", "nobody"])
        .fails(1, "no user \"nobody\"");

    let (_, log) = service.stop().unwrap();
    assert!(
        log.contains("logins slowed down after repeated failures"),
        "{log}"
    );
    assert!(log.contains("password accepted"), "{log}");
    assert!(
        !log.contains("right") && !log.contains("\"wrong\""),
        "a password was logged"
    );
}

#[test]
fn a_trickling_frame_is_cut_off_but_an_idle_connection_stays() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(&dir, "[limits]\nframe_timeout_secs = 2\n");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let mut idle = RawConnection::unix(&service.socket()).unwrap();

    // Root's socket: authenticated; a frame of 4096 bytes sent one byte at a time.
    let mut trickler = RawConnection::unix(&service.socket()).unwrap();
    trickler.send_bytes(&4096u32.to_be_bytes()).unwrap();
    let started = Instant::now();
    let mut cut_after = None;
    for _ in 0..60 {
        if trickler.send_bytes(b"x").is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_after = cut_after.expect("a trickling frame was not cut off in 6 s");
    assert!(
        cut_after >= Duration::from_secs(2),
        "cut off early: {cut_after:?}"
    );
    match trickler.receive() {
        Ok(Some(Message::Error { error, .. })) => {
            assert!(error.message.contains("must arrive whole"), "{error}")
        }
        Ok(None) | Err(_) => {} // the error frame may be lost with the closed socket
        Ok(Some(other)) => panic!("unexpected {other:?}"),
    }

    // The idle connection, silent as long, still answers.
    let status = idle.call("status", rmpv::Value::Nil).unwrap();
    assert!(format!("{status}").contains("READ_WRITE"), "{status}");
    service.stop().unwrap();
}

#[test]
fn pages_of_large_values_stop_at_the_frame_limit_and_say_more() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    // 3 MB frames: a page holds two documents of 1 MB, not three.
    write_settings(
        &dir,
        "[limits]\nmax_frame_bytes = 3000000\nmax_value_bytes = 2000000\n",
    );
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let curl = Curl::unix(&service);
    curl.put("/big/", r#"{"offline": true}"#).expect(201);
    let index = r#"{"indexes": [{"name": "by_k", "field": "/k"}]}"#;
    curl.put("/big/_config", index).expect(200);
    curl.post("/big/_online", "").expect(200);
    let pad = "x".repeat(1_000_000);
    for i in 0..5 {
        curl.put(
            &format!("/big/d{i}"),
            &format!(r#"{{"k": 1, "pad": "{pad}"}}"#),
        )
        .expect(201);
    }
    let keys = |page: &serde_json::Value| -> Vec<String> {
        page["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["key"].as_str().unwrap().to_string())
            .collect()
    };
    // scan: pages of two, `more` until the end, nothing lost or repeated.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/big/_all_docs?limit=100".to_string()
        } else {
            format!("/big/_all_docs?limit=100&after={after}")
        };
        let page = curl.get(&path).expect(200).json();
        let got = keys(&page);
        assert!(got.len() <= 2, "a page of {} large documents", got.len());
        seen.extend(got.iter().cloned());
        after = got.last().cloned().unwrap_or_default();
        if page["more"] != true {
            break;
        }
    }
    assert_eq!(seen, ["d0", "d1", "d2", "d3", "d4"]);
    // find: the same bound.
    let found = curl
        .get("/big/_find/by_k?key=1&limit=100")
        .expect(200)
        .json();
    assert_eq!((keys(&found).len(), &found["more"]), (2, &true.into()));
    // changes: two per page; the next page starts after the last.
    let changes = curl
        .get("/big/_changes?since=0&limit=100")
        .expect(200)
        .json();
    assert_eq!(changes["changes"].as_array().unwrap().len(), 2);
    assert_eq!(changes["last_seq"], 2);
    // The native client reads the same pages within its frame limit.
    let native = Endpoint::unix(&service)
        .run(&["-o", "json", "scan", "big", "--limit", "100"])
        .ok()
        .json();
    assert!(
        native["docs"].as_array().unwrap().len() <= 2,
        "{}",
        native["more"]
    );
    service.stop().unwrap();
}

#[test]
fn a_flood_of_unauthenticated_connections_leaves_room_for_users_and_admins() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(
        &dir,
        "[limits]\nmax_connections = 8\nmax_unauthenticated_connections = 2\n",
    );
    let service = ServiceProcess::start(&dir, &["--auth-passwd", "pw"]).unwrap();
    let certs = service.dir.join("certs");
    let root = Endpoint::unix(&service);
    root.run_with_stdin(&["user", "add", "alice", "--password-stdin"], "apw\n")
        .ok();
    // Alice logs in before the flood.
    let mut alice = RawConnection::tls(&service.tls_address, &certs).unwrap();
    let login = cairn_tests::raw::map(&[("user", "alice".into()), ("password", "apw".into())]);
    alice.call("login", login).unwrap();

    // Two connections that never authenticate take every unauthenticated place.
    let mut flood: Vec<RawConnection> = (0..2)
        .map(|_| RawConnection::tls(&service.tls_address, &certs).unwrap())
        .collect();
    for connection in &mut flood {
        connection.call("status", rmpv::Value::Nil).unwrap();
    }
    // A third is refused, saying why.
    let mut third = RawConnection::tls(&service.tls_address, &certs).unwrap();
    match third.receive() {
        Ok(Some(Message::Error { error, .. })) => {
            assert_eq!(error.code, cairn_proto::ErrorCode::TooManyConnections);
            assert!(error.message.contains("unauthenticated"), "{error}");
        }
        other => panic!("a third unauthenticated connection got {other:?}"),
    }
    // Alice goes on; root gets in with its certificate and on the socket.
    alice.call("whoami", rmpv::Value::Nil).unwrap();
    let me = Endpoint::tls(&service, "root")
        .run(&["-o", "json", "whoami"])
        .ok()
        .json();
    assert_eq!(me["via"], "certificate");
    root.run(&["status"]).ok();
    // Once the flood is gone, anyone may connect again.
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    let mut later = RawConnection::tls(&service.tls_address, &certs).unwrap();
    later.call("status", rmpv::Value::Nil).unwrap();
    service.stop().unwrap();
}
