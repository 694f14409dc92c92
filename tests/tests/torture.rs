//! A short crash campaign in the default suite (`cairn_tests::torture`): a few kills of
//! a real service under clients, every stretch checked for linearizability, nothing
//! acknowledged lost, on a healthy disk and on one whose fdatasyncs fail now and then
//! (libfiu). The long one: `cargo run -p cairn-tests --bin torture -- --kills 1000`.

use std::time::Duration;

use cairn_tests::torture::{run, Campaign};

#[test]
fn a_short_crash_campaign_is_linearizable_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let seed = rand::random();
    let campaign = Campaign {
        kills: 4,
        clients: 4,
        databases: 2,
        keys: 3,
        seed,
        stretch: Duration::from_millis(800),
        fault_probability: None,
    };
    let report = run(&scratch.path().join("data"), &campaign).unwrap();
    let failures: Vec<&String> = report
        .violations
        .iter()
        .chain(&report.feed_errors)
        .collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    assert_eq!(report.lost, 0, "seed {seed}: acknowledged writes lost");
    assert_eq!(report.kills, 4);
    assert!(
        report.operations >= 100,
        "only {} operations",
        report.operations
    );
    assert!(report.acknowledged_writes >= 30, "{report:?}");
}

#[test]
fn a_short_campaign_on_a_failing_disk_acknowledges_only_what_it_keeps() {
    let scratch = tempfile::tempdir().unwrap();
    let seed = rand::random();
    // libfiu fails one fdatasync in twenty: those commits fail, the service turns
    // READ_ONLY and recovers by itself; nothing it acknowledged may go missing.
    let campaign = Campaign {
        kills: 3,
        clients: 4,
        databases: 2,
        keys: 3,
        seed,
        stretch: Duration::from_millis(800),
        fault_probability: Some(0.05),
    };
    let report = run(&scratch.path().join("data"), &campaign).unwrap();
    let failures: Vec<&String> = report
        .violations
        .iter()
        .chain(&report.feed_errors)
        .collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    assert_eq!(report.lost, 0, "seed {seed}: acknowledged writes lost");
    assert!(report.refused > 0, "no fault was hit: {report:?}");
    assert!(report.acknowledged_writes >= 30, "{report:?}");
}
