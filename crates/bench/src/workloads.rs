//! The `store` comparison: each workload run through raw heed and through cairn-store, in
//! fresh temporary directories on the same disk, one row per comparison. Both sides use
//! the same keys, values and get order, and a read pass must return the same count and
//! checksum on both sides, or the run fails. A note tells what cairn-store's per-record
//! CRC-32C costs alone, beside its get and put.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;

use crate::cairn;
use crate::data::Dataset;
use crate::measure::Reads;
use crate::raw::RawHeed;
use crate::report::{Row, Target};

/// Smallest acceptable cairn/raw ratio of the put, get and scan rows.
const SINGLE_THREAD_TARGET: f64 = 0.8;

/// Smallest acceptable speed-up of group commit over one raw put per commit.
const GROUP_COMMIT_TARGET: f64 = 10.0;
/// Smallest acceptable ratio of group commit to raw heed committing full groups (as
/// many random puts per commit as there are threads): the disk's limit for them.
const FULL_GROUP_TARGET: f64 = 0.8;
/// Smallest acceptable ratio of group commit to raw heed's 1000 puts per commit.
const BATCHED_GROUP_TARGET: f64 = 0.7;

/// Seed of the key set, so that every run uses the same keys.
const SEED: u64 = 0xCA1_0BE4C4;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Keys loaded, then read back.
    pub keys: usize,
    /// Puts per commit of the load (and of the batched group-commit baseline).
    pub per_commit: usize,
    /// Threads putting single keys through cairn-store in the group-commit workload.
    pub threads: usize,
    /// How long each group-commit measurement lasts.
    pub group_commit_for: Duration,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            keys: 1_000_000,
            per_commit: 1000,
            threads: 64,
            group_commit_for: Duration::from_secs(10),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            keys: 20_000,
            group_commit_for: Duration::from_secs(1),
            ..Sizes::full()
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct StoreReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// Runs every workload and returns the rows in report order. `base` is the directory in
/// which the temporary environments are made.
pub fn run_store_comparison(sizes: Sizes, base: &Path) -> Result<StoreReport> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let data = Dataset::generate(sizes.keys, &mut rng);
    let order = data.shuffled_indices(&mut rng);
    let mut rows = load_and_read(sizes, base, &data, &order)?;
    progress("CRC-32C of every document and change record alone");
    let (get_crc, put_crc) = checksum_cost(&data);
    let share = |crc_ns: f64, name: &str| -> Result<String> {
        let row = rows
            .iter()
            .find(|row| row.name.starts_with(name))
            .with_context(|| format!("no row {name:?}"))?;
        let per_op = 1e9 / row.cairn;
        Ok(format!(
            "{crc_ns:.0} ns of cairn-store's {per_op:.0} ns per op in \"{}\" ({:.1}%)",
            row.name,
            crc_ns / per_op * 100.0
        ))
    };
    let mut notes = vec![format!(
        "checksums alone (CRC-32C computed as cairn-store computes them over these keys and \
         values, timed without the store): a get checks its document's, {}; a put of a new \
         key computes its document's and its change record's, {}",
        share(get_crc, "random get (one read txn)")?,
        share(put_crc, "random put")?
    )];
    let (group_rows, breakdown) = group_commit(sizes, base, &data)?;
    rows.extend(group_rows);
    notes.push(breakdown);
    Ok(StoreReport { rows, notes })
}

