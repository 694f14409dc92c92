//! `cairn-sync` end to end, with real processes: a format-1 service (the release of
//! commit 03ebda0, built from history) is backed up live by its own `cairn-backup`,
//! the backup migrated by this release's `cairn-migrate` and served by this release's
//! `cairn-service`; `cairn-sync` follows the old service into the new one over TLS and
//! the unix socket while writers keep writing to the old one, is killed with SIGKILL
//! again and again (the destination once too), then cuts over. Every write the source
//! acknowledged is on the destination and every database's change log is the same on
//! both sides. Migration mode refuses other writers, survives a restart and ends with
//! `abort`; a source database dropped and created again, and a source restored from a
//! backup, stop the databases concerned with `resync_required`; bad input is refused
//! before anything is applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_client::methods::{
    call, BatchOp, ChangeEntry, ChangesArgs, DbConfigSettings, DbCreateArgs, IndexDefArgs, NoArgs,
    RetentionArgs, ScanArgs, SyncStatusResult,
};
use cairn_client::values::{Access, Op, SyncState};
use cairn_client::{Client, ClientUrl, ConnectOptions, ErrorCode};
use cairn_tests::cli::run_program;
use cairn_tests::format1;
use cairn_tests::jobs::wait_job;
use cairn_tests::process::{binary, ServiceProcess};
use rand::{Rng, SeedableRng};
use rmpv::Value;

/// Passwords of the users the tests make on the source.
const WRITER_PW: &str = "writer-pw-1";
const SYNCER_PW: &str = "syncer-pw-1";

