//! `cairn-migrate` end to end, with real processes only: format-1 working directories
//! written by the format-1 release's own service and CLI (`cairn_tests::format1`),
//! migrated by this release's `cairn-migrate`, then served by this release's
//! `cairn-service` to this release's `cairn`. A migrated directory serves every
//! document, change log, index, user, session, job and status of the old one, and a
//! feed cursor from before goes on; a migration killed with SIGKILL at random moments,
//! or stopped by a disk whose fdatasync fails (libfiu), finishes with `--from-last`
//! exactly as an uninterrupted one; damaged documents are
//! counted, dumped and left out (or moved as they are with `--safety-off`); every
//! refusal says why and changes nothing; and a format-2 document whose bytes rot on
//! disk is reported as `corrupt`, never served. The source of every migration is
//! compared byte for byte before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_tests::cli::{run_program, Endpoint, Run};
use cairn_tests::format1;
use cairn_tests::process::{binary, ServiceProcess};
use cairn_tests::tmpfs::with_tmpfs;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvFlags, EnvOpenOptions};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// This release's `cairn-migrate`.
fn migrate_exe() -> PathBuf {
    binary("cairn-migrate", "cairn-migrate").expect("the cairn-migrate binary")
}

/// This release's `cairn-backup`.
fn backup_exe() -> PathBuf {
    binary("cairn-backup", "cairn-backup").expect("the cairn-backup binary")
}

/// The text of a path, for a command line.
fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `cairn-migrate ARGS`.
fn cairn_migrate(args: &[String]) -> Run {
    run_program(&migrate_exe(), args, "")
}

/// `cairn-migrate --src SRC --dest DEST MORE...`.
fn migrate_args(src: &Path, dest: &Path, more: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--src".to_string(),
        arg(src),
        "--dest".to_string(),
        arg(dest),
    ];
    args.extend(more.iter().map(|m| m.to_string()));
    args
}

/// Every file (with its bytes) and directory (`None`) under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("reading a directory") {
            let path = entry.expect("a directory entry").path();
            let rel = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            if path.is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).expect("reading a file")));
            }
        }
    }
    out
}

/// Asserts that `dir` holds what `before` recorded, naming what differs (never dumping
/// the bytes).
fn assert_unchanged(dir: &Path, before: &BTreeMap<String, Option<Vec<u8>>>) {
    let after = snapshot(dir);
    let changed: std::collections::BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert!(changed.is_empty(), "{} changed: {changed:?}", dir.display());
}

/// Copies the directory `from` to `to` (files, directories and permission bits).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    ensure!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

/// Every document of `db` as `scan` prints them, page after page.
fn scan_all(endpoint: &Endpoint, db: &str) -> Vec<Value> {
    let mut docs: Vec<Value> = Vec::new();
    loop {
        let after = docs
            .last()
            .map(|doc| doc["key"].as_str().expect("a key").to_string());
        let mut args = vec!["-o", "json", "scan", db, "--limit", "1000"];
        if let Some(after) = &after {
            args.extend(["--after", after]);
        }
        let page = endpoint.run(&args).ok().json();
        docs.extend(
            page["docs"]
                .as_array()
                .expect("scan's docs")
                .iter()
                .cloned(),
        );
        if page["more"] != true {
            return docs;
        }
    }
}

/// The change log of `db` after `since` up to `last_seq` (`changes`, page after page),
/// and the epoch every page carried.
fn changes_all(endpoint: &Endpoint, db: &str, since: u64, last_seq: u64) -> (Vec<Value>, u64) {
    let mut changes: Vec<Value> = Vec::new();
    let mut since = since;
    let mut epochs = Vec::new();
    while since < last_seq {
        let since_text = since.to_string();
        let page = endpoint
            .run(&[
                "-o",
                "json",
                "changes",
                db,
                "--since",
                &since_text,
                "--limit",
                "1000",
            ])
            .ok()
            .json();
        epochs.push(page["epoch"].as_u64().expect("an epoch"));
        let entries = page["changes"].as_array().expect("the changes");
        since = entries.last().expect("changes up to last_seq")["seq"]
            .as_u64()
            .expect("a seq");
        changes.extend(entries.iter().cloned());
    }
    epochs.dedup();
    assert_eq!(epochs.len(), 1, "one epoch: {epochs:?}");
    (changes, epochs[0])
}

/// The entry of the database `name` in a list of a `-o json` summary.
fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// The keys of `docs` (as `scan` or `find` print them).
fn keys(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .map(|doc| doc["key"].as_str().expect("a key"))
        .collect()
}

/// `find DB INDEX ARGS` (one page), its documents as `scan` prints them.
fn find(endpoint: &Endpoint, db: &str, index: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-o", "json", "find", db, index, "--limit", "1000"];
    all.extend_from_slice(args);
    let found = endpoint.run(&all).ok().json();
    assert_eq!(found["more"], false, "one page");
    found["docs"]
        .as_array()
        .expect("find's docs")
        .iter()
        .map(|doc| json!({"key": doc["key"], "rev": doc["rev"], "value": doc["value"]}))
        .collect()
}

