//! The `migrate` benchmark. It writes a format-1 working directory with raw heed (see
//! `format1`: one database of documents with one index, one value of which all of them
//! hold, and its change log), then times, in rounds in the same conditions, LMDB's
//! compacting copy of it (`mdb_copy -c`, built from the LMDB sources heed links) beside
//! `cairn_store::migrate::migrate` into a new directory, with its checks and with
//! `safety_off`. Then it reads pages of that one index value, at its start and deep
//! inside it, in format 1 (raw heed, as format 1's `find` resumed a page) and in format
//! 2 (`Store::find` on a migrated copy), beside a point get.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cairn_store::migrate::{self, MigrateOptions, MigrationSummary};
use cairn_store::{Document, IndexKey, IndexQuery, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::backup::{mib, time_copy};
use crate::format1::{self, DATABASE, INDEX, KIND};
use crate::mdb_copy;
use crate::measure::percentile;
use crate::procfs;
use crate::report::{Row, Target};
use crate::workloads::{fresh_dir, progress};

/// Largest acceptable ratio of the migration's time (with its checks) to mdb_copy -c's.
const MIGRATE_TARGET: f64 = 3.0;
/// Largest acceptable ratio of a find's time to its first document to a point get's.
const FIRST_DOCUMENT_TARGET: f64 = 2.0;
/// Largest acceptable ratio of a page's time deep inside the value to the first page's.
const DEPTH_TARGET: f64 = 1.5;

/// Documents per page of the finds.
const PAGE: usize = 100;
/// Changes per commit while the format-1 directory is written.
const LOAD_PER_COMMIT: usize = 10_000;
/// Rounds of the three copies (mdb_copy -c, migrate with checks, without).
const ROUNDS: usize = 3;
/// Fewest calls a find or get latency is the median of.
const MIN_CALLS: usize = 5;

/// Seed of the written data, so that every run writes the same directory.
const SEED: u64 = 0xF04A_7101;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct MigrateSizes {
    /// Documents of the format-1 directory, all holding the one index value.
    pub docs: usize,
    /// How long each find or get is repeated for its median.
    pub time_each: Duration,
}

impl MigrateSizes {
    pub fn full() -> MigrateSizes {
        MigrateSizes {
            docs: 1_000_000,
            time_each: Duration::from_secs(1),
        }
    }

    pub fn quick() -> MigrateSizes {
        MigrateSizes {
            docs: 20_000,
            time_each: Duration::from_millis(200),
        }
    }
}

/// The rows, and lines about how they were measured.
pub struct MigrateReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// One of the three ways of copying timed in each round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    MdbCopy,
    Checked,
    SafetyOff,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::MdbCopy => "mdb_copy -c",
            Method::Checked => "migrate (checks)",
            Method::SafetyOff => "migrate --safety-off",
        }
    }
}

/// The times of every round, and the sizes of the copies' environments.
struct Copies {
    /// Per round, each copy's time, in the order they ran.
    rounds: Vec<Vec<(Method, Duration)>>,
    mdb_copy_bytes: u64,
    migrated_bytes: u64,
}

impl Copies {
    /// The median time of `copy` over the rounds.
    fn median(&self, copy: Method) -> Result<Duration> {
        let mut times: Vec<Duration> = self
            .rounds
            .iter()
            .flatten()
            .filter(|(which, _)| *which == copy)
            .map(|(_, took)| *took)
            .collect();
        times.sort_unstable();
        percentile(&times, 50).context("no round was timed")
    }
}

/// The finds and gets at one depth of the index value: median times.
struct Depth {
    depth: usize,
    format1_page: Duration,
    format2_page: Duration,
    format2_first: Duration,
    point_get: Duration,
}

