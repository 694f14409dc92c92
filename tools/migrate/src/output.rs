//! What `cairn-migrate` prints on stdout: the summary of a migration (per database the
//! documents moved and left out, and the time it took) or the counts of `--counts`, as
//! text for people or as JSON (`-o json`).

use cairn_store::migrate::{DatabaseCounts, MigrationSummary, SideCounts};
use serde::Serialize;

/// The summary as JSON.
#[derive(Serialize)]
pub struct SummaryJson<'a> {
    source: String,
    source_service_id: &'a str,
    source_format: u32,
    dest: String,
    service_id: &'a str,
    format: u32,
    resumed: bool,
    safety_off: bool,
    documents: u64,
    refused: u64,
    files: u64,
    offsets_file: String,
    seconds: f64,
    databases: Vec<DatabaseJson<'a>>,
}

#[derive(Serialize)]
struct DatabaseJson<'a> {
    name: &'a str,
    documents: u64,
    refused: u64,
    changes: u64,
    last_seq: u64,
    indexes_stale: bool,
    seconds: f64,
    refusals: Vec<RefusalJson<'a>>,
}

#[derive(Serialize)]
struct RefusalJson<'a> {
    key: &'a str,
    rev: u64,
    error: &'a str,
}

impl<'a> SummaryJson<'a> {
    pub fn new(summary: &'a MigrationSummary) -> SummaryJson<'a> {
        SummaryJson {
            source: summary.source_dir.display().to_string(),
            source_service_id: &summary.source_service_id,
            source_format: summary.source_format,
            dest: summary.dest_dir.display().to_string(),
            service_id: &summary.dest_service_id,
            format: summary.format,
            resumed: summary.resumed,
            safety_off: summary.safety_off,
            documents: summary.databases.iter().map(|d| d.documents).sum(),
            refused: summary.refused(),
            files: summary.files,
            offsets_file: summary.offsets_file.display().to_string(),
            seconds: summary.seconds,
            databases: summary
                .databases
                .iter()
                .map(|db| DatabaseJson {
                    name: &db.name,
                    documents: db.documents,
                    refused: db.refused,
                    changes: db.changes,
                    last_seq: db.last_seq,
                    indexes_stale: db.indexes_stale,
                    seconds: db.seconds,
                    refusals: db
                        .refusals
                        .iter()
                        .map(|r| RefusalJson {
                            key: &r.key,
                            rev: r.rev,
                            error: &r.error,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The summary for people.
pub fn summary_text(summary: &MigrationSummary) -> String {
    let mut lines = vec![format!(
        "migrated {} (format {}, service {}) to {} (format {}, service {}){}",
        summary.source_dir.display(),
        summary.source_format,
        summary.source_service_id,
        summary.dest_dir.display(),
        summary.format,
        summary.dest_service_id,
        if summary.resumed { ", resumed" } else { "" }
    )];
    if summary.safety_off {
        lines.push("checks: off (--safety-off): documents moved as they were".to_string());
    }
    let width = summary
        .databases
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(0)
        .max("database".len());
    lines.push(format!(
        "{:width$}  {:>10}  {:>7}  {:>10}  {:>8}",
        "database", "documents", "failed", "last seq", "seconds"
    ));
    for db in &summary.databases {
        let stale = if db.indexes_stale {
            "  indexes stale: resync it"
        } else {
            ""
        };
        lines.push(format!(
            "{:width$}  {:>10}  {:>7}  {:>10}  {:>8.2}{stale}",
            db.name, db.documents, db.refused, db.last_seq, db.seconds
        ));
        for refusal in &db.refusals {
            lines.push(format!(
                "  left out: {:?} (rev {}): {}",
                refusal.key, refusal.rev, refusal.error
            ));
        }
    }
    let refused = summary.refused();
    if refused > 0 {
        lines.push(format!(
            "{refused} documents were left out (see above; all of them with --dump-errors FILE)"
        ));
    }
    lines.push(format!(
        "{} other files copied; follower offsets in {}; {:.1} s",
        summary.files,
        summary.offsets_file.display(),
        summary.seconds
    ));
    lines.join("\n")
}

/// One database's counts as JSON.
#[derive(Serialize)]
pub struct CountsJson<'a> {
    name: &'a str,
    source: SideJson,
    dest: Option<SideJson>,
    /// Source minus destination.
    missing: Option<SideJson>,
}

#[derive(Serialize)]
struct SideJson {
    documents: i128,
    changes: i128,
    last_seq: i128,
}

impl SideJson {
    fn of(side: &SideCounts) -> SideJson {
        SideJson {
            documents: side.documents.into(),
            changes: side.changes.into(),
            last_seq: side.last_seq.into(),
        }
    }

    fn difference(source: &SideCounts, dest: &SideCounts) -> SideJson {
        SideJson {
            documents: i128::from(source.documents) - i128::from(dest.documents),
            changes: i128::from(source.changes) - i128::from(dest.changes),
            last_seq: i128::from(source.last_seq) - i128::from(dest.last_seq),
        }
    }
}

impl<'a> CountsJson<'a> {
    pub fn new(counts: &'a DatabaseCounts) -> CountsJson<'a> {
        CountsJson {
            name: &counts.name,
            source: SideJson::of(&counts.source),
            dest: counts.dest.as_ref().map(SideJson::of),
            missing: counts
                .dest
                .as_ref()
                .map(|dest| SideJson::difference(&counts.source, dest)),
        }
    }
}

/// The counts for people: one line per database and side.
pub fn counts_text(counts: &[DatabaseCounts]) -> String {
    let width = counts
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("database".len());
    let mut lines = vec![format!(
        "{:width$}  {:>6}  {:>10}  {:>10}  {:>10}",
        "database", "side", "documents", "changes", "last seq"
    )];
    for count in counts {
        let side = |label: &str, c: &SideCounts| {
            format!(
                "{:width$}  {label:>6}  {:>10}  {:>10}  {:>10}",
                count.name, c.documents, c.changes, c.last_seq
            )
        };
        lines.push(side("source", &count.source));
        match &count.dest {
            Some(dest) => {
                lines.push(side("dest", dest));
                let d = SideJson::difference(&count.source, dest);
                lines.push(format!(
                    "{:width$}  {:>6}  {:>10}  {:>10}  {:>10}",
                    count.name, "diff", d.documents, d.changes, d.last_seq
                ));
            }
            None => lines.push(format!(
                "{:width$}  {:>6}  not there yet",
                count.name, "dest"
            )),
        }
    }
    lines.join("\n")
}
