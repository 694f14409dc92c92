//! End to end: the lifecycle of a database (Online, Offline, Starting, Stopping,
//! Resyncing) with the real `cairn-service`, the `cairn` CLI and `cairn-client`
//! connections: taking a database offline while 50 clients write to it loses no
//! acknowledged write and leaves the other databases serving; live feeds end with a
//! final message; online and offline are idempotent; a database created offline stays
//! offline across restarts; configuration, indexes and resync while offline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::methods::{ChangesArgs, DbConfigSettings, FindArgs, IndexDefArgs};
use cairn_client::values::{FeedEndReason, FeedKind};
use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions};
use cairn_proto::ErrorCode;
use cairn_tests::cli::Endpoint;
use cairn_tests::process::{write_settings, ServiceProcess};
use cairn_tests::webhook::WebhookListener;
use rmpv::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client connection to the service's unix socket (root).
async fn connect(service_dir: &std::path::Path) -> Client {
    let url: ClientUrl = format!("unix://{}", service_dir.join("sock").display())
        .parse()
        .unwrap();
    Client::connect(&url, &ConnectOptions::for_working_dir(service_dir))
        .await
        .unwrap()
}

fn code(error: &ClientError) -> Option<ErrorCode> {
    match error {
        ClientError::Service(wire) => Some(wire.code),
        _ => None,
    }
}