/// Writes the format-1 directory, times the copies, then the finds. `base` is the
/// directory in which the temporary directories are made.
pub fn run_migrate_comparison(sizes: MigrateSizes, base: &Path) -> Result<MigrateReport> {
    ensure!(
        sizes.docs >= 2 * PAGE,
        "the benchmark needs at least {} documents",
        2 * PAGE
    );
    let load_before = procfs::load_average()?;
    let root = fresh_dir(base, "migrate")?;
    progress("building mdb_copy with gcc");
    let tools = root.path().join("tools");
    std::fs::create_dir(&tools)?;
    let (mdb_copy, sources) = mdb_copy::build(&tools)?;

    let src = root.path().join("format1");
    progress(&format!(
        "writing a format-1 directory of {} documents with raw heed",
        sizes.docs
    ));
    let mut rng = StdRng::seed_from_u64(SEED);
    let written = format1::write(&src, sizes.docs, LOAD_PER_COMMIT, &mut rng)?;
    let src_bytes = std::fs::metadata(src.join("store/data.mdb"))?.len();
    progress("reading store/data.mdb once (warm page cache)");
    std::io::copy(
        &mut File::open(src.join("store/data.mdb"))?,
        &mut std::io::sink(),
    )?;

    let migrated = root.path().join("format2");
    let copies = time_copies(&mdb_copy, &src, root.path(), &migrated, &written)?;
    let depths = deep_pages(&src, &migrated, &written.keys, sizes.time_each)?;
    let load_after = procfs::load_average()?;

    let docs = sizes.docs;
    let (mdb, checked, safety_off) = (
        copies.median(Method::MdbCopy)?,
        copies.median(Method::Checked)?,
        copies.median(Method::SafetyOff)?,
    );
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let per_second = |d: Duration| docs as f64 / d.as_secs_f64();
    let mut rows = vec![
        Row::new(
            &format!("migrate {docs} docs (checks) vs mdb_copy -c"),
            "ms",
            millis(mdb),
            millis(checked),
            Some(Target::RatioAtMost(MIGRATE_TARGET)),
        ),
        Row::new(
            "migrate --safety-off vs mdb_copy -c",
            "ms",
            millis(mdb),
            millis(safety_off),
            None,
        ),
        Row::without_baseline("migrate (checks)", "docs/s", per_second(checked), None),
        Row::without_baseline(
            "migrate --safety-off",
            "docs/s",
            per_second(safety_off),
            None,
        ),
    ];
    for at in &depths {
        rows.push(Row::new(
            &format!(
                "find, page of {PAGE} at depth {}: format 2 vs format 1",
                at.depth
            ),
            "µs",
            micros(at.format1_page),
            micros(at.format2_page),
            None,
        ));
    }
    for at in &depths {
        rows.push(Row::new(
            &format!(
                "find, first document at depth {}: format 2 vs a point get",
                at.depth
            ),
            "µs",
            micros(at.point_get),
            micros(at.format2_first),
            Some(Target::RatioAtMost(FIRST_DOCUMENT_TARGET)),
        ));
    }
    let first_page = depths.first().context("no depth was measured")?;
    for at in &depths[1..] {
        rows.push(Row::new(
            &format!(
                "find, page of {PAGE} (format 2): depth {} vs depth 0",
                at.depth
            ),
            "µs",
            micros(first_page.format2_page),
            micros(at.format2_page),
            Some(Target::RatioAtMost(DEPTH_TARGET)),
        ));
    }

    let rounds = copies
        .rounds
        .iter()
        .enumerate()
        .map(|(round, copies)| {
            let times: Vec<String> = copies
                .iter()
                .map(|(copy, took)| format!("{} {:.0} ms", copy.name(), millis(*took)))
                .collect();
            format!("round {}: {}", round + 1, times.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let notes = vec![
        format!(
            "source: a format-1 directory written with raw heed in {:.1} s ({LOAD_PER_COMMIT} \
             changes per commit, not fsync'd, synced at the end): database {DATABASE:?} of {docs} \
             documents (msgpack maps of 100 bytes, 16-byte random keys), one index \
             {INDEX:?} on /kind whose value {KIND:?} all of them hold (DUP_SORT: one key, {docs} \
             duplicates), {} change records (a put per document, another for every tenth, \
             {} documents put then deleted); store/data.mdb {}",
            written.elapsed.as_secs_f64(),
            written.changes,
            docs / 100,
            mib(src_bytes)
        ),
        format!(
            "copies: {ROUNDS} rounds, the order turning each round, each run from a warm page \
             cache after a sync, the medians in the rows; {rounds}; data.mdb of the copies: \
             mdb_copy -c {}, migrated {}",
            mib(copies.mdb_copy_bytes),
            mib(copies.migrated_bytes)
        ),
        format!(
            "mdb_copy -c (built with gcc {} from {}) runs as a process: one read transaction, \
             pages written with O_DIRECT, no fsync, no check; the migration runs in this process \
             (cairn_store::migrate::migrate, the library cairn-migrate calls) into a new \
             directory: every document checked (key, msgpack value, rev, index value; not with \
             --safety-off), given its CRC-32C, its index entry written in format 2's layout, \
             then every change record with its CRC-32C, read and checked on one thread and \
             written on another, each commit fsync'd (after about {} documents, {} change \
             records or {} MiB)",
            mdb_copy::CFLAGS.join(" "),
            sources.display(),
            cairn_store::migrate::BATCH_DOCUMENTS,
            cairn_store::migrate::BATCH_CHANGES,
            cairn_store::migrate::BATCH_BYTES >> 20
        ),
        format!(
            "finds: the index value {KIND:?}, pages resuming strictly after the document at \
             depth - 1 in key order (depth 0: the first page, no cursor), each call in its own \
             read transaction; format 1: raw heed on the format-1 directory as format 1's find \
             did: the catalog and configuration records, then stepping over the value's \
             duplicates up to the cursor's key, then each document read from docs; \
             format 2: Store::find on the migrated copy opened read-only (first document: \
             limit 1); point get: Store::get of the document at that depth; every figure is \
             the median of the same call repeated for {:.1} s (at least {MIN_CALLS} calls), \
             after checking that both formats return the same page",
            sizes.time_each.as_secs_f64()
        ),
        format!(
            "targets: a find's first document costs one seek in indexes and one get in docs \
             where a point get costs the get, so at most {FIRST_DOCUMENT_TARGET} point gets at \
             every depth is the time of a point get whatever the depth (format 1 steps over \
             depth duplicates first); a whole page deep in the value at most \
             {DEPTH_TARGET} times the first page"
        ),
        format!(
            "load average before: {load_before}, after: {load_after} (the copies, the \
             migrations and the finds share this machine's cores with whatever else runs)"
        ),
    ];
    Ok(MigrateReport { rows, notes })
}

/// Times `mdb_copy -c`, the migration with its checks and with `safety_off`, `ROUNDS`
/// times each, into fresh directories under `root`; each copy is removed after its run
/// but the last migration with checks, left in `migrated`.
fn time_copies(
    mdb_copy: &Path,
    src: &Path,
    root: &Path,
    migrated: &Path,
    written: &format1::Written,
) -> Result<Copies> {
    let mut copies = Copies {
        rounds: Vec::new(),
        mdb_copy_bytes: 0,
        migrated_bytes: 0,
    };
    let order = [Method::MdbCopy, Method::Checked, Method::SafetyOff];
    for round in 0..ROUNDS {
        let mut times = Vec::new();
        for offset in 0..order.len() {
            let copy = order[(round + offset) % order.len()];
            progress(&format!("round {} of {ROUNDS}: {}", round + 1, copy.name()));
            let dest = match copy {
                Method::Checked => migrated.to_path_buf(),
                _ => root.join("copy"),
            };
            let took = match copy {
                Method::MdbCopy => {
                    std::fs::create_dir(&dest)?;
                    let copied = time_copy(
                        Command::new(mdb_copy)
                            .arg("-c")
                            .arg(src.join("store"))
                            .arg(&dest),
                        &dest.join("data.mdb"),
                    )?;
                    copies.mdb_copy_bytes = copied.env_bytes;
                    copied.elapsed
                }
                Method::Checked | Method::SafetyOff => {
                    let safety_off = copy == Method::SafetyOff;
                    let (took, summary) = time_migration(src, &dest, safety_off)?;
                    check_summary(&summary, written)?;
                    if !safety_off {
                        copies.migrated_bytes =
                            std::fs::metadata(dest.join("store/data.mdb"))?.len();
                    }
                    took
                }
            };
            times.push((copy, took));
            if !(copy == Method::Checked && round + 1 == ROUNDS) {
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("removing the copy {}", dest.display()))?;
            }
        }
        copies.rounds.push(times);
    }
    Ok(copies)
}

/// Migrates `src` into `dest` in this process after a sync; its wall time.
fn time_migration(
    src: &Path,
    dest: &Path,
    safety_off: bool,
) -> Result<(Duration, MigrationSummary)> {
    let options = MigrateOptions {
        safety_off,
        ..MigrateOptions::default()
    };
    rustix::fs::sync();
    let start = Instant::now();
    let summary = migrate::migrate(src, dest, &options, &mut |_| {})
        .with_context(|| format!("migrating {} to {}", src.display(), dest.display()))?;
    Ok((start.elapsed(), summary))
}

/// Fails unless the migration moved every document and change and built the index.
fn check_summary(summary: &MigrationSummary, written: &format1::Written) -> Result<()> {
    let [db] = summary.databases.as_slice() else {
        anyhow::bail!(
            "the migration moved {} databases, not 1",
            summary.databases.len()
        );
    };
    let moved = (db.documents, db.refused, db.changes, db.indexes_stale);
    let expected = (written.keys.len() as u64, 0, written.changes, false);
    ensure!(
        moved == expected,
        "the migration moved (documents, refused, changes, indexes stale) {moved:?}, \
         expected {expected:?}"
    );
    Ok(())
}

/// The finds and gets at the start, the middle and the end of the index value.
fn deep_pages(
    src: &Path,
    migrated: &Path,
    keys: &[String],
    time_each: Duration,
) -> Result<Vec<Depth>> {
    let store = Store::open_read_only(migrated, StoreOptions::default())?;
    let reader = format1::Reader::open(src)?;
    let mut depths = Vec::new();
    for depth in [0, keys.len() / 2, keys.len() - PAGE] {
        let after = depth.checked_sub(1).map(|i| keys[i].as_str());
        let old = reader.find_page(after, PAGE)?;
        let new = find(&store, after, PAGE)?;
        ensure!(
            old == new,
            "at depth {depth} format 1's page and format 2's differ"
        );
        ensure!(
            new.len() == PAGE && new[0].1.key == keys[depth],
            "the page at depth {depth} does not start at its key"
        );
        ensure!(
            store.get(DATABASE, &keys[depth])?.as_ref() == new.first().map(|(_, doc)| doc),
            "the point get at depth {depth} differs from the page's first document"
        );
        progress(&format!("finds and gets at depth {depth}"));
        depths.push(Depth {
            depth,
            format1_page: median_call(time_each, || reader.find_page(after, PAGE))?,
            format2_page: median_call(time_each, || find(&store, after, PAGE))?,
            format2_first: median_call(time_each, || find(&store, after, 1))?,
            point_get: median_call(time_each, || Ok(store.get(DATABASE, &keys[depth])?))?,
        });
    }
    Ok(depths)
}

/// A page of the index value through `Store::find`, strictly after the key `after`.
fn find(store: &Store, after: Option<&str>, limit: usize) -> Result<Vec<(IndexKey, Document)>> {
    let value = IndexKey::Text(KIND.to_string());
    let query = IndexQuery {
        after: after.map(|key| (value.clone(), key.to_string())),
        ..IndexQuery::exact(INDEX, value, limit)
    };
    Ok(store.find(DATABASE, &query)?.docs)
}

/// The median time of `call`, repeated for `time_each` and at least `MIN_CALLS` times.
fn median_call<T>(time_each: Duration, mut call: impl FnMut() -> Result<T>) -> Result<Duration> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < MIN_CALLS || start.elapsed() < time_each {
        let began = Instant::now();
        std::hint::black_box(call()?);
        samples.push(began.elapsed());
    }
    samples.sort_unstable();
    percentile(&samples, 50).context("no call was timed")
}
