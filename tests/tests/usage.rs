//! End to end: `cairn usage` on a real `cairn-service`, driven by the real `cairn` CLI.
//! Its figures move the right way as documents are loaded and deleted (free pages grow
//! when most documents go) and as a backup is written into the backup directory; the
//! text output is readable; and only an admin may ask.

use cairn_tests::cli::Endpoint;
use cairn_tests::process::ServiceProcess;
use serde_json::Value;

/// JSON lines for `cairn batch`: the operation `op` (`put` or `del`) on the key
/// `{prefix}{i:06}` for each `i` of `keys`; puts carry about 1 KiB.
fn batch_lines(op: &str, prefix: &str, keys: impl Iterator<Item = usize>) -> String {
    let filler = "x".repeat(1000);
    keys.map(|i| match op {
        "put" => format!(
            "{{\"op\":\"put\",\"key\":\"{prefix}{i:06}\",\"value\":{{\"n\":{i},\"f\":\"{filler}\"}}}}\n"
        ),
        _ => format!("{{\"op\":\"del\",\"key\":\"{prefix}{i:06}\"}}\n"),
    })
    .collect()
}

fn usage(cli: &Endpoint) -> Value {
    cli.run(&["-o", "json", "usage"]).ok().json()
}

/// The number at the JSON pointer `pointer` (`/env/used_pages`) of `value`.
fn number(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

#[test]
fn usage_follows_loads_deletes_and_backups_and_is_for_admins_only() {
    let scratch = tempfile::tempdir().unwrap();
    // A short journal and a short change log: deleted documents leave no copy of their
    // values in either.
    let dir = scratch.path().join("data");
    cairn_tests::process::write_settings(&dir, "[store]\njournal_retain_mib = 1\n");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes", "--max-changes", "100"])
        .ok();

    let empty = usage(&cli);
    assert_eq!(empty["databases"][0]["name"], "notes");
    assert_eq!(number(&empty, "/databases/0/doc_count"), 0);
    assert_eq!(number(&empty, "/backups/files"), 0);
    assert!(number(&empty, "/dir/fs_available_bytes") > 0, "{empty}");
    assert_eq!(number(&empty, "/env/page_size"), 4096);

    for b in 0..2 {
        let lines = batch_lines("put", "doc", b * 5000..(b + 1) * 5000);
        cli.run_with_stdin(&["batch", "notes"], &lines).ok();
    }
    let loaded = usage(&cli);
    let db = &loaded["databases"][0];
    assert_eq!(number(db, "/doc_count"), 10_000);
    assert_eq!(number(db, "/log_entries"), 100);
    assert!(number(db, "/doc_bytes") > 10_000 * 1000, "{db}");
    let used = number(&loaded, "/env/used_bytes");
    assert!(used > 10_000 * 1000, "{loaded}");
    assert!(
        number(&loaded, "/dir/bytes") > number(&empty, "/dir/bytes") + 10_000 * 1000,
        "the directory grew on disk: {loaded}"
    );

    // Delete nine in ten: most pages become free, the file stays as large.
    let doomed = (0..10_000).filter(|i| i % 10 != 0);
    cli.run_with_stdin(&["batch", "notes"], &batch_lines("del", "doc", doomed))
        .ok();
    let thinned = usage(&cli);
    assert_eq!(number(&thinned, "/databases/0/doc_count"), 1000);
    let free_before = number(&loaded, "/env/free_pages");
    let free_after = number(&thinned, "/env/free_pages");
    let used_after = number(&thinned, "/env/used_bytes");
    assert!(
        free_after > free_before + number(&loaded, "/env/used_pages") / 2,
        "free pages grow after the deletes: {loaded} then {thinned}"
    );
    assert!(used_after < used / 3, "{thinned}");
    // The journal keeps its retention: at most 1 MiB, and always the newest entry
    // (here the deletes' batch); the loads' entries are gone.
    let journal = number(&thinned, "/journal/bytes");
    let newest = number(&thinned, "/journal/last_seq");
    assert_eq!(number(&thinned, "/journal/first_seq"), newest, "{thinned}");
    assert!(journal > 0 && journal <= 1 << 20, "{thinned}");
    assert!(number(&thinned, "/env/file_bytes") >= number(&loaded, "/env/file_bytes"));

    // A backup lands in the backup directory (inside DIR): both grow by about the
    // compacted environment, which is the used pages, not the file.
    let job = cli
        .run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let backed_up = usage(&cli);
    let backups = number(&backed_up, "/backups/bytes");
    assert!(number(&backed_up, "/backups/files") >= 2, "{backed_up}");
    assert!(
        backups >= used_after && backups < number(&thinned, "/env/file_bytes"),
        "the backup takes about the used pages: {backed_up}"
    );
    assert!(
        number(&backed_up, "/dir/bytes") >= number(&thinned, "/dir/bytes") + used_after,
        "the directory counts its backups: {thinned} then {backed_up}"
    );
    assert!(backed_up["backups"]["path"]
        .as_str()
        .unwrap()
        .ends_with("backups"));

    let text = cli.run(&["usage"]).ok().stdout;
    for needle in ["directory:", "backups:", "free pages:", "MiB", "notes"] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }

    // Only an admin may ask.
    cli.run_with_stdin(&["user", "add", "reader", "--password-stdin"], "pw\n")
        .ok();
    cli.run(&["user", "grant", "reader", "notes", "read"]).ok();
    Endpoint::tls(&service, "reader:pw")
        .run(&["usage"])
        .fails(1, "forbidden (403)");
    let (status, _) = service.stop().unwrap();
    assert!(status.success());
}