fn sync_exe() -> PathBuf {
    binary("cairn-sync", "cairn-sync").expect("the cairn-sync binary")
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

fn unix_url(dir: &Path) -> String {
    format!("unix://{}", dir.join("sock").display())
}

/// The TLS URL of `service` as `userinfo`, checked against `localhost`.
fn tls_url(service: &ServiceProcess, userinfo: &str) -> String {
    format!(
        "ssl://{userinfo}@{}/?hostname=localhost",
        service.tls_address
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn connect(url: &str, cert_dir: &Path) -> Result<Client> {
    let url: ClientUrl = url.parse()?;
    let options = ConnectOptions {
        cert_dirs: vec![cert_dir.to_path_buf()],
        ..ConnectOptions::default()
    };
    Client::connect(&url, &options)
        .await
        .with_context(|| format!("connecting to {}", url.redacted()))
}

/// A client on a service's unix socket (root).
async fn local(dir: &Path) -> Result<Client> {
    connect(&unix_url(dir), &dir.join("certs")).await
}

fn text(s: &str) -> Value {
    Value::from(s)
}

fn person(key: &str, n: u64) -> Value {
    Value::Map(vec![
        (text("email"), Value::from(format!("{key}@example.org"))),
        (text("n"), Value::from(n)),
    ])
}

/// Makes the source's databases and users on a fresh format-1 service.
async fn fill_source(src: &Client) -> Result<()> {
    src.db_create("notes", RetentionArgs::default()).await?;
    src.db_create_with(&DbCreateArgs {
        name: "people".to_string(),
        retention: RetentionArgs::default(),
        offline: true,
    })
    .await?;
    src.db_config_set(
        "people",
        DbConfigSettings {
            retention: RetentionArgs::default(),
            indexes: vec![IndexDefArgs {
                name: "by_email".to_string(),
                field: "/email".to_string(),
                unique: true,
            }],
        },
    )
    .await?;
    src.db_online("people", None, None).await?;
    src.db_create("archive", RetentionArgs::default()).await?;
    for i in 0..150u64 {
        src.put("notes", &format!("n-{i:03}"), Value::from(i), None)
            .await?;
        if i < 40 {
            let key = format!("p-{i:03}");
            src.put("people", &key, person(&key, i), None).await?;
            src.put("archive", &format!("a-{i:03}"), Value::from(i), None)
                .await?;
        }
    }
    src.db_offline("archive", None).await?;
    src.db_create("scratch", RetentionArgs::default()).await?;
    src.put("scratch", "s", text("v"), None).await?;
    src.user_add("writer", Some(WRITER_PW), false).await?;
    src.user_add("syncer", Some(SYNCER_PW), true).await?;
    for db in ["notes", "people", "later"] {
        src.user_grant("writer", db, Access::Write).await?;
    }
    Ok(())
}

/// A format-1 service with databases, its live backup migrated, and this release's
/// service on the migrated directory.
struct Cutover {
    scratch: tempfile::TempDir,
    src: ServiceProcess,
    /// `None` only while it restarts.
    dest: Option<ServiceProcess>,
}

impl Cutover {
    fn old(&self) -> PathBuf {
        self.scratch.path().join("old")
    }

    fn new_dir(&self) -> PathBuf {
        self.scratch.path().join("new")
    }

    /// `--src` over TLS as the admin `syncer`, with the source's CAs.
    fn src_args(&self) -> Vec<String> {
        vec![
            "--src".to_string(),
            tls_url(&self.src, &format!("syncer:{SYNCER_PW}")),
            "--certdir".to_string(),
            arg(&self.old().join("certs")),
        ]
    }

    fn dest(&self) -> &ServiceProcess {
        self.dest.as_ref().expect("the destination runs")
    }

    /// Stops the destination (SIGKILL with `kill`, else SIGTERM) and starts it again.
    fn restart_dest(&mut self, kill: bool) -> Result<()> {
        let dest = self.dest.take().expect("the destination runs");
        if kill {
            dest.kill()?;
        } else {
            dest.stop()?;
        }
        self.dest = Some(ServiceProcess::start(&self.new_dir(), &[])?);
        Ok(())
    }

    /// `cairn-sync COMMAND… --src … --dest …`'s arguments.
    fn both(&self, command: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        args.extend(self.src_args());
        args.extend(self.dest_args());
        args
    }

    /// A follower started from the migration's offsets file, its output in
    /// `follower.log` of the scratch directory.
    fn follow_from_offsets(&self) -> Result<Follower> {
        let offsets = arg(&self.new_dir().join("migration/offsets.json"));
        spawn_follower(self, &["--offsfile", &offsets], &self.follower_log())
    }

    fn follower_log(&self) -> PathBuf {
        self.scratch.path().join("follower.log")
    }

    fn dest_args(&self) -> Vec<String> {
        vec!["--dest".to_string(), unix_url(&self.new_dir())]
    }
}

/// Damages the document `key` of `db` in the format-1 working directory `dir` (no
/// process may use it) with raw heed: its value becomes bytes that are not msgpack, at
/// the same rev, so that a migration leaves it out.
fn damage_format1_document(dir: &Path, db: &str, key: &str) -> Result<()> {
    use heed::types::Bytes;
    let path = dir.join("store");
    // SAFETY: no process uses the environment, and this process opens it once.
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(16).open(&path) }
        .with_context(|| format!("opening {}", path.display()))?;
    let edited = (|| -> Result<()> {
        let rtxn = env.read_txn()?;
        let (catalog, docs) = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
                let open = |name| -> Result<heed::Database<Bytes, Bytes>> {
                    opener
                        .open_database::<Bytes, Bytes>(rtxn, Some(name))?
                        .with_context(|| format!("no table {name}"))
                };
                Ok(heed::CommitOrAbort::<_, ()>::Commit((
                    open("catalog")?,
                    open("docs")?,
                )))
            })?
            .unwrap_commit();
        let mut wtxn = env.write_txn()?;
        // The database id: bytes 1 to 4 of its catalog record.
        let record = catalog
            .get(&wtxn, db.as_bytes())?
            .context("no catalog record")?;
        let id = record.get(1..5).context("a catalog record")?.to_vec();
        let stored_key = [&id[..], key.as_bytes()].concat();
        let rev = docs.get(&wtxn, &stored_key)?.context("no such document")?[..8].to_vec();
        docs.put(&mut wtxn, &stored_key, &[&rev[..], &[0xc1]].concat())?;
        wtxn.commit()?;
        Ok(())
    })();
    env.prepare_for_closing().wait();
    edited
}

fn prepare(rt: &tokio::runtime::Runtime, after_backup: bool) -> Result<Cutover> {
    prepare_with(rt, after_backup, false)
}

