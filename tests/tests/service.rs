//! End-to-end tests of `cairn-service` as a process: first and later starts, the
//! directory lock, protocol abuse (oversized frames, garbage) that must cost only the
//! offending connection, many connections at once, and a graceful SIGTERM that loses no
//! acknowledged write. They speak the protocol by hand (see `cairn_tests::raw`), but for
//! `cairn-client`'s paged scan, whose pages are asked for only as fast as its caller takes
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::methods::ScanArgs;
use cairn_client::{Client, ClientUrl, ConnectOptions};
use cairn_proto::{ErrorCode, Message};
use cairn_tests::curl::{sample, Curl};
use cairn_tests::process::{write_settings, ServiceProcess};
use cairn_tests::raw::{field, map, RawConnection};
use rmpv::Value;

fn put_args(db: &str, key: &str, value: Value) -> Value {
    map(&[("db", db.into()), ("key", key.into()), ("value", value)])
}

fn get_value(connection: &mut RawConnection, db: &str, key: &str) -> Option<Value> {
    let args = map(&[("db", db.into()), ("key", key.into())]);
    connection
        .call("get", args)
        .ok()
        .and_then(|doc| field(&doc, "value").cloned())
}

#[test]
fn first_start_creates_later_starts_reuse_and_a_second_service_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &["--auth-passwd", "pw"]).unwrap();
    for path in [
        "store/data.mdb",
        "certs/cas",
        "certs/hosts/localhost.crt",
        "certs/users/root.crt",
        "backups",
        "tmp",
        "sock",
    ] {
        assert!(dir.join(path).exists(), "{path} is created on first start");
    }
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    root.call("db.create", map(&[("name", "kept".into())]))
        .unwrap();
    root.call("put", put_args("kept", "k", "v1".into()))
        .unwrap();

    let second = ServiceProcess::start(&dir, &[]);
    let message = format!(
        "{:#}",
        second
            .err()
            .expect("a second service on the same directory fails")
    );
    assert!(
        message.contains(&format!("in use by pid {}", service.pid())),
        "{message}"
    );

    let (status, _) = service.stop().unwrap();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    assert_eq!(get_value(&mut root, "kept", "k"), Some("v1".into()));
    // The password given at the first start still works without the flag.
    let mut tls = RawConnection::tls(&service.tls_address, &dir.join("certs")).unwrap();
    tls.call(
        "login",
        map(&[("user", "root".into()), ("password", "pw".into())]),
    )
    .unwrap();
    service.stop().unwrap();
}

/// Creates database `db` and puts `docs` (key, value) into it in one `batch`.
fn create_with(
    connection: &mut RawConnection,
    db: &str,
    docs: impl Iterator<Item = (String, Value)>,
) {
    connection
        .call("db.create", map(&[("name", db.into())]))
        .unwrap();
    let ops = docs
        .map(|(key, value)| map(&[("op", "put".into()), ("key", key.into()), ("value", value)]))
        .collect();
    connection
        .call(
            "batch",
            map(&[("db", db.into()), ("ops", Value::Array(ops))]),
        )
        .unwrap();
}