#[test]
fn a_migrated_directory_serves_what_the_format1_service_did() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("old");
    let fixture = format1::populate(&src, 11)?;
    let before = snapshot(&src);

    // A relative --dest, from the scratch directory.
    let output = Command::new(migrate_exe())
        .args(["--src", &arg(&src), "--dest", "new", "-o", "json"])
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        output.status.code() == Some(0),
        "cairn-migrate exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout)?;
    let new = scratch.path().join("new");
    assert_unchanged(&src, &before);

    // The summary: everything moved, nothing refused.
    assert_eq!(
        (&summary["source_format"], &summary["format"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(summary["source_service_id"], fixture.status["service_id"]);
    assert_ne!(summary["service_id"], fixture.status["service_id"]);
    assert_eq!(
        (
            &summary["refused"],
            &summary["resumed"],
            &summary["safety_off"]
        ),
        (&json!(0), &json!(false), &json!(false))
    );
    let mut documents = 0;
    for (name, content) in &fixture.databases {
        let db = entry(&summary["databases"], name);
        let expected = json!({
            "documents": content.docs.len(),
            "refused": 0,
            "changes": content.changes.len(),
            "last_seq": content.info["last_seq"],
            "indexes_stale": false,
            "refusals": [],
        });
        for (field, value) in expected.as_object().expect("a map") {
            assert_eq!(&db[field], value, "{name}: {field}");
        }
        documents += content.docs.len();
    }
    assert_eq!(summary["documents"], documents);
    // The other files: the certificates, as they were (backups/ is not copied).
    let copied = snapshot(&new.join("certs"));
    let original: BTreeMap<_, _> = snapshot(&src.join("certs"))
        .into_iter()
        .filter(|(_, bytes)| bytes.is_some())
        .collect();
    assert_eq!(
        copied
            .into_iter()
            .filter(|(_, b)| b.is_some())
            .collect::<BTreeMap<_, _>>(),
        original
    );
    assert_eq!(summary["files"], original.len());
    assert!(!new.join("backups").exists());
    let offsets: Value =
        serde_json::from_slice(&std::fs::read(new.join("migration/offsets.json"))?)?;
    assert_eq!(offsets["source_epoch"], fixture.epoch);
    for (name, content) in &fixture.databases {
        assert_eq!(offsets["databases"][name], content.info["last_seq"]);
    }

    // --counts: no difference, as JSON and as text.
    let counts = cairn_migrate(&migrate_args(&src, &new, &["--counts", "-o", "json"]))
        .ok()
        .json();
    assert_eq!(counts.as_array().expect("a list").len(), 4);
    for count in counts.as_array().expect("a list") {
        let content = &fixture.databases[count["name"].as_str().expect("a name")];
        assert_eq!(
            count["source"],
            json!({
                "documents": content.docs.len(),
                "changes": content.changes.len(),
                "last_seq": content.info["last_seq"],
            })
        );
        assert_eq!(count["source"], count["dest"], "{count}");
        assert_eq!(
            count["missing"],
            json!({"documents": 0, "changes": 0, "last_seq": 0}),
            "{count}"
        );
    }
    let text = cairn_migrate(&migrate_args(&src, &new, &["--counts"]))
        .ok()
        .stdout;
    let diffs: Vec<&str> = text.lines().filter(|l| l.contains(" diff ")).collect();
    assert_eq!(diffs.len(), 4, "{text}");
    assert!(
        diffs
            .iter()
            .all(|l| l.split_whitespace().skip(2).all(|n| n == "0")),
        "{text}"
    );
    assert_unchanged(&src, &before);

    // This release's service starts on it at once (timed once the binary is built).
    binary("cairn-server", "cairn-service")?;
    let started = Instant::now();
    let service = ServiceProcess::start(&new, &[])?;
    let took = started.elapsed();
    println!("cairn-service started on the migrated directory in {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "no conversion at start: {took:?}"
    );
    let root = Endpoint::unix(&service);

    // The service's own lists, as the old service printed them; the byte counters
    // grew by the checksums (4 bytes per document and change).
    let mut db_list = fixture.db_list.clone();
    for db in db_list.as_array_mut().expect("a list") {
        let name = db["name"].as_str().expect("a name").to_string();
        let content = &fixture.databases[&name];
        let grow = |field: &str, count: usize| {
            db[field].as_u64().expect("a counter") + 4 * u64::try_from(count).expect("a count")
        };
        let (docs, log) = (
            grow("doc_bytes", content.docs.len()),
            grow("log_bytes", content.changes.len()),
        );
        db["doc_bytes"] = json!(docs);
        db["log_bytes"] = json!(log);
    }
    assert_eq!(root.run(&["-o", "json", "db", "list"]).ok().json(), db_list);
    // The login throttle's fields are the running service's memory, not stored data:
    // format 1 had none, and they are left out of the comparison.
    let mut users = root.run(&["-o", "json", "user", "list"]).ok().json();
    for user in users.as_array_mut().expect("a list") {
        let user = user.as_object_mut().expect("a user");
        for field in ["failed_logins", "last_failed_login_ms", "login_delay_ms"] {
            user.remove(field);
        }
    }
    assert_eq!(users, fixture.users);
    assert_eq!(
        root.run(&["-o", "json", "jobs", "list"]).ok().json(),
        fixture.jobs
    );
    let mut status = fixture.status.clone();
    status["service_id"] = summary["service_id"].clone();
    assert_eq!(root.run(&["-o", "json", "status"]).ok().json(), status);

    // Every database: documents with their revs, the change log from its first kept
    // change with seqs, ops, keys, values and times, the same epoch, the configuration.
    for name in ["notes", "people", "trimmed"] {
        let content = &fixture.databases[name];
        assert_eq!(scan_all(&root, name), content.docs, "{name}");
        let last_seq = content.info["last_seq"].as_u64().expect("last_seq");
        let (changes, epoch) = changes_all(&root, name, content.trimmed_through, last_seq);
        assert_eq!(changes, content.changes, "{name}");
        assert_eq!(epoch, fixture.epoch);
        assert_eq!(
            root.run(&["-o", "json", "db", "config", name]).ok().json(),
            content.config,
            "{name}"
        );
    }
    // Retention's trimming stays: the log of `trimmed` starts after seq 30.
    root.run(&["changes", "trimmed", "--since", "0"])
        .fails(1, "changes_compacted");
    // `archive` stays offline until it is brought online.
    assert_eq!(
        root.run(&["-o", "json", "db", "config", "archive"])
            .ok()
            .json(),
        fixture.databases["archive"].config
    );
    root.run(&["scan", "archive"]).fails(1, "database_offline");
    root.run(&["db", "online", "archive"]).ok();
    let archive = &fixture.databases["archive"];
    assert_eq!(scan_all(&root, "archive"), archive.docs);
    let archive_last = archive.info["last_seq"].as_u64().context("last_seq")?;
    assert_eq!(
        changes_all(&root, "archive", 0, archive_last).0,
        archive.changes
    );

    // The indexes of `people`, rebuilt in format 2's layout, answer as its documents
    // imply; the unique one is still unique.
    let people = &fixture.databases["people"].docs;
    let holding = |pointer: &str, value: &Value| -> Vec<Value> {
        people
            .iter()
            .filter(|doc| doc["value"].pointer(pointer) == Some(value))
            .cloned()
            .collect()
    };
    for doc in people {
        let email = doc["value"]["email"].to_string();
        assert_eq!(
            find(&root, "people", "by_email", &[&email]),
            std::slice::from_ref(doc)
        );
    }
    assert!(find(&root, "people", "by_email", &["\"person-3@example.com\""]).is_empty());
    for city in ["Kyōto", "Oslo"] {
        let found = find(&root, "people", "by_city", &[&json!(city).to_string()]);
        assert_eq!(found, holding("/address/city", &json!(city)), "{city}");
    }
    assert_eq!(find(&root, "people", "by_city", &["\"Kyōto\""]).len(), 12);
    let by_age = find(&root, "people", "by_age", &["--start", "30", "--end", "33"]);
    let mut in_range: Vec<Value> = (30..33)
        .flat_map(|age| holding("/age", &json!(age)))
        .collect();
    in_range.sort_by_key(|doc| (doc["value"]["age"].as_u64(), doc["key"].to_string()));
    assert_eq!(by_age, in_range);
    let twin = json!({"email": "person-0@example.com"}).to_string();
    root.run(&["put", "people", "twin", &twin])
        .fails(1, "unique_violation");

    // Users log in over TLS with their old passwords; alice's old session goes on.
    let alice = Endpoint::tls(&service, "alice");
    let login = alice
        .run_with_stdin(
            &["-o", "json", "login", "--password-stdin"],
            &format!("{}\n", fixture.passwords["alice"]),
        )
        .ok()
        .json();
    let token = login["token"].as_str().context("login's token")?;
    let whoami = alice
        .token(token)
        .run(&["-o", "json", "whoami"])
        .ok()
        .json();
    assert_eq!(
        (&whoami["user"], &whoami["via"]),
        (&json!("alice"), &json!("token"))
    );
    let old_session = alice.token(&fixture.tokens["alice"]);
    let whoami = old_session.run(&["-o", "json", "whoami"]).ok().json();
    assert_eq!(
        (&whoami["user"], &whoami["via"]),
        (&json!("alice"), &json!("token"))
    );
    assert_eq!(
        scan_all(&old_session, "notes"),
        fixture.databases["notes"].docs
    );
    old_session
        .run(&["put", "notes", "by-alice", "1"])
        .fails(1, "forbidden");
    let bob = Endpoint::tls(&service, &format!("bob:{}", fixture.passwords["bob"]));
    assert_eq!(bob.value("trimmed", "t-03"), json!({"round": 3, "i": 3}));
    Endpoint::tls(&service, "carol:wrong-password")
        .run(&["whoami"])
        .fails(1, "bad_credentials");

    // A feed cursor from before the migration goes on without resync_required.
    let notes_last = fixture.databases["notes"].info["last_seq"]
        .as_u64()
        .context("last_seq")?;
    let (since, epoch) = (notes_last.to_string(), fixture.epoch.to_string());
    let feed = [
        "-o", "json", "changes", "notes", "--since", &since, "--epoch", &epoch,
    ];
    let page = root.run(&feed).ok().json();
    assert_eq!(page["changes"], json!([]));
    assert_eq!(page["last_seq"], notes_last);
    root.run(&["put", "notes", "after-migration", "{\"n\": 1}"])
        .ok();
    let page = root.run(&feed).ok().json();
    let changes = page["changes"].as_array().context("changes")?;
    assert_eq!(changes.len(), 1, "{page}");
    assert_eq!(
        (
            &changes[0]["seq"],
            &changes[0]["op"],
            &changes[0]["key"],
            &changes[0]["value"]
        ),
        (
            &json!(notes_last + 1),
            &json!("put"),
            &json!("after-migration"),
            &json!({"n": 1})
        )
    );
    let other_epoch = (fixture.epoch + 1).to_string();
    root.run(&[
        "changes",
        "notes",
        "--since",
        &since,
        "--epoch",
        &other_epoch,
    ])
    .fails(1, "resync_required");

    let (exit, stderr) = service.stop()?;
    assert!(exit.success(), "cairn-service on SIGTERM: {stderr}");
    assert_unchanged(&src, &before);
    Ok(())
}

/// Opens the LMDB environment of the working directory `dir` with raw heed: read-only
/// without a lock file (`MDB_RDONLY | MDB_NOLOCK`: nothing in `dir` is written), or
/// writable. No process may be using it.
fn open_raw(dir: &Path, writable: bool) -> Result<heed::Env> {
    let path = dir.join("store");
    let mut options = EnvOpenOptions::new();
    options.max_dbs(16).map_size(1 << 30);
    if !writable {
        // SAFETY: read-only flags, and NO_LOCK on an environment no process uses (the
        // caller's promise).
        unsafe {
            options.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK);
        }
    }
    // SAFETY: the caller's promise that no process uses the environment, and this
    // process opens it once at a time (each caller closes it before the next open).
    unsafe { options.open(&path) }.with_context(|| format!("opening {}", path.display()))
}

/// Closes an environment opened by [`open_raw`], waiting until LMDB lets it go.
fn close_raw(env: heed::Env) {
    env.prepare_for_closing().wait();
}

/// The tables `names` of `env` (each must exist).
fn raw_tables<const N: usize>(
    env: &heed::Env,
    names: [&str; N],
) -> Result<[Database<'static, Bytes, Bytes>; N]> {
    let rtxn = env.read_txn()?;
    let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
        let mut tables = Vec::with_capacity(N);
        for name in names {
            let table = opener
                .open_database::<Bytes, Bytes>(rtxn, Some(name))?
                .with_context(|| format!("no table {name}"))?;
            tables.push(table);
        }
        let tables: [Database<'_, Bytes, Bytes>; N] = match tables.try_into() {
            Ok(tables) => tables,
            Err(_) => bail!("one handle per table"),
        };
        Ok(CommitOrAbort::<_, ()>::Commit(tables))
    })?;
    Ok(opened.unwrap_commit())
}

