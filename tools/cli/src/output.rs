//! How results are printed. [`Output`] writes either JSON (`-o json`: one compact object
//! per command, or one per line for streams, each line flushed) or text for people, made
//! by the functions here: aligned tables, UTC times, byte sizes, documents with their
//! value as pretty JSON. Results that hold msgpack values go through the JSON shapes
//! here ([`DocJson`], [`ChangeJson`] and the pages and feed lines made of them), which
//! write values with `cairn_client::json::AsJson`.

use std::io::{self, Write};

use cairn_client::methods::ConfigReloadResult;
use cairn_client::methods::{
    ChangeEntry, ChangesResult, DbInfo, DbStateResult, DirUsage, Doc, FeedEnd, FindResult,
    FoundDoc, MirrorPromoteResult, RetentionArgs, ScanResult, StatusResult, UsageResult, UserInfo,
};
use cairn_client::values::{FeedEndReason, Op};
use serde::Serialize;

use crate::args::Format;
use cairn_client::json::{self, AsJson};

/// Where results go: stdout, in the chosen format.
pub struct Output {
    format: Format,
}

impl Output {
    pub fn new(format: Format) -> Output {
        Output { format }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `json` as one line with `-o json`, else the text `text` makes.
    pub fn emit<T: Serialize>(&self, json: &T, text: impl FnOnce() -> String) -> io::Result<()> {
        match self.format {
            Format::Json => self.json_line(json),
            Format::Text => self.text(&text()),
        }
    }

    /// Prints `value` as one line of compact JSON, whatever the format.
    pub fn json_line<T: Serialize>(&self, value: &T) -> io::Result<()> {
        let line = serde_json::to_string(value).map_err(io::Error::other)?;
        self.text(&line)
    }

    /// Prints `text`, ending it with a newline if it has none, and flushes.
    pub fn text(&self, text: &str) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()
    }
}

/// The JSON result of commands whose call returns nothing.
#[derive(Serialize)]
pub struct Done {
    pub ok: bool,
}

/// A document as JSON: `{key, rev, value}`.
#[derive(Serialize)]
pub struct DocJson<'a> {
    key: &'a str,
    rev: u64,
    value: AsJson<'a>,
}

impl<'a> DocJson<'a> {
    pub fn new(doc: &'a Doc) -> DocJson<'a> {
        DocJson {
            key: &doc.key,
            rev: doc.rev,
            value: AsJson(&doc.value),
        }
    }
}

/// `find`'s page as JSON: `{docs: [{key, rev, index_value, value}], more}`.
#[derive(Serialize)]
pub struct FindJson<'a> {
    docs: Vec<FoundJson<'a>>,
    more: bool,
}

#[derive(Serialize)]
struct FoundJson<'a> {
    key: &'a str,
    rev: u64,
    index_value: AsJson<'a>,
    value: AsJson<'a>,
}

impl<'a> FindJson<'a> {
    pub fn new(page: &'a FindResult) -> FindJson<'a> {
        FindJson {
            docs: page
                .docs
                .iter()
                .map(|doc| FoundJson {
                    key: &doc.key,
                    rev: doc.rev,
                    index_value: AsJson(&doc.index_value),
                    value: AsJson(&doc.value),
                })
                .collect(),
            more: page.more,
        }
    }
}

/// A change as JSON: `{seq, op, key, value?, time_ms}`, with `"type": "change"` first
/// when it is an item of a continuous feed.
#[derive(Serialize)]
pub struct ChangeJson<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    seq: u64,
    op: Op,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<AsJson<'a>>,
    time_ms: u64,
}