/// The keys of a `scan` page of `limit` documents of `db`, after `after`, and its `more`.
fn scan_keys(
    connection: &mut RawConnection,
    (db, limit): (&str, u32),
    after: Option<&str>,
) -> (Vec<String>, bool) {
    let mut args = vec![("db", db.into()), ("limit", limit.into())];
    if let Some(after) = after {
        args.push(("after", after.into()));
    }
    let page = connection.call("scan", map(&args)).unwrap();
    let keys = field(&page, "docs")
        .and_then(Value::as_array)
        .expect("a page of docs")
        .iter()
        .map(|doc| {
            field(doc, "key")
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect();
    (keys, field(&page, "more") == Some(&Value::from(true)))
}

#[test]
fn a_page_read_ahead_is_served_only_when_nothing_was_committed_since_and_64_mib_at_most_are_held() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut reader = RawConnection::unix(&service.socket()).unwrap();
    let mut writer = RawConnection::unix(&service.socket()).unwrap();
    let mut expected: Vec<String> = (0..150).map(|i| format!("doc-{i:03}")).collect();
    let docs = expected.iter().map(|key| (key.clone(), Value::from(1)));
    create_with(&mut writer, "paged", docs);

    // Page 1; the service reads page 2 ahead. Then another connection writes into page
    // 2's range: page 2 holds both writes, so the page read ahead was not served.
    let (first, more) = scan_keys(&mut reader, ("paged", 50), None);
    assert!(more && first == expected[..50]);
    writer
        .call("put", put_args("paged", "doc-060a", 2.into()))
        .unwrap();
    writer
        .call(
            "delete",
            map(&[("db", "paged".into()), ("key", "doc-070".into())]),
        )
        .unwrap();
    expected.insert(61, "doc-060a".to_string());
    expected.retain(|key| key != "doc-070");
    let (second, more) = scan_keys(&mut reader, ("paged", 50), first.last().map(String::as_str));
    assert!(more && second == expected[50..100], "{second:?}");
    // Nothing committed since page 2: page 3 is the one read ahead, and the last.
    let (third, more) = scan_keys(
        &mut reader,
        ("paged", 50),
        second.last().map(String::as_str),
    );
    assert!(!more && third == expected[100..], "{third:?}");

    let read_ahead = |outcome: &str| {
        let metrics = Curl::unix(&service).get("/metrics").expect(200).body;
        sample(
            &metrics,
            &format!("cairn_scan_read_ahead_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(read_ahead("used"), Some(1.0));
    assert_eq!(read_ahead("stale"), Some(1.0));

    // Pages read ahead hold at most 64 MiB in all, each read with a budget of twice the
    // page before it, at most 1 MiB: of 65 connections reading pages of about 600 KB,
    // 64 find their second page read ahead.
    let docs = (0..6).map(|i| (format!("big-{i}"), Value::Binary(vec![7; 200 << 10])));
    create_with(&mut writer, "large", docs);
    let used_before = read_ahead("used").unwrap();
    let mut readers: Vec<RawConnection> = (0..65)
        .map(|_| RawConnection::unix(&service.socket()).unwrap())
        .collect();
    for (i, reader) in readers.iter_mut().enumerate() {
        let (page, more) = scan_keys(reader, ("large", 3), None);
        assert!(
            more && page == ["big-0", "big-1", "big-2"],
            "reader {i}: {page:?}"
        );
    }
    for (i, reader) in readers.iter_mut().enumerate() {
        let (page, more) = scan_keys(reader, ("large", 3), Some("big-2"));
        assert!(
            !more && page == ["big-3", "big-4", "big-5"],
            "reader {i}: {page:?}"
        );
    }
    assert_eq!(read_ahead("used"), Some(used_before + 64.0));

    // A page read ahead with a smaller budget than its call's, and cut short by it, is
    // not served: the call gets the whole page.
    let docs = [30, 30, 100, 100, 1]
        .iter()
        .enumerate()
        .map(|(i, kib)| (format!("m-{i}"), Value::Binary(vec![1; kib << 10])));
    create_with(&mut writer, "mixed", docs);
    let stale_before = read_ahead("stale").unwrap();
    let (first, _) = scan_keys(&mut readers[0], ("mixed", 2), None);
    let (second, more) = scan_keys(&mut readers[0], ("mixed", 2), Some("m-1"));
    assert!(
        first == ["m-0", "m-1"] && more && second == ["m-2", "m-3"],
        "{second:?}"
    );
    assert_eq!(read_ahead("stale"), Some(stale_before + 1.0));
    service.stop().unwrap();
}

#[test]
fn scan_pages_asks_for_pages_only_as_fast_as_its_caller_takes_them() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut writer = RawConnection::unix(&service.socket()).unwrap();
    let docs = (0..200).map(|i| (format!("doc-{i:03}"), Value::from(i)));
    create_with(&mut writer, "paged", docs);
    let scans = || {
        let metrics = Curl::unix(&service).get("/metrics").expect(200).body;
        sample(&metrics, r#"cairn_calls_total{method="scan",outcome="ok"}"#).unwrap_or(0.0)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url: ClientUrl = format!("unix://{}", service.socket().display())
            .parse()
            .unwrap();
        let client = Client::connect(&url, &ConnectOptions::for_working_dir(scratch.path()))
            .await
            .unwrap();
        let mut pages = client.scan_pages(ScanArgs {
            db: "paged".into(),
            limit: Some(10),
            ..ScanArgs::default()
        });
        let first = pages.next_page().await.unwrap().unwrap();
        // The caller holds page 1 and takes no more: page 2 waits for it and page 3 is
        // read, then nothing more is asked for (20 pages without the bound).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while scans() < 3.0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(scans(), 3.0);
        let mut keys: Vec<String> = first.iter().map(|doc| doc.key.to_string()).collect();
        while let Some(page) = pages.next_page().await.unwrap() {
            keys.extend(page.iter().map(|doc| doc.key.to_string()));
        }
        let expected: Vec<String> = (0..200).map(|i| format!("doc-{i:03}")).collect();
        assert_eq!(keys, expected);
        assert_eq!(scans(), 20.0);
    });
    service.stop().unwrap();
}

/// The seqs of `changes`, a feed item's list of changes.
fn seqs(changes: &[Value]) -> Vec<u64> {
    changes
        .iter()
        .map(|change| field(change, "seq").and_then(Value::as_u64).unwrap())
        .collect()
}

#[test]
fn a_batched_continuous_feed_sends_the_changes_read_together_as_one_item() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    create_with(
        &mut root,
        "fed",
        (0..5).map(|i| (format!("k{i}"), Value::from(i))),
    );
    for (id, batched) in [(100, false), (101, true)] {
        root.send(&Message::Call {
            id,
            method: "changes".to_string(),
            args: map(&[
                ("db", "fed".into()),
                ("feed", "continuous".into()),
                ("batched", batched.into()),
            ]),
        })
        .unwrap();
        // One item per change, or one item holding all five.
        let mut items = Vec::new();
        while items
            .iter()
            .map(|(_, seqs): &(String, Vec<u64>)| seqs.len())
            .sum::<usize>()
            < 5
        {
            let Some(Message::Item { id: item_id, value }) = root.receive().unwrap() else {
                panic!("an item of the feed");
            };
            assert_eq!(item_id, id);
            let kind = field(&value, "type")
                .and_then(Value::as_str)
                .unwrap()
                .to_string();
            let changes = match kind.as_str() {
                "changes" => seqs(field(&value, "changes").and_then(Value::as_array).unwrap()),
                _ => seqs(std::slice::from_ref(&value)),
            };
            items.push((kind, changes));
        }
        let expected: Vec<(String, Vec<u64>)> = if batched {
            vec![("changes".to_string(), vec![1, 2, 3, 4, 5])]
        } else {
            (1..=5)
                .map(|seq| ("change".to_string(), vec![seq]))
                .collect()
        };
        assert_eq!(items, expected, "batched: {batched}");
        root.send(&Message::Cancel { id }).unwrap();
        match root.receive().unwrap() {
            Some(Message::End { id: end_id, value }) => {
                assert_eq!(end_id, id);
                assert_eq!(field(&value, "reason"), Some(&Value::from("canceled")));
            }
            other => panic!("the feed's end, not {other:?}"),
        }
    }
    service.stop().unwrap();
}

#[test]
fn an_oversized_first_frame_or_garbage_closes_only_that_connection() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let certs = scratch.path().join("certs");
    let mut bystander = RawConnection::unix(&service.socket()).unwrap();
    bystander
        .call("db.create", map(&[("name", "db".into())]))
        .unwrap();

    // 64 KiB + 1 before authentication: refused from the header alone.
    let mut big = RawConnection::tls(&service.tls_address, &certs).unwrap();
    big.send_bytes(&((64u32 << 10) + 1).to_be_bytes()).unwrap();
    match big.receive().unwrap() {
        Some(Message::Error { error, .. }) => assert_eq!(error.code, ErrorCode::FrameTooLarge),
        other => panic!("expected frame_too_large, got {other:?}"),
    }
    assert!(big.is_closed());

    for garbage in [
        &b"\x00\x00\x00\x03\xc1\xc1\xc1"[..],
        b"\x00\x00\x00\x02\x92\x01",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut bad = RawConnection::tls(&service.tls_address, &certs).unwrap();
        bad.send_bytes(garbage).unwrap();
        let answer = bad.receive();
        if let Ok(Some(Message::Error { error, .. })) = &answer {
            assert!(
                matches!(error.code, ErrorCode::BadRequest | ErrorCode::FrameTooLarge),
                "{error}"
            );
        }
        assert!(
            bad.is_closed(),
            "garbage {garbage:02x?} closes the connection"
        );
    }
    // Random bytes on the unix socket too.
    let mut noise = RawConnection::unix(&service.socket()).unwrap();
    noise
        .send_bytes(&[0x00, 0x00, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .unwrap();
    match noise.receive().unwrap() {
        Some(Message::Error { error, .. }) => assert_eq!(error.code, ErrorCode::BadRequest),
        other => panic!("expected bad_request, got {other:?}"),
    }
    assert!(noise.is_closed());

    // The service and the other connection did not notice.
    bystander
        .call("put", put_args("db", "k", 1.into()))
        .unwrap();
    assert_eq!(get_value(&mut bystander, "db", "k"), Some(1.into()));
    let (status, _) = service.stop().unwrap();
    assert!(status.success());
}

#[test]
fn unauthenticated_connections_may_read_status_only() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &["--auth-passwd", "pw"]).unwrap();
    let mut anonymous =
        RawConnection::tls(&service.tls_address, &scratch.path().join("certs")).unwrap();
    let status = anonymous.call("status", Value::Nil).unwrap();
    assert_eq!(
        field(&status, "status").and_then(Value::as_str),
        Some("READ_WRITE")
    );
    let refused = anonymous
        .call("db.list", Value::Nil)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("unauthenticated"), "{refused}");
    let wrong = anonymous.call(
        "login",
        map(&[("user", "root".into()), ("password", "nope".into())]),
    );
    assert!(wrong.unwrap_err().to_string().contains("bad_credentials"));
    anonymous
        .call(
            "login",
            map(&[("user", "root".into()), ("password", "pw".into())]),
        )
        .unwrap();
    anonymous.call("db.list", Value::Nil).unwrap();
    service.stop().unwrap();
}