/// Edits the tables `names` of the working directory `dir` with raw heed, in one write
/// transaction (no service may be running on it).
fn edit_tables<const N: usize>(
    dir: &Path,
    names: [&str; N],
    edit: impl FnOnce(&mut heed::RwTxn, [Database<'static, Bytes, Bytes>; N]) -> Result<()>,
) -> Result<()> {
    let env = open_raw(dir, true)?;
    let edited = (|| {
        let tables = raw_tables(&env, names)?;
        let mut wtxn = env.write_txn()?;
        edit(&mut wtxn, tables)?;
        wtxn.commit()?;
        Ok(())
    })();
    close_raw(env);
    edited
}

/// The id of the database `name` in its catalog record (bytes 1 to 4 in both formats).
fn database_id(
    txn: &heed::RoTxn,
    catalog: Database<'static, Bytes, Bytes>,
    name: &str,
) -> Result<u32> {
    let record = catalog
        .get(txn, name.as_bytes())?
        .with_context(|| format!("no catalog record of {name}"))?;
    let id = record.get(1..5).context("a catalog record")?;
    Ok(u32::from_be_bytes(id.try_into()?))
}

/// msgpack of a JSON value (maps with string keys, as the CLI encodes them).
fn msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &to_msgpack(value)).expect("msgpack encodes");
    out
}