impl<'a> ChangeJson<'a> {
    /// A change of a `normal` or `longpoll` page.
    pub fn new(change: &'a ChangeEntry) -> ChangeJson<'a> {
        ChangeJson {
            kind: None,
            seq: change.seq,
            op: change.op,
            key: &change.key,
            value: change.value.as_ref().map(AsJson),
            time_ms: change.time_ms,
        }
    }

    /// A change item of a continuous feed.
    pub fn item(change: &'a ChangeEntry) -> ChangeJson<'a> {
        ChangeJson {
            kind: Some("change"),
            ..ChangeJson::new(change)
        }
    }
}

/// `scan`'s page as JSON: `{docs, more}`.
#[derive(Serialize)]
pub struct ScanJson<'a> {
    docs: Vec<DocJson<'a>>,
    more: bool,
}

impl<'a> ScanJson<'a> {
    pub fn new(page: &'a ScanResult) -> ScanJson<'a> {
        ScanJson {
            docs: page.docs.iter().map(DocJson::new).collect(),
            more: page.more,
        }
    }
}

/// A `normal` or `longpoll` page of changes as JSON: `{changes, last_seq}`.
#[derive(Serialize)]
pub struct ChangesJson<'a> {
    changes: Vec<ChangeJson<'a>>,
    last_seq: u64,
    epoch: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<FeedEndReason>,
}

impl<'a> ChangesJson<'a> {
    pub fn new(page: &'a ChangesResult) -> ChangesJson<'a> {
        ChangesJson {
            changes: page.changes.iter().map(ChangeJson::new).collect(),
            last_seq: page.last_seq,
            epoch: page.epoch,
            end_reason: page.end_reason,
        }
    }
}

/// The lines of a continuous feed besides changes: `{"type": "heartbeat", last_seq}`
/// and, last, `{"type": "end", reason, last_seq}`.
#[derive(Serialize)]
pub struct FeedMark {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<FeedEndReason>,
    last_seq: u64,
}

impl FeedMark {
    pub fn heartbeat(last_seq: u64) -> FeedMark {
        FeedMark {
            kind: "heartbeat",
            reason: None,
            last_seq,
        }
    }

