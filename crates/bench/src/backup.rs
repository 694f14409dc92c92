//! The `backup` benchmark. It builds a working directory of about the asked size through
//! cairn-store (random 16-byte keys, 1000-byte values, the change log kept whole), then
//! times three copies of it, one after the other in the same conditions: `cairn-backup
//! SRC DST` (compacted, hashed as written, fsync'd, the source's databases checked meanwhile), `mdb_copy -c` built from
//! the LMDB sources heed links, and `cp -r`; and the same backup once more in this
//! process, to time its steps; the copy uploaded to a garage server as the service
//! uploads backups to object storage, beside `tar | zstd` of it (`crate::s3`). Then it
//! starts a real `cairn-service` on the
//! directory and measures durable puts from many callers over TLS without a backup and
//! during backup jobs started with `backup.start`, in alternating rounds so that a
//! change in the machine's load weighs on both alike.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_client::Client;
use cairn_store::backup::{create_backup, BackupControl};
use cairn_store::{Op, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{random_key, Dataset};
use crate::mdb_copy;
use crate::measure::Run;
use crate::process::{self, ServiceProcess};
use crate::procfs;
use crate::remote::{self, Values, DATABASE};
use crate::report::{Row, Target};
use crate::s3;
use crate::workloads::{fresh_dir, progress};

/// Largest acceptable ratio of cairn-backup's time to mdb_copy -c's.
const COPY_TARGET: f64 = 1.5;
/// Smallest acceptable ratio of put throughput during a backup to without one.
const PUTS_DURING_BACKUP_TARGET: f64 = 0.7;

/// Concurrent callers of the put workloads, and the connections they share.
const CALLERS: usize = 64;
const CONNECTIONS: usize = 4;
/// Puts per commit while the directory is built.
pub(crate) const PER_BATCH: usize = 1000;
/// Payload bytes of every value of the built directory (a msgpack bin 16 around them).
pub(crate) const VALUE_PAYLOAD: usize = 1000;
/// How often (in batches) the build looks at the size of the environment.
const SIZE_CHECK_EVERY: usize = 16;
/// Backup jobs started while callers put; puts without a backup run before, between
/// and after them.
const ROUNDS: u32 = 3;
/// How often the state of the backup job is asked for.
const JOB_POLL: Duration = Duration::from_millis(50);

/// Seed of the built data, so that every run builds the same directory.
const SEED: u64 = 0xBAC_0B5E;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct BackupSizes {
    /// Size of `store/data.mdb` to build, in bytes.
    pub env_bytes: u64,
    /// How long puts run without a backup, before it and again after it.
    pub run_for: Duration,
}

impl BackupSizes {
    pub fn full() -> BackupSizes {
        BackupSizes {
            env_bytes: 1 << 30,
            run_for: Duration::from_secs(10),
        }
    }

    pub fn quick() -> BackupSizes {
        BackupSizes {
            env_bytes: 64 << 20,
            run_for: Duration::from_secs(2),
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct BackupReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// The directory that was built.
pub(crate) struct Built {
    pub(crate) docs: usize,
    pub(crate) file_bytes: u64,
    pub(crate) used_bytes: u64,
    pub(crate) elapsed: Duration,
}

/// How long a copy took and how big its environment file is.
pub struct Copied {
    pub elapsed: Duration,
    pub env_bytes: u64,
}

/// Puts of the live service without and during backups, and how long the jobs took.
#[derive(Default)]
struct Live {
    without: Run,
    during: Run,
    jobs: Duration,
}

/// Builds the directory, times the copies, then measures the live service. `base` is
/// the directory in which the temporary directories are made.
pub fn run_backup_comparison(sizes: BackupSizes, base: &Path) -> Result<BackupReport> {
    let load_before = procfs::load_average()?;
    let root = fresh_dir(base, "backup")?;
    let src = root.path().join("data");
    progress("building mdb_copy with gcc");
    let tools = root.path().join("tools");
    std::fs::create_dir(&tools)?;
    let (mdb_copy, sources) = mdb_copy::build(&tools)?;
    let backup_binary = process::workspace_binary("cairn-backup", "cairn-backup")?;
    let service_binary = process::service_binary()?;

    progress(&format!(
        "building a directory of {} through cairn-store",
        mib(sizes.env_bytes)
    ));
    let built = build_source(&src, sizes.env_bytes)?;
    progress("reading store/data.mdb once (warm page cache)");
    std::io::copy(
        &mut File::open(src.join("store/data.mdb"))?,
        &mut std::io::sink(),
    )?;

    progress("mdb_copy -c");
    let mdb_dir = root.path().join("mdb-copy");
    std::fs::create_dir(&mdb_dir)?;
    let mdb = time_copy(
        Command::new(&mdb_copy)
            .arg("-c")
            .arg(src.join("store"))
            .arg(&mdb_dir),
        &mdb_dir.join("data.mdb"),
    )?;
    progress("cairn-backup SRC DST");
    let cairn_dst = root.path().join("cairn-backup");
    let cairn = time_copy(
        Command::new(&backup_binary).arg(&src).arg(&cairn_dst),
        &cairn_dst.join("store/data.mdb"),
    )?;
    progress("cp -r SRC DST");
    let cp_dst = root.path().join("cp");
    let cp = time_copy(
        Command::new("cp").arg("-r").arg(&src).arg(&cp_dst),
        &cp_dst.join("store/data.mdb"),
    )?;
    progress("cairn-backup's phases, the same backup in this process");
    let phases_dst = root.path().join("phases");
    let phases = backup_phases(&src, &phases_dst)?;
    ensure!(
        cairn.env_bytes == mdb.env_bytes,
        "cairn-backup's copy has {} bytes, mdb_copy's {}",
        cairn.env_bytes,
        mdb.env_bytes
    );
    let uploaded = s3::upload_beside_tar_zstd(&cairn_dst)?;
    let backup_bytes = dir_bytes(&cairn_dst)?;
    for copy in [&mdb_dir, &cairn_dst, &cp_dst, &phases_dst] {
        std::fs::remove_dir_all(copy)
            .with_context(|| format!("removing the copy {}", copy.display()))?;
    }

    let log = root.path().join("service.log");
    let live = live_side(&service_binary, &src, &log, sizes.run_for)?;
    let load_after = procfs::load_average()?;

    let secs = |d: Duration| d.as_secs_f64();
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = vec![
        Row::new(
            &format!(
                "copy {}: cairn-backup (checked) vs mdb_copy -c",
                mib(built.file_bytes)
            ),
            "ms",
            millis(mdb.elapsed),
            millis(cairn.elapsed),
            Some(Target::RatioAtMost(COPY_TARGET)),
        ),
        Row::new(
            "copy: cairn-backup (checked) vs cp -r",
            "ms",
            millis(cp.elapsed),
            millis(cairn.elapsed),
            None,
        ),
        Row::new(
            "S3 upload (tar + zstd, read back) to garage vs tar | zstd",
            "MiB/s",
            mib_per_second(backup_bytes, uploaded.tar_zstd),
            mib_per_second(backup_bytes, uploaded.upload),
            None,
        ),
        Row::new(
            &format!(
                "put, {CALLERS} callers on {CONNECTIONS} connections: during a backup vs without"
            ),
            "puts/s",
            live.without.per_second(),
            live.during.per_second(),
            Some(Target::RatioAtLeast(PUTS_DURING_BACKUP_TARGET)),
        ),
        Row::new(
            "backup job under those puts vs cairn-backup alone",
            "ms",
            millis(cairn.elapsed),
            millis(live.jobs) / f64::from(ROUNDS),
            None,
        ),
    ];
    let notes = vec![
        format!(
            "S3: cairn-backup's copy ({}) uploaded to a garage server on 127.0.0.1 as the \
             service's backup jobs upload it (one tar + zstd -3 archive of {} in a multipart \
             upload, read back and checked, then its manifest object) in {:.2} s; tar | \
             zstd -3 -T1 of the same directory into /dev/null in {:.2} s (rates are of the \
             directory's bytes)",
            mib(backup_bytes),
            mib(uploaded.archive_bytes),
            secs(uploaded.upload),
            secs(uploaded.tar_zstd)
        ),
        format!(
            "source: {} docs of {VALUE_PAYLOAD}-byte values with their change log, store/data.mdb \
             {} ({} in use), built through cairn-store in {:.1} s, {PER_BATCH} puts per commit",
            built.docs,
            mib(built.file_bytes),
            mib(built.used_bytes),
            secs(built.elapsed)
        ),
        format!(
            "copies: each run once, one after the other, after an untimed read of data.mdb and a \
             sync, so all three read from a warm page cache (it is not dropped between runs: that \
             needs root tricks); wall time of each process; copies' data.mdb: cairn-backup {}, \
             mdb_copy -c {}, cp -r {}",
            mib(cairn.env_bytes),
            mib(mdb.env_bytes),
            mib(cp.env_bytes)
        ),
        format!(
            "cairn-backup copies with LMDB's compacting copy through a pipe, hashing (BLAKE3) as \
             it writes with O_DIRECT, fsyncs, and checks every database of the source against \
             its change log on another thread meanwhile; mdb_copy -c (built with gcc {} from {}) writes with O_DIRECT and does not fsync or \
             verify; cp -r copies the file with its free pages and does not fsync",
            mdb_copy::CFLAGS.join(" "),
            sources.display()
        ),
        format!(
            "cairn-backup's phases (the same backup through cairn_store::backup::create_backup \
             in this process, timed by its progress reports): {}",
            phases
                .iter()
                .map(|(phase, took)| format!("{phase} {:.0} ms", millis(*took)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "puts: durable puts of new keys with 100-byte values on the service started on the \
             built directory, in {ROUNDS} rounds: {:.1} s without a backup, then during a backup \
             job from the backup.start answer until it COMPLETED (its copy written into \
             DIR/backups on the same disk, deleted after), and {:.1} s without one at the end; \
             {:.1} s without and {:.1} s during in all",
            secs(sizes.run_for),
            secs(sizes.run_for),
            secs(live.without.elapsed),
            secs(live.during.elapsed)
        ),
        format!(
            "load average before: {load_before}, after: {load_after} (the bench's client, the \
             copies and the service share this machine's cores)"
        ),
    ];
    Ok(BackupReport { rows, notes })
}

/// `bytes` in MiB, as printed.
/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The rate of `bytes` in `elapsed`, in MiB/s.
fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / elapsed.as_secs_f64()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Creates a store in `dir` and puts random documents until `store/data.mdb` has at
/// least `target_bytes`; closes it.
pub(crate) fn build_source(dir: &Path, target_bytes: u64) -> Result<Built> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let store = Store::create(dir, StoreOptions::default())
        .with_context(|| format!("creating a store in {}", dir.display()))?;
    store.create_database(DATABASE)?;
    let start = Instant::now();
    let mut batches = 0;
    loop {
        let ops = (0..PER_BATCH)
            .map(|_| Op::Put {
                key: random_key(&mut rng),
                value: bin16_value(&mut rng),
                rev: None,
            })
            .collect();
        store.batch(DATABASE, ops)?;
        batches += 1;
        if batches % SIZE_CHECK_EVERY == 0 && store.usage()?.env.file_bytes >= target_bytes {
            break;
        }
    }
    let usage = store.usage()?;
    Ok(Built {
        docs: batches * PER_BATCH,
        file_bytes: usage.env.file_bytes,
        used_bytes: usage.env.used_bytes(),
        elapsed: start.elapsed(),
    })
}

/// A msgpack bin 16 of `VALUE_PAYLOAD` random bytes.
fn bin16_value(rng: &mut StdRng) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_PAYLOAD + 3];
    value[0] = 0xc5;
    let payload = u16::try_from(VALUE_PAYLOAD).expect("VALUE_PAYLOAD fits a bin 16");
    value[1..3].copy_from_slice(&payload.to_be_bytes());
    rng.fill(&mut value[3..]);
    value
}

/// Runs `command` after a sync (so that no earlier copy's writes are flushed during
/// it); its wall time and the size of the environment file `env_file` it wrote.
pub fn time_copy(command: &mut Command, env_file: &Path) -> Result<Copied> {
    rustix::fs::sync();
    let start = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let env_bytes = std::fs::metadata(env_file)
        .with_context(|| format!("{command:?} wrote no {}", env_file.display()))?
        .len();
    Ok(Copied { elapsed, env_bytes })
}

/// Runs the backup of `src` into `dst` as cairn-backup does, in this process, after a
/// sync; each step it reports (copying the environment, ...) and how long it took.
fn backup_phases(src: &Path, dst: &Path) -> Result<Vec<(String, Duration)>> {
    let store = Store::open_read_only(src, StoreOptions::default())?;
    let starts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = starts.clone();
    let control = BackupControl::new("cairn-bench").with_progress(move |progress| {
        let mut seen = seen.lock().expect("the phases lock");
        if seen
            .last()
            .is_none_or(|(step, _)| *step != progress.message)
        {
            seen.push((progress.message.clone(), Instant::now()));
        }
    });
    rustix::fs::sync();
    create_backup(&store, src, dst, &control)?;
    let starts = starts.lock().expect("the phases lock");
    Ok(starts
        .windows(2)
        .map(|pair| (pair[0].0.clone(), pair[1].1 - pair[0].1))
        .collect())
}

/// Starts the service on the built directory and measures puts before, during and
/// after a backup job.
fn live_side(binary: &Path, dir: &Path, log: &Path, run_for: Duration) -> Result<Live> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress(&format!(
        "starting {} on the built directory",
        binary.display()
    ));
    let service = ServiceProcess::start(binary, dir, log)?;
    let live = runtime.block_on(async {
        let address = &service.tls_address;
        let admin = remote::connect(dir, address).await?;
        let clients = remote::connect_many(dir, address, CONNECTIONS).await?;
        let mut rng = StdRng::seed_from_u64(SEED);
        let values = Arc::new(Values::decode(&Dataset::generate(1, &mut rng))?);
        let seconds = run_for.as_secs_f64();
        let mut live = Live::default();
        for round in 1..=ROUNDS + 1 {
            progress(&format!(
                "service: durable puts, {CALLERS} callers for {seconds} s, no backup"
            ));
            live.without
                .add(remote::put_for(&clients, CALLERS, run_for, values.clone()).await?);
            if round > ROUNDS {
                break;
            }
            progress(&format!(
                "service: durable puts during backup job {round} of {ROUNDS}"
            ));
            let name = format!("during-puts-{round}");
            let job = admin.backup_start(Some(&name)).await?;
            let running = Arc::new(AtomicBool::new(true));
            let (during, took) = tokio::join!(
                remote::put_while(&clients, CALLERS, running.clone(), values.clone()),
                wait_for_job(&admin, job.id, &running)
            );
            live.during.add(during?);
            live.jobs += took?;
            admin.backup_delete(&name).await?;
        }
        anyhow::Ok(live)
    })?;
    service.stop()?;
    Ok(live)
}

/// Waits until the job `id` ends, then clears `running`; its total time, or an error
/// unless it COMPLETED.
async fn wait_for_job(client: &Client, id: u64, running: &AtomicBool) -> Result<Duration> {
    let outcome = async {
        loop {
            let job = client.jobs_show(id).await?;
            match job.status.as_str() {
                "COMPLETED" => {
                    let ms = job
                        .total_time_ms
                        .context("a completed job has a total time")?;
                    return Ok(Duration::from_millis(ms));
                }
                "FAILED" | "CANCELED" => bail!(
                    "the backup job ended {}: {}",
                    job.status,
                    job.error.map(|e| e.message).unwrap_or_default()
                ),
                _ => tokio::time::sleep(JOB_POLL).await,
            }
        }
    }
    .await;
    running.store(false, Ordering::Relaxed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_values_are_one_msgpack_bin16() {
        let value = bin16_value(&mut StdRng::seed_from_u64(1));
        assert_eq!(value.len(), VALUE_PAYLOAD + 3);
        cairn_store::validate_value(&value, VALUE_PAYLOAD + 3).expect("cairn-store accepts it");
    }

    #[test]
    fn sizes_print_in_mib() {
        assert_eq!(mib(1 << 30), "1024 MiB");
        assert_eq!(mib(64 << 20), "64 MiB");
    }
}