/// As `prepare`; with `damaged`, the backup's `notes/n-001` is damaged before the
/// migration, which leaves it out.
fn prepare_with(
    rt: &tokio::runtime::Runtime,
    after_backup: bool,
    damaged: bool,
) -> Result<Cutover> {
    let scratch = tempfile::tempdir()?;
    let old = scratch.path().join("old");
    let binaries = format1::binaries()?;
    let src = format1::start_service(&old)?;
    rt.block_on(async { fill_source(&local(&old).await?).await })?;
    let backup = scratch.path().join("backup");
    let run = run_program(&binaries.backup, &[arg(&old), arg(&backup)], "");
    ensure!(
        run.code == 0,
        "format-1 cairn-backup: {}{}",
        run.stdout,
        run.stderr
    );
    if after_backup {
        // Written after the backup: only the sync brings it over.
        rt.block_on(async {
            let client = local(&old).await?;
            client
                .put("notes", "after-backup", text("yes"), None)
                .await?;
            client
                .db_create_with(&DbCreateArgs {
                    name: "later".to_string(),
                    retention: RetentionArgs::default(),
                    offline: true,
                })
                .await?;
            client
                .db_config_set(
                    "later",
                    DbConfigSettings {
                        retention: RetentionArgs::default(),
                        indexes: vec![IndexDefArgs {
                            name: "whole".to_string(),
                            field: String::new(),
                            unique: false,
                        }],
                    },
                )
                .await?;
            client.db_online("later", None, None).await?;
            client.put("later", "l-0", text("first"), None).await?;
            client.delete("notes", "n-000", None).await?;
            // Users made after the backup: one with a password (which no service hands
            // out), one with a certificate only.
            client.user_add("erin", Some("erin-pw-1"), false).await?;
            client.user_add("frank", None, false).await?;
            client.user_grant("frank", "notes", Access::Read).await?;
            anyhow::Ok(())
        })?;
    }
    if damaged {
        damage_format1_document(&backup, "notes", "n-001")?;
    }
    let new = scratch.path().join("new");
    let migrate = binary("cairn-migrate", "cairn-migrate")?;
    let run = run_program(
        &migrate,
        &["--src".into(), arg(&backup), "--dest".into(), arg(&new)],
        "",
    );
    let expected = if damaged { 1 } else { 0 };
    ensure!(
        run.code == expected,
        "cairn-migrate: {}{}",
        run.stdout,
        run.stderr
    );
    let dest = ServiceProcess::start(&new, &[])?;
    Ok(Cutover {
        scratch,
        src,
        dest: Some(dest),
    })
}

/// A follower process, killed if the test ends without it having stopped.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// A follower process, its stdout in a file.
fn spawn_follower(setup: &Cutover, more: &[&str], log: &Path) -> Result<Follower> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut args = setup.both(&[]);
    args.extend(more.iter().map(|s| s.to_string()));
    args.extend(["-o".to_string(), "json".to_string()]);
    Ok(Follower(
        Command::new(sync_exe())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?,
    ))
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn sync_status(dest: &Client) -> Result<SyncStatusResult> {
    Ok(dest.request::<call::SyncStatus>(&NoArgs {}).await?)
}

