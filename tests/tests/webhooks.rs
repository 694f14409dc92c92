//! End to end: `[[webhooks]]` of a real `cairn-service`, received by real HTTP endpoints.
//! An admin's `cairn status set` and a backup job are POSTed as `status_changed` and
//! `job_finished` with the service's id; an endpoint that always answers 500 gets its
//! retries and a WARN log but slows no call down; a bad `[[webhooks]]` table stops the
//! service from starting, with a message naming it.

use std::time::{Duration, Instant};

use cairn_tests::cli::Endpoint;
use cairn_tests::process::{write_settings, ServiceProcess};
use cairn_tests::webhook::WebhookListener;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `cairn ARGS` and checks it answered within `limit`.
fn prompt(cli: &Endpoint, args: &[&str], limit: Duration) -> Value {
    let started = Instant::now();
    let output = cli.run(args).ok().json();
    let took = started.elapsed();
    assert!(took < limit, "{args:?} took {took:?}");
    output
}

#[test]
fn status_and_job_events_reach_the_endpoints_and_a_failing_one_slows_nothing() {
    let good = WebhookListener::start().unwrap();
    let failing = WebhookListener::start().unwrap();
    failing.set_status(500);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    write_settings(
        &dir,
        &format!(
            "[[webhooks]]\nurl = \"{}\"\nevents = [\"status_changed\", \"job_finished\"]\n\n\
             [[webhooks]]\nurl = \"{}\"\nevents = [\"status_changed\", \"job_finished\", \"db_state_changed\"]\n\
             timeout = 2\nretries = 3\n",
            good.url(),
            failing.url()
        ),
    );
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    let service_id = cli.run(&["-o", "json", "status"]).ok().json()["service_id"]
        .as_str()
        .unwrap()
        .to_string();

    let limit = Duration::from_secs(3);
    let set = prompt(
        &cli,
        &[
            "-o",
            "json",
            "status",
            "set",
            "READ_ONLY",
            "--message",
            "moving disks",
        ],
        limit,
    );
    assert_eq!(set["status"], "READ_ONLY");
    let events = good.wait_for(|events| !events.is_empty(), WAIT);
    let event = &events[0];
    assert_eq!(event["event"], "status_changed", "{event}");
    assert_eq!(event["service_id"], service_id.as_str());
    assert_eq!(event["old_state"], "READ_WRITE");
    assert_eq!(event["new_state"], "READ_ONLY");
    assert_eq!(event["reason"], "moving disks");
    assert_eq!(event["who"], "root");
    assert_eq!(event["database"], Value::Null);
    assert!(event["time"].as_str().unwrap().ends_with('Z'), "{event}");
    assert!(event["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(event.get("job_id").is_none(), "{event}");
    let request = &good.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request
        .header("user-agent")
        .unwrap()
        .starts_with("cairn-service/"));

    prompt(&cli, &["-o", "json", "status", "set", "READ_WRITE"], limit);
    let events = good.wait_for(|events| events.len() >= 2, WAIT);
    assert_eq!(events[1]["old_state"], "READ_ONLY");
    assert_eq!(events[1]["new_state"], "READ_WRITE");
    assert_eq!(events[1]["reason"], "");

    // A backup job: `job_finished` once it is COMPLETED.
    prompt(&cli, &["-o", "json", "db", "create", "notes"], limit);
    cli.run(&["put", "notes", "k", "1"]).ok();
    let job = cli
        .run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let events = good.wait_for(
        |events| events.iter().any(|e| e["event"] == "job_finished"),
        WAIT,
    );
    let finished = events
        .iter()
        .find(|e| e["event"] == "job_finished")
        .unwrap();
    assert_eq!(finished["job_id"], job["id"], "{finished}");
    assert_eq!(finished["new_state"], "COMPLETED");
    assert!(finished["old_state"].is_string(), "{finished}");
    assert_eq!(finished["reason"], "");
    assert_eq!(finished["who"], "root");
    assert_eq!(finished["service_id"], service_id.as_str());
    let jobs = events
        .iter()
        .filter(|e| e["event"] == "job_finished")
        .count();
    assert_eq!(jobs, 1, "{events:?}");
    assert!(
        events.iter().all(|e| e["event"] != "db_state_changed"),
        "not asked for: {events:?}"
    );

    // The failing endpoint got every event, each tried 1 + 3 times, in order per target.
    let attempts = failing.wait_for(
        |events| {
            events
                .iter()
                .filter(|e| e["reason"] == "moving disks")
                .count()
                == 4
        },
        WAIT,
    );
    assert_eq!(attempts[0]["new_state"], "READ_ONLY");
    assert!(failing.requests().iter().all(|r| r.status == 500));
    // ... and nothing else felt it.
    prompt(&cli, &["-o", "json", "status"], limit);
    let started = Instant::now();
    let (stopped, stderr) = service.stop().unwrap();
    assert!(stopped.success(), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("webhook delivery failed: event dropped"),
        "{stderr}"
    );
}

#[test]
fn a_bad_webhook_table_stops_the_start_with_a_clear_message() {
    let scratch = tempfile::tempdir().unwrap();
    let good = "[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nevents = [\"job_finished\"]\n";
    for (name, settings, needles) in [
        (
            "url",
            "[[webhooks]]\nurl = \"ftp://hooks.example.net/x\"\nevents = [\"job_finished\"]\n"
                .to_string(),
            vec!["[[webhooks]] #1", "http:// or https://"],
        ),
        (
            "event",
            format!(
                "{good}\n[[webhooks]]\nurl = \"http://127.0.0.1:9/\"\nevents = [\"job_done\"]\n"
            ),
            vec!["[[webhooks]] #2", "unknown event \"job_done\""],
        ),
    ] {
        let dir = scratch.path().join(name);
        write_settings(&dir, &settings);
        let error = match ServiceProcess::start(&dir, &[]) {
            Ok(_) => panic!("{name}: the service started"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains("cairn-service: error: "), "{name}: {error}");
        for needle in needles {
            assert!(error.contains(needle), "{name}: {error}");
        }
    }
}