/// A JSON value as the msgpack value the CLI makes of it.
fn to_msgpack(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => rmpv::Value::from(u),
            (None, Some(i)) => rmpv::Value::from(i),
            (None, None) => rmpv::Value::from(n.as_f64().expect("a number")),
        },
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(to_msgpack).collect()),
        Value::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
                .collect(),
        ),
    }
}

/// A msgpack map without the entries whose key is one of `drop`.
fn without(bytes: &[u8], drop: &[&str]) -> Vec<u8> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).expect("a msgpack value");
    let rmpv::Value::Map(entries) = value else {
        panic!("a msgpack map: {value}");
    };
    let kept = entries
        .into_iter()
        .filter(|(key, _)| !key.as_str().is_some_and(|key| drop.contains(&key)))
        .collect();
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &rmpv::Value::Map(kept)).expect("msgpack encodes");
    out
}

/// The tables of format 2.
const FORMAT2_TABLES: [&str; 10] = [
    "meta", "catalog", "docs", "changes", "users", "sessions", "jobs", "configs", "indexes", "sync",
];

/// The entries of every table of a format-2 directory, by table name.
type Content = BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Every table of the format-2 directory `dir`, read with raw heed, without what a
/// migration draws per run: the meta's `service_id` and `created_ms`, the migration
/// record's `started_ms` and `finished_ms`, the sync positions' `updated_ms`.
fn logical_content(dir: &Path) -> Result<Content> {
    let env = open_raw(dir, false)?;
    let read = (|| -> Result<Content> {
        let tables = raw_tables(&env, FORMAT2_TABLES)?;
        let rtxn = env.read_txn()?;
        let mut content = Content::new();
        for (name, table) in FORMAT2_TABLES.into_iter().zip(tables) {
            let mut entries = BTreeMap::new();
            for entry in table.iter(&rtxn)? {
                let (key, value) = entry?;
                let value = match (name, key) {
                    ("meta", b"service_id" | b"created_ms") => continue,
                    ("meta", b"migration") => without(value, &["started_ms", "finished_ms"]),
                    ("sync", _) => without(value, &["updated_ms"]),
                    _ => value.to_vec(),
                };
                entries.insert(key.to_vec(), value);
            }
            content.insert(name, entries);
        }
        Ok(content)
    })();
    close_raw(env);
    read
}

/// Where the migration into `dest` stands, for people: nothing yet, started (no
/// commit), the databases done and the one under way, or finished.
fn migration_stage(dest: &Path) -> Result<String> {
    if !dest.join("migration/started").exists() {
        return Ok("nothing yet".to_string());
    }
    if !dest.join("store/data.mdb").exists() {
        return Ok("started, no environment".to_string());
    }
    let env = open_raw(dest, false)?;
    let read = (|| -> Result<String> {
        let rtxn = env.read_txn()?;
        let meta = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.open_database::<Bytes, Bytes>(rtxn, Some("meta"))?,
            ))
        })?;
        let Some(meta) = meta.unwrap_commit() else {
            return Ok("started, no commit".to_string());
        };
        let rtxn = env.read_txn()?;
        let Some(record) = meta.get(&rtxn, b"migration")? else {
            return Ok("started, no commit".to_string());
        };
        let record = rmpv::decode::read_value(&mut &record[..])?;
        let field = |name: &str| -> rmpv::Value {
            record
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
                .map_or(rmpv::Value::Nil, |(_, v)| v.clone())
        };
        if !field("finished_ms").is_nil() {
            return Ok("finished".to_string());
        }
        let current = field("current");
        let under_way = match current.as_map() {
            Some(cursor) => {
                let get = |name: &str| {
                    cursor
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                        .map_or(rmpv::Value::Nil, |(_, v)| v.clone())
                };
                // The last stored key copied: database id ‖ document key, or ‖ seq.
                let stored: Option<Vec<u8>> = match get("after") {
                    rmpv::Value::Binary(key) => Some(key),
                    rmpv::Value::Array(bytes) => bytes
                        .iter()
                        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect(),
                    _ => None,
                };
                let stage = get("stage");
                let after = match stored.as_deref().and_then(|s| s.get(4..)) {
                    Some(seq) if stage.as_str() == Some("Changes") => {
                        format!(" after seq {}", u64::from_be_bytes(seq.try_into()?))
                    }
                    Some(key) => format!(" after {:?}", String::from_utf8_lossy(key)),
                    None => String::new(),
                };
                let text = |v: rmpv::Value| v.as_str().unwrap_or_default().to_string();
                format!("; {} {}{after}", text(get("db")), text(stage))
            }
            None => String::new(),
        };
        let done: Vec<String> = field("done")
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(format!("done [{}]{under_way}", done.join(", ")))
    })();
    close_raw(env);
    read
}

/// Documents the kill test adds to the fixture through the old service and CLI: to
/// `people` (with its three indexes, one unique) and to `notes`.
const BULK: [(&str, u32); 2] = [("people", 60_000), ("notes", 40_000)];

/// Kills of the kill test, at least.
const KILLS: usize = 12;

/// The `i`th bulk document of `db`.
fn bulk_document(db: &str, i: u32) -> Value {
    const CITIES: [&str; 5] = ["Oslo", "Lyon", "Kyōto", "Quito", "Perth"];
    let city = CITIES[usize::try_from(i).expect("a u32 fits usize") % CITIES.len()];
    match db {
        "people" => json!({
            "name": format!("Bulk {i}"),
            "email": format!("bulk-{i}@example.com"),
            "age": 18 + i % 70,
            "address": {"city": city},
        }),
        _ => {
            json!({"n": i, "text": "cairn stone ridge ".repeat(1 + usize::try_from(i % 8).expect("small"))})
        }
    }
}

/// Adds [`BULK`] to the format-1 directory `src` through the old service and the old
/// `cairn batch`, 10,000 documents a batch (the old service's largest).
fn add_bulk(src: &Path) -> Result<()> {
    let binaries = format1::binaries()?;
    let service = format1::start_service(src)?;
    let root = Endpoint::unix(&service);
    let added = (|| -> Result<()> {
        for (db, count) in BULK {
            for first in (0..count).step_by(10_000) {
                let ops: String = (first..count.min(first + 10_000))
                    .map(|i| {
                        let key = format!("bulk-{i:06}");
                        let op = json!({"op": "put", "key": key, "value": bulk_document(db, i)});
                        op.to_string() + "\n"
                    })
                    .collect();
                let run = root.run_program(&binaries.cli, &["batch", db], &ops);
                ensure!(run.code == 0, "format-1 cairn batch {db}: {}", run.stderr);
            }
        }
        Ok(())
    })();
    let (status, stderr) = service.stop()?;
    added?;
    ensure!(
        status.success(),
        "the format-1 service on SIGTERM: {stderr}"
    );
    Ok(())
}

