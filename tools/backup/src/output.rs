//! What `cairn-backup` prints on stdout when it is done: a short text summary, or with
//! `-o json` one JSON object (operation, path, bytes, seconds, files, databases,
//! verified, and for a verification the problems found).

use std::time::Duration;

use cairn_store::backup::{BackupSummary, RestoreSummary, VerifyReport};
use serde_json::{json, Value};

use crate::args::Output;

fn seconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// `1 database`, `2 databases`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn print(output: Output, text: String, value: Value) {
    match output {
        Output::Text => println!("{text}"),
        Output::Json => println!("{value}"),
    }
}

pub fn backup(output: Output, summary: &BackupSummary) {
    let text = format!(
        "backup written to {}\n  {}, {} bytes ({}), {}, verified, in {:.1} s",
        summary.path.display(),
        count(summary.files, "file"),
        summary.bytes,
        mib(summary.bytes),
        count(summary.databases, "database"),
        summary.elapsed.as_secs_f64()
    );
    let value = json!({
        "operation": "backup",
        "path": summary.path.display().to_string(),
        "bytes": summary.bytes,
        "seconds": seconds(summary.elapsed),
        "files": summary.files,
        "databases": summary.databases,
        "verified": summary.verified,
        "service_id": summary.manifest.service_id,
        "created_ms": summary.manifest.created_ms,
    });
    print(output, text, value);
}

pub fn verify(output: Output, report: &VerifyReport, elapsed: Duration) {
    let mut text = if report.is_ok() {
        format!(
            "{} verifies: {}, {} bytes ({}), {}, in {:.1} s",
            report.dir.display(),
            count(report.files, "file"),
            report.bytes,
            mib(report.bytes),
            count(report.databases, "database"),
            elapsed.as_secs_f64()
        )
    } else {
        format!(
            "{} does not verify: {}",
            report.dir.display(),
            count(report.problems.len(), "problem")
        )
    };
    for problem in &report.problems {
        text.push_str(&format!("\n  {problem}"));
    }
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({ "subject": p.subject(), "problem": p.reason() }))
        .collect();
    let value = json!({
        "operation": "verify",
        "path": report.dir.display().to_string(),
        "bytes": report.bytes,
        "seconds": seconds(elapsed),
        "files": report.files,
        "databases": report.databases,
        "verified": report.is_ok(),
        "problems": problems,
    });
    print(output, text, value);
}

pub fn restore(output: Output, summary: &RestoreSummary) {
    let kept = match &summary.replaced {
        Some(path) => format!("the replaced directory is kept as {}", path.display()),
        None => "nothing was kept of the replaced directory".to_string(),
    };
    let text = format!(
        "restored {} from a backup of {} made by {}\n  {}, {} bytes ({}), {}, verified, in {:.1} s; {kept}",
        summary.dir.display(),
        summary.manifest.source,
        summary.manifest.tool,
        count(summary.files, "file"),
        summary.bytes,
        mib(summary.bytes),
        count(summary.databases, "database"),
        summary.elapsed.as_secs_f64()
    );
    let value = json!({
        "operation": "restore",
        "path": summary.dir.display().to_string(),
        "replaced": summary.replaced.as_ref().map(|p| p.display().to_string()),
        "bytes": summary.bytes,
        "seconds": seconds(summary.elapsed),
        "files": summary.files,
        "databases": summary.databases,
        "verified": true,
    });
    print(output, text, value);
}
