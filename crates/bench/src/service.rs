//! The `service` comparison: a real `cairn-service` process on a temporary directory,
//! measured over TLS on loopback with `cairn-client`, beside raw heed in this process on
//! the same 16-byte keys and 100-byte values, and beside a bare TLS echo for latency.
//!
//! The service is loaded with every key of the data set (batches of 1000 docs), left
//! idle, and its anonymous memory read; then come gets with 128 calls in flight on one
//! connection (the service's default limit per connection), gets and durable puts from
//! 64 callers sharing 4 connections (as an application's request handlers would share a
//! small pool), and get latency one call at a time, alternating in rounds with the echo
//! so that both see the same background load. Last, the service is restarted on the
//! loaded directory to time its start until a TLS `status` call is answered.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::runtime::Runtime;

use crate::data::Dataset;
use crate::echo::{self, EchoClient};
use crate::measure::{percentile, Run};
use crate::process::{self, ServiceProcess};
use crate::procfs;
use crate::raw::RawHeed;
use crate::redis::{self, RedisFigures, RedisSizes};
use crate::remote::{self, Values};
use crate::report::{Row, Target};
use crate::workloads::{fresh_dir, progress};

/// Smallest acceptable ratio of durable puts to raw heed's 1000 puts per commit.
const PUT_TARGET: f64 = 0.6;
/// Smallest acceptable ratio of a scan through the service to raw heed's cursor scan.
const SCAN_TARGET: f64 = 0.5;
/// Smallest acceptable ratio of gets, 128 in flight on one connection, to Redis's on
/// one connection with 16 pipelined.
const REDIS_PIPELINED_TARGET: f64 = 1.0;
/// Smallest acceptable ratio of gets from 64 callers to Redis's from 64 clients.
const REDIS_CONCURRENT_TARGET: f64 = 2.0;
/// Smallest acceptable rate of gets pipelined on one connection, per second.
const PIPELINED_GETS_TARGET: f64 = 250_000.0;
/// Largest acceptable ratio of the get p99 latency to the echo's.
const LATENCY_TARGET: f64 = 2.0;
/// Largest acceptable anonymous resident memory of the loaded, idle service, in KiB.
const RSS_ANON_TARGET_KIB: f64 = 30.0 * 1024.0;
/// Largest acceptable time from start to ready, in milliseconds.
const READY_TARGET_MS: f64 = 300.0;

/// Concurrent callers of the put and the concurrent get workloads.
const CALLERS: usize = 64;
/// Connections the concurrent callers share.
const CONNECTIONS: usize = 4;
/// Gets in flight on the one connection of the pipelined workload.
const PIPELINE: usize = 128;
/// Docs per `batch` call of the load, and puts per commit of raw heed.
const PER_BATCH: usize = 1000;
/// Alternating rounds of echo and get latency measurement.
const LATENCY_ROUNDS: u32 = 10;
/// Restarts on the loaded directory; the median time to ready is reported.
const RESTARTS: usize = 3;

/// Seed of the key set, so that every run uses the same keys.
const SEED: u64 = 0x5E4_71CE;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSizes {
    /// Docs loaded, then read back.
    pub docs: usize,
    /// How long each timed workload lasts.
    pub run_for: Duration,
    /// How long the service idles after the load before its memory is read.
    pub idle: Duration,
    /// Redis's workloads, where it is installed.
    pub redis: RedisSizes,
}

impl ServiceSizes {
    pub fn full() -> ServiceSizes {
        ServiceSizes {
            docs: 1_000_000,
            run_for: Duration::from_secs(10),
            idle: Duration::from_secs(5),
            redis: RedisSizes {
                keys: 1_000_000,
                gets: 2_000_000,
                sets: 300_000,
            },
        }
    }

