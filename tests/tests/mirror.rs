//! Mirrors end to end, with real processes over TLS: a leader with writers running,
//! a mirror that bootstraps itself from nothing and one started from a backup of the
//! leader; both converge to environments whose every table holds the leader's bytes,
//! serve reads, report their lag, and refuse writes when told not to forward them. A
//! mirror killed with SIGKILL while the leader writes catches up after a restart with
//! nothing applied twice. Bad input is refused at start with a one-line error: a URL
//! that is no Cairn service, wrong credentials, a user who is not an admin, a directory
//! holding another service's data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_client::methods::{BatchOp, MirrorStatus};
use cairn_client::values::{MirrorState, Op};
use cairn_client::{Client, ClientUrl, ConnectOptions, ErrorCode};
use cairn_store::journal::{JournalPosition, TableId};
use cairn_store::{Store, StoreOptions};
use cairn_tests::cli::run_program;
use cairn_tests::jobs::wait_job;
use cairn_tests::process::{binary, ServiceProcess};
use cairn_tests::webhook::WebhookListener;
use rmpv::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The leader's TLS URL as root, checked against `localhost` (its certificate's name).
fn leader_url(leader: &ServiceProcess) -> String {
    format!("ssl://root@{}/?hostname=localhost", leader.tls_address)
}

/// Starts a mirror of `leader` on `dir`, reaching it with the leader's certificates
/// (its CA, root's client certificate).
fn start_mirror(dir: &Path, leader: &ServiceProcess, extra: &[&str]) -> Result<ServiceProcess> {
    let url = leader_url(leader);
    let mut args = vec!["--mirror", url.as_str()];
    args.extend_from_slice(extra);
    let certs = leader.dir.join("certs");
    ServiceProcess::start_with_env(dir, &args, &[("CAIRN_CERT_DIR", certs.to_str().unwrap())])
}

async fn unix_client(dir: &Path) -> Result<Client> {
    Client::connect(
        &ClientUrl::Unix {
            path: dir.join("sock"),
        },
        &ConnectOptions::default(),
    )
    .await
    .with_context(|| format!("connecting to {}", dir.display()))
}

async fn mirror_status(client: &Client) -> Result<MirrorStatus> {
    client
        .status()
        .await?
        .mirror
        .context("a mirror's status has its mirror part")
}

/// Every table's entry count and digest, read beside the running service.
fn digests(dir: &Path) -> Result<Vec<(TableId, u64, String)>> {
    let store = Store::open_read_only(dir, StoreOptions::default())?;
    let snapshot = store.snapshot()?;
    TableId::ALL
        .iter()
        .map(|&table| {
            let (entries, digest) = snapshot.table_digest(table)?;
            Ok((table, entries, digest))
        })
        .collect()
}

/// The leader's journal head, read beside it.
fn journal_position(dir: &Path) -> Result<JournalPosition> {
    let store = Store::open_read_only(dir, StoreOptions::default())?;
    let position = store.snapshot()?.journal_position()?;
    Ok(position)
}