#[test]
fn two_hundred_connections_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut setup = RawConnection::unix(&service.socket()).unwrap();
    setup
        .call("db.create", map(&[("name", "many".into())]))
        .unwrap();
    let mut connections: Vec<RawConnection> = (0..200)
        .map(|_| RawConnection::unix(&service.socket()).unwrap())
        .collect();
    let handles: Vec<_> = connections
        .drain(..)
        .enumerate()
        .map(|(i, mut connection)| {
            std::thread::spawn(move || {
                let key = format!("k{i}");
                connection
                    .call("put", put_args("many", &key, (i as u64).into()))
                    .unwrap();
                get_value(&mut connection, "many", &key)
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), Some((i as u64).into()));
    }
    let info = setup
        .call("db.info", map(&[("name", "many".into())]))
        .unwrap();
    assert_eq!(field(&info, "doc_count").and_then(Value::as_u64), Some(200));
    service.stop().unwrap();
}

#[test]
fn sigterm_with_writes_in_flight_loses_no_acknowledged_write() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut setup = RawConnection::unix(&service.socket()).unwrap();
    setup
        .call("db.create", map(&[("name", "w".into())]))
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let socket = service.socket();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let Ok(mut connection) = RawConnection::unix(&socket) else {
                    return;
                };
                for n in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("t{t}-{n}");
                    match connection.call("put", put_args("w", &key, n.into())) {
                        Ok(_) => acknowledged.lock().unwrap().push((key, n)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Let the writers get going, then stop the service under them.
    for _ in 0..200 {
        if acknowledged.lock().unwrap().len() >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = service.stop().unwrap();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(status.success(), "graceful stop exits 0, got {status}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 200,
        "only {} writes acknowledged",
        acknowledged.len()
    );

    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut check = RawConnection::unix(&service.socket()).unwrap();
    for (key, n) in &acknowledged {
        assert_eq!(
            get_value(&mut check, "w", key),
            Some((*n).into()),
            "{key} was acknowledged"
        );
    }
    service.stop().unwrap();
}

fn error_code(answer: Option<Message>) -> ErrorCode {
    match answer {
        Some(Message::Error { error, .. }) => error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn each_limit_answers_with_its_own_code() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(
        &dir,
        "[limits]\nmax_connections = 3\nmax_calls_per_connection = 1\nmax_frame_bytes = 131072\nmax_value_bytes = 65536\n",
    );
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let mut first = RawConnection::unix(&service.socket()).unwrap();
    first
        .call("db.create", map(&[("name", "db".into())]))
        .unwrap();

    // A value over max_value_bytes: value_too_large (413), nothing stored.
    let big = Value::Binary(vec![7u8; 70_000]);
    let refused = first
        .call("put", put_args("db", "big", big))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("value_too_large (413)"), "{refused}");

    // Two calls at once with one slot: the second gets too_many_calls; the first (a
    // longpoll that waits) is still answered.
    let longpoll = map(&[
        ("db", "db".into()),
        ("feed", "longpoll".into()),
        ("timeout_ms", 300.into()),
    ]);
    first
        .send(&Message::Call {
            id: 100,
            method: "changes".into(),
            args: longpoll,
        })
        .unwrap();
    first
        .send(&Message::Call {
            id: 101,
            method: "db.list".into(),
            args: Value::Nil,
        })
        .unwrap();
    let mut answers = [
        first.receive().unwrap().unwrap(),
        first.receive().unwrap().unwrap(),
    ];
    answers.sort_by_key(Message::id);
    assert!(
        matches!(&answers[0], Message::Result { id: 100, .. }),
        "{:?}",
        answers[0]
    );
    match &answers[1] {
        Message::Error { id: 101, error } => assert_eq!(error.code, ErrorCode::TooManyCalls),
        other => panic!("expected too_many_calls, got {other:?}"),
    }

    // A frame over max_frame_bytes after authentication: frame_too_large, closed.
    let mut oversized = RawConnection::unix(&service.socket()).unwrap();
    oversized.send_bytes(&(131_073u32).to_be_bytes()).unwrap();
    assert_eq!(
        error_code(oversized.receive().unwrap()),
        ErrorCode::FrameTooLarge
    );
    assert!(oversized.is_closed());

    // Three connections are the most (root's own socket never counts): the fourth over
    // TLS is told so and closed, while root still gets in on the socket.
    let certs = service.dir.join("certs");
    let _second = RawConnection::tls(&service.tls_address, &certs).unwrap();
    let _third = RawConnection::tls(&service.tls_address, &certs).unwrap();
    let mut last = RawConnection::tls(&service.tls_address, &certs).unwrap();
    last.call("status", Value::Nil).unwrap();
    let mut fourth = RawConnection::tls(&service.tls_address, &certs).unwrap();
    assert_eq!(
        error_code(fourth.receive().unwrap()),
        ErrorCode::TooManyConnections
    );
    assert!(fourth.is_closed());
    let mut root = RawConnection::unix(&service.socket()).unwrap();
    root.call("status", Value::Nil).unwrap();
    first.call("status", Value::Nil).unwrap();
    service.stop().unwrap();
}

#[test]
fn an_idle_unauthenticated_connection_is_closed() {
    let scratch = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(scratch.path(), &[]).unwrap();
    let mut idle = RawConnection::tls(&service.tls_address, &scratch.path().join("certs")).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        error_code(idle.receive().unwrap()),
        ErrorCode::Unauthenticated
    );
    assert!(idle.is_closed());
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed after {:?}",
        started.elapsed()
    );
    service.stop().unwrap();
}
