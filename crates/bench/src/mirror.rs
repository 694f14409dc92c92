//! The `mirror` benchmark. It measures a mirror (`cairn-service DIR --mirror URL`)
//! beside its leader, both real processes on this machine. First the bootstrap: a
//! leader serving a directory of about the asked size (built as the `backup` bench
//! builds its own, plus the documents the gets read), and a mirror spawned on an empty
//! directory, timed until its `status` shows it following with the leader's whole
//! journal applied, beside `cairn-backup` of the same leader in the same run. Then, the
//! mirror following, how far behind it stays while 64 writers put on the leader over
//! TLS: for every put, from the leader's answer to the moment the mirror's continuous
//! change feed shows its seq. Last, random gets from 64 callers against the leader,
//! then against the mirror, the leader idle.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_client::methods::{MirrorStatus, RetentionArgs};
use cairn_client::values::MirrorState;
use cairn_client::Client;
use cairn_store::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::backup::{self, mib, Copied, PER_BATCH, VALUE_PAYLOAD};
use crate::cairn;
use crate::data::{Dataset, KEY_BYTES, VALUE_BYTES};
use crate::measure::Run;
use crate::process::{self, ServiceProcess, StartOptions};
use crate::procfs;
use crate::remote::{self, Values};
use crate::report::{Row, Target};
use crate::sync::{self, FeedWatch, Lags};
use crate::workloads::{fresh_absolute_dir, progress};

/// Largest acceptable ratio of the mirror's bootstrap time to cairn-backup's.
const BOOTSTRAP_TARGET: f64 = 2.0;
/// Largest acceptable p99 lag of a put, in milliseconds.
const LAG_P99_TARGET_MS: f64 = 500.0;
/// Smallest acceptable ratio of the mirror's gets to the leader's.
const GETS_TARGET: f64 = 0.8;

/// The leader's database the writers put in while the lag is measured.
const LIVE_DATABASE: &str = "live";
/// Concurrent writers of the lag run and callers of the gets, and the TLS connections
/// they share.
const CALLERS: usize = 64;
const CONNECTIONS: usize = 4;

/// How often the mirror's `status` is read while it bootstraps and catches up.
const POLL: Duration = Duration::from_millis(10);
/// The mirror may take this long to be ready, plus a second per `SLOWEST_COPY` bytes
/// of the leader's environment (its bootstrap comes before it is ready) ...
const START_GRACE: Duration = Duration::from_secs(60);
const SLOWEST_COPY: u64 = 8 << 20;
/// ... and this long, once ready, to apply the leader's whole journal.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the mirror may take to show the last put after the writers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Seed of the documents the gets read.
const SEED: u64 = 0x0031_4402;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct MirrorSizes {
    /// Size of the leader's `store/data.mdb` to build, in bytes.
    pub env_bytes: u64,
    /// Documents (100-byte values) the gets read, put after the build.
    pub docs: usize,
    /// How long the writers put while the lag is measured.
    pub write_for: Duration,
    /// How long the gets run, on each service.
    pub get_for: Duration,
}

impl MirrorSizes {
    pub fn full() -> MirrorSizes {
        MirrorSizes {
            env_bytes: 1 << 30,
            docs: 100_000,
            write_for: Duration::from_secs(10),
            get_for: Duration::from_secs(10),
        }
    }

