//! What `cairn-backup` prints on stdout when it is done: a short text summary, or with
//! `-o json` one JSON object (operation, path, bytes, seconds, files, databases,
//! verified, and for a verification the problems found); for a listing, one line per
//! backup, or a JSON array as `cairn backup list -o json` prints it.

use std::time::Duration;

use cairn_remote::RemoteBackup;
use cairn_store::backup::{utc_stamp, BackupSummary, RestoreSummary, VerifyReport};
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

/// A backup written to a directory.
pub fn backup(output: Output, summary: &BackupSummary) {
    let path = summary.path.display().to_string();
    backup_at(output, summary, "written to", &path, summary.elapsed);
}

/// A backup uploaded as the archive `url`, after `elapsed` in all.
pub fn upload(output: Output, summary: &BackupSummary, url: &str, elapsed: Duration) {
    backup_at(output, summary, "uploaded to", url, elapsed);
}

fn backup_at(output: Output, summary: &BackupSummary, verb: &str, path: &str, elapsed: Duration) {
    let text = format!(
        "backup {verb} {path}\n  {}, {} bytes ({}), {}, verified, in {:.1} s",
        count(summary.files, "file"),
        summary.bytes,
        mib(summary.bytes),
        count(summary.databases, "database"),
        elapsed.as_secs_f64()
    );
    let value = json!({
        "operation": "backup",
        "path": path,
        "bytes": summary.bytes,
        "seconds": seconds(elapsed),
        "files": summary.files,
        "databases": summary.databases,
        "verified": summary.verified,
        "service_id": summary.manifest.service_id,
        "created_ms": summary.manifest.created_ms,
    });
    print(output, text, value);
}

/// The verification of the backup `subject` (its directory, or its URL).
pub fn verify(output: Output, subject: &str, report: &VerifyReport, elapsed: Duration) {
    let mut text = if report.is_ok() {
        format!(
            "{subject} verifies: {}, {} bytes ({}), {}, in {:.1} s",
            count(report.files, "file"),
            report.bytes,
            mib(report.bytes),
            count(report.databases, "database"),
            elapsed.as_secs_f64()
        )
    } else {
        format!(
            "{subject} does not verify: {}",
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
        "path": subject,
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

/// The backups in object storage, newest first.
pub fn list(output: Output, backups: &[RemoteBackup]) {
    match output {
        Output::Text => {
            for backup in backups {
                let bytes = backup.manifest.bytes();
                println!(
                    "{}  {}  {} bytes ({}), {}  {}",
                    backup.name,
                    utc_stamp(backup.manifest.created_ms),
                    bytes,
                    mib(bytes),
                    count(backup.manifest.databases.len(), "database"),
                    backup.archive_url
                );
            }
        }
        Output::Json => {
            let list: Vec<Value> = backups
                .iter()
                .map(|backup| {
                    json!({
                        "name": backup.name,
                        "location": backup.archive_url,
                        "created_ms": backup.manifest.created_ms,
                        "service_id": backup.manifest.service_id,
                        "format_version": backup.manifest.format_version,
                        "bytes": backup.manifest.bytes(),
                        "files": backup.manifest.files.len(),
                        "databases": backup.manifest.databases.len(),
                    })
                })
                .collect();
            println!("{}", Value::Array(list));
        }
    }
}