/// Waits until the mirror in `mirror_dir` holds the leader's whole journal: the same
/// last entry (seq, checksum and epoch), so that a mirror still ahead of a leader
/// restored from a backup is not taken for caught up.
async fn caught_up(mirror_dir: &Path, leader_dir: &Path) -> Result<MirrorStatus> {
    let mirror = unix_client(mirror_dir).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let head = journal_position(leader_dir)?;
        let here = journal_position(mirror_dir)?;
        // Asked after the mirror's store was read, the status has noted what it holds
        // (or is a moment behind, and the next round looks again).
        let status = mirror_status(&mirror).await?;
        // The leader may commit more (job and session records) after `head` was read:
        // then the mirror is behind it for a moment, and the next round looks again.
        if here == head
            && status.applied == head.seq
            && status.leader_head <= head.seq
            && status.state == MirrorState::Following
        {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("the mirror did not catch up with the leader's head {head:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// msgpack map `{"n": n, "by": writer}`.
fn doc(n: u64, writer: u64) -> Value {
    Value::Map(vec![
        (Value::from("n"), Value::from(n)),
        (Value::from("by"), Value::from(writer)),
    ])
}

/// Writers that keep writing to `db` on the leader until stopped; the number of
/// acknowledged writes is counted.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Writers {
    async fn start(leader_dir: &Path, db: &str, count: u64) -> Result<Writers> {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for writer in 0..count {
            let client = unix_client(leader_dir).await?;
            let (stop, acked, db) = (stop.clone(), acked.clone(), db.to_string());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let key = format!("w{writer}-{}", n % 50);
                    if n % 7 == 0 {
                        let ops = vec![
                            BatchOp {
                                op: Op::Put,
                                key: Value::from(format!("b{writer}-{n}")),
                                value: Some(doc(n, writer)),
                                rev: None,
                            },
                            BatchOp {
                                op: Op::Put,
                                key: Value::from(key.clone()),
                                value: Some(doc(n, writer)),
                                rev: None,
                            },
                        ];
                        client.batch(&db, ops).await?;
                    } else {
                        client.put(&db, &key, doc(n, writer), None).await?;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }));
        }
        Ok(Writers { stop, acked, tasks })
    }

    async fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await??;
        }
        Ok(self.acked.load(Ordering::SeqCst))
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a scratch directory")
}

