//! The `sync` benchmark. It measures `cairn-sync`, the follower that applies one
//! service's change log to another at the same seqs, between two real `cairn-service`
//! processes on this machine. First how fast a follower catches up: a source database
//! of many changes (written through cairn-store, then served), a fresh destination
//! attached to it, and the time from spawning `cairn-sync` until the destination's
//! `sync.status` shows the last change applied, beside raw heed putting the same keys
//! and values 1000 puts per fsync'd commit, in rounds in the same conditions. Then, the
//! follower live, how far behind the destination stays while 64 writers put on the
//! source over TLS: for every put, from the source's answer to the moment the
//! destination's continuous change feed shows its seq. Last, a cutover of that live
//! destination: how long the source stays READ_ONLY.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_client::methods::{
    call, ChangesArgs, FeedItem, NoArgs, RetentionArgs, SyncAttachArgs, SyncDatabase,
    SyncStartPosition,
};
use cairn_client::values::{FeedKind, SyncState};
use cairn_client::{Client, ClientUrl, ConnectOptions};
use cairn_store::{Op, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rustix::process::{kill_process, Pid, Signal};
use tokio::runtime::Runtime;

use crate::backup::mib;
use crate::data::{Dataset, KEY_BYTES, VALUE_BYTES, VALUE_POOL};
use crate::measure::{percentile, Run};
use crate::process::{self, ServiceProcess};
use crate::procfs;
use crate::raw::RawHeed;
use crate::remote::{self, Values};
use crate::report::{Row, Target};
use crate::workloads::{fresh_absolute_dir, fresh_dir, progress};

/// Smallest acceptable ratio of the follower's catch-up rate to raw heed's puts.
const CATCH_UP_TARGET: f64 = 0.5;
/// Largest acceptable p99 lag of a change, in milliseconds.
const LAG_P99_TARGET_MS: f64 = 500.0;
/// Longest acceptable READ_ONLY time of the source during a cutover to a live
/// destination, in milliseconds.
const CUTOVER_TARGET_MS: f64 = 2_000.0;

/// The source's database that the follower catches up.
const DATABASE: &str = "events";
/// The source's database the writers put in while the follower is live.
const LIVE_DATABASE: &str = "events2";
/// Changes per commit of the source's load, and puts per commit of raw heed.
const PER_COMMIT: usize = 1000;
/// Rounds of the catch-up and of raw heed.
const ROUNDS: usize = 3;
/// Concurrent writers of the lag run, and the TLS connections they share.
const WRITERS: usize = 64;
const CONNECTIONS: usize = 4;

/// How often the destination's `sync.status` is read while the follower catches up.
const POLL: Duration = Duration::from_millis(20);
/// The catch-up fails when the applied seq does not move for this long...
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// ... or when it takes longer than this plus a change per `SLOWEST_RATE`th of a second.
const CATCH_UP_GRACE: Duration = Duration::from_secs(60);
const SLOWEST_RATE: u64 = 2_000;
/// The longest the follower may take to create and follow the live database (it looks
/// for new databases every 2 s).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the destination may take to show the last put after the writers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the bench waits for the answer to one of its calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeats of the destination's feed, so that its reader notices the last seq it
/// waits for even when no change comes after it.
const FEED_HEARTBEAT_MS: u64 = 100;

/// cairn-sync's batching (`APPLY_CHANGES`, `APPLY_BYTES` in tools/sync/src/apply.rs,
/// `READ_AHEAD` in follow.rs), for the notes.
const FOLLOWER_APPLY_CHANGES: usize = 2_000;
const FOLLOWER_APPLY_MIB: usize = 4;
const FOLLOWER_READ_AHEAD: usize = 20_000;

/// Seed of the key set, so that every run writes the same source.
const SEED: u64 = 0x51C_F011;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct SyncSizes {
    /// Changes of the source's database that the follower catches up.
    pub changes: usize,
    /// How long the writers put while the lag is measured.
    pub write_for: Duration,
}

impl SyncSizes {
    pub fn full() -> SyncSizes {
        SyncSizes {
            changes: 1_000_000,
            write_for: Duration::from_secs(10),
        }
    }

    pub fn quick() -> SyncSizes {
        SyncSizes {
            changes: 20_000,
            write_for: Duration::from_secs(2),
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct SyncReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// One of the two timed in each round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    RawHeed,
    Follower,
}

/// One round: raw heed's puts, and the follower's catch-up.
struct Round {
    order: [Method; 2],
    raw: Run,
    catch_up: CatchUp,
}

/// A follower's catch-up of the whole source database.
struct CatchUp {
    /// From spawning cairn-sync until the destination showed the last change applied.
    elapsed: Duration,
    /// CPU time used meanwhile by the follower, the destination and the source.
    cpu: Cpu,
    /// When (from the spawn) the destination was first seen with each quarter of the
    /// changes applied.
    quarters: Vec<Duration>,
}

/// CPU time of the processes at work, over an interval.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    follower: Duration,
    destination: Duration,
    source: Duration,
    /// This process (the bench's client, raw heed's side is never timed with it).
    bench: Duration,
}

impl Cpu {
    fn describe(&self, wall: Duration) -> String {
        let secs = |d: Duration| d.as_secs_f64();
        format!(
            "cairn-sync {:.1} s, destination {:.1} s, source {:.1} s, cairn-bench {:.1} s over \
             {:.1} s of wall time",
            secs(self.follower),
            secs(self.destination),
            secs(self.source),
            secs(self.bench),
            secs(wall)
        )
    }
}

/// The CPU times used so far by the follower (if it runs yet: zero before), the
/// destination, the source and this process.
fn cpu_now(follower: Option<u32>, destination: u32, source: u32) -> Result<Cpu> {
    Ok(Cpu {
        follower: follower.map_or(Ok(Duration::ZERO), procfs::process_cpu_time)?,
        destination: procfs::process_cpu_time(destination)?,
        source: procfs::process_cpu_time(source)?,
        bench: procfs::process_cpu_time(std::process::id())?,
    })
}

/// `after - before` for every process.
fn cpu_between(before: Cpu, after: Cpu) -> Cpu {
    Cpu {
        follower: after.follower.saturating_sub(before.follower),
        destination: after.destination.saturating_sub(before.destination),
        source: after.source.saturating_sub(before.source),
        bench: after.bench.saturating_sub(before.bench),
    }
}

/// What the destinations need to follow the source's database.
struct Origin {
    service_id: String,
    epoch: u64,
    created_ms: u64,
}

/// A destination service with a follower attached to it.
struct Destination {
    dir: PathBuf,
    service: ServiceProcess,
    follower: Follower,
}

/// The lag run's figures: each put's lag, from the answer of the service written to
/// until a feed of the service that follows it showed its seq.
pub(crate) struct Lags {
    /// Every put's lag, ascending.
    pub(crate) sorted: Vec<Duration>,
    /// The puts over the run.
    pub(crate) puts: Run,
    /// Puts whose change the feed showed before the writer had the answer (their lag
    /// counts as 0).
    pub(crate) seen_before_ack: usize,
    /// From the writers' stop until the feed showed the last put.
    pub(crate) drain: Duration,
}

impl Lags {
    /// The `percent`th percentile of the lags, in milliseconds.
    pub(crate) fn percentile_ms(&self, percent: u64) -> Result<f64> {
        percentile(&self.sorted, percent)
            .map(|d| d.as_secs_f64() * 1e3)
            .context("no lag was measured")
    }
}

/// The source, then the rounds of catch-up and raw heed, then the lag run. `base` is the
/// directory in which the temporary directories are made.
pub fn run_sync_comparison(sizes: SyncSizes, base: &Path) -> Result<SyncReport> {
    ensure!(
        sizes.changes >= PER_COMMIT,
        "the benchmark needs at least {PER_COMMIT} changes"
    );
    let load_before = procfs::load_average()?;
    let service_binary = process::service_binary()?;
    let sync_binary = process::workspace_binary("cairn-sync", "cairn-sync")?;
    // Absolute, for the unix sockets' URLs and the follower's arguments.
    let (_root_dir, root) = fresh_absolute_dir(base, "sync")?;
    let changes = sizes.changes;
    let mut rng = StdRng::seed_from_u64(SEED);
    let data = Dataset::generate(changes, &mut rng);

    let src_dir = root.join("source");
    progress(&format!(
        "writing a source database of {changes} changes through cairn-store"
    ));
    let fill = fill_source(&src_dir, &data)?;
    let src_bytes = std::fs::metadata(src_dir.join("store/data.mdb"))?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress(&format!("starting {} on it", service_binary.display()));
    let source = ServiceProcess::start(&service_binary, &src_dir, &root.join("source.log"))?;
    let origin = runtime.block_on(origin(&src_dir, changes))?;

    let mut rounds = Vec::new();
    let mut live = None;
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [Method::RawHeed, Method::Follower]
        } else {
            [Method::Follower, Method::RawHeed]
        };
        let (mut raw, mut catch_up) = (None, None);
        for method in order {
            match method {
                Method::RawHeed => {
                    progress(&format!(
                        "round {} of {ROUNDS}: raw heed, {changes} puts, {PER_COMMIT} per commit",
                        round + 1
                    ));
                    let dir = fresh_dir(&root, "heed")?;
                    let heed = RawHeed::create(dir.path())?;
                    rustix::fs::sync();
                    raw = Some(heed.put_all(&data, PER_COMMIT)?);
                }
                Method::Follower => {
                    progress(&format!(
                        "round {} of {ROUNDS}: cairn-sync catching up {changes} changes",
                        round + 1
                    ));
                    let (took, destination) = catch_up_round(
                        &runtime,
                        &service_binary,
                        &sync_binary,
                        &root,
                        round,
                        &origin,
                        &source,
                        changes,
                    )?;
                    catch_up = Some(took);
                    if round + 1 == ROUNDS {
                        live = Some(destination);
                    } else {
                        destination.follower.stop()?;
                        destination.service.stop()?;
                        std::fs::remove_dir_all(&destination.dir)
                            .with_context(|| format!("removing {}", destination.dir.display()))?;
                    }
                }
            }
        }
        rounds.push(Round {
            order,
            raw: raw.context("raw heed did not run")?,
            catch_up: catch_up.context("the follower did not run")?,
        });
    }

    let mut destination = live.context("no destination was kept for the lag run")?;
    let values = Values::decode(&data)?;
    let (lags, lag_cpu) = runtime.block_on(lag_run(
        &src_dir,
        &source,
        &mut destination,
        sizes.write_for,
        values,
    ))?;
    progress("cairn-sync cutover, the follower live");
    let cutover = cutover(&sync_binary, &src_dir, &destination.dir)?;
    destination.follower.ended_by_cutover()?;
    destination.service.stop()?;
    source.stop()?;
    let load_after = procfs::load_average()?;

    let median = |times: Vec<Duration>| -> Result<Duration> {
        let mut times = times;
        times.sort_unstable();
        percentile(&times, 50).context("no round was timed")
    };
    let raw_median = median(rounds.iter().map(|r| r.raw.elapsed).collect())?;
    let catch_up_median = median(rounds.iter().map(|r| r.catch_up.elapsed).collect())?;
    let per_second = |d: Duration| changes as f64 / d.as_secs_f64();
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = vec![
        Row::new(
            &format!("follower catching up {changes} changes vs raw heed {PER_COMMIT} puts/commit"),
            "changes/s",
            per_second(raw_median),
            per_second(catch_up_median),
            Some(Target::RatioAtLeast(CATCH_UP_TARGET)),
        ),
        Row::without_baseline(
            &format!("sync lag p50 ({WRITERS} writers over TLS)"),
            "ms",
            lags.percentile_ms(50)?,
            None,
        ),
        Row::without_baseline(
            &format!("sync lag p99 ({WRITERS} writers over TLS)"),
            "ms",
            lags.percentile_ms(99)?,
            Some(Target::AtMost(LAG_P99_TARGET_MS)),
        ),
        Row::without_baseline(
            &format!("source puts during the lag run ({WRITERS} writers over TLS)"),
            "puts/s",
            lags.puts.per_second(),
            None,
        ),
        Row::without_baseline(
            &format!(
                "cutover: source READ_ONLY, {} documents compared",
                cutover.documents
            ),
            "ms",
            cutover.read_only_ms,
            Some(Target::AtMost(CUTOVER_TARGET_MS)),
        ),
    ];

    let secs = |d: Duration| d.as_secs_f64();
    let rounds_text = rounds
        .iter()
        .enumerate()
        .map(|(i, round)| {
            let figure = |method| match method {
                Method::RawHeed => format!("raw heed {:.0}/s", round.raw.per_second()),
                Method::Follower => format!(
                    "cairn-sync {:.0}/s ({:.2} s)",
                    per_second(round.catch_up.elapsed),
                    secs(round.catch_up.elapsed)
                ),
            };
            format!(
                "round {}: {}, then {}",
                i + 1,
                figure(round.order[0]),
                figure(round.order[1])
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let last = rounds.last().context("no round was run")?;
    let max_lag = lags.sorted.last().copied().unwrap_or_default();
    let quarter = changes as f64 / 4.0;
    let by_quarter = last
        .catch_up
        .quarters
        .iter()
        .scan(Duration::ZERO, |previous, &at| {
            let rate = quarter / at.saturating_sub(*previous).as_secs_f64();
            *previous = at;
            Some(format!("{rate:.0}/s"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let notes = vec![
        format!(
            "source: database {DATABASE:?} of {changes} changes (puts of new {KEY_BYTES}-byte \
             random keys, {VALUE_BYTES}-byte msgpack bin values), written through cairn-store \
             in {:.1} s ({:.0} changes/s, {PER_COMMIT} puts per batch, each commit fsync'd; \
             store/data.mdb {}), then served by a cairn-service (format 2) on it; destinations: a fresh \
             cairn-service per round, {DATABASE:?} created on it and attached to the source \
             with sync.attach (position: seq 0 of the source's epoch)",
            secs(fill),
            per_second(fill),
            mib(src_bytes)
        ),
        format!(
            "catch-up: cairn-sync --src unix://SRC/sock --dest unix://DEST/sock -o json, timed \
             from its spawn (its start, attach and first discovery included) until the \
             destination's {DATABASE:?} had seq {changes} applied (its sync.status, read \
             every {} ms on its unix socket: the destination applies each change at the \
             source's seq, its position in the same transaction), then its db.info must \
             show last_seq and doc_count {changes}; \
             cairn-sync as it runs them: per database, pages of the source's log \
             ({FOLLOWER_APPLY_CHANGES} changes) while behind, then its continuous feed \
             (pushed as commits happen), up to {FOLLOWER_READ_AHEAD} changes read ahead, sync.apply calls of up to {FOLLOWER_APPLY_CHANGES} changes \
             (or {FOLLOWER_APPLY_MIB} MiB), one in flight while the feed fills the next, each \
             committed by the destination in one fsync'd transaction with the position",
            POLL.as_millis()
        ),
        format!(
            "baseline: raw heed in this process, the same {changes} keys and values put into a \
             fresh environment, {PER_COMMIT} puts per fsync'd commit (as in the store and \
             service benches); {ROUNDS} rounds, the order turning each round, each run after a \
             sync, the medians in the row: {rounds_text}"
        ),
        format!(
            "the last catch-up: CPU {}; its rate by quarter of the changes (from the spawn, \
             the follower's start in the first): {by_quarter}",
            last.catch_up.cpu.describe(last.catch_up.elapsed)
        ),
        format!(
            "lag: {WRITERS} writers (tokio tasks, one durable put at a time) on {CONNECTIONS} TLS \
             connections to the source put new random keys into {LIVE_DATABASE:?} for {:.1} s \
             (created on the source once the follower was live; the writes began once the \
             follower had created it on the destination and reported it live); a put's lag is \
             from the source's answer reaching the writer until the destination's continuous \
             change feed (unix socket, this process) delivered its seq: {} puts, all seen, \
             max {:.1} ms, {} seen before their answer (counted as 0 ms), the last seen {:.0} ms \
             after the writers stopped",
            secs(sizes.write_for),
            lags.puts.ops,
            millis(max_lag),
            lags.seen_before_ack,
            millis(lags.drain)
        ),
        format!(
            "CPU during the lag run: {}",
            lag_cpu.describe(lags.puts.elapsed)
        ),
        format!(
            "cutover: cairn-sync cutover --src unix://SRC/sock --dest unix://DEST/sock right \
             after the lag run, its follower live: the source set READ_ONLY, the changes left \
             applied, every database's documents compared by a SHA-256 of every key, rev and \
             value read in scan pages of 1000 on both sides at once ({} documents per side), \
             users, grants and configurations compared, migration mode ended: the row is the \
             time from READ_ONLY to the end of migration mode, as the cutover reports it; the \
             comparison grows with the data"
            , cutover.documents
        ),
        format!(
            "load average before: {load_before}, after: {load_after} (the two services, \
             cairn-sync, the bench's client and raw heed share this machine's cores)"
        ),
    ];
    Ok(SyncReport { rows, notes })
}

/// Creates a store in `dir` with the database `DATABASE` holding a put of every key of
/// `data`, `PER_COMMIT` per batch; closes it (the service opens it next). Its time.
fn fill_source(dir: &Path, data: &Dataset) -> Result<Duration> {
    let start = Instant::now();
    let store = Store::create(dir, StoreOptions::default())
        .with_context(|| format!("creating a store in {}", dir.display()))?;
    store.create_database(DATABASE)?;
    for (chunk_index, chunk) in data.keys.chunks(PER_COMMIT).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(offset, key)| Op::Put {
                key: key.clone(),
                value: data.value(chunk_index * PER_COMMIT + offset).to_vec(),
                rev: None,
            })
            .collect();
        store.batch(DATABASE, ops)?;
    }
    drop(store);
    Ok(start.elapsed())
}

/// A connection to the service of the working directory `dir` on its unix socket, as
/// its admin.
pub(crate) async fn connect_socket(dir: &Path) -> Result<Client> {
    let url: ClientUrl = format!("unix://{}", socket(dir).display()).parse()?;
    Client::connect(&url, &ConnectOptions::default())
        .await
        .with_context(|| format!("connecting to {}", socket(dir).display()))
}

pub(crate) fn socket(dir: &Path) -> PathBuf {
    dir.join("sock")
}

/// The source's service id, and its database's epoch and creation time, after checking
/// that the database holds `changes` changes.
async fn origin(src_dir: &Path, changes: usize) -> Result<Origin> {
    let client = connect_socket(src_dir).await?;
    let service_id = client.status().await?.service_id;
    let info = client.db_info(DATABASE).await?;
    ensure!(
        info.last_seq == changes as u64,
        "the source's {DATABASE} has last_seq {}, expected {changes}",
        info.last_seq
    );
    let epoch = client
        .changes(&ChangesArgs {
            db: DATABASE.to_string(),
            limit: Some(1),
            ..ChangesArgs::default()
        })
        .await?
        .epoch;
    Ok(Origin {
        service_id,
        epoch,
        created_ms: info.created_ms,
    })
}

/// One catch-up: a fresh destination attached to the source, then a follower spawned and
/// timed until the destination has applied all `changes`. The destination and its
/// follower are left running.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's binaries, places and sizes"
)]
fn catch_up_round(
    runtime: &Runtime,
    service_binary: &Path,
    sync_binary: &Path,
    root: &Path,
    round: usize,
    origin: &Origin,
    source: &ServiceProcess,
    changes: usize,
) -> Result<(CatchUp, Destination)> {
    let dir = root.join(format!("destination-{}", round + 1));
    let service = ServiceProcess::start(
        service_binary,
        &dir,
        &root.join(format!("destination-{}.log", round + 1)),
    )?;
    let client = runtime.block_on(attach(&dir, origin))?;
    let src_dir = root.join("source");
    rustix::fs::sync();
    let before = cpu_now(None, service.pid(), source.pid())?;
    let start = Instant::now();
    let mut follower = Follower::start(
        sync_binary,
        &src_dir,
        &dir,
        &root.join(format!("follower-{}.log", round + 1)),
    )?;
    let quarters = runtime.block_on(wait_applied(&client, &mut follower, changes, start))?;
    let elapsed = start.elapsed();
    let cpu = cpu_between(
        before,
        cpu_now(Some(follower.pid()), service.pid(), source.pid())?,
    );
    runtime.block_on(async {
        let info = client.db_info(DATABASE).await?;
        ensure!(
            (info.last_seq, info.doc_count) == (changes as u64, changes as u64),
            "the destination's {DATABASE} has (last_seq, doc_count) {:?}, expected {changes} each",
            (info.last_seq, info.doc_count)
        );
        anyhow::Ok(())
    })?;
    Ok((
        CatchUp {
            elapsed,
            cpu,
            quarters,
        },
        Destination {
            dir,
            service,
            follower,
        },
    ))
}

/// Creates `DATABASE` on the fresh destination in `dir` and attaches it to the source at
/// seq 0; a connection to it.
async fn attach(dir: &Path, origin: &Origin) -> Result<Client> {
    let client = connect_socket(dir).await?;
    client
        .db_create(DATABASE, RetentionArgs::default())
        .await
        .context("creating the database on the destination")?;
    client
        .request::<call::SyncAttach>(&SyncAttachArgs {
            source_service_id: origin.service_id.clone(),
            source: "bench source".to_string(),
            positions: vec![SyncStartPosition {
                db: DATABASE.to_string(),
                epoch: origin.epoch,
                seq: 0,
                created_ms: origin.created_ms,
            }],
        })
        .await
        .context("attaching the destination to the source")?;
    Ok(client)
}

/// What a cutover reported.
struct Cutover {
    /// How long the source was READ_ONLY when migration mode ended.
    read_only_ms: f64,
    /// Documents compared (the source's, every database).
    documents: u64,
}

/// Runs `cairn-sync cutover` between the two services and reads its report, which must
/// say that it is done (every database the same on both sides).
fn cutover(sync_binary: &Path, src_dir: &Path, dest_dir: &Path) -> Result<Cutover> {
    let url = |dir: &Path| format!("unix://{}", socket(dir).display());
    let output = std::process::Command::new(sync_binary)
        .args([
            "cutover",
            "--src",
            &url(src_dir),
            "--dest",
            &url(dest_dir),
            "-o",
            "json",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running cairn-sync cutover")?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "cairn-sync cutover exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    ensure!(
        output.status.success() && report["done"] == true,
        "cairn-sync cutover did not cut over: {report}"
    );
    let documents = report["databases"]
        .as_array()
        .context("the cutover's databases")?
        .iter()
        .filter_map(|db| db["source"]["documents"].as_u64())
        .sum();
    let read_only_ms = report["read_only_ms"]
        .as_f64()
        .context("the cutover's read_only_ms")?;
    Ok(Cutover {
        read_only_ms,
        documents,
    })
}

/// The destination's sync position of `db`, if it has one.
async fn sync_position(client: &Client, db: &str) -> Result<Option<SyncDatabase>> {
    let status = answered(
        "the destination's sync.status",
        client.request::<call::SyncStatus>(&NoArgs {}),
    )
    .await?;
    Ok(status.databases.into_iter().find(|d| d.db == db))
}

/// The source seq the destination has applied to `db`: its sync position.
async fn applied_seq(client: &Client, db: &str) -> Result<u64> {
    Ok(sync_position(client, db)
        .await?
        .map_or(0, |position| position.applied_seq))
}

/// The answer to a call of the bench's, or an error if there is none within
/// `CALL_TIMEOUT` (a service that stopped answering must fail the run, not hang it).
async fn answered<T, E>(what: &str, call: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answer) => answer.with_context(|| format!("reading {what}")),
        Err(_) => bail!("{what} was not answered within {CALL_TIMEOUT:?}"),
    }
}

/// Waits until the destination has applied `changes` changes of `DATABASE`, while the
/// follower (spawned at `start`) runs, reports no stop, and the applied seq moves; when it
/// was first seen with each quarter of them applied (the destination's sync.status).
async fn wait_applied(
    client: &Client,
    follower: &mut Follower,
    changes: usize,
    start: Instant,
) -> Result<Vec<Duration>> {
    let target = changes as u64;
    let mut quarters = Vec::new();
    let timeout = CATCH_UP_GRACE + Duration::from_secs(target / SLOWEST_RATE);
    let (mut applied, mut moved) = (0, Instant::now());
    loop {
        follower.check_running()?;
        let seq = applied_seq(client, DATABASE).await?;
        while quarters.len() < 4 && seq >= target * (quarters.len() as u64 + 1) / 4 {
            quarters.push(start.elapsed());
        }
        if seq >= target {
            break;
        }
        if seq != applied {
            (applied, moved) = (seq, Instant::now());
        }
        if moved.elapsed() > STALL_TIMEOUT || start.elapsed() > timeout {
            bail!(
                "the follower applied {applied} of {target} changes in {:.0} s (the applied seq \
                 last moved {:.0} s ago){}",
                start.elapsed().as_secs_f64(),
                moved.elapsed().as_secs_f64(),
                follower.log_tail()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let position = sync_position(client, DATABASE)
        .await?
        .with_context(|| format!("the destination has no sync position for {DATABASE}"))?;
    ensure!(
        position.applied_seq == target && position.error.is_none(),
        "the destination's sync.status shows {DATABASE} at seq {} (error {:?}), expected {target}",
        position.applied_seq,
        position.error
    );
    Ok(quarters)
}

/// The lag run: `LIVE_DATABASE` created on the source and followed, then `WRITERS` writers
/// on the source for `write_for`, while a feed of the destination notes when each seq
/// arrives.
async fn lag_run(
    src_dir: &Path,
    source: &ServiceProcess,
    destination: &mut Destination,
    write_for: Duration,
    values: Values,
) -> Result<(Lags, Cpu)> {
    progress(&format!(
        "creating {LIVE_DATABASE} on the source; waiting for the follower to follow it"
    ));
    let src = connect_socket(src_dir).await?;
    src.db_create(LIVE_DATABASE, RetentionArgs::default())
        .await
        .with_context(|| format!("creating {LIVE_DATABASE} on the source"))?;
    let dest = connect_socket(&destination.dir).await?;
    let start = Instant::now();
    loop {
        destination.follower.check_running()?;
        // The follower says a state once it has reported it to the destination.
        if destination.follower.said_live(LIVE_DATABASE) {
            break;
        }
        if start.elapsed() > DISCOVER_TIMEOUT {
            bail!(
                "the follower did not follow {LIVE_DATABASE} within {DISCOVER_TIMEOUT:?}{}",
                destination.follower.log_tail()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let position = sync_position(&dest, LIVE_DATABASE).await?;
    ensure!(
        position
            .as_ref()
            .is_some_and(|p| p.state == SyncState::Live),
        "the follower said {LIVE_DATABASE} was live but the destination's sync.status shows \
         {position:?}"
    );

    let feed = FeedWatch::open(&dest, LIVE_DATABASE, "the destination's").await?;
    let clients = remote::connect_many(src_dir, &source.tls_address, CONNECTIONS).await?;
    progress(&format!(
        "{WRITERS} writers on {CONNECTIONS} TLS connections to the source for {} s",
        write_for.as_secs_f64()
    ));
    let pids = (
        Some(destination.follower.pid()),
        destination.service.pid(),
        source.pid(),
    );
    let before = cpu_now(pids.0, pids.1, pids.2)?;
    let acked = put_acked(
        &clients,
        WRITERS,
        LIVE_DATABASE,
        write_for,
        Arc::new(values),
    )
    .await?;
    let cpu = cpu_between(before, cpu_now(pids.0, pids.1, pids.2)?);

    progress("waiting for the destination to show the last put");
    let Some(seen) = feed.seen_through(acked.last, DRAIN_TIMEOUT).await? else {
        let applied = applied_seq(&dest, LIVE_DATABASE).await?;
        bail!(
            "the destination showed seq {applied} of {} within {DRAIN_TIMEOUT:?} of the \
             writers' stop{}",
            acked.last,
            destination.follower.log_tail()
        );
    };
    Ok((lags_of(acked, seen)?, cpu))
}

/// A continuous change feed of a database, read by a task of its own that notes when
/// each change arrived, until the feed has shown the seq it is told to wait for.
pub(crate) struct FeedWatch {
    /// The last seq the reader waits for; none until the writers have stopped.
    wanted: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<Result<Vec<(u64, Instant)>>>,
}

impl FeedWatch {
    /// Opens the continuous feed of `db` from seq 0 on `client` (whose service `whose`
    /// names, for errors) and starts reading it.
    pub(crate) async fn open(client: &Client, db: &str, whose: &str) -> Result<FeedWatch> {
        let mut feed = client
            .changes_feed(&ChangesArgs {
                db: db.to_string(),
                since: 0,
                feed: Some(FeedKind::Continuous),
                heartbeat_ms: Some(FEED_HEARTBEAT_MS),
                ..ChangesArgs::default()
            })
            .await
            .with_context(|| format!("opening {whose} change feed"))?;
        let wanted = Arc::new(AtomicU64::new(u64::MAX));
        let reader_wants = wanted.clone();
        let whose = whose.to_string();
        let reader = tokio::spawn(async move {
            let mut seen: Vec<(u64, Instant)> = Vec::new();
            loop {
                match feed.next().await {
                    Some(Ok(FeedItem::Change(change))) => seen.push((change.seq, Instant::now())),
                    Some(Ok(FeedItem::Heartbeat { .. })) => {}
                    Some(Err(error)) => {
                        return Err(anyhow::Error::new(error).context(format!("{whose} feed")))
                    }
                    None => bail!("{whose} service ended its feed: {:?}", feed.end()),
                }
                let last = seen.last().map_or(0, |(seq, _)| *seq);
                if last >= reader_wants.load(Ordering::Relaxed) {
                    return Ok(seen);
                }
            }
        });
        Ok(FeedWatch { wanted, reader })
    }

    /// Waits, at most `within`, until the feed has shown `last`: every seq it showed and
    /// when, or `None` if it did not show `last` in time.
    pub(crate) async fn seen_through(
        self,
        last: u64,
        within: Duration,
    ) -> Result<Option<Vec<(u64, Instant)>>> {
        self.wanted.store(last, Ordering::Relaxed);
        match tokio::time::timeout(within, self.reader).await {
            Ok(joined) => Ok(Some(joined??)),
            Err(_) => Ok(None),
        }
    }
}

/// Durable puts and when each was answered.
pub(crate) struct Acked {
    pub(crate) puts: Run,
    /// Each put's seq (its rev in a database no one else writes) and when the writer
    /// had its answer.
    acks: Vec<(u64, Instant)>,
    /// The newest seq answered: every seq up to it was a put of the run.
    pub(crate) last: u64,
    /// When the writers stopped.
    stopped: Instant,
}

/// `writers` writers spread over `clients` put new random keys into `db` (which must
/// be new: their revs are its seqs) for `write_for`, one durable put at a time each;
/// when each put was answered.
pub(crate) async fn put_acked(
    clients: &[Client],
    writers: usize,
    db: &str,
    write_for: Duration,
    values: Arc<Values>,
) -> Result<Acked> {
    let acks: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let writers_acks = acks.clone();
    let db = Arc::new(db.to_string());
    let puts = remote::callers_for(clients, writers, write_for, move |client, random| {
        let (values, acks, db) = (values.clone(), writers_acks.clone(), db.clone());
        async move {
            let value = values
                .of(usize::try_from(random % VALUE_POOL as u64)?)
                .clone();
            let rev = client
                .put(&db, &format!("{random:016x}"), value, None)
                .await?
                .rev;
            let acked = Instant::now();
            acks.lock().expect("the acks lock").push((rev, acked));
            Ok(())
        }
    })
    .await?;
    let stopped = Instant::now();
    let acks = std::mem::take(&mut *acks.lock().expect("the acks lock"));
    let last = acks
        .iter()
        .map(|(seq, _)| *seq)
        .max()
        .context("no put was made")?;
    ensure!(
        acks.len() as u64 == last,
        "{} puts were answered but the last seq is {last}",
        acks.len()
    );
    Ok(Acked {
        puts,
        acks,
        last,
        stopped,
    })
}

/// Each put's lag: from its answer until the feed showed its seq (`seen`, as
/// [`FeedWatch::seen_through`] answers it), which must show every seq put.
pub(crate) fn lags_of(acked: Acked, seen: Vec<(u64, Instant)>) -> Result<Lags> {
    let drain = seen.last().map_or(Duration::ZERO, |(_, at)| {
        at.saturating_duration_since(acked.stopped)
    });
    let mut seen_at = vec![None; usize::try_from(acked.last)? + 1];
    for (seq, at) in seen {
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| seen_at.get_mut(i)) {
            slot.get_or_insert(at);
        }
    }
    let mut sorted = Vec::with_capacity(acked.acks.len());
    let mut seen_before_ack = 0;
    for (seq, answered) in acked.acks {
        let at = usize::try_from(seq)
            .ok()
            .and_then(|i| seen_at.get(i).copied().flatten())
            .with_context(|| format!("the feed skipped seq {seq}"))?;
        if at < answered {
            seen_before_ack += 1;
        }
        sorted.push(at.saturating_duration_since(answered));
    }
    sorted.sort_unstable();
    Ok(Lags {
        sorted,
        puts: acked.puts,
        seen_before_ack,
        drain,
    })
}

/// A running `cairn-sync` following the source into a destination, killed if dropped
/// without [`Follower::stop`].
struct Follower {
    child: Child,
    log: PathBuf,
}

impl Follower {
    /// Spawns `binary` following the service of `src_dir` into that of `dest_dir` on their
    /// unix sockets, its output (JSON lines, and errors) appended to `log`.
    fn start(binary: &Path, src_dir: &Path, dest_dir: &Path, log: &Path) -> Result<Follower> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("--src")
            .arg(format!("unix://{}", socket(src_dir).display()))
            .arg("--dest")
            .arg(format!("unix://{}", socket(dest_dir).display()))
            .args(["-o", "json"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CAIRN_") {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Follower {
            child,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the follower to exit by itself, successfully, as it does once a
    /// cutover ended migration mode.
    fn ended_by_cutover(mut self) -> Result<()> {
        process::wait_exit(&mut self.child, "cairn-sync", &self.log, "the cutover")
    }

    /// Fails if the follower has exited, or said that a database's sync stopped.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("cairn-sync exited with {status}{}", self.log_tail());
        }
        if let Some(stop) = self.events().find(|event| event["event"] == "stopped") {
            bail!(
                "cairn-sync stopped a database's sync: {stop}{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Whether the follower has said that `db` is live.
    fn said_live(&self, db: &str) -> bool {
        self.events()
            .any(|event| event["event"] == "state" && event["db"] == db && event["state"] == "live")
    }

    /// The events the follower has printed so far (one JSON object per line).
    fn events(&self) -> impl Iterator<Item = serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect::<Vec<serde_json::Value>>()
            .into_iter()
    }

    /// Sends SIGTERM and waits for a successful exit.
    fn stop(mut self) -> Result<()> {
        self.check_running()?;
        kill_process(Pid::from_child(&self.child), Signal::TERM)
            .context("sending SIGTERM to cairn-sync")?;
        process::wait_exit(&mut self.child, "cairn-sync", &self.log, "SIGTERM")
    }

    /// The end of the follower's output, to explain a failure.
    fn log_tail(&self) -> String {
        process::log_tail(&self.log)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