/// Waits until `done` holds for the destination's sync status.
async fn wait_status(
    dir: &Path,
    what: &str,
    done: impl Fn(&SyncStatusResult) -> bool,
) -> Result<SyncStatusResult> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = local(dir).await {
            if let Ok(status) = sync_status(&client).await {
                if done(&status) {
                    return Ok(status);
                }
                if Instant::now() > deadline {
                    bail!("{what}: not within 60 s: {status:?}");
                }
            }
        }
        if Instant::now() > deadline {
            bail!("{what}: the destination did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a writer had acknowledged: per key, the value of the last acknowledged write
/// (`None`: deleted).
type Acked = BTreeMap<String, Option<Value>>;

/// Writes to `db` as `writer` over TLS until the source refuses with `read_only`.
async fn write_until_read_only(client: Client, db: &'static str, seed: u64) -> Result<Acked> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = Acked::new();
    let mut n = 0u64;
    loop {
        n += 1;
        let key = format!("w-{}", rng.random_range(0..60u32));
        let value = if db == "people" {
            person(&key, n)
        } else {
            Value::from(n)
        };
        let outcome = match rng.random_range(0..10u32) {
            0..=5 => client.put(db, &key, value.clone(), None).await.map(|_| {
                acked.insert(key, Some(value));
            }),
            6 | 7 if matches!(acked.get(&key), Some(Some(_))) => {
                client.delete(db, &key, None).await.map(|_| {
                    acked.insert(key, None);
                })
            }
            _ => {
                let other = format!("w-{}", rng.random_range(60..90u32));
                let other_value = if db == "people" {
                    person(&other, n)
                } else {
                    Value::from(n)
                };
                let ops = vec![
                    BatchOp {
                        op: Op::Put,
                        key: Value::from(key.as_str()),
                        value: Some(value.clone()),
                        rev: None,
                    },
                    BatchOp {
                        op: Op::Put,
                        key: Value::from(other.as_str()),
                        value: Some(other_value.clone()),
                        rev: None,
                    },
                ];
                client.batch(db, ops).await.map(|_| {
                    acked.insert(key, Some(value));
                    acked.insert(other, Some(other_value));
                })
            }
        };
        match outcome {
            Ok(()) => {}
            Err(error) if error.code() == Some(ErrorCode::ReadOnly) => return Ok(acked),
            Err(error) => bail!("writer on {db}: {error:#}"),
        }
        if n % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A database's whole change log.
async fn change_log(client: &Client, db: &str) -> Result<Vec<ChangeEntry>> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let page = client
            .changes(&ChangesArgs {
                db: db.to_string(),
                since,
                limit: Some(1000),
                ..ChangesArgs::default()
            })
            .await?;
        if page.changes.is_empty() {
            return Ok(out);
        }
        since = page.last_seq;
        out.extend(page.changes);
    }
}

/// A database's documents, key → (rev, value).
async fn documents(client: &Client, db: &str) -> Result<BTreeMap<String, (u64, Value)>> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = client
            .scan(&ScanArgs {
                db: db.to_string(),
                limit: Some(1000),
                after: after.take(),
                ..ScanArgs::default()
            })
            .await?;
        for doc in &page.docs {
            out.insert(doc.key.clone(), (doc.rev, doc.value.clone()));
        }
        match (page.more, page.docs.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(out),
        }
    }
}