#[test]
fn mirrors_bootstrap_follow_the_whole_state_and_hold_the_leaders_bytes() -> Result<()> {
    let tmp = scratch();
    let leader_dir = tmp.path().join("leader");
    let leader = ServiceProcess::start(&leader_dir, &[])?;
    let rt = runtime();
    rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        admin.db_create("docs", Default::default()).await?;
        admin.user_add("alice", Some("alice-pw-1"), false).await?;
        admin
            .user_grant("alice", "docs", cairn_client::values::Access::Read)
            .await?;
        for i in 0..100u64 {
            admin
                .put("docs", &format!("seed{i}"), doc(i, 99), None)
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;

    // A backup of the leader, for the second mirror.
    let backup_dir = tmp.path().join("backup");
    run_program(
        &binary("cairn-backup", "cairn-backup")?,
        &[
            leader_dir.display().to_string(),
            backup_dir.display().to_string(),
        ],
        "",
    )
    .ok();

    // Writers run while both mirrors start: one from nothing, one from the backup.
    let writers = rt.block_on(Writers::start(&leader_dir, "docs", 4))?;
    std::thread::sleep(Duration::from_millis(300));
    let first_dir = tmp.path().join("mirror1");
    let first = start_mirror(&first_dir, &leader, &[])?;
    let second_dir: PathBuf = tmp.path().join("mirror2");
    std::fs::create_dir_all(&second_dir)?;
    std::fs::rename(backup_dir.join("store"), second_dir.join("store"))?;
    let second = start_mirror(&second_dir, &leader, &[])?;
    std::thread::sleep(Duration::from_millis(1500));
    rt.block_on(async {
        // Lag is a number while the leader writes.
        let status = mirror_status(&unix_client(&first_dir).await?).await?;
        ensure!(status.leader.contains(&leader.tls_address), "{status:?}");
        ensure!(
            status.lag_secs >= 0.0 && status.leader_head > 0,
            "{status:?}"
        );
        let acked = writers.stop().await?;
        ensure!(acked > 50, "the writers wrote: {acked}");
        // A value of 9 MiB: its journal entry (the document and its change record) is
        // larger than a frame, and reaches the mirrors in pieces.
        unix_client(&leader_dir)
            .await?
            .put("docs", "big", Value::Binary(vec![7; 9 << 20]), None)
            .await?;
        for dir in [&first_dir, &second_dir] {
            let status = caught_up(dir, &leader_dir).await?;
            ensure!(status.lag_changes == 0, "{status:?}");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let leader_tables = digests(&leader_dir)?;
    ensure!(
        leader_tables
            .iter()
            .any(|(t, n, _)| *t == TableId::Docs && *n > 100),
        "the leader holds the writes: {leader_tables:?}"
    );
    for dir in [&first_dir, &second_dir] {
        ensure!(
            digests(dir)? == leader_tables,
            "every table of {} holds the leader's bytes",
            dir.display()
        );
    }

    rt.block_on(async {
        let mirror = unix_client(&first_dir).await?;
        // Reads are served; the leader's user and grant hold on the mirror.
        let leader_doc = unix_client(&leader_dir).await?.get("docs", "seed7").await?;
        ensure!(mirror.get("docs", "seed7").await? == leader_doc);
        // A write through the mirror goes to the leader and is readable here as soon
        // as it is answered.
        for i in 0..20u64 {
            let key = format!("through-mirror-{i}");
            let written = mirror.put("docs", &key, doc(i, 7), None).await?;
            let read = mirror.get("docs", &key).await?;
            ensure!(
                read.rev == written.rev && read.value == doc(i, 7),
                "{read:?}"
            );
        }
        // A password login on the mirror: the leader writes the session, the mirror's
        // connection is alice's, and the token works on both services.
        let alice = Client::connect(
            &format!(
                "ssl://alice:alice-pw-1@{}/?hostname=localhost",
                first.tls_address
            )
            .parse()?,
            &ConnectOptions::for_working_dir(&first_dir),
        )
        .await?;
        ensure!(alice.whoami().await?.user == "alice");
        let token = alice.login_result().context("a login")?.token.clone();
        ensure!(alice.get("docs", "seed7").await? == leader_doc);
        // alice may read, not write: the leader says so through the mirror.
        let refused = alice
            .put("docs", "x", Value::from(1), None)
            .await
            .unwrap_err();
        ensure!(refused.code() == Some(ErrorCode::Forbidden), "{refused}");
        let on_leader = Client::connect(
            &format!("ssl://{}/?hostname=localhost", leader.tls_address).parse()?,
            &ConnectOptions {
                token: Some(token),
                ..ConnectOptions::for_working_dir(&leader_dir)
            },
        )
        .await?;
        ensure!(on_leader.whoami().await?.user == "alice");
        Ok::<_, anyhow::Error>(())
    })?;
    // A mirror told not to forward refuses writes, naming its leader.
    second.stop()?;
    std::fs::write(
        second_dir.join("cairn.toml"),
        "[mirror]\nforward_writes = false\n",
    )?;
    let second = start_mirror(&second_dir, &leader, &[])?;
    rt.block_on(async {
        let mirror = unix_client(&second_dir).await?;
        let refused = mirror
            .put("docs", "x", Value::from(1), None)
            .await
            .unwrap_err();
        ensure!(
            refused.code() == Some(ErrorCode::MirrorReadOnly)
                && refused.to_string().contains(&leader.tls_address),
            "{refused}"
        );
        ensure!(!mirror_status(&mirror).await?.forward_writes);
        Ok::<_, anyhow::Error>(())
    })?;
    drop((first, second, leader));
    Ok(())
}

#[test]
fn a_mirror_rides_through_kill_9_and_bootstraps_again_after_the_leader_is_restored() -> Result<()> {
    let tmp = scratch();
    let leader_dir = tmp.path().join("leader");
    let leader = ServiceProcess::start(&leader_dir, &[])?;
    let mirror_dir = tmp.path().join("mirror");
    let rt = runtime();
    rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        admin.db_create("docs", Default::default()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The mirror's state changes go to a webhook.
    let hook = WebhookListener::start()?;
    std::fs::create_dir_all(&mirror_dir)?;
    std::fs::write(
        mirror_dir.join("cairn.toml"),
        format!(
            "[[webhooks]]\nurl = \"{}\"\nevents = [\"mirror_state_changed\"]\n",
            hook.url()
        ),
    )?;
    let mirror = start_mirror(&mirror_dir, &leader, &[])?;

    // SIGKILL the mirror twice while writers run; each restart catches up.
    let writers = rt.block_on(Writers::start(&leader_dir, "docs", 3))?;
    let mut mirror = Some(mirror);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(700));
        mirror.take().expect("running").kill()?;
        std::thread::sleep(Duration::from_millis(300));
        mirror = Some(start_mirror(&mirror_dir, &leader, &[])?);
    }
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(async {
        let acked = writers.stop().await?;
        ensure!(acked > 50, "the writers wrote: {acked}");
        caught_up(&mirror_dir, &leader_dir).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(
        digests(&mirror_dir)? == digests(&leader_dir)?,
        "after two kill -9 the mirror holds the leader's bytes"
    );
    let events = hook.requests();
    ensure!(
        events.iter().any(
            |r| r.body["event"] == "mirror_state_changed" && r.body["new_state"] == "following"
        ),
        "the webhook heard the mirror follow: {events:?}"
    );
    // `cairn status` on the mirror says whom it follows and how far behind it is.
    let status = cairn_tests::cli::cairn(
        &[
            "--dir".to_string(),
            mirror_dir.display().to_string(),
            "status".to_string(),
        ],
        "",
    )
    .ok();
    ensure!(
        status.stdout.contains("mirror of:") && status.stdout.contains("0 behind"),
        "{}",
        status.stdout
    );

    // The leader is restored from a backup made earlier: the mirror's history is no
    // longer the leader's, and it bootstraps again by itself.
    rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        let backup = admin.backup_start(Some("before")).await?;
        wait_job(&admin, backup.id).await?;
        for i in 0..30u64 {
            admin
                .put("docs", &format!("after-backup-{i}"), doc(i, 5), None)
                .await?;
        }
        let client = unix_client(&mirror_dir).await?;
        caught_up(&mirror_dir, &leader_dir).await?;
        let restore = admin.restore_start("before").await?;
        wait_job(&admin, restore.id).await?;
        let admin = unix_client(&leader_dir).await?;
        admin.put("docs", "after-restore", doc(1, 6), None).await?;
        let status = caught_up(&mirror_dir, &leader_dir).await?;
        ensure!(status.lag_changes == 0, "{status:?}");
        let gone = client.get("docs", "after-backup-3").await.unwrap_err();
        ensure!(gone.code() == Some(ErrorCode::NotFound), "{gone}");
        client.get("docs", "after-restore").await?;
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(
        digests(&mirror_dir)? == digests(&leader_dir)?,
        "after the leader's restore the mirror holds the restored bytes"
    );
    let mirror = mirror.take().expect("running");
    let said = mirror.stderr_so_far().join("\n");
    ensure!(
        said.contains("bootstrapping again"),
        "the mirror said so: {said}"
    );

    // With a lag limit (reloaded at run time) and the leader gone, reads are refused
    // with the lag once the leader has been silent too long; status still answers.
    std::fs::write(
        mirror_dir.join("cairn.toml"),
        "[mirror]\nmax_lag_secs = 1\n",
    )?;
    let reload = cairn_tests::cli::cairn(
        &[
            "--dir".to_string(),
            mirror_dir.display().to_string(),
            "config".to_string(),
            "reload".to_string(),
        ],
        "",
    )
    .ok();
    ensure!(
        reload.stdout.contains("mirror.max_lag_secs"),
        "{}",
        reload.stdout
    );
    leader.stop()?;
    std::thread::sleep(Duration::from_millis(3500));
    rt.block_on(async {
        let client = unix_client(&mirror_dir).await?;
        let lagging = client.get("docs", "after-restore").await.unwrap_err();
        let details = lagging.wire().and_then(|w| w.details.clone());
        ensure!(
            lagging.code() == Some(ErrorCode::MirrorLagging)
                && details.is_some_and(|d| d.to_string().contains("lag_secs")),
            "{lagging}"
        );
        let status = mirror_status(&client).await?;
        ensure!(
            status.state != MirrorState::Following && status.lag_secs > 1.0,
            "{status:?}"
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(mirror);
    Ok(())
}

/// Writers through one service (a leader, or a mirror that forwards) with a key per
/// write: a write refused or cut off is not acknowledged; the keys acknowledged are kept.
struct KeyedWriters {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl KeyedWriters {
    async fn start(dir: &Path, name: &str, count: u64) -> Result<KeyedWriters> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for writer in 0..count {
            let client = unix_client(dir).await?;
            let (stop, name) = (stop.clone(), name.to_string());
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let key = format!("{name}-{writer}-{n}");
                    match client.put("docs", &key, doc(n, writer), None).await {
                        Ok(_) => acked.push(key),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acked
            }));
        }
        Ok(KeyedWriters { stop, tasks })
    }

    async fn stop(self) -> Result<Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut acked = Vec::new();
        for task in self.tasks {
            acked.extend(task.await?);
        }
        Ok(acked)
    }
}

/// Checks that every key of `acked` is a document of `docs` on the service of `dir`.
async fn all_present(dir: &Path, acked: &[String]) -> Result<()> {
    let client = unix_client(dir).await?;
    for key in acked {
        client
            .get("docs", key)
            .await
            .with_context(|| format!("the acknowledged write {key} on {}", dir.display()))?;
    }
    Ok(())
}

fn cairn_json(dir: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec![
        "--dir".to_string(),
        dir.display().to_string(),
        "-o".to_string(),
        "json".to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    Ok(cairn_tests::cli::cairn(&all, "").ok().json())
}

#[test]
fn promotion_hands_over_without_losing_a_write_and_force_promotes_when_the_leader_is_gone(
) -> Result<()> {
    let tmp = scratch();
    let leader_dir = tmp.path().join("leader");
    let leader = ServiceProcess::start(&leader_dir, &[])?;
    let mirror_dir = tmp.path().join("mirror");
    let rt = runtime();
    rt.block_on(async {
        unix_client(&leader_dir)
            .await?
            .db_create("docs", Default::default())
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The mirror reaches the leader with the leader's certificates; the leader, once a
    // mirror, reaches the new leader with its own (the new leader trusts its CA).
    let mirror = start_mirror(&mirror_dir, &leader, &[])?;

    // Writers through both services while the mirror is promoted.
    let (on_leader, on_mirror) = rt.block_on(async {
        Ok::<_, anyhow::Error>((
            KeyedWriters::start(&leader_dir, "via-leader", 2).await?,
            KeyedWriters::start(&mirror_dir, "via-mirror", 2).await?,
        ))
    })?;
    std::thread::sleep(Duration::from_millis(800));
    let promoted = cairn_json(&mirror_dir, &["promote"])?;
    std::thread::sleep(Duration::from_millis(800));
    let acked = rt.block_on(async {
        let mut acked = on_leader.stop().await?;
        acked.extend(on_mirror.stop().await?);
        Ok::<_, anyhow::Error>(acked)
    })?;
    ensure!(promoted["forced"] == false, "{promoted}");
    ensure!(promoted["old_leader_follows"] == true, "{promoted}");
    let refused_ms = promoted["refused_ms"].as_u64().context("refused_ms")?;
    ensure!(
        refused_ms <= 2000,
        "writes were refused for {refused_ms} ms"
    );
    eprintln!("graceful promotion: writes were refused for {refused_ms} ms");
    for dir in [&mirror_dir, &leader_dir] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("role.json"))?
            .permissions()
            .mode();
        ensure!(mode & 0o777 == 0o600, "role.json is {mode:o}");
    }
    ensure!(acked.len() > 50, "the writers wrote: {}", acked.len());
    rt.block_on(async {
        // The new leader holds every acknowledged write; the old one follows it.
        all_present(&mirror_dir, &acked).await?;
        let new_leader = unix_client(&mirror_dir).await?;
        ensure!(new_leader.status().await?.mirror.is_none());
        let status = caught_up(&leader_dir, &mirror_dir).await?;
        ensure!(status.leader.contains("127.0.0.1"), "{status:?}");
        all_present(&leader_dir, &acked).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(
        digests(&leader_dir)? == digests(&mirror_dir)?,
        "the old leader holds the new leader's bytes"
    );

    // The roles survive restarts: DIR/role.json wins over --mirror.
    let mirror = {
        // The same port: the old leader follows it there.
        let listen = format!("ssl://{}", mirror.tls_address);
        mirror.stop()?;
        start_mirror(&mirror_dir, &leader, &["--listen", &listen])?
    };
    rt.block_on(async {
        ensure!(unix_client(&mirror_dir)
            .await?
            .status()
            .await?
            .mirror
            .is_none());
        Ok::<_, anyhow::Error>(())
    })?;

    // Writes through the old leader (now a mirror), then the new leader dies: the old
    // one is promoted by force and holds every write it had acknowledged.
    let through_old = rt.block_on(KeyedWriters::start(&leader_dir, "forced", 2))?;
    std::thread::sleep(Duration::from_millis(800));
    let acked = rt.block_on(through_old.stop())?;
    ensure!(!acked.is_empty());
    mirror.kill()?;
    let forced = cairn_json(&leader_dir, &["promote", "--force"])?;
    ensure!(forced["forced"] == true, "{forced}");
    ensure!(forced["epoch"].as_u64().is_some(), "{forced}");
    rt.block_on(async {
        all_present(&leader_dir, &acked).await?;
        let leader_client = unix_client(&leader_dir).await?;
        ensure!(leader_client.status().await?.mirror.is_none());
        leader_client
            .put("docs", "after-force", doc(1, 1), None)
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(leader);
    Ok(())
}

/// Starting a mirror that must fail: the one error line it printed.
fn refused_start(dir: &Path, url: &str, leader: &ServiceProcess) -> Result<String> {
    let certs = leader.dir.join("certs");
    let Err(error) = ServiceProcess::start_with_env(
        dir,
        &["--mirror", url],
        &[("CAIRN_CERT_DIR", certs.to_str().unwrap())],
    ) else {
        bail!("a mirror of {url} started");
    };
    let text = format!("{error:#}");
    let at = text
        .find("cairn-service: error:")
        .with_context(|| format!("an error line in {text}"))?;
    let line = text[at..].lines().next().unwrap_or_default();
    Ok(line.to_string())
}

#[test]
fn bad_leaders_and_directories_are_refused_at_start_with_one_line() -> Result<()> {
    let tmp = scratch();
    let leader_dir = tmp.path().join("leader");
    let leader = ServiceProcess::start(&leader_dir, &[])?;
    let rt = runtime();
    rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        admin.user_add("alice", Some("alice-pw-1"), false).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let address = &leader.tls_address;

    // Something that is no Cairn service: it answers plain text and hangs up.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0")?;
    let impostor_address = impostor.local_addr()?;
    std::thread::spawn(move || {
        for stream in impostor.incoming().take(4).flatten() {
            use std::io::Write as _;
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let empty = tmp.path().join("empty");
    let cases = [
        (
            format!("ssl://root@{impostor_address}/?hostname=localhost"),
            "does not answer as a Cairn service",
        ),
        (
            format!("ssl://root:wrong-password@{address}/?hostname=localhost"),
            "refuses this mirror's credentials",
        ),
        (
            format!("ssl://alice:alice-pw-1@{address}/?hostname=localhost"),
            "alice is not an admin",
        ),
        ("http://somewhere/".to_string(), "not a leader's URL"),
    ];
    for (url, expected) in cases {
        let line = refused_start(&empty, &url, &leader)?;
        ensure!(line.contains(expected), "{url}: {line}");
        ensure!(
            !empty.join("store").exists(),
            "a refused mirror leaves no store"
        );
    }

    // A directory holding another service's data.
    let other_dir = tmp.path().join("other");
    ServiceProcess::start(&other_dir, &[])?.stop()?;
    let before = digests(&other_dir)?;
    let line = refused_start(&other_dir, &leader_url(&leader), &leader)?;
    ensure!(
        line.contains("holds service") && line.contains("start the mirror on an empty directory"),
        "{line}"
    );
    ensure!(
        digests(&other_dir)? == before,
        "the refused directory is unchanged"
    );

    // A session token of an admin, with no user in the URL, is enough to follow.
    let token = rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        admin.user_add("ops", Some("ops-pw-1"), true).await?;
        Ok::<_, anyhow::Error>(admin.login("ops", "ops-pw-1").await?.token)
    })?;
    let by_token_dir = tmp.path().join("by-token");
    let url = format!("ssl://{address}/?hostname=localhost");
    let certs = leader.dir.join("certs");
    let by_token = ServiceProcess::start_with_env(
        &by_token_dir,
        &["--mirror", &url],
        &[
            ("CAIRN_CERT_DIR", certs.to_str().unwrap()),
            ("CAIRN_MIRROR_TOKEN", &token),
        ],
    )?;
    rt.block_on(async {
        caught_up(&by_token_dir, &leader_dir).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop((by_token, leader));
    Ok(())
}

#[test]
fn a_mirror_whose_disk_fills_up_keeps_serving_and_catches_up_once_there_is_room() {
    cairn_tests::tmpfs::with_tmpfs("128m", |small| {
        full_disk_on_a_mirror(small).unwrap();
    });
}

/// A mirror on `small` (128 MiB, 120 of them taken by a ballast file) falls behind when
/// its disk is full, says so, still serves what it applied, and catches up once the
/// ballast goes.
fn full_disk_on_a_mirror(small: &Path) -> Result<()> {
    let tmp = scratch();
    let leader_dir = tmp.path().join("leader");
    let leader = ServiceProcess::start(&leader_dir, &[])?;
    let rt = runtime();
    rt.block_on(async {
        let admin = unix_client(&leader_dir).await?;
        admin.db_create("docs", Default::default()).await?;
        admin.put("docs", "early", doc(1, 1), None).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let ballast = small.join("ballast");
    std::fs::write(&ballast, vec![0u8; 120 << 20])?;
    let mirror_dir = small.join("mirror");
    let _mirror = start_mirror(&mirror_dir, &leader, &[])?;
    rt.block_on(async {
        let client = unix_client(&mirror_dir).await?;
        caught_up(&mirror_dir, &leader_dir).await?;
        // 12 MiB of values: each journal entry holds the value twice (document and
        // change record), and the mirror keeps both and the entry.
        let admin = unix_client(&leader_dir).await?;
        for i in 0..48u8 {
            admin
                .put(
                    "docs",
                    &format!("big-{i}"),
                    Value::Binary(vec![i; 256 << 10]),
                    None,
                )
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let stuck = loop {
            let status = mirror_status(&client).await?;
            if status.state != MirrorState::Following && status.applied < status.leader_head {
                break status;
            }
            ensure!(
                Instant::now() < deadline,
                "the mirror never ran out of room: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ensure!(
            stuck.message.contains("full") || stuck.message.contains("storage"),
            "the mirror says why it stopped: {stuck:?}"
        );
        // It still serves what it applied.
        ensure!(client.get("docs", "early").await?.value == doc(1, 1));
        std::fs::remove_file(&ballast)?;
        caught_up(&mirror_dir, &leader_dir).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(
        digests(&mirror_dir)? == digests(&leader_dir)?,
        "once there is room the mirror holds the leader's bytes"
    );
    drop(leader);
    Ok(())
}