    pub fn quick() -> ServiceSizes {
        ServiceSizes {
            docs: 20_000,
            run_for: Duration::from_secs(1),
            idle: Duration::from_secs(1),
            redis: RedisSizes {
                keys: 20_000,
                gets: 100_000,
                sets: 20_000,
            },
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct ServiceReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// What raw heed did.
struct RawFigures {
    load: Run,
    gets: Run,
    scan: Run,
    puts: Run,
}

/// What the service did.
struct ServiceFigures {
    load: Run,
    scan: Run,
    feed: Run,
    rss_anon_kib: u64,
    pipelined_gets: Run,
    concurrent_gets: Run,
    latency: Latencies,
    puts: Run,
    peak_rss_kib: u64,
}

/// Sorted round-trip times of gets and of echoes of the same sizes.
struct Latencies {
    gets: Vec<Duration>,
    echoes: Vec<Duration>,
    /// Body sizes of a get's call and answer, which the echo sends and receives.
    frame_bytes: (usize, usize),
}

impl Latencies {
    /// The `percent`-th percentile of gets and echoes, in microseconds.
    fn micros(&self, percent: u64) -> Result<(f64, f64)> {
        let of = |samples: &[Duration]| {
            percentile(samples, percent)
                .map(|sample| sample.as_secs_f64() * 1e6)
                .ok_or_else(|| anyhow::anyhow!("no latency samples"))
        };
        Ok((of(&self.gets)?, of(&self.echoes)?))
    }
}

/// Runs both sides and returns the rows in report order. `base` is the directory in
/// which the temporary directories are made.
pub fn run_service_comparison(sizes: ServiceSizes, base: &Path) -> Result<ServiceReport> {
    let load_before = procfs::load_average()?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let data = Dataset::generate(sizes.docs, &mut rng);
    let order = data.shuffled_indices(&mut rng);
    let raw = raw_side(sizes, base, &data, &order)?;
    let (service, ready, redis) = service_side(sizes, base, Arc::new(data), &mut rng)?;
    let load_after = procfs::load_average()?;

    let (get_p50, echo_p50) = service.latency.micros(50)?;
    let (get_p99, echo_p99) = service.latency.micros(99)?;
    let idle = sizes.idle.as_secs_f64();
    let mut rows = vec![
        Row::new(
            &format!("load, batches of {PER_BATCH}"),
            "docs/s",
            raw.load.per_second(),
            service.load.per_second(),
            None,
        ),
        Row::new(
            "scan, default pages, 1 connection",
            "docs/s",
            raw.scan.per_second(),
            service.scan.per_second(),
            Some(Target::RatioAtLeast(SCAN_TARGET)),
        ),
        Row::new(
            &format!("changes feed catching up {} changes", sizes.docs),
            "changes/s",
            raw.scan.per_second(),
            service.feed.per_second(),
            None,
        ),
        Row::new(
            &format!("put, {CALLERS} callers on {CONNECTIONS} connections"),
            "puts/s",
            raw.puts.per_second(),
            service.puts.per_second(),
            Some(Target::RatioAtLeast(PUT_TARGET)),
        ),
        Row::new(
            &format!("get, {PIPELINE} in flight on 1 connection"),
            "gets/s",
            raw.gets.per_second(),
            service.pipelined_gets.per_second(),
            Some(Target::AtLeast(PIPELINED_GETS_TARGET)),
        ),
        Row::new(
            &format!("get, {CALLERS} callers on {CONNECTIONS} connections"),
            "gets/s",
            raw.gets.per_second(),
            service.concurrent_gets.per_second(),
            None,
        ),
        Row::new("get latency p50 vs TLS echo", "µs", echo_p50, get_p50, None),
        Row::new(
            "get latency p99 vs TLS echo",
            "µs",
            echo_p99,
            get_p99,
            Some(Target::RatioAtMost(LATENCY_TARGET)),
        ),
        Row::without_baseline(
            &format!("RssAnon, {} docs loaded, {idle} s idle", sizes.docs),
            "KiB",
            service.rss_anon_kib as f64,
            Some(Target::AtMost(RSS_ANON_TARGET_KIB)),
        ),
        Row::without_baseline(
            "start to ready, loaded directory",
            "ms",
            ready.as_secs_f64() * 1e3,
            Some(Target::AtMost(READY_TARGET_MS)),
        ),
    ];
    let redis_note = match &redis {
        Some(redis) => {
            rows.extend(redis_rows(redis, &service));
            format!(
                "Redis: {} with TLS (the service's certificate), appendonly yes and \
                 appendfsync always, measured by redis-benchmark over TLS after the service \
                 stopped: {} random keys of {}-byte values loaded, then {} gets \
                 (random keys, -c 1 -P 16, then -c 64) and {} sets (-c 64)",
                redis.version,
                sizes.redis.keys,
                redis::VALUE_BYTES,
                sizes.redis.gets,
                sizes.redis.sets
            )
        }
        None => redis::NOT_INSTALLED.to_string(),
    };
    let (call_bytes, answer_bytes) = service.latency.frame_bytes;
    let notes = vec![
        redis_note,
        format!(
            "baselines: raw heed in this process, same keys and values: {PER_BATCH} puts per \
             commit (load, put), random gets on one thread with a read transaction each (get), \
             one cursor scan of every key in one read transaction (scan, feed); \
             a bare TLS echo on one connection of {call_bytes}-byte frames answered with \
             {answer_bytes}-byte ones, a get's sizes (latency: ratio = cairn / echo, lower is \
             better)"
        ),
        format!(
            "callers: tokio tasks in this process making one call at a time; {PIPELINE} in \
             flight is the service's default limit per connection; latency: one call at a \
             time on a connection of its own, in {LATENCY_ROUNDS} rounds alternating with the \
             echo"
        ),
        "scan: the client's `scan_pages`, which reads each page in place (keys and values \
         lent from the frame, every value's bytes summed as the raw scan sums them) and asks \
         for the next page as soon as one arrives"
            .to_string(),
        format!(
            "ready: median of {RESTARTS} starts on the loaded directory, from spawning the \
             process to a TLS status call answered"
        ),
        format!(
            "service peak RSS (VmHWM, with LMDB's mapped pages): {} KiB; load average before: {load_before}, after: \
             {load_after} (the bench's client and the service share this machine's cores)",
            service.peak_rss_kib
        ),
    ];
    Ok(ServiceReport { rows, notes })
}

/// The rows of the service beside Redis.
fn redis_rows(redis: &RedisFigures, service: &ServiceFigures) -> Vec<Row> {
    vec![
        Row::new(
            &format!("get, {PIPELINE} in flight on 1 connection vs Redis -c 1 -P 16"),
            "gets/s",
            redis.pipelined_gets,
            service.pipelined_gets.per_second(),
            Some(Target::RatioAtLeast(REDIS_PIPELINED_TARGET)),
        ),
        Row::new(
            &format!("get, {CALLERS} callers vs Redis -c 64"),
            "gets/s",
            redis.concurrent_gets,
            service.concurrent_gets.per_second(),
            Some(Target::RatioAtLeast(REDIS_CONCURRENT_TARGET)),
        ),
        Row::new(
            &format!("put, {CALLERS} callers vs Redis SET -c 64, fsync'd"),
            "puts/s",
            redis.concurrent_sets,
            service.puts.per_second(),
            None,
        ),
    ]
}

/// Raw heed: load the keys, get them in random order, then put random keys.
fn raw_side(
    sizes: ServiceSizes,
    base: &Path,
    data: &Dataset,
    order: &[usize],
) -> Result<RawFigures> {
    let dir = fresh_dir(base, "heed")?;
    let raw = RawHeed::create(dir.path())?;
    progress(&format!(
        "raw heed: load {} keys, {PER_BATCH} puts/commit",
        sizes.docs
    ));
    let load = raw.put_all(data, PER_BATCH)?;
    progress("raw heed: untimed full read, a timed one, then random gets, one read txn each");
    raw.scan_all()?;
    let scanned = raw.scan_all()?;
    ensure!(
        scanned.run.ops == sizes.docs as u64,
        "raw heed scanned {} keys",
        scanned.run.ops
    );
    let gets = raw.get_with_txn_per_get(data, order)?;
    let expected = (sizes.docs as u64, data.expected_checksum());
    ensure!(
        (gets.run.ops, gets.checksum) == expected,
        "raw heed read (count, checksum) {:?}, expected {expected:?}",
        (gets.run.ops, gets.checksum)
    );
    progress(&format!(
        "raw heed: random puts, {PER_BATCH} puts/commit for {} s",
        sizes.run_for.as_secs_f64()
    ));
    let puts = raw.put_random_for(sizes.run_for, PER_BATCH, data)?;
    Ok(RawFigures {
        load,
        gets: gets.run,
        scan: scanned.run,
        puts,
    })
}

/// The service: every workload on a fresh directory, then the time to ready of restarts;
/// then Redis with the service's certificates, where it is installed.
fn service_side(
    sizes: ServiceSizes,
    base: &Path,
    data: Arc<Dataset>,
    rng: &mut StdRng,
) -> Result<(ServiceFigures, Duration, Option<RedisFigures>)> {
    let binary = process::service_binary()?;
    let root = fresh_dir(base, "service")?;
    let dir = root.path().join("data");
    let log = root.path().join("service.log");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress(&format!("starting {}", binary.display()));
    let service = ServiceProcess::start(&binary, &dir, &log)?;
    let figures = runtime.block_on(workloads(sizes, &dir, &service, data, rng))?;
    service.stop()?;
    let ready = time_restarts(&runtime, &binary, &dir, &log)?;
    let scratch = root.path().join("redis");
    std::fs::create_dir(&scratch)?;
    let redis = redis::measure(&dir.join("certs"), &scratch, sizes.redis)?;
    Ok((figures, ready, redis))
}

/// The timed workloads on the running service, in order.
async fn workloads(
    sizes: ServiceSizes,
    dir: &Path,
    service: &ServiceProcess,
    data: Arc<Dataset>,
    rng: &mut StdRng,
) -> Result<ServiceFigures> {
    let address = &service.tls_address;
    let seconds = sizes.run_for.as_secs_f64();
    let values = Arc::new(Values::decode(&data)?);
    let client = remote::connect(dir, address).await?;
    remote::create_database(&client).await?;

    progress(&format!(
        "service: load {} docs, batches of {PER_BATCH}",
        sizes.docs
    ));
    let load = remote::load(&client, &data, &values, PER_BATCH).await?;
    progress(&format!(
        "service: idle {} s, then RssAnon",
        sizes.idle.as_secs_f64()
    ));
    tokio::time::sleep(sizes.idle).await;
    let rss_anon_kib = procfs::process_status_kib(service.pid(), "RssAnon")?;

    progress("service: scan of every document, default pages, one connection");
    let scan = remote::scan_all(&client, sizes.docs as u64).await?;
    progress(&format!(
        "service: a continuous changes feed catching up {} changes",
        sizes.docs
    ));
    let feed = remote::feed_catch_up(&client, sizes.docs as u64).await?;

    progress(&format!(
        "service: gets, {PIPELINE} in flight on 1 connection for {seconds} s"
    ));
    let pipelined_gets = remote::get_for(
        std::slice::from_ref(&client),
        PIPELINE,
        sizes.run_for,
        data.clone(),
        values.clone(),
    )
    .await?;

    let clients = remote::connect_many(dir, address, CONNECTIONS).await?;
    progress(&format!(
        "service: gets, {CALLERS} callers on {CONNECTIONS} connections for {seconds} s"
    ));
    let concurrent_gets = remote::get_for(
        &clients,
        CALLERS,
        sizes.run_for,
        data.clone(),
        values.clone(),
    )
    .await?;

    progress(&format!(
        "service: get latency and TLS echo, {LATENCY_ROUNDS} rounds of {} s each",
        seconds / f64::from(LATENCY_ROUNDS)
    ));
    let latency = latencies(dir, address, &data, &values, sizes.run_for, rng).await?;

    progress(&format!(
        "service: durable puts, {CALLERS} callers on {CONNECTIONS} connections for {seconds} s"
    ));
    let puts = remote::put_for(&clients, CALLERS, sizes.run_for, values.clone()).await?;
    let peak_rss_kib = procfs::process_status_kib(service.pid(), "VmHWM")?;
    Ok(ServiceFigures {
        load,
        scan,
        feed,
        rss_anon_kib,
        pipelined_gets,
        concurrent_gets,
        latency,
        puts,
        peak_rss_kib,
    })
}

/// Get and echo latencies, one call at a time, each on its own connection, in
/// alternating rounds that together last `duration` per side, after one untimed round
/// of each.
async fn latencies(
    dir: &Path,
    address: &str,
    data: &Dataset,
    values: &Values,
    duration: Duration,
    rng: &mut StdRng,
) -> Result<Latencies> {
    let certs = dir.join("certs");
    let frame_bytes = remote::get_body_sizes(&data.keys[0], values.of(0));
    let server = echo::start_server(&certs, frame_bytes.1).await?;
    let mut echo = EchoClient::connect(&certs, server.address, frame_bytes.0).await?;
    let client = remote::connect(dir, address).await?;
    let round = duration / LATENCY_ROUNDS;
    echo.latencies(round).await?;
    remote::get_latencies(&client, data, values, round, rng).await?;
    let mut latencies = Latencies {
        gets: Vec::new(),
        echoes: Vec::new(),
        frame_bytes,
    };
    for _ in 0..LATENCY_ROUNDS {
        latencies.echoes.extend(echo.latencies(round).await?);
        let gets = remote::get_latencies(&client, data, values, round, rng).await?;
        latencies.gets.extend(gets);
    }
    latencies.echoes.sort_unstable();
    latencies.gets.sort_unstable();
    Ok(latencies)
}

/// Starts the service on the loaded directory `RESTARTS` times; the median time from
/// spawning it to its answer to a TLS `status` call.
fn time_restarts(runtime: &Runtime, binary: &Path, dir: &Path, log: &Path) -> Result<Duration> {
    progress(&format!(
        "service: {RESTARTS} restarts on the loaded directory"
    ));
    let mut times = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let start = Instant::now();
        let service = ServiceProcess::start(binary, dir, log)?;
        runtime.block_on(async {
            remote::connect(dir, &service.tls_address)
                .await?
                .status()
                .await?;
            anyhow::Ok(())
        })?;
        times.push(start.elapsed());
        service.stop()?;
    }
    times.sort_unstable();
    Ok(percentile(&times, 50).expect("at least one restart"))
}