#[test]
fn offline_while_fifty_clients_write_loses_nothing_and_spares_other_databases() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "orders"]).ok();
    root.run(&["db", "create", "other"]).ok();
    let runtime = runtime();

    // 50 clients write to `orders` until refused; one more keeps writing to `other`.
    let writers: Vec<_> = (0..50)
        .map(|writer| {
            let dir = dir.clone();
            runtime.spawn(async move {
                let client = connect(&dir).await;
                let mut acked = Vec::new();
                for n in 0u64.. {
                    let key = format!("w{writer:02}-{n:06}");
                    match client.put("orders", &key, Value::from(n), None).await {
                        Ok(_) => acked.push(key),
                        Err(error) => return (acked, error),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let stop_other = Arc::new(AtomicBool::new(false));
    let other_writer = {
        let (dir, stop) = (dir.clone(), stop_other.clone());
        runtime.spawn(async move {
            let client = connect(&dir).await;
            let mut written = 0u64;
            while !stop.load(Ordering::SeqCst) {
                client
                    .put("other", &format!("o{written}"), Value::from(written), None)
                    .await
                    .expect("the other database keeps serving");
                written += 1;
            }
            written
        })
    };
    // Let the writers get going, then take `orders` offline under them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while root
        .run(&["-o", "json", "db", "info", "orders"])
        .ok()
        .json()["doc_count"]
        .as_u64()
        .unwrap()
        < 500
    {
        assert!(Instant::now() < deadline, "the writers never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = root
        .run(&["-o", "json", "db", "offline", "orders", "--reason", "test"])
        .ok()
        .json();
    assert_eq!(done["state"], "Offline");
    assert_eq!(done["previous"], "Online");
    assert_eq!(done["changed"], true);

    let mut acked_keys = Vec::new();
    for writer in writers {
        let (acked, error) = runtime.block_on(writer).unwrap();
        assert_eq!(
            code(&error),
            Some(ErrorCode::DatabaseOffline),
            "each writer ends with 503 database_offline, not {error}"
        );
        assert!(error.to_string().contains("offline"), "{error}");
        acked_keys.extend(acked);
    }
    // Other databases kept serving throughout, and still do.
    stop_other.store(true, Ordering::SeqCst);
    let other_written = runtime.block_on(other_writer).unwrap();
    assert!(other_written > 0);
    root.run(&["put", "other", "after", "1"]).ok();

    // Reads are refused too while offline; db info still answers.
    root.run(&["get", "orders", &acked_keys[0]])
        .fails(1, "database_offline (503)");
    let info = root
        .run(&["-o", "json", "db", "info", "orders"])
        .ok()
        .json();
    assert_eq!(info["state"], "Offline");
    // Every acknowledged write is there, and nothing else.
    assert_eq!(info["doc_count"].as_u64().unwrap(), acked_keys.len() as u64);
    root.run(&["db", "online", "orders"]).ok();
    runtime.block_on(async {
        let client = connect(&dir).await;
        for key in &acked_keys {
            let doc = client.get("orders", key).await.unwrap();
            let n: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(doc.value, Value::from(n), "{key}");
        }
    });
    let (status, log) = service.stop().unwrap();
    assert!(status.success());
    assert!(
        log.contains("database state changed") && log.contains("Stopping") && log.contains("root"),
        "state changes are logged with who asked: {log}"
    );
}

#[test]
fn live_feeds_end_with_a_final_message_when_the_database_goes_offline() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "feed"]).ok();
    for n in 0..3 {
        root.run(&["put", "feed", &format!("k{n}"), &n.to_string()])
            .ok();
    }
    let runtime = runtime();
    let client = runtime.block_on(connect(&dir));
    let longpoll = {
        let client = client.clone();
        runtime.spawn(async move {
            let args = ChangesArgs {
                db: "feed".to_string(),
                since: 3,
                feed: Some(FeedKind::Longpoll),
                timeout_ms: Some(120_000),
                ..ChangesArgs::default()
            };
            client.changes(&args).await
        })
    };
    let continuous = {
        let client = client.clone();
        runtime.spawn(async move {
            let args = ChangesArgs {
                db: "feed".to_string(),
                feed: Some(FeedKind::Continuous),
                ..ChangesArgs::default()
            };
            let mut feed = client.changes_feed(&args).await.unwrap();
            let mut seen = 0;
            while let Some(item) = feed.next().await {
                item.unwrap();
                seen += 1;
            }
            (seen, feed.end().cloned())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    root.run(&["db", "offline", "feed"]).ok();
    let page = runtime.block_on(longpoll).unwrap().unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.last_seq, 3);
    assert_eq!(page.end_reason, Some(FeedEndReason::DatabaseOffline));
    let (seen, end) = runtime.block_on(continuous).unwrap();
    assert_eq!(seen, 3, "the three changes, then the end");
    let end = end.expect("the feed ended with a final message");
    assert_eq!(end.reason, "database_offline");
    assert_eq!(end.last_seq, 3);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "feeds end at once, not at their timeout"
    );
    // A new feed on the offline database is refused.
    let refused = runtime
        .block_on(client.changes(&ChangesArgs {
            db: "feed".to_string(),
            feed: Some(FeedKind::Longpoll),
            ..ChangesArgs::default()
        }))
        .unwrap_err();
    assert_eq!(code(&refused), Some(ErrorCode::DatabaseOffline));
}

#[test]
fn online_and_offline_are_idempotent_and_delayed_starts_refuse_calls() {
    let hooks = WebhookListener::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(
        &dir,
        &format!(
            "[[webhooks]]\nurl = \"{}\"\nevents = [\"db_state_changed\"]\n",
            hooks.url()
        ),
    );
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "d"]).ok();
    root.run(&["put", "d", "k", "1"]).ok();

    let again = root.run(&["-o", "json", "db", "online", "d"]).ok().json();
    assert_eq!(
        (again["state"].as_str(), again["changed"].as_bool()),
        (Some("Online"), Some(false))
    );
    let first = root.run(&["-o", "json", "db", "offline", "d"]).ok().json();
    assert_eq!(first["changed"], true);
    let second = root.run(&["db", "offline", "d"]).ok();
    assert!(
        second.stdout.contains("already Offline"),
        "{}",
        second.stdout
    );
    // Going offline was told to the webhook as two changes (Stopping, then Offline); the
    // calls that changed nothing were not.
    let events = hooks.wait_for(|events| events.len() >= 2, Duration::from_secs(20));
    let moves: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["event"], "db_state_changed");
            assert_eq!(e["database"], "d");
            assert_eq!(e["who"], "root");
            (
                e["old_state"].as_str().unwrap().to_string(),
                e["new_state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("Online".to_string(), "Stopping".to_string()),
            ("Stopping".to_string(), "Offline".to_string())
        ]
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hooks.events().len(), 2, "idempotent calls send nothing");

    // A delayed start: Starting until the delay passes; calls get 503 "try again later".
    let starting = root
        .run(&["-o", "json", "db", "online", "d", "--delay", "3"])
        .ok()
        .json();
    assert_eq!(starting["state"], "Starting");
    root.run(&["get", "d", "k"]).fails(
        1,
        "database_offline (503): database \"d\" is Starting: try again later",
    );
    let unchanged = root.run(&["-o", "json", "db", "online", "d"]).ok().json();
    assert_eq!(
        (unchanged["state"].as_str(), unchanged["changed"].as_bool()),
        (Some("Starting"), Some(false))
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while root.run(&["-o", "json", "db", "info", "d"]).ok().json()["state"] != "Online" {
        assert!(
            Instant::now() < deadline,
            "the delayed start never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(root.value("d", "k"), serde_json::json!(1));

    // Taking a Starting database offline cancels the start.
    root.run(&["db", "offline", "d"]).ok();
    root.run(&["db", "online", "d", "--delay", "2"]).ok();
    let back = root.run(&["-o", "json", "db", "offline", "d"]).ok().json();
    assert_eq!(
        (back["previous"].as_str(), back["state"].as_str()),
        (Some("Starting"), Some("Offline"))
    );
    std::thread::sleep(Duration::from_millis(2500));
    let info = root.run(&["-o", "json", "db", "info", "d"]).ok().json();
    assert_eq!(
        info["state"], "Offline",
        "the cancelled start did not happen"
    );

    // A database dropped while Starting, then created again offline, stays offline: the
    // old delayed start never reaches the new database.
    root.run(&["db", "online", "d", "--delay", "2"]).ok();
    root.run(&["db", "drop", "d"]).ok();
    root.run(&["db", "create", "d", "--offline"]).ok();
    std::thread::sleep(Duration::from_millis(2500));
    let info = root.run(&["-o", "json", "db", "info", "d"]).ok().json();
    assert_eq!(info["state"], "Offline");
    let config = root.run(&["-o", "json", "db", "config", "d"]).ok().json();
    assert_eq!(config["offline"], true, "the store agrees");
}

#[test]
fn a_database_created_offline_stays_offline_across_restarts() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let created = root
        .run(&["-o", "json", "db", "create", "staged", "--offline"])
        .ok()
        .json();
    assert_eq!(created["state"], "Offline");
    root.run(&["put", "staged", "k", "1"])
        .fails(1, "database_offline (503)");
    let config = root
        .run(&["-o", "json", "db", "config", "staged"])
        .ok()
        .json();
    assert_eq!(config["offline"], true);
    service.stop().unwrap();

    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let listed = root.run(&["-o", "json", "db", "list"]).ok().json();
    assert_eq!(listed[0]["state"], "Offline", "{listed}");
    root.run(&["get", "staged", "k"])
        .fails(1, "database_offline (503)");
    root.run(&["db", "online", "staged"]).ok();
    root.run(&["put", "staged", "k", "1"]).ok();
    service.stop().unwrap();

    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    assert_eq!(root.value("staged", "k"), serde_json::json!(1));
    let config = root
        .run(&["-o", "json", "db", "config", "staged"])
        .ok()
        .json();
    assert_eq!(
        (config["offline"].as_bool(), config["state"].as_str()),
        (Some(false), Some("Online"))
    );
}

fn person(email: &str, age: u64) -> String {
    serde_json::json!({"email": email, "age": age}).to_string()
}

#[test]
fn configuration_indexes_and_resync_while_offline() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "people"]).ok();
    let mut batch = String::new();
    for n in 0..3000u64 {
        let line = serde_json::json!({
            "op": "put",
            "key": format!("p{n:05}"),
            "value": {"email": format!("u{n}@example.com"), "age": n % 90},
        });
        batch.push_str(&format!("{line}\n"));
    }
    root.run_with_stdin(&["batch", "people"], &batch).ok();
    // A duplicate email that the unique index will not accept.
    root.run(&["put", "people", "zz-dup", &person("u7@example.com", 1)])
        .ok();
    let config_file = scratch.path().join("people.json");
    std::fs::write(
        &config_file,
        serde_json::json!({
            "retention": {"max_changes": 100000},
            "indexes": [
                {"name": "by_email", "field": "/email", "unique": true},
                {"name": "by_age", "field": "/age"},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let config_path = config_file.display().to_string();

    // Online: configuration changes and resyncs are refused with the state.
    root.run(&["db", "config", "people", "--set", &config_path])
        .fails(1, "conflict (409): database \"people\" is Online");
    root.run(&["db", "resync", "people"])
        .fails(1, "conflict (409): database \"people\" is Online");

    root.run(&["db", "offline", "people"]).ok();
    let config = root
        .run(&[
            "-o",
            "json",
            "db",
            "config",
            "people",
            "--set",
            &config_path,
        ])
        .ok()
        .json();
    assert_eq!(config["offline"], true);
    assert_eq!(config["indexes_stale"], true);
    assert_eq!(config["indexes"][0]["name"], "by_email");
    assert_eq!(config["retention"]["max_changes"], 100000);

    // The resync finds the duplicate: FAILED, naming it; the indexes stay stale.
    let job = root
        .run(&["-o", "json", "db", "resync", "people", "--wait"])
        .fails(1, "FAILED")
        .json();
    assert_eq!(job["type"], "RESYNC");
    assert_eq!(job["stats"]["processed"], 3001);
    assert_eq!(job["stats"]["errored"], 1);
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{job}"
    );
    let config = root
        .run(&["-o", "json", "db", "config", "people"])
        .ok()
        .json();
    assert_eq!(config["indexes_stale"], true);

    // Fix the document (online), then resync again; online is refused while it runs.
    root.run(&["db", "online", "people"]).ok();
    root.run(&["find", "people", "by_email", "u7@example.com"])
        .fails(1, "index_stale (409)");
    root.run(&["put", "people", "zz-dup", &person("other@example.com", 1)])
        .ok();
    root.run(&["db", "offline", "people"]).ok();
    let runtime = runtime();
    let (job, refused) = runtime.block_on(async {
        let client = connect(&dir).await;
        let job = client.db_resync("people").await.unwrap();
        let refused = client.db_online("people", None, None).await.unwrap_err();
        (job, refused)
    });
    assert_eq!(code(&refused), Some(ErrorCode::Conflict));
    assert!(refused.to_string().contains("Resyncing"), "{refused}");
    let finished = root
        .run(&["-o", "json", "jobs", "wait", &job.id.to_string()])
        .ok()
        .json();
    assert_eq!(finished["status"], "COMPLETED");
    assert_eq!(finished["stats"]["processed"], 3001);
    assert_eq!(finished["stats"]["errored"], 0);
    assert_eq!(finished["params"]["db"], "people");
    let config = root
        .run(&["-o", "json", "db", "config", "people"])
        .ok()
        .json();
    assert_eq!(config["indexes_stale"], false);
    root.run(&["db", "online", "people"]).ok();

    // Queries: an exact value, and a range with a limit.
    let by_email = |email: &str| {
        root.run(&["-o", "json", "find", "people", "by_email", email])
            .ok()
            .json()
    };
    let found = by_email("u42@example.com");
    assert_eq!(found["docs"].as_array().unwrap().len(), 1);
    assert_eq!(found["docs"][0]["key"], "p00042");
    let ranged = root
        .run(&[
            "-o", "json", "find", "people", "by_age", "--start", "10", "--end", "12", "--limit",
            "50",
        ])
        .ok()
        .json();
    let docs = ranged["docs"].as_array().unwrap();
    assert_eq!(docs.len(), 50);
    assert_eq!(ranged["more"], true);
    assert!(docs
        .iter()
        .all(|d| d["index_value"] == 10 || d["index_value"] == 11));
    let ages: Vec<u64> = docs
        .iter()
        .map(|d| d["index_value"].as_u64().unwrap())
        .collect();
    assert!(ages.windows(2).all(|w| w[0] <= w[1]), "in value order");

    // The indexes follow writes; a unique index refuses a duplicate with 409.
    root.run(&["put", "people", "p00042", &person("new42@example.com", 42)])
        .ok();
    let gone = by_email("u42@example.com");
    assert!(gone["docs"].as_array().unwrap().is_empty());
    root.run(&["put", "people", "p99999", &person("u43@example.com", 5)])
        .fails(1, "unique_violation (409)");
    let missing = root.run(&["get", "people", "p99999"]);
    missing.fails(1, "not_found (404)");
    // Only strings, numbers and booleans go in an index.
    root.run(&["put", "people", "p99999", r#"{"email": ["a", "b"]}"#])
        .fails(1, "invalid_value (400)");

    // The same through the client: find with paging.
    runtime.block_on(async {
        let client = connect(&dir).await;
        let mut args = FindArgs {
            db: "people".to_string(),
            index: "by_age".to_string(),
            value: Some(Value::from(89)),
            limit: Some(7),
            ..FindArgs::default()
        };
        let mut keys = Vec::new();
        loop {
            let page = client.find(&args).await.unwrap();
            keys.extend(page.docs.iter().map(|d| d.key.clone()));
            let Some(last) = page.docs.last() else { break };
            if !page.more {
                break;
            }
            args.after = Some(cairn_client::methods::FindCursor {
                value: last.index_value.clone(),
                key: last.key.clone(),
            });
        }
        let expected: Vec<String> = (0..3000u64)
            .filter(|n| n % 90 == 89)
            .map(|n| format!("p{n:05}"))
            .collect();
        assert_eq!(keys, expected);
        // Bad definitions are refused and change nothing.
        client.db_offline("people", None).await.unwrap();
        let bad = client
            .db_config_set(
                "people",
                DbConfigSettings {
                    indexes: vec![IndexDefArgs {
                        name: "x".to_string(),
                        field: "email".to_string(),
                        unique: false,
                    }],
                    ..DbConfigSettings::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(code(&bad), Some(ErrorCode::BadRequest), "{bad}");
        let config = client.db_config("people").await.unwrap();
        assert_eq!(config.indexes.len(), 2);
        assert!(!config.indexes_stale);
    });
}

#[test]
fn a_resync_killed_with_the_service_leaves_the_database_offline_and_runs_again() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "big", "--offline"]).ok();
    root.run(&["db", "online", "big"]).ok();
    for part in 0..4u64 {
        let batch: String = (0..5000u64)
            .map(|n| {
                let n = part * 5000 + n;
                let op =
                    serde_json::json!({"op": "put", "key": format!("k{n:06}"), "value": {"n": n}});
                format!("{op}\n")
            })
            .collect();
        root.run_with_stdin(&["batch", "big"], &batch).ok();
    }
    root.run(&["db", "offline", "big"]).ok();
    let config = scratch.path().join("big.json");
    std::fs::write(
        &config,
        r#"{"indexes": [{"name": "by_n", "field": "/n", "unique": true}]}"#,
    )
    .unwrap();
    root.run(&[
        "db",
        "config",
        "big",
        "--set",
        &config.display().to_string(),
    ])
    .ok();
    let job = root.run(&["-o", "json", "db", "resync", "big"]).ok().json();
    drop(service); // SIGKILL, most likely while the job runs

    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let root = Endpoint::unix(&service);
    let id = job["id"].to_string();
    let after = root.run(&["-o", "json", "jobs", "show", &id]).ok().json();
    eprintln!("the resync job after the kill: {}", after["status"]);
    match after["status"].as_str().unwrap() {
        "FAILED" => assert!(
            after["error"]["message"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{after}"
        ),
        "COMPLETED" => {}
        other => panic!("the job is final after a restart, not {other}"),
    }
    let info = root.run(&["-o", "json", "db", "info", "big"]).ok().json();
    assert_eq!(
        info["state"], "Offline",
        "the database starts offline again"
    );
    let again = root
        .run(&["-o", "json", "db", "resync", "big", "--wait"])
        .ok()
        .json();
    assert_eq!(again["status"], "COMPLETED");
    assert_eq!(again["stats"]["processed"], 20000);
    assert_eq!(again["stats"]["errored"], 0);
    root.run(&["db", "online", "big"]).ok();
    let found = root
        .run(&["-o", "json", "find", "big", "by_n", "12345"])
        .ok()
        .json();
    assert_eq!(found["docs"][0]["key"], "k012345");
}