/// The CPU time of cairn-store's checksums alone, in ns per key of `data`: a get's (the
/// document's CRC-32C, over database id ‖ key ‖ rev ‖ value) and a put's of a new key
/// (that one and its change record's, over database id ‖ seq, then the body: op, time,
/// key length, key, value, written into one buffer as the store writes the record), each
/// over the same parts as the store's.
fn checksum_cost(data: &Dataset) -> (f64, f64) {
    let db_id = 1u32.to_be_bytes();
    let crc = cairn_store::checksum::crc32c_of;
    let start = Instant::now();
    for (i, key) in data.keys.iter().enumerate() {
        let rev = (i as u64 + 1).to_be_bytes();
        black_box(crc(&[&db_id, key.as_bytes(), &rev, data.value(i)]));
    }
    let document = start.elapsed();
    let start = Instant::now();
    let mut body = Vec::new();
    for (i, key) in data.keys.iter().enumerate() {
        let seq = (i as u64 + 1).to_be_bytes();
        let mut change_key = [0u8; 12];
        change_key[..4].copy_from_slice(&db_id);
        change_key[4..].copy_from_slice(&seq);
        body.clear();
        body.push(1);
        body.extend_from_slice(&seq);
        let key_len = u16::try_from(key.len()).expect("keys are KEY_BYTES long");
        body.extend_from_slice(&key_len.to_be_bytes());
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(data.value(i));
        black_box(crc(&[&change_key, &body]));
    }
    let change = start.elapsed();
    let per_key = |took: Duration| took.as_secs_f64() * 1e9 / data.keys.len() as f64;
    (per_key(document), per_key(document + change))
}

/// A new temporary directory in `base`, named after the `side` that uses it.
pub fn fresh_dir(base: &Path, side: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("cairn-bench-{side}-"))
        .tempdir_in(base)
        .with_context(|| format!("creating a temporary directory in {}", base.display()))
}

/// A fresh temporary directory in `base` and its absolute path (for unix socket URLs
/// and other processes' arguments).
pub fn fresh_absolute_dir(base: &Path, side: &str) -> Result<(TempDir, std::path::PathBuf)> {
    let dir = fresh_dir(base, side)?;
    let path = dir
        .path()
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.path().display()))?;
    Ok((dir, path))
}

/// Tells on stderr which workload runs now.
pub fn progress(workload: &str) {
    eprintln!("running: {workload}");
}

/// Workloads 1 to 3: load the keys, get them back in random order, scan them in order.
/// An untimed full read first maps every page into the process on both sides, so that
/// the first timed read pass does not pay the page faults for the later ones.
fn load_and_read(sizes: Sizes, base: &Path, data: &Dataset, order: &[usize]) -> Result<Vec<Row>> {
    let raw_dir = fresh_dir(base, "heed")?;
    let cairn_dir = fresh_dir(base, "store")?;
    let raw = RawHeed::create(raw_dir.path())?;
    let store = cairn::create(cairn_dir.path())?;
    let mut rows = Vec::new();

    let name = format!("random put, {} puts/commit", sizes.per_commit);
    progress(&format!("{name} ({} keys)", sizes.keys));
    let baseline = raw.put_all(data, sizes.per_commit)?;
    let measured = cairn::put_all(&store, data, sizes.per_commit)?;
    rows.push(single_thread_row(
        &name,
        "puts/s",
        baseline.per_second(),
        measured.per_second(),
    ));

    progress("warm-up: one untimed full read of both sides");
    raw.scan_all()?;
    cairn::scan_all(&store)?;

    let expected = (sizes.keys as u64, data.expected_checksum());
    let name = "random get (one read txn)";
    progress(name);
    let baseline = raw.get_in_one_txn(data, order)?;
    let measured = cairn::get_in_one_snapshot(&store, data, order)?;
    rows.push(read_row(name, "gets/s", expected, baseline, measured)?);

    let name = "random get (txn per get)";
    progress(name);
    let baseline = raw.get_with_txn_per_get(data, order)?;
    let measured = cairn::get_with_txn_per_get(&store, data, order)?;
    rows.push(read_row(name, "gets/s", expected, baseline, measured)?);

    let name = "ordered full scan (borrowed)";
    progress(name);
    let baseline = raw.scan_all()?;
    let measured = cairn::scan_all(&store)?;
    rows.push(read_row(name, "keys/s", expected, baseline, measured)?);

    let name = "ordered full scan (borrowed pages)";
    progress(name);
    let baseline = raw.scan_all()?;
    let measured = cairn::scan_all_in_borrowed_pages(&store)?;
    rows.push(read_row(name, "keys/s", expected, baseline, measured)?);

    let name = "ordered full scan (owned pages)";
    progress(name);
    let baseline = raw.scan_all()?;
    let measured = cairn::scan_all_in_pages(&store)?;
    rows.push(read_row(name, "keys/s", expected, baseline, measured)?);
    Ok(rows)
}