#[test]
fn a_format1_service_cuts_over_with_every_acknowledged_write_and_the_same_logs() -> Result<()> {
    let rt = runtime();
    let mut setup = prepare(&rt, true)?;
    let (old, new) = (setup.old(), setup.new_dir());
    let log = setup.follower_log();

    // Writers on the old service, over TLS as a user without admin rights.
    let writers: Vec<_> = ["notes", "people", "later"]
        .into_iter()
        .enumerate()
        .map(|(i, db)| {
            let (url, certs) = (
                tls_url(&setup.src, &format!("writer:{WRITER_PW}")),
                old.join("certs"),
            );
            rt.spawn(async move {
                let client = connect(&url, &certs).await?;
                write_until_read_only(client, db, 7 + i as u64).await
            })
        })
        .collect();

    let mut follower = setup.follow_from_offsets()?;
    rt.block_on(wait_status(&new, "attached", |s| s.migration.is_some()))?;

    // Migration mode refuses every other writer, root included.
    let refused = rt
        .block_on(async {
            local(&new)
                .await?
                .put("notes", "x", text("y"), None)
                .await
                .map_err(anyhow::Error::from)
        })
        .unwrap_err();
    let code = refused
        .downcast_ref::<cairn_client::ClientError>()
        .and_then(|e| e.code());
    assert_eq!(code, Some(ErrorCode::MigrationInProgress), "{refused:#}");

    // SIGKILL the follower at random moments, and the destination once.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..600)));
        kill9(&mut follower.0);
        if round == 5 {
            setup.restart_dest(true)?;
        }
        follower = spawn_follower(&setup, &[], &log)?;
    }
    // Caught up and live on every database once the follower settles.
    // A database dropped on the source: dropped here at the cutover.
    rt.block_on(async {
        local(&old)
            .await?
            .db_drop("scratch")
            .await
            .map_err(anyhow::Error::from)
    })?;
    rt.block_on(wait_status(&new, "every database followed", |s| {
        s.databases.len() == 5
            && s.databases
                .iter()
                .filter(|d| d.db != "scratch")
                .all(|d| matches!(d.state, SyncState::Live | SyncState::CatchingUp))
    }))?;
    // Before the cutover, status names what it will bring over.
    let args = setup.both(&["status", "-o", "json"]);
    let (code, stdout, stderr) = cairn_sync(&args);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout)?;
    let differences = status["differences"].to_string();
    assert!(
        differences.contains("erin") && differences.contains("frank"),
        "{status:#}"
    );
    assert_eq!(
        status["migration"]["source"]
            .as_str()
            .map(|s| s.contains(&setup.src.tls_address)),
        Some(true),
        "{status:#}"
    );

    let cutover = Command::new(sync_exe())
        .arg("cutover")
        .args(setup.src_args())
        .args(setup.dest_args())
        .args(["-o", "json"])
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&cutover.stdout).with_context(|| {
        format!(
            "cutover exited with {}: {}{}",
            cutover.status,
            String::from_utf8_lossy(&cutover.stdout),
            String::from_utf8_lossy(&cutover.stderr)
        )
    })?;
    assert_eq!(cutover.status.code(), Some(0), "{report:#}");
    assert_eq!(report["done"], true, "{report:#}");
    assert!(report["read_only_ms"].as_u64().is_some(), "{report:#}");
    assert_eq!(
        report["dropped"],
        serde_json::json!(["scratch"]),
        "{report:#}"
    );
    for compared in report["databases"].as_array().expect("databases") {
        assert_eq!(compared["same"], true, "{compared:#}");
    }
    let not_carried = report["not_carried"].to_string();
    assert!(not_carried.contains("erin"), "{report:#}");
    assert!(
        !not_carried.contains("writer") && !not_carried.contains("frank"),
        "{report:#}"
    );
    assert!(report["users"].to_string().contains("frank"), "{report:#}");
    assert!(
        !report["configs"].to_string().contains("later"),
        "configured when created: {report:#}"
    );

    // The follower sees migration mode end and stops by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follower.0.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < deadline,
            "the follower did not stop after the cutover"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let follower_log = std::fs::read_to_string(&log)?;
    assert!(status.success(), "follower: {status}: {follower_log}");
    assert!(
        follower_log.contains("\"event\":\"created\""),
        "later was created: {follower_log}"
    );

    let acked: Vec<(&str, Acked)> = ["notes", "people", "later"]
        .into_iter()
        .zip(writers)
        .map(|(db, w)| Ok((db, rt.block_on(w)??)))
        .collect::<Result<_>>()?;
    rt.block_on(async {
        let (src, dest) = (local(&old).await?, local(&new).await?);
        for db in ["notes", "people", "later", "archive"] {
            let (src_info, dest_info) = (src.db_info(db).await?, dest.db_info(db).await?);
            assert_eq!(src_info.last_seq, dest_info.last_seq, "{db}");
            assert_eq!(src_info.state, dest_info.state, "{db}");
            if db != "archive" {
                assert_eq!(
                    change_log(&src, db).await?,
                    change_log(&dest, db).await?,
                    "{db}: change logs"
                );
                assert_eq!(
                    documents(&src, db).await?,
                    documents(&dest, db).await?,
                    "{db}: documents"
                );
            }
        }
        for (db, acked) in &acked {
            ensure!(
                acked.len() > 5,
                "{db}: the writer acknowledged only {} keys",
                acked.len()
            );
            let docs = documents(&dest, db).await?;
            for (key, value) in acked {
                assert_eq!(docs.get(key).map(|(_, v)| v), value.as_ref(), "{db}/{key}");
            }
        }
        // Migration mode is over: the destination takes writes, its users log in with
        // the passwords they had on the source.
        assert!(sync_status(&dest).await?.migration.is_none());
        assert_eq!(
            code_of(dest.db_info("scratch").await),
            Some(ErrorCode::DatabaseMissing)
        );
        dest.put("notes", "after-cutover", text("ok"), None).await?;
        let writer = connect(
            &tls_url(setup.dest(), &format!("writer:{WRITER_PW}")),
            &new.join("certs"),
        )
        .await?;
        writer.put("later", "by-writer", text("ok"), None).await?;
        // `later`, created on the source after the backup, came with its index, kept
        // up to date by every change applied.
        let later = dest.db_config("later").await?;
        assert_eq!(later.indexes.len(), 1, "{later:?}");
        assert!(!later.indexes_stale, "{later:?}");
        let found = dest
            .find(&cairn_client::methods::FindArgs {
                db: "later".to_string(),
                index: "whole".to_string(),
                value: Some(text("first")),
                ..Default::default()
            })
            .await?;
        let keys: Vec<&str> = found.docs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["l-0"]);
        let users = dest.user_list().await?;
        let frank = users
            .iter()
            .find(|u| u.name == "frank")
            .expect("frank carried");
        assert_eq!(frank.grants.get("notes"), Some(&Access::Read));
        assert!(users.iter().all(|u| u.name != "erin"), "nothing guessed");
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Runs `cairn-sync ARGS`; its exit code, stdout and stderr.
fn cairn_sync(args: &[String]) -> (i32, String, String) {
    let output = Command::new(sync_exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running cairn-sync");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The code of a failed call.
fn code_of<T>(result: Result<T, cairn_client::ClientError>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

#[test]
fn migration_mode_refuses_other_writers_survives_a_restart_and_abort_ends_it() -> Result<()> {
    let rt = runtime();
    let mut setup = prepare(&rt, false)?;
    let new = setup.new_dir();
    let mut follower = setup.follow_from_offsets()?;
    rt.block_on(wait_status(&new, "attached", |s| s.migration.is_some()))?;
    kill9(&mut follower.0);
    let notes_seq =
        rt.block_on(async { anyhow::Ok(local(&new).await?.db_info("notes").await?.last_seq) })?;

    let refused = rt.block_on(async {
        let writer = connect(
            &tls_url(setup.dest(), &format!("writer:{WRITER_PW}")),
            &new.join("certs"),
        )
        .await?;
        let put = writer.put("notes", "k", text("v"), None).await;
        let error = put.as_ref().err().and_then(|e| e.wire().cloned());
        anyhow::Ok(error)
    })?;
    let refused = refused.expect("a refusal");
    assert_eq!(
        (refused.code, refused.code.status()),
        (ErrorCode::MigrationInProgress, 503)
    );
    assert!(
        refused.message.contains("127.0.0.1"),
        "names the source: {}",
        refused.message
    );

    // Stored: a restart keeps it, and `cairn status` shows it.
    setup.restart_dest(false)?;
    let cairn = binary("cairn-cli", "cairn")?;
    let run = run_program(&cairn, &["--dir".into(), arg(&new), "status".into()], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("migration mode"), "{}", run.stdout);
    let code = rt.block_on(async {
        anyhow::Ok(code_of(
            local(&new).await?.put("notes", "k", text("v"), None).await,
        ))
    })?;
    assert_eq!(code, Some(ErrorCode::MigrationInProgress));

    let (code, stdout, stderr) = cairn_sync(&[
        "status".into(),
        "--dest".into(),
        unix_url(&new),
        "-o".into(),
        "json".into(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout)?;
    assert!(status["migration"]["source"].is_string(), "{status:#}");
    assert_eq!(
        status["databases"].as_array().map(Vec::len),
        Some(4),
        "{status:#}"
    );

    let (code, stdout, stderr) = cairn_sync(&["abort".into(), "--dest".into(), unix_url(&new)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("keep the data"), "{stdout}");
    rt.block_on(async {
        let dest = local(&new).await?;
        assert!(sync_status(&dest).await?.migration.is_none());
        assert_eq!(
            dest.db_info("notes").await?.last_seq,
            notes_seq,
            "abort changed no data"
        );
        dest.put("notes", "k", text("v"), None).await?;
        anyhow::Ok(())
    })?;
    // A second abort has nothing to end.
    let (code, _, stderr) = cairn_sync(&["abort".into(), "--dest".into(), unix_url(&new)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("follows no source"), "{stderr}");
    Ok(())
}

#[test]
fn a_database_created_again_or_a_restored_source_stops_with_resync_required() -> Result<()> {
    let rt = runtime();
    let setup = prepare(&rt, false)?;
    let (old, new) = (setup.old(), setup.new_dir());
    let mut follower = setup.follow_from_offsets()?;
    rt.block_on(wait_status(&new, "following", |s| {
        s.databases
            .iter()
            .filter(|d| d.state == SyncState::Live)
            .count()
            >= 2
    }))?;

    // notes dropped and created again on the source: its sync stops, people goes on.
    rt.block_on(async {
        let src = local(&old).await?;
        src.db_drop("notes").await?;
        src.db_create("notes", RetentionArgs::default()).await?;
        for i in 0..3u64 {
            src.put("notes", &format!("again-{i}"), Value::from(i), None)
                .await?;
        }
        src.put("people", "p-new", person("p-new", 1), None).await?;
        anyhow::Ok(())
    })?;
    let people_seq =
        rt.block_on(async { anyhow::Ok(local(&old).await?.db_info("people").await?.last_seq) })?;
    let status = rt.block_on(wait_status(&new, "notes stopped, people applied", |s| {
        let notes = s.databases.iter().find(|d| d.db == "notes");
        let people = s.databases.iter().find(|d| d.db == "people");
        notes.is_some_and(|d| d.state == SyncState::Stopped)
            && people.is_some_and(|d| d.applied_seq == people_seq)
    }))?;
    let notes = status
        .databases
        .iter()
        .find(|d| d.db == "notes")
        .expect("notes");
    let error = notes.error.as_ref().expect("an error");
    assert_eq!(error.code, "resync_required", "{error:?}");
    assert!(error.message.contains("created again"), "{error:?}");
    let (dest_notes, src_notes) = rt.block_on(async {
        anyhow::Ok((
            change_log(&local(&new).await?, "notes").await?,
            change_log(&local(&old).await?, "notes").await?,
        ))
    })?;
    assert!(
        dest_notes.iter().all(|c| !c.key.starts_with("again-")),
        "histories never mix"
    );
    assert_eq!(src_notes.len(), 3);
    // The cutover refuses while a database's sync is stopped.
    let args = setup.both(&["cutover"]);
    let (code, _, stderr) = cairn_sync(&args);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("notes") && stderr.contains("stopped"),
        "{stderr}"
    );

    // A restore on the source draws a new epoch: every database still followed stops.
    rt.block_on(async {
        let src = local(&old).await?;
        let job = src.backup_start(Some("snap")).await?;
        wait_job(&src, job.id).await?;
        src.put("people", "p-after-snap", person("p-after-snap", 2), None)
            .await?;
        let job = src.restore_start("snap").await?;
        wait_job(&src, job.id).await?;
        anyhow::Ok(())
    })?;
    let status = rt.block_on(wait_status(&new, "people stopped", |s| {
        s.databases
            .iter()
            .find(|d| d.db == "people")
            .is_some_and(|d| d.state == SyncState::Stopped)
    }))?;
    let people = status
        .databases
        .iter()
        .find(|d| d.db == "people")
        .expect("people");
    assert_eq!(
        people.error.as_ref().map(|e| e.code.as_str()),
        Some("resync_required")
    );
    kill9(&mut follower.0);
    Ok(())
}

#[test]
fn bad_input_is_refused_before_anything_is_applied() -> Result<()> {
    let rt = runtime();
    let setup = prepare(&rt, false)?;
    let new = setup.new_dir();
    let certs = arg(&setup.old().join("certs"));
    let offsets = new.join("migration/offsets.json");
    let dest = setup.dest_args();
    let with = |src: String, more: &[&str]| {
        let mut args = vec![
            "--src".to_string(),
            src,
            "--certdir".to_string(),
            certs.clone(),
        ];
        args.extend(dest.clone());
        args.extend(more.iter().map(|s| s.to_string()));
        args
    };
    let offsfile = ["--offsfile", offsets.to_str().expect("UTF-8")];
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let foreign = setup.scratch.path().join("foreign-offsets.json");
    let mut edited: serde_json::Value = serde_json::from_slice(&std::fs::read(&offsets)?)?;
    edited["source_service_id"] = serde_json::json!("0123456789abcdef0123456789abcdef");
    std::fs::write(&foreign, edited.to_string())?;
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "nothing listens there",
            with(
                format!("ssl://syncer:{SYNCER_PW}@127.0.0.1:{unused_port}/?hostname=localhost"),
                &offsfile,
            ),
            "connecting to the source",
        ),
        (
            "a wrong password",
            with(tls_url(&setup.src, "syncer:wrong"), &offsfile),
            "bad_credentials",
        ),
        (
            "a user without admin rights",
            with(
                tls_url(&setup.src, &format!("writer:{WRITER_PW}")),
                &offsfile,
            ),
            "not an admin",
        ),
        (
            "the offsets of another source",
            with(
                tls_url(&setup.src, &format!("syncer:{SYNCER_PW}")),
                &["--offsfile", foreign.to_str().expect("UTF-8")],
            ),
            "holds the positions of service 0123456789abcdef0123456789abcdef",
        ),
        (
            "neither offsets nor positions of this source",
            {
                // A destination without positions: a fresh service.
                let mut args = with(tls_url(&setup.src, &format!("syncer:{SYNCER_PW}")), &[]);
                let fresh = setup.scratch.path().join("fresh");
                args.retain(|a| !a.starts_with("unix://"));
                args.retain(|a| a != "--dest");
                args.extend(["--dest".to_string(), unix_url(&fresh)]);
                args
            },
            "the destination has no sync position: give --offsfile",
        ),
    ];
    let fresh = ServiceProcess::start(&setup.scratch.path().join("fresh"), &[])?;
    let before =
        rt.block_on(async { anyhow::Ok(local(&new).await?.db_info("notes").await?.last_seq) })?;
    for (what, args, needle) in cases {
        let (code, _, stderr) = cairn_sync(&args);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{what}: one line: {stderr}"
        );
        rt.block_on(async {
            let dest = local(&new).await?;
            assert!(
                sync_status(&dest).await?.migration.is_none(),
                "{what}: not attached"
            );
            assert_eq!(dest.db_info("notes").await?.last_seq, before, "{what}");
            anyhow::Ok(())
        })?;
    }
    drop(fresh);

    // A destination that follows another source.
    rt.block_on(async {
        local(&new)
            .await?
            .request::<call::SyncAttach>(&cairn_client::methods::SyncAttachArgs {
                source_service_id: "fedcba9876543210fedcba9876543210".to_string(),
                source: "ssl://elsewhere/".to_string(),
                positions: Vec::new(),
            })
            .await?;
        anyhow::Ok(())
    })?;
    let (code, _, stderr) = cairn_sync(&with(
        tls_url(&setup.src, &format!("syncer:{SYNCER_PW}")),
        &offsfile,
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("already follows ssl://elsewhere/"),
        "{stderr}"
    );

    // Usage errors exit 2.
    let (code, _, stderr) = cairn_sync(&["--dest".to_string(), unix_url(&new)]);
    assert_eq!(code, 2, "{stderr}");
    let (code, stdout, _) = cairn_sync(&["--help".to_string()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Examples:") && stdout.contains("cairn-sync cutover"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn contents_that_differ_stop_the_cutover_and_leave_the_source_read_only() -> Result<()> {
    let rt = runtime();
    // The migration leaves a damaged document out: the source has it, the destination
    // does not.
    let setup = prepare_with(&rt, false, true)?;
    let (old, new) = (setup.old(), setup.new_dir());
    let mut follower = setup.follow_from_offsets()?;
    rt.block_on(wait_status(&new, "following", |s| {
        s.databases
            .iter()
            .any(|d| d.db == "notes" && d.state == SyncState::Live)
    }))?;
    kill9(&mut follower.0);
    let args = setup.both(&["cutover", "-o", "json"]);
    let (code, stdout, stderr) = cairn_sync(&args);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["done"], false, "{report:#}");
    let differing: Vec<&str> = report["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .filter(|d| d["same"] == false)
        .filter_map(|d| d["db"].as_str())
        .collect();
    assert_eq!(differing, ["notes"], "{report:#}");
    rt.block_on(async {
        let (src, dest) = (local(&old).await?, local(&new).await?);
        assert_eq!(src.status().await?.admin_status.as_str(), "READ_ONLY");
        assert!(
            sync_status(&dest).await?.migration.is_some(),
            "still in migration mode"
        );
        anyhow::Ok(())
    })?;
    // In text, the database is named, and again nothing is switched.
    let args = setup.both(&["cutover"]);
    let (code, stdout, _) = cairn_sync(&args);
    assert_eq!(code, 1);
    assert!(stdout.contains("notes: DIFFERENT"), "{stdout}");
    assert!(stdout.contains("stays READ_ONLY"), "{stdout}");
    Ok(())
}