    pub fn quick() -> MirrorSizes {
        MirrorSizes {
            env_bytes: 64 << 20,
            docs: 20_000,
            write_for: Duration::from_secs(2),
            get_for: Duration::from_secs(1),
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct MirrorReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// How fast a copy was made: MiB of its environment per second.
fn mib_per_second(copy: &Copied) -> f64 {
    copy.env_bytes as f64 / f64::from(1 << 20) / copy.elapsed.as_secs_f64()
}

/// The mirror's bootstrap: the copy, and when (from the spawn) it was ready.
struct Bootstrap {
    copy: Copied,
    ready: Duration,
    /// The leader's journal head it caught up with.
    head: u64,
}

/// CPU time of the leader and of the mirror over an interval.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    leader: Duration,
    mirror: Duration,
}

impl Cpu {
    fn now(leader: &ServiceProcess, mirror: &ServiceProcess) -> Result<Cpu> {
        Ok(Cpu {
            leader: procfs::process_cpu_time(leader.pid())?,
            mirror: procfs::process_cpu_time(mirror.pid())?,
        })
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            leader: self.leader.saturating_sub(before.leader),
            mirror: self.mirror.saturating_sub(before.mirror),
        }
    }
}

/// The leader, the copies, then the lag run and the gets. `base` is the directory in
/// which the temporary directories are made.
pub fn run_mirror_comparison(sizes: MirrorSizes, base: &Path) -> Result<MirrorReport> {
    let load_before = procfs::load_average()?;
    let service_binary = process::service_binary()?;
    let backup_binary = process::workspace_binary("cairn-backup", "cairn-backup")?;
    // Absolute, for the leader's unix socket URL.
    let (_root_dir, root) = fresh_absolute_dir(base, "mirror")?;
    let leader_dir = root.join("leader");

    progress(&format!(
        "building a leader's directory of {} through cairn-store",
        mib(sizes.env_bytes)
    ));
    let built = backup::build_source(&leader_dir, sizes.env_bytes)?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let data = Arc::new(Dataset::generate(sizes.docs, &mut rng));
    progress(&format!(
        "putting {} documents for the gets, {PER_BATCH} per commit",
        sizes.docs
    ));
    let store = Store::open(&leader_dir, StoreOptions::default())
        .with_context(|| format!("opening {}", leader_dir.display()))?;
    cairn::put_all(&store, &data, PER_BATCH)?;
    drop(store);
    let leader_bytes = std::fs::metadata(leader_dir.join("store/data.mdb"))?.len();

    progress(&format!(
        "starting {} on it (the leader)",
        service_binary.display()
    ));
    let leader = ServiceProcess::start(&service_binary, &leader_dir, &root.join("leader.log"))?;
    progress("reading store/data.mdb once (warm page cache)");
    std::io::copy(
        &mut File::open(leader_dir.join("store/data.mdb"))?,
        &mut std::io::sink(),
    )?;

    progress("cairn-backup LEADER BACKUP, the leader live");
    let backup_dir = root.join("backup");
    let backup = backup::time_copy(
        Command::new(&backup_binary)
            .arg(&leader_dir)
            .arg(&backup_dir),
        &backup_dir.join("store/data.mdb"),
    )?;
    std::fs::remove_dir_all(&backup_dir)
        .with_context(|| format!("removing the copy {}", backup_dir.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mirror_dir = root.join("mirror");
    progress("a mirror bootstrapping on an empty directory, the leader idle");
    let (mirror, bootstrap) = runtime.block_on(start_mirror(
        &service_binary,
        &leader_dir,
        &mirror_dir,
        &root.join("mirror.log"),
        leader_bytes,
    ))?;

    let values = Arc::new(Values::decode(&data)?);
    let (lags, lag_cpu) = runtime.block_on(lag_run(
        &leader_dir,
        &leader,
        &mirror_dir,
        &mirror,
        sizes.write_for,
        values.clone(),
    ))?;
    let (leader_gets, mirror_gets) = runtime.block_on(gets(
        &leader_dir,
        &leader,
        &mirror_dir,
        &mirror,
        sizes.get_for,
        data.clone(),
        values,
    ))?;
    mirror.stop()?;
    leader.stop()?;
    let load_after = procfs::load_average()?;

    let secs = |d: Duration| d.as_secs_f64();
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = vec![
        Row::new(
            &format!(
                "bootstrap {}: mirror spawn to following vs cairn-backup",
                mib(bootstrap.copy.env_bytes)
            ),
            "ms",
            millis(backup.elapsed),
            millis(bootstrap.copy.elapsed),
            Some(Target::RatioAtMost(BOOTSTRAP_TARGET)),
        ),
        Row::new(
            "bootstrap rate vs cairn-backup's",
            "MiB/s",
            mib_per_second(&backup),
            mib_per_second(&bootstrap.copy),
            None,
        ),
        Row::without_baseline(
            &format!("mirror lag p50 ({CALLERS} writers over TLS)"),
            "ms",
            lags.percentile_ms(50)?,
            None,
        ),
        Row::without_baseline(
            &format!("mirror lag p99 ({CALLERS} writers over TLS)"),
            "ms",
            lags.percentile_ms(99)?,
            Some(Target::AtMost(LAG_P99_TARGET_MS)),
        ),
        Row::without_baseline(
            &format!("leader puts during the lag run ({CALLERS} writers over TLS)"),
            "puts/s",
            lags.puts.per_second(),
            None,
        ),
        Row::new(
            &format!("get, {CALLERS} callers on {CONNECTIONS} connections: mirror vs leader"),
            "gets/s",
            leader_gets.per_second(),
            mirror_gets.per_second(),
            Some(Target::RatioAtLeast(GETS_TARGET)),
        ),
    ];
    let max_lag = lags.sorted.last().copied().unwrap_or_default();
    let notes = vec![
        format!(
            "leader: {} docs of {VALUE_PAYLOAD}-byte values with their change log, built through \
             cairn-store in {:.1} s ({PER_BATCH} puts per commit, as the backup bench builds its \
             directory; the journal kept for mirrors as by default), then {} docs of \
             {KEY_BYTES}-byte keys and {VALUE_BYTES}-byte values for the gets: store/data.mdb \
             {}; served by cairn-service on it",
            built.docs,
            secs(built.elapsed),
            sizes.docs,
            mib(leader_bytes)
        ),
        format!(
            "bootstrap: cairn-service MIRROR --mirror unix://LEADER/sock --listen \
             ssl://127.0.0.1:0 on an empty directory, the leader idle, timed from its spawn \
             until its status (its unix socket, read every {} ms once it was ready) showed state \
             following and applied = the leader's journal head ({}, read beside the leader): the \
             leader's compacted copy streamed (LMDB's copy under one read transaction), written \
             with its SHA-256, fsync'd, checked and renamed into place, then the store opened, \
             the mirror's own CA and certificates made and its listeners bound; ready {:.0} ms \
             after the spawn; copy {} ({:.1} MiB/s)",
            POLL.as_millis(),
            bootstrap.head,
            millis(bootstrap.ready),
            mib(bootstrap.copy.env_bytes),
            mib_per_second(&bootstrap.copy)
        ),
        format!(
            "baseline: cairn-backup LEADER BACKUP of the same live leader, once, before the \
             bootstrap, after an untimed read of data.mdb and a sync (the bootstrap after a sync \
             too; both read a warm page cache): LMDB's compacting copy, hashed as written, \
             fsync'd, read back and verified against its SHA-256 and every database's change \
             log; copy {} ({:.1} MiB/s); ratio = bootstrap / cairn-backup, lower is better",
            mib(backup.env_bytes),
            mib_per_second(&backup)
        ),
        format!(
            "lag: {CALLERS} writers (tokio tasks, one durable put at a time) on {CONNECTIONS} TLS \
             connections to the leader put new random keys with {VALUE_BYTES}-byte values into \
             {LIVE_DATABASE:?} for {:.1} s (created on the leader and applied by the mirror \
             first); every put is answered once its commit is fsync'd on the leader; the mirror \
             streams the leader's journal (mirror.follow) and applies each batch of entries in \
             one transaction with its position, fsync'd too; a put's lag is from the leader's \
             answer reaching the writer until the mirror's continuous change feed (its unix \
             socket, this process) delivered its seq: {} puts, all seen, max {:.1} ms, {} seen \
             before their answer (counted as 0 ms), the last seen {:.0} ms after the writers \
             stopped; CPU meanwhile: leader {:.1} s, mirror {:.1} s over {:.1} s",
            secs(lags.puts.elapsed),
            lags.puts.ops,
            millis(max_lag),
            lags.seen_before_ack,
            millis(lags.drain),
            secs(lag_cpu.leader),
            secs(lag_cpu.mirror),
            secs(lags.puts.elapsed)
        ),
        format!(
            "gets: random gets of the {} docs put for them, each value checked, from {CALLERS} \
             callers (tokio tasks, one call at a time) on {CONNECTIONS} TLS connections as root, \
             {:.1} s against the leader, then {:.1} s against the mirror (its own TLS listener \
             and CA, root's certificate it made), the mirror caught up and the leader idle",
            sizes.docs,
            secs(leader_gets.elapsed),
            secs(mirror_gets.elapsed)
        ),
        format!(
            "load average before: {load_before}, after: {load_after} (the leader, the mirror, \
             cairn-backup and the bench's client share this machine's cores)"
        ),
    ];
    Ok(MirrorReport { rows, notes })
}

/// Spawns a mirror of the leader of `leader_dir` (over its unix socket) on the empty
/// `mirror_dir` and waits until it follows with the leader's whole journal applied.
async fn start_mirror(
    binary: &Path,
    leader_dir: &Path,
    mirror_dir: &Path,
    log: &Path,
    leader_bytes: u64,
) -> Result<(ServiceProcess, Bootstrap)> {
    let options = StartOptions {
        args: vec![
            "--mirror".into(),
            format!("unix://{}", sync::socket(leader_dir).display()).into(),
        ],
        start_timeout: Some(START_GRACE + Duration::from_secs(leader_bytes / SLOWEST_COPY)),
    };
    rustix::fs::sync();
    let start = Instant::now();
    let mirror = ServiceProcess::start_with(binary, mirror_dir, log, &options)?;
    let ready = start.elapsed();
    let client = sync::connect_socket(mirror_dir).await?;
    let status = caught_up(&client, leader_dir).await?;
    let elapsed = start.elapsed();
    let env_bytes = std::fs::metadata(mirror_dir.join("store/data.mdb"))
        .context("the mirror's store/data.mdb")?
        .len();
    Ok((
        mirror,
        Bootstrap {
            copy: Copied { elapsed, env_bytes },
            ready,
            head: status.applied,
        },
    ))
}

/// The leader's journal head, read beside it.
fn journal_head(leader_dir: &Path) -> Result<u64> {
    let store = Store::open_read_only(leader_dir, StoreOptions::default())
        .with_context(|| format!("opening {} beside the leader", leader_dir.display()))?;
    let head = store.snapshot()?.journal_position()?.seq;
    Ok(head)
}

/// What the mirror's `status` says of its following.
async fn mirror_status(client: &Client) -> Result<MirrorStatus> {
    client
        .status()
        .await
        .context("reading the mirror's status")?
        .mirror
        .context("the mirror's status has no mirror part")
}

/// Waits until the mirror follows with the leader's whole journal applied (within
/// `CATCH_UP_TIMEOUT`); its status then.
async fn caught_up(mirror: &Client, leader_dir: &Path) -> Result<MirrorStatus> {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let head = journal_head(leader_dir)?;
        let status = mirror_status(mirror).await?;
        if status.state == MirrorState::Following && status.applied == head {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!(
                "the mirror did not catch up with the leader's journal head {head} within \
                 {CATCH_UP_TIMEOUT:?}: {status:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The lag run: `LIVE_DATABASE` created on the leader and applied by the mirror, then
/// `CALLERS` writers on the leader for `write_for`, while the mirror's feed notes when
/// each seq arrives.
async fn lag_run(
    leader_dir: &Path,
    leader: &ServiceProcess,
    mirror_dir: &Path,
    mirror: &ServiceProcess,
    write_for: Duration,
    values: Arc<Values>,
) -> Result<(Lags, Cpu)> {
    progress(&format!(
        "creating {LIVE_DATABASE} on the leader; waiting for the mirror to apply it"
    ));
    sync::connect_socket(leader_dir)
        .await?
        .db_create(LIVE_DATABASE, RetentionArgs::default())
        .await
        .with_context(|| format!("creating {LIVE_DATABASE} on the leader"))?;
    let on_mirror = sync::connect_socket(mirror_dir).await?;
    caught_up(&on_mirror, leader_dir).await?;
    let feed = FeedWatch::open(&on_mirror, LIVE_DATABASE, "the mirror's").await?;
    let clients = remote::connect_many(leader_dir, &leader.tls_address, CONNECTIONS).await?;
    progress(&format!(
        "{CALLERS} writers on {CONNECTIONS} TLS connections to the leader for {} s",
        write_for.as_secs_f64()
    ));
    let before = Cpu::now(leader, mirror)?;
    let acked = sync::put_acked(&clients, CALLERS, LIVE_DATABASE, write_for, values).await?;
    let cpu = Cpu::now(leader, mirror)?.since(before);
    progress("waiting for the mirror to show the last put");
    let Some(seen) = feed.seen_through(acked.last, DRAIN_TIMEOUT).await? else {
        let status = mirror_status(&on_mirror).await?;
        bail!(
            "the mirror did not show seq {} of {LIVE_DATABASE} within {DRAIN_TIMEOUT:?} of the \
             writers' stop: {status:?}",
            acked.last
        );
    };
    Ok((sync::lags_of(acked, seen)?, cpu))
}

/// Gets of random documents of `data` from `CALLERS` callers for `get_for` against the
/// leader, then against the mirror once it has caught up; both runs.
async fn gets(
    leader_dir: &Path,
    leader: &ServiceProcess,
    mirror_dir: &Path,
    mirror: &ServiceProcess,
    get_for: Duration,
    data: Arc<Dataset>,
    values: Arc<Values>,
) -> Result<(Run, Run)> {
    caught_up(&sync::connect_socket(mirror_dir).await?, leader_dir).await?;
    let services = [
        ("leader", leader_dir, leader.tls_address.as_str()),
        ("mirror", mirror_dir, mirror.tls_address.as_str()),
    ];
    let mut runs = Vec::with_capacity(services.len());
    for (name, dir, address) in services {
        let clients = remote::connect_many(dir, address, CONNECTIONS).await?;
        progress(&format!(
            "gets on the {name}, {CALLERS} callers on {CONNECTIONS} connections for {} s",
            get_for.as_secs_f64()
        ));
        let run = remote::get_for(&clients, CALLERS, get_for, data.clone(), values.clone()).await?;
        ensure!(run.ops > 0, "no get was answered by the {name}");
        runs.push(run);
    }
    Ok((runs[0], runs[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rates_are_mib_per_second() {
        let copy = Copied {
            elapsed: Duration::from_millis(500),
            env_bytes: 64 << 20,
        };
        assert_eq!(mib_per_second(&copy), 128.0);
    }
}