    pub fn end(end: &FeedEnd) -> FeedMark {
        FeedMark {
            kind: "end",
            reason: Some(end.reason),
            last_seq: end.last_seq,
        }
    }
}

/// A change as one line of text: seq, op, key and (for a put) the value as compact JSON.
pub fn change_line(change: &ChangeEntry) -> String {
    let mut line = format!("{:>6}  {:<3}  {}", change.seq, change.op, change.key);
    if let Some(value) = &change.value {
        line.push_str("  ");
        line.push_str(&json::to_string(value));
    }
    line
}

/// A document for people: its key and rev, then its value as pretty JSON.
pub fn doc_text(doc: &Doc) -> String {
    format!(
        "{}  (rev {})\n{}",
        doc.key,
        doc.rev,
        json::to_string_pretty(&doc.value)
    )
}

/// Documents as a table of key, rev and compact JSON value.
pub fn docs_table(docs: &[Doc]) -> String {
    let rows = docs
        .iter()
        .map(|doc| {
            vec![
                doc.key.clone(),
                doc.rev.to_string(),
                json::to_string(&doc.value),
            ]
        })
        .collect();
    table(&["KEY", "REV", "VALUE"], rows)
}

/// Documents found through an index.
pub fn found_table(docs: &[FoundDoc]) -> String {
    let rows = docs
        .iter()
        .map(|doc| {
            vec![
                json::to_string(&doc.index_value),
                doc.key.clone(),
                doc.rev.to_string(),
                json::to_string(&doc.value),
            ]
        })
        .collect();
    table(&["INDEX_VALUE", "KEY", "REV", "VALUE"], rows)
}

/// What `db offline` / `db online` did.
pub fn db_state_text(done: &DbStateResult) -> String {
    if done.changed {
        format!(
            "database {}: {} (was {})",
            done.name, done.state, done.previous
        )
    } else {
        format!(
            "database {} is already {}: nothing changed",
            done.name, done.state
        )
    }
}

/// A result as indented JSON (for configurations, which are JSON files too).
pub fn pretty_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("protocol types always serialise")
}

pub fn status_text(status: &StatusResult) -> String {
    let or_none = |text: &str| {
        if text.is_empty() {
            "(none)".to_string()
        } else {
            text.to_string()
        }
    };
    let mut pairs = vec![("status", status.status.to_string())];
    // The admin's own mode, when automatic reasons make the status stricter.
    if status.admin_status != status.status {
        pairs.push(("set by an admin", status.admin_status.to_string()));
    }
    for reason in &status.reasons {
        pairs.push((
            "automatic reason",
            format!(
                "{} since {}: {}",
                reason.code,
                utc(reason.since_ms),
                reason.message
            ),
        ));
    }
    if let Some(migration) = &status.migration {
        pairs.push((
            "migration mode",
            format!(
                "following {} (service {}) since {}: its databases take writes only from cairn-sync",
                migration.source,
                migration.source_service_id,
                utc(migration.since_ms)
            ),
        ));
    }
    if let Some(mirror) = &status.mirror {
        let forwarding = if mirror.forward_writes {
            "writes go to the leader"
        } else {
            "writes are refused"
        };
        pairs.extend([
            (
                "mirror of",
                format!("{} ({}; {forwarding})", mirror.leader, mirror.state),
            ),
            (
                "applied",
                format!(
                    "{} of the leader's {}: {} behind, {:.1} s",
                    mirror.applied, mirror.leader_head, mirror.lag_changes, mirror.lag_secs
                ),
            ),
            (
                "last heard",
                if mirror.last_contact_ms == 0 {
                    "never".to_string()
                } else {
                    utc(mirror.last_contact_ms)
                },
            ),
        ]);
        if !mirror.message.is_empty() {
            pairs.push(("mirror message", mirror.message.clone()));
        }
    }
    pairs.extend([
        ("message", or_none(&status.current_message)),
        (
            "pending maintenance",
            or_none(&status.pending_maintenance_message),
        ),
        ("service id", status.service_id.clone()),
        ("version", status.version.clone()),
    ]);
    fields(&pairs)
}

/// What a promotion did.
pub fn promote_text(result: &MirrorPromoteResult) -> String {
    if result.forced {
        let unseen = result.leader_head.saturating_sub(result.position);
        return format!(
            "promoted by force: this service is the leader at journal position {} (the old leader {} was last seen at {}: {unseen} entries were never applied here); new change-log epoch {}",
            result.position,
            result.old_leader,
            result.leader_head,
            result.epoch.map_or("-".to_string(), |e| e.to_string())
        );
    }
    let follows = if result.old_leader_follows {
        "and now follows this one"
    } else {
        "but did not turn into a mirror: restart it with --mirror pointing here"
    };
    format!(
        "promoted: this service is the leader at journal position {}; writes were refused for {} ms; the old leader {} {follows}",
        result.position, result.refused_ms, result.old_leader
    )
}

/// What `config reload` applied and what needs a restart.
pub fn reload_text(result: &ConfigReloadResult) -> String {
    if result.changed.is_empty() && result.needs_restart.is_empty() {
        return format!("reloaded {}: nothing changed", result.file);
    }
    let mut text = format!("reloaded {}", result.file);
    for change in &result.changed {
        text.push_str(&format!(
            "\nchanged: {}: {} -> {}",
            change.setting, change.old, change.new
        ));
    }
    for change in &result.needs_restart {
        text.push_str(&format!(
            "\nneeds a restart (not applied): {}: {} -> {}",
            change.setting, change.old, change.new
        ));
    }
    text
}

pub fn db_info_text(info: &DbInfo) -> String {
    fields(&[
        ("name", info.name.clone()),
        ("state", info.state.to_string()),
        ("created", utc(info.created_ms)),
        ("documents", info.doc_count.to_string()),
        ("last seq", info.last_seq.to_string()),
        ("oldest seq", info.oldest_seq.to_string()),
        ("document bytes", bytes(info.doc_bytes)),
        ("change-log bytes", bytes(info.log_bytes)),
        ("retention", retention(&info.retention)),
    ])
}

pub fn db_table(infos: &[DbInfo]) -> String {
    if infos.is_empty() {
        return "no databases".to_string();
    }
    let rows = infos
        .iter()
        .map(|info| {
            vec![
                info.name.clone(),
                info.state.to_string(),
                info.doc_count.to_string(),
                info.last_seq.to_string(),
                bytes(info.doc_bytes),
                bytes(info.log_bytes),
                retention(&info.retention),
                utc(info.created_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "DOCS",
            "LAST_SEQ",
            "DATA",
            "LOG",
            "RETENTION",
            "CREATED",
        ],
        rows,
    )
}

/// One user, as `user show` prints it.
pub fn user_details(user: &UserInfo) -> String {
    let grants: Vec<String> = user
        .grants
        .iter()
        .map(|(db, access)| format!("{db}:{access}"))
        .collect();
    let mut lines = vec![
        format!("user:           {}", user.name),
        format!("admin:          {}", if user.admin { "yes" } else { "no" }),
        format!(
            "password:       {}",
            if user.has_password { "yes" } else { "no" }
        ),
        format!(
            "grants:         {}",
            if grants.is_empty() {
                "-".to_string()
            } else {
                grants.join(",")
            }
        ),
        format!("created:        {}", utc(user.created_ms)),
        format!("failed logins:  {}", user.failed_logins),
    ];
    if let Some(last) = user.last_failed_login_ms {
        lines.push(format!("last failure:   {}", utc(last)));
    }
    if user.login_delay_ms > 0 {
        lines.push(format!(
            "next login waits {:.1} s (slowed after repeated failures; a success clears it)",
            user.login_delay_ms as f64 / 1000.0
        ));
    }
    lines.join("\n")
}

pub fn user_table(users: &[UserInfo]) -> String {
    let yes_no = |flag: bool| if flag { "yes" } else { "no" }.to_string();
    let rows = users
        .iter()
        .map(|user| {
            let grants: Vec<String> = user
                .grants
                .iter()
                .map(|(db, access)| format!("{db}:{access}"))
                .collect();
            vec![
                user.name.clone(),
                yes_no(user.admin),
                yes_no(user.has_password),
                if grants.is_empty() {
                    "-".to_string()
                } else {
                    grants.join(",")
                },
                utc(user.created_ms),
            ]
        })
        .collect();
    table(&["NAME", "ADMIN", "PASSWORD", "GRANTS", "CREATED"], rows)
}

/// `usage` for people: the directories and the environment as fields, then a table of
/// the databases.
pub fn usage_text(usage: &UsageResult) -> String {
    let dir = |d: &DirUsage| format!("{} in {} files  {}", bytes(d.bytes), d.files, d.path);
    let room = |d: &DirUsage| {
        format!(
            "{} available of {}",
            bytes(d.fs_available_bytes),
            bytes(d.fs_total_bytes)
        )
    };
    let env = &usage.env;
    let mut text = fields(&[
        ("directory", dir(&usage.dir)),
        ("its file system", room(&usage.dir)),
        ("backups", dir(&usage.backups)),
        ("their file system", room(&usage.backups)),
        ("store/data.mdb", bytes(env.file_bytes)),
        ("map size", bytes(env.map_size)),
        (
            "pages",
            format!("{} of {} each", env.total_pages, bytes(env.page_size)),
        ),
        (
            "used pages",
            format!("{} ({})", env.used_pages, bytes(env.used_bytes)),
        ),
        (
            "free pages",
            format!(
                "{} ({}, left out of a compacted backup)",
                env.free_pages,
                bytes(env.free_bytes)
            ),
        ),
        (
            "journal",
            format!(
                "{} for mirrors (entries {} to {})",
                bytes(usage.journal.bytes),
                usage.journal.first_seq,
                usage.journal.last_seq
            ),
        ),
    ]);
    text.push('\n');
    if usage.databases.is_empty() {
        text.push_str("no databases");
        return text;
    }
    let rows = usage
        .databases
        .iter()
        .map(|db| {
            vec![
                db.name.clone(),
                db.doc_count.to_string(),
                bytes(db.doc_bytes),
                bytes(db.log_bytes),
                db.log_entries.to_string(),
            ]
        })
        .collect();
    text.push_str(&table(
        &["NAME", "DOCS", "DATA", "LOG", "LOG_ENTRIES"],
        rows,
    ));
    text
}

fn retention(retention: &RetentionArgs) -> String {
    let mut parts = Vec::new();
    if let Some(n) = retention.max_changes {
        parts.push(format!("{n} changes"));
    }
    if let Some(secs) = retention.max_age_secs {
        parts.push(format!("{secs} s"));
    }
    if parts.is_empty() {
        "all".to_string()
    } else {
        parts.join(", ")
    }
}

/// `label: value` lines with the values aligned.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    pairs
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect()
}

/// Rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| h.to_string()).collect();
    std::iter::once(header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, to the second.
pub fn utc(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

/// A byte count for people: bytes, or KiB, MiB, GiB, TiB with one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut size = n as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_000_000_123), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn sizes_are_readable() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn tables_align_their_columns() {
        let text = table(
            &["NAME", "N"],
            vec![
                vec!["long-name".into(), "1".into()],
                vec!["x".into(), "22".into()],
            ],
        );
        assert_eq!(text, "NAME       N\nlong-name  1\nx          22\n");
    }

    #[test]
    fn documents_and_changes_print_as_json() {
        let doc = Doc {
            key: "k".into(),
            rev: 3,
            value: json::parse(r#"{"b":[1],"a":"x"}"#).unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&DocJson::new(&doc)).unwrap(),
            r#"{"key":"k","rev":3,"value":{"b":[1],"a":"x"}}"#
        );
        assert_eq!(
            doc_text(&doc),
            "k  (rev 3)\n{\n  \"b\": [\n    1\n  ],\n  \"a\": \"x\"\n}"
        );
        let put = ChangeEntry {
            seq: 4,
            op: Op::Put,
            key: "k".into(),
            value: Some(rmpv::Value::Binary(vec![1])),
            time_ms: 9,
        };
        assert_eq!(
            serde_json::to_string(&ChangeJson::item(&put)).unwrap(),
            r#"{"type":"change","seq":4,"op":"put","key":"k","value":"AQ==","time_ms":9}"#
        );
        let del = ChangeEntry {
            op: Op::Del,
            value: None,
            ..put
        };
        assert_eq!(
            serde_json::to_string(&ChangeJson::new(&del)).unwrap(),
            r#"{"seq":4,"op":"del","key":"k","time_ms":9}"#
        );
        assert_eq!(change_line(&del), "     4  del  k");
        let end = FeedEnd {
            reason: FeedEndReason::Canceled,
            last_seq: 4,
        };
        assert_eq!(
            serde_json::to_string(&FeedMark::end(&end)).unwrap(),
            r#"{"type":"end","reason":"canceled","last_seq":4}"#
        );
        assert_eq!(
            serde_json::to_string(&FeedMark::heartbeat(7)).unwrap(),
            r#"{"type":"heartbeat","last_seq":7}"#
        );
    }

    #[test]
    fn usage_shows_sizes_and_a_table_of_databases() {
        let dir = |path: &str, bytes: u64| DirUsage {
            path: path.into(),
            bytes,
            files: 3,
            fs_total_bytes: 10 << 30,
            fs_available_bytes: 4 << 30,
        };
        let usage = UsageResult {
            dir: dir("/d", 3 << 20),
            backups: dir("/d/backups", 1 << 20),
            env: cairn_client::methods::EnvUsage {
                file_bytes: 2 << 20,
                map_size: 1 << 40,
                page_size: 4096,
                total_pages: 512,
                used_pages: 128,
                free_pages: 384,
                used_bytes: 128 * 4096,
                free_bytes: 384 * 4096,
            },
            journal: cairn_client::methods::JournalUsage {
                first_seq: 3,
                last_seq: 9,
                bytes: 4096,
            },
            databases: vec![cairn_client::methods::DbUsage {
                name: "notes".into(),
                doc_count: 7,
                doc_bytes: 2048,
                log_bytes: 100,
                log_entries: 9,
            }],
        };
        let text = usage_text(&usage);
        assert!(
            text.starts_with("directory:         3.0 MiB in 3 files  /d\n"),
            "{text}"
        );
        assert!(text.contains("its file system:   4.0 GiB available of 10.0 GiB\n"));
        assert!(text.contains("map size:          1.0 TiB\n"), "{text}");
        assert!(text.contains("free pages:        384 (1.5 MiB, left out of a compacted backup)"));
        assert!(
            text.contains("journal:           4.0 KiB for mirrors (entries 3 to 9)\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "NAME   DOCS  DATA     LOG    LOG_ENTRIES\nnotes  7     2.0 KiB  100 B  9\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn retention_says_what_is_kept() {
        assert_eq!(retention(&RetentionArgs::default()), "all");
        let both = RetentionArgs {
            max_changes: Some(10),
            max_age_secs: Some(60),
        };
        assert_eq!(retention(&both), "10 changes, 60 s");
    }
}