fn single_thread_row(name: &str, unit: &'static str, baseline: f64, cairn: f64) -> Row {
    Row::new(
        name,
        unit,
        baseline,
        cairn,
        Some(Target::RatioAtLeast(SINGLE_THREAD_TARGET)),
    )
}

/// A read row, after checking that both sides read `expected` (count, checksum).
fn read_row(
    name: &str,
    unit: &'static str,
    expected: (u64, u64),
    baseline: Reads,
    measured: Reads,
) -> Result<Row> {
    for (side, reads) in [("raw heed", baseline), ("cairn-store", measured)] {
        let read = (reads.run.ops, reads.checksum);
        ensure!(
            read == expected,
            "{name}: {side} read (count, checksum) {read:?}, expected {expected:?}"
        );
    }
    Ok(single_thread_row(
        name,
        unit,
        baseline.run.per_second(),
        measured.run.per_second(),
    ))
}

/// Workload 4: many threads putting single random keys through cairn-store, against one
/// thread of raw heed committing after every put and after every `per_commit` puts.
/// Only the values of `data` are used.
/// The group-commit rows, and where a grouped put's time goes.
fn group_commit(sizes: Sizes, base: &Path, data: &Dataset) -> Result<(Vec<Row>, String)> {
    let seconds = sizes.group_commit_for.as_secs_f64();

    progress(&format!("raw heed, 1 put/commit for {seconds} s"));
    let one_per_commit = {
        let dir = fresh_dir(base, "heed")?;
        RawHeed::create(dir.path())?.put_random_for(sizes.group_commit_for, 1, data)?
    };

    let per_commit = sizes.per_commit;
    progress(&format!(
        "raw heed, {per_commit} puts/commit for {seconds} s"
    ));
    let batched = {
        let dir = fresh_dir(base, "heed")?;
        RawHeed::create(dir.path())?.put_random_for(sizes.group_commit_for, per_commit, data)?
    };

    let threads = sizes.threads;
    progress(&format!(
        "raw heed, {threads} puts/commit (a full group) for {seconds} s"
    ));
    let full_groups = {
        let dir = fresh_dir(base, "heed")?;
        RawHeed::create(dir.path())?.put_random_for(sizes.group_commit_for, threads, data)?
    };

    progress(&format!(
        "cairn-store group commit, {threads} threads of single puts for {seconds} s"
    ));
    let (grouped, groups) = {
        let dir = fresh_dir(base, "store")?;
        let store = cairn::create(dir.path())?;
        cairn::put_concurrently_for(&store, threads, sizes.group_commit_for, data)?
    };

    let cairn = grouped.per_second();
    let breakdown = groups.describe(threads, &grouped);
    let rows = vec![
        Row::new(
            &format!("group commit vs {threads} puts/commit"),
            "puts/s",
            full_groups.per_second(),
            cairn,
            Some(Target::RatioAtLeast(FULL_GROUP_TARGET)),
        ),
        Row::new(
            "group commit vs 1 put/commit",
            "puts/s",
            one_per_commit.per_second(),
            cairn,
            Some(Target::RatioAtLeast(GROUP_COMMIT_TARGET)),
        ),
        Row::new(
            &format!("group commit vs {per_commit} puts/commit"),
            "puts/s",
            batched.per_second(),
            cairn,
            Some(Target::RatioAtLeast(BATCHED_GROUP_TARGET)),
        ),
    ];
    Ok((rows, breakdown))
}