/// Starts `cairn-migrate --src SRC --dest DEST` (`--from-last` with `from_last`).
fn spawn_migrate(src: &Path, dest: &Path, from_last: bool) -> Result<Child> {
    let more: &[&str] = if from_last { &["--from-last"] } else { &[] };
    Ok(Command::new(migrate_exe())
        .args(migrate_args(src, dest, more))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Every file of a migrated directory but its environment and lock, with the offsets
/// file without the time it was written.
fn other_files(dir: &Path) -> Result<BTreeMap<String, Option<Vec<u8>>>> {
    let mut files = snapshot(dir);
    files.retain(|path, _| !path.starts_with("store") && path != "service.lock");
    let offsets = files
        .get_mut("migration/offsets.json")
        .and_then(Option::as_mut)
        .context("no offsets")?;
    let mut parsed: Value = serde_json::from_slice(offsets)?;
    parsed
        .as_object_mut()
        .context("offsets are a map")?
        .remove("read_ms")
        .context("offsets have read_ms")?;
    *offsets = parsed.to_string().into_bytes();
    Ok(files)
}

/// Asserts that two directories' contents are the same, naming the first table that
/// differs and how (never dumping the bytes).
fn assert_same_content(expected: &Content, found: &Content, what: &str) {
    for (table, entries) in expected {
        let other = &found[table];
        let differing: Vec<&Vec<u8>> = entries
            .keys()
            .chain(other.keys())
            .filter(|key| entries.get(*key) != other.get(*key))
            .collect();
        assert!(
            differing.is_empty(),
            "{what}: table {table} has {} entries, the uninterrupted run's {}; {} keys differ, the first {:?}",
            other.len(),
            entries.len(),
            differing.len(),
            String::from_utf8_lossy(differing[0])
        );
    }
}

/// Between kills: `cairn-migrate` without `--from-last` and this release's service
/// both refuse `dest`, the directory of an unfinished migration.
fn assert_refused_meanwhile(src: &Path, dest: &Path) -> Result<()> {
    cairn_migrate(&migrate_args(src, dest, &[])).fails(1, "add --from-last");
    match ServiceProcess::start(dest, &[]) {
        Ok(service) => {
            let _ = service.stop();
            bail!(
                "cairn-service started on {}, an unfinished migration",
                dest.display()
            )
        }
        Err(error) => {
            let error = format!("{error:#}");
            ensure!(
                error.contains("holds an unfinished migration from")
                    && error.contains("--from-last"),
                "cairn-service on an unfinished migration: {error}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_migration_killed_at_random_moments_ends_as_an_uninterrupted_one() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("old");
    format1::populate(&src, 12)?;
    add_bulk(&src)?;
    let before = snapshot(&src);

    let whole = scratch.path().join("whole");
    let started = Instant::now();
    let run = spawn_migrate(&src, &whole, false)?.wait_with_output()?;
    let uninterrupted = started.elapsed();
    ensure!(
        run.status.success(),
        "the uninterrupted migration: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected = logical_content(&whole)?;
    let expected_files = other_files(&whole)?;
    println!(
        "uninterrupted migration of 100,000 documents more than the fixture: {uninterrupted:?}"
    );

    // Chains of runs into fresh directories, each run killed with SIGKILL at a moment
    // drawn uniformly over the uninterrupted run's time (so that each kill lands at a
    // random point of what is left), the next one with --from-last, until one
    // finishes by itself; once KILLS kills are made, the chain under way is finished
    // with --from-last. Each chain's result must equal the uninterrupted run's.
    let seed = 0x006d_6967_7261_7465;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let longest = u64::try_from(uninterrupted.as_micros())?;
    let mut kills = Vec::new();
    let mut chain = 0;
    while kills.len() < KILLS {
        chain += 1;
        let dest = scratch.path().join(format!("cut-{chain}"));
        for round in 0.. {
            let mut child = spawn_migrate(&src, &dest, round > 0)?;
            if kills.len() >= KILLS {
                let output = child.wait_with_output()?;
                ensure!(
                    output.status.success(),
                    "the last --from-last: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                println!("chain {chain}, run {round}: finished with --from-last");
                break;
            }
            let delay = Duration::from_micros(rng.random_range(0..longest));
            std::thread::sleep(delay);
            // SIGKILL; a run that ended already is reaped below as it ended.
            child.kill()?;
            let output = child.wait_with_output()?;
            if std::os::unix::process::ExitStatusExt::signal(&output.status) != Some(libc::SIGKILL)
            {
                ensure!(
                    output.status.success(),
                    "a run of chain {chain}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                println!("chain {chain}, run {round}: finished before the kill at {delay:?}");
                break;
            }
            let stage = migration_stage(&dest)?;
            println!("chain {chain}, run {round}: killed at {delay:?}: {stage}");
            kills.push((delay, stage.clone()));
            match stage.as_str() {
                // Killed after the last commit: nothing is left to do.
                "finished" => break,
                // Killed before it made anything: nothing to refuse.
                "nothing yet" => {}
                _ => assert_refused_meanwhile(&src, &dest)?,
            }
        }
        assert_eq!(migration_stage(&dest)?, "finished", "chain {chain}");
        assert_same_content(
            &expected,
            &logical_content(&dest)?,
            &dest.display().to_string(),
        );
        assert_eq!(other_files(&dest)?, expected_files, "chain {chain}");
    }
    let mid_run = kills
        .iter()
        .filter(|(_, stage)| stage != "nothing yet" && stage != "finished")
        .count();
    println!(
        "{} kills in {chain} chains, {mid_run} of them mid-run",
        kills.len()
    );
    assert!(
        mid_run * 2 > kills.len(),
        "most kills land mid-run: {kills:?}"
    );
    assert_unchanged(&src, &before);
    Ok(())
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A format-1 stored document value: the rev, then the msgpack value.
fn format1_stored(rev: u64, value: &[u8]) -> Vec<u8> {
    [&rev.to_be_bytes()[..], value].concat()
}

#[test]
fn damaged_documents_are_counted_dumped_and_left_out_or_moved_as_they_are() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("old");
    let fixture = format1::populate(&src, 13)?;
    let people_last = fixture.databases["people"].info["last_seq"]
        .as_u64()
        .context("last_seq")?;
    let person0 = &fixture.databases["people"].docs[0];
    assert_eq!(person0["key"], "person-00");
    // Damage, written into the format-1 tables with raw heed, the service stopped: a
    // value that is not msgpack, a key that is not UTF-8, a rev beyond the log, a
    // second holder of a unique email (after its first in key order).
    let damaged: [(&str, &[u8], Vec<u8>); 4] = [
        ("notes", b"not-msgpack", format1_stored(5, &[0xc1])),
        (
            "people",
            b"bad-key-\xff\xfe",
            format1_stored(5, &msgpack(&json!({"name": "no key"}))),
        ),
        (
            "people",
            b"from-the-future",
            format1_stored(people_last + 100, &msgpack(&json!({"name": "later"}))),
        ),
        (
            "people",
            b"twin-of-person-00",
            format1_stored(7, &msgpack(&person0["value"])),
        ),
    ];
    edit_tables(&src, ["catalog", "docs"], |wtxn, [catalog, docs]| {
        for (db, key, stored) in &damaged {
            let id = database_id(wtxn, catalog, db)?;
            docs.put(wtxn, &[&id.to_be_bytes()[..], key].concat(), stored)?;
        }
        Ok(())
    })?;
    let before = snapshot(&src);

    // Checked: the damaged documents are counted per database, listed, dumped and left
    // out; the rest moves; exit status 1.
    let new = scratch.path().join("new");
    let dump = scratch.path().join("refused.jsonl");
    let run = cairn_migrate(&migrate_args(
        &src,
        &new,
        &["--dump-errors", &arg(&dump), "-o", "json"],
    ));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["refused"], 4);
    for (name, refused) in [("notes", 1), ("people", 3), ("trimmed", 0), ("archive", 0)] {
        let db = entry(&summary["databases"], name);
        assert_eq!(db["refused"], refused, "{name}");
        assert_eq!(
            db["documents"],
            fixture.databases[name].docs.len(),
            "{name}"
        );
    }
    let reasons: BTreeMap<String, String> = summary["databases"]
        .as_array()
        .context("databases")?
        .iter()
        .flat_map(|db| db["refusals"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(reasons["not-msgpack"].contains("msgpack"), "{reasons:?}");
    assert!(
        reasons["bad-key-\u{fffd}\u{fffd}"].contains("UTF-8"),
        "{reasons:?}"
    );
    assert!(
        reasons["from-the-future"].contains(&format!(
            "rev {} is outside 1..={people_last}",
            people_last + 100
        )),
        "{reasons:?}"
    );
    assert!(
        reasons["twin-of-person-00"].contains("by_email")
            && reasons["twin-of-person-00"].contains("held by \"person-00\""),
        "{reasons:?}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&dump)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 4, "one line per refused document: {lines:?}");
    for (db, key, stored) in &damaged {
        let line = lines
            .iter()
            .find(|line| line["key_hex"] == hex(key))
            .with_context(|| format!("no dump line for {}", hex(key)))?;
        assert_eq!(line["db"], *db);
        assert_eq!(line["key"], String::from_utf8_lossy(key).as_ref());
        assert_eq!(line["stored_hex"], hex(stored));
        assert_eq!(line["rev"], u64::from_be_bytes(stored[..8].try_into()?));
        let lossy = String::from_utf8_lossy(key);
        assert_eq!(line["error"], reasons[lossy.as_ref()], "{line}");
    }
    assert_unchanged(&src, &before);
    // The rest is served by this release's service.
    let service = ServiceProcess::start(&new, &[])?;
    let root = Endpoint::unix(&service);
    for name in ["notes", "people"] {
        assert_eq!(
            scan_all(&root, name),
            fixture.databases[name].docs,
            "{name}"
        );
    }
    root.run(&["get", "people", "twin-of-person-00"])
        .fails(1, "not_found");
    assert_eq!(
        find(&root, "people", "by_email", &["\"person-0@example.com\""]),
        std::slice::from_ref(person0)
    );
    service.stop()?;

    // With the checks off: the bytes move as they are, exit status 0; the summary says
    // the checks were off and that the indexes of people wait for a resync.
    let loose = scratch.path().join("loose");
    let run = cairn_migrate(&migrate_args(&src, &loose, &["--safety-off"])).ok();
    assert!(
        run.stdout
            .contains("checks: off (--safety-off): documents moved as they were"),
        "{}",
        run.stdout
    );
    let stale: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.contains("indexes stale: resync it"))
        .collect();
    assert!(
        stale.len() == 1 && stale[0].starts_with("people "),
        "{}",
        run.stdout
    );
    assert_unchanged(&src, &before);
    // The service serves them as it can: the value that is not msgpack goes out as the
    // byte it is (0xc1, msgpack's reserved marker, which the client's decoder reads as
    // nil) and a resync reports it; the rev beyond the log and the second holder of
    // an email are served; a scan over the key that is not UTF-8 is refused as corrupt;
    // the indexes of people wait for a resync.
    let service = ServiceProcess::start(&loose, &[])?;
    let root = Endpoint::unix(&service);
    let doc = root
        .run(&["-o", "json", "get", "notes", "not-msgpack"])
        .ok()
        .json();
    assert_eq!(doc, json!({"key": "not-msgpack", "rev": 5, "value": null}));
    assert_eq!(
        root.run(&["-o", "json", "get", "people", "from-the-future"])
            .ok()
            .json(),
        json!({"key": "from-the-future", "rev": people_last + 100, "value": {"name": "later"}})
    );
    assert_eq!(root.value("people", "twin-of-person-00"), person0["value"]);
    root.run(&["scan", "people", "--start", "bad", "--limit", "3"])
        .fails(1, "corrupt (500): corrupt record in table docs: document key is not a database id followed by UTF-8");
    root.run(&["find", "people", "by_email", "\"person-0@example.com\""])
        .fails(1, "index_stale");
    let config = root
        .run(&["-o", "json", "db", "config", "people"])
        .ok()
        .json();
    assert_eq!(config["indexes_stale"], true);
    root.run(&["db", "offline", "notes"]).ok();
    let resync = root.run(&["-o", "json", "db", "resync", "notes", "--wait"]);
    assert_eq!(resync.code, 1, "{}", resync.stderr);
    let job = resync.json();
    assert_eq!(
        (&job["status"], &job["stats"]["errored"]),
        (&json!("FAILED"), &json!(1))
    );
    let error = job["error"]["message"]
        .as_str()
        .context("the job's error")?;
    assert!(
        error.contains("\"not-msgpack\": invalid value: reserved msgpack marker 0xc1"),
        "{error}"
    );
    service.stop()?;
    Ok(())
}

/// The message of this release for a format-1 directory `dir`.
fn format1_refusal(dir: &Path) -> String {
    format!(
        "{} is format 1; this release reads format 2: run cairn-migrate --src {}",
        dir.display(),
        dir.display()
    )
}

#[test]
fn every_refusal_says_why_and_changes_nothing() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("old");
    let fixture = format1::populate(&src, 14)?;
    let dest = scratch.path().join("new");

    // The source in use by the format-1 service: refused with its pid; no destination.
    let old_service = format1::start_service(&src)?;
    let pid = old_service.pid();
    cairn_migrate(&migrate_args(&src, &dest, &[])).fails(1, &format!("is in use by pid {pid}"));
    assert!(!dest.exists());
    let (status, stderr) = old_service.stop()?;
    ensure!(
        status.success(),
        "the format-1 service on SIGTERM: {stderr}"
    );
    // (The old service wrote its reader table, store/lock.mdb: from here on nothing
    // may change.)
    let before = snapshot(&src);

    // A format-1 directory given to this release's service...
    let error = match ServiceProcess::start(&src, &[]) {
        Ok(service) => {
            let _ = service.stop();
            bail!("cairn-service started on a format-1 directory")
        }
        Err(error) => format!("{error:#}"),
    };
    ensure!(error.contains(&format1_refusal(&src)), "{error}");
    assert_unchanged(&src, &before);
    // ... to cairn-backup --restore ...
    let restored = scratch.path().join("restored");
    let run = run_program(
        &backup_exe(),
        &[
            "--restore".to_string(),
            arg(&fixture.backup),
            arg(&restored),
        ],
        "",
    );
    run.fails(1, &format1_refusal(&fixture.backup));
    assert!(!restored.exists());
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(leftovers, ["old"], "nothing beside the source");
    assert_unchanged(&src, &before);
    // ... and to a restore job of this release's service, which keeps serving.
    let current = scratch.path().join("current");
    let service = ServiceProcess::start(&current, &[])?;
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "kept"]).ok();
    root.run(&["put", "kept", "k", "\"still here\""]).ok();
    copy_dir(&fixture.backup, &current.join("backups/old-format"))?;
    let job = root
        .run(&["-o", "json", "restore", "start", "old-format"])
        .ok()
        .json();
    let id = job["id"].as_u64().context("the job's id")?.to_string();
    root.run(&["jobs", "wait", &id]).fails(1, "FAILED");
    let job = root.run(&["-o", "json", "jobs", "show", &id]).ok().json();
    assert_eq!(job["status"], "FAILED");
    let message = job["error"]["message"]
        .as_str()
        .context("the job's error")?;
    assert!(
        message.contains(&format1_refusal(&current.join("backups/old-format"))),
        "{message}"
    );
    assert_eq!(root.value("kept", "k"), json!("still here"));
    assert_eq!(
        root.run(&["-o", "json", "status"]).ok().json()["status"],
        "READ_WRITE"
    );
    service.stop()?;

    // A destination of another migration: refused, with --from-last or without,
    // whether that migration is finished or not; the destination is left as it was.
    let done = scratch.path().join("done");
    cairn_migrate(&migrate_args(&src, &done, &[])).ok();
    let done_before = snapshot(&done);
    cairn_migrate(&migrate_args(&src, &done, &[])).fails(1, "holds a finished migration from");
    cairn_migrate(&migrate_args(&src, &done, &["--from-last"])).fails(1, "nothing is left to do");
    assert_unchanged(&done, &done_before);
    let other = scratch.path().join("other");
    copy_dir(&src, &other)?;
    edit_tables(&other, ["meta"], |wtxn, [meta]| {
        meta.put(wtxn, b"service_id", &[0x42; 16])?;
        Ok(())
    })?;
    // As if the first migration were killed after its last database.
    edit_tables(&done, ["meta"], |wtxn, [meta]| {
        let record = meta
            .get(wtxn, b"migration")?
            .context("a migration record")?;
        let unfinished = without(record, &["finished_ms"]);
        meta.put(wtxn, b"migration", &unfinished)?;
        Ok(())
    })?;
    let done_before = snapshot(&done);
    let run = cairn_migrate(&migrate_args(&other, &done, &["--from-last"]));
    run.fails(
        1,
        &format!(
            "{} holds a migration from {} (service {}), not from {} (service {})",
            done.display(),
            src.display(),
            fixture.status["service_id"]
                .as_str()
                .context("a service id")?,
            other.display(),
            "42".repeat(16)
        ),
    );
    cairn_migrate(&migrate_args(&other, &done, &[])).fails(1, "holds an unfinished migration from");
    assert_unchanged(&done, &done_before);

    // A newer format: refused by cairn-migrate and by the service, naming both versions.
    let newer = scratch.path().join("newer");
    copy_dir(&src, &newer)?;
    edit_tables(&newer, ["meta"], |wtxn, [meta]| {
        meta.put(wtxn, b"format_version", &3u32.to_be_bytes())?;
        Ok(())
    })?;
    let newer_before = snapshot(&newer);
    let newer_refusal = format!(
        "{} is format 3, newer than this release, which reads format 2: upgrade cairn to a release that reads format 3",
        newer.display()
    );
    cairn_migrate(&migrate_args(&newer, &dest, &[])).fails(1, &newer_refusal);
    assert!(!dest.exists());
    let error = match ServiceProcess::start(&newer, &[]) {
        Ok(service) => {
            let _ = service.stop();
            bail!("cairn-service started on a format-3 directory")
        }
        Err(error) => format!("{error:#}"),
    };
    ensure!(error.contains(&newer_refusal), "{error}");
    assert_unchanged(&newer, &newer_before);
    // A directory of this release's format given as a source.
    cairn_migrate(&migrate_args(&current, &dest, &[])).fails(
        1,
        &format!(
            "{} is format 2 already, the format this release reads: nothing to migrate",
            current.display()
        ),
    );
    assert!(!dest.exists());
    assert_unchanged(&src, &before);
    Ok(())
}

#[test]
fn a_destination_without_room_is_refused_up_front() {
    // The destination on a 1 MiB tmpfs; the fixture's data need about 2 MiB there.
    with_tmpfs("1m", |small| {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let src = scratch.path().join("old");
        format1::populate(&src, 15).expect("a format-1 directory");
        let before = snapshot(&src);
        let dest = small.join("new");
        let run = cairn_migrate(&migrate_args(&src, &dest, &[]));
        let run = run.fails(1, "storage full: the migration needs ");
        assert!(
            run.stderr
                .contains(&format!("in {} but only ", small.display()))
                && run.stderr.contains(" are available there"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read_dir(small).expect("the tmpfs").count(),
            0,
            "nothing is left in the tmpfs"
        );
        assert_unchanged(&src, &before);
    });
}

#[test]
fn usage_errors_exit_2_and_the_help_has_examples() {
    let help = cairn_migrate(&["--help".to_string()]).ok();
    for needle in [
        "Examples:",
        "--from-last",
        "--dump-errors",
        "--counts",
        "Exit status",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle}: {}",
            help.stdout
        );
    }
    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    cairn_migrate(&args(&["--src", "old"])).fails(2, "--dest");
    cairn_migrate(&args(&["--dest", "new"])).fails(2, "--src");
    cairn_migrate(&args(&[
        "--src",
        "old",
        "--dest",
        "new",
        "--counts",
        "--from-last",
    ]))
    .fails(2, "cannot be used with");
    cairn_migrate(&args(&["--src", "old", "--dest", "new", "-o", "yaml"]))
        .fails(2, "invalid value 'yaml'");
}

/// Flips one bit of the stored value of the document `key` of database `db` in the
/// format-2 directory `dir`, with raw heed (no service running): the bytes on disk rot.
fn flip_a_bit(dir: &Path, db: &str, key: &str) -> Result<()> {
    edit_tables(dir, ["catalog", "docs"], |wtxn, [catalog, docs]| {
        let id = database_id(wtxn, catalog, db)?;
        let stored_key = [&id.to_be_bytes()[..], key.as_bytes()].concat();
        let mut stored = docs
            .get(wtxn, &stored_key)?
            .with_context(|| format!("no document {key}"))?
            .to_vec();
        // rev (8 bytes) ‖ checksum (4 bytes) ‖ value: a bit of the value's last byte.
        ensure!(stored.len() > 12, "a value after the rev and checksum");
        let last = stored.len() - 1;
        stored[last] ^= 0x01;
        docs.put(wtxn, &stored_key, &stored)?;
        Ok(())
    })
}

#[test]
fn a_document_whose_bytes_rot_is_corrupt_and_never_served() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[])?;
    let root = Endpoint::unix(&service);
    root.run(&["db", "create", "ledger"]).ok();
    for (key, value) in [("a", "\"alpha\""), ("b", "\"bravo\""), ("c", "\"charlie\"")] {
        root.run(&["put", "ledger", key, value]).ok();
    }
    service.stop()?;
    flip_a_bit(&dir, "ledger", "b")?;

    let service = ServiceProcess::start(&dir, &[])?;
    let root = Endpoint::unix(&service);
    let run = root.run(&["-o", "json", "get", "ledger", "b"]);
    run.fails(
        1,
        "corrupt (500): database \"ledger\": document \"b\" fails its checksum: the bytes on disk are damaged; restore the database from a backup",
    );
    let run = root.run(&["-o", "json", "get", "ledger", "b"]);
    assert!(
        run.stdout.is_empty(),
        "never the wrong bytes: {}",
        run.stdout
    );
    // The other documents are served; a scan over the damaged one fails, one before
    // it is served.
    assert_eq!(root.value("ledger", "a"), json!("alpha"));
    assert_eq!(root.value("ledger", "c"), json!("charlie"));
    let run = root.run(&["-o", "json", "scan", "ledger"]);
    let run = run.fails(
        1,
        "corrupt (500): database \"ledger\": document \"b\" fails its checksum",
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let page = root
        .run(&["-o", "json", "scan", "ledger", "--end", "b"])
        .ok()
        .json();
    assert_eq!(keys(page["docs"].as_array().context("docs")?), ["a"]);
    // A backup copies the damage: it is refused, naming the document; nothing is left.
    let backup = scratch.path().join("backup");
    let run = run_program(&backup_exe(), &[arg(&dir), arg(&backup)], "");
    run.fails(
        1,
        "does not verify: database ledger: document \"b\" fails its checksum: the bytes on disk are damaged: nothing was kept",
    );
    let left: Vec<_> = std::fs::read_dir(scratch.path())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(left, ["data"], "nothing is left of the backup");
    let (status, stderr) = service.stop()?;
    assert!(status.success(), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("fails its checksum"))
        .collect();
    assert!(
        !errors.is_empty(),
        "an ERROR line in the service's log: {stderr}"
    );
    assert!(
        errors
            .iter()
            .all(|line| line.contains("ledger") && line.contains("\\\"b\\\"")),
        "{errors:?}"
    );
    Ok(())
}

#[test]
fn a_migration_whose_disk_fails_resumes_with_from_last_as_an_uninterrupted_one() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("old");
    format1::populate(&src, 12)?;
    add_bulk(&src)?;
    let before = snapshot(&src);
    let whole = scratch.path().join("whole");
    cairn_migrate(&migrate_args(&src, &whole, &[])).ok();
    let expected = logical_content(&whole)?;

    // libfiu fails one fdatasync in five with EIO: the migration stops with the errno.
    // A run may draw no failure at all among its few syncs (about one in ten): then it
    // is tried again on a fresh destination, at most ten times.
    let mut attempts = 0;
    let (dest, failed) = loop {
        attempts += 1;
        let dest = scratch.path().join(format!("new-{attempts}"));
        let run = Command::new("fiu-run")
            .args(["-x", "-f", "", "-c"])
            .arg("enable_random name=posix/io/sync/fdatasync,probability=0.2,failinfo=5")
            .arg(migrate_exe())
            .args(migrate_args(&src, &dest, &[]))
            .output()
            .context("fiu-run is missing: apt-get install fiu-utils")?;
        if !run.status.success() || attempts == 10 {
            break (dest, run);
        }
    };
    let stderr = String::from_utf8_lossy(&failed.stderr);
    ensure!(
        !failed.status.success(),
        "the migration did not fail: {stderr}"
    );
    ensure!(stderr.contains("os error 5"), "{stderr}");
    assert_unchanged(&src, &before);

    // On a healthy disk, --from-last finishes it as the uninterrupted run did.
    cairn_migrate(&migrate_args(&src, &dest, &["--from-last"])).ok();
    assert_same_content(
        &expected,
        &logical_content(&dest)?,
        "resumed after an I/O error",
    );
    assert_unchanged(&src, &before);
    Ok(())
}
