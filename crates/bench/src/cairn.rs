//! The measured side: the same workloads through cairn-store's public API, on a fresh
//! store with default options and one database `bench`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use cairn_store::{DatabaseView, GroupStats, Op, Scan, ScanRange, Store, StoreOptions};

use crate::data::{add_to_checksum, random_key, Dataset};
use crate::measure::{repeat_for, time_ops, time_reads, Reads, Run};

/// Name of the database every workload uses.
const DATABASE: &str = "bench";

/// Documents per scan page.
const SCAN_PAGE: usize = 10_000;

/// Creates a store in the empty directory `dir`, with the database `bench`.
pub fn create(dir: &Path) -> Result<Store> {
    let store = Store::create(dir, StoreOptions::default())
        .with_context(|| format!("creating a store in {}", dir.display()))?;
    store.create_database(DATABASE)?;
    Ok(store)
}

/// Puts every key of `data` with `store.batch`, `per_commit` puts per batch.
pub fn put_all(store: &Store, data: &Dataset, per_commit: usize) -> Result<Run> {
    time_ops(|| {
        for (chunk_index, chunk) in data.keys.chunks(per_commit).enumerate() {
            let ops = chunk
                .iter()
                .enumerate()
                .map(|(offset, key)| Op::Put {
                    key: key.clone(),
                    value: data.value(chunk_index * per_commit + offset).to_vec(),
                    rev: None,
                })
                .collect();
            store.batch(DATABASE, ops)?;
        }
        Ok(data.keys.len() as u64)
    })
}

/// Gets the keys in `order` through one snapshot and one database view.
pub fn get_in_one_snapshot(store: &Store, data: &Dataset, order: &[usize]) -> Result<Reads> {
    time_reads(|| {
        let snapshot = store.snapshot()?;
        let view = snapshot.database(DATABASE)?;
        let mut checksum = 0;
        for &index in order {
            let key = &data.keys[index];
            let document = view
                .get(key)?
                .with_context(|| format!("cairn-store lost key {key:?}"))?;
            checksum = add_to_checksum(checksum, &document.value);
        }
        Ok((order.len() as u64, checksum))
    })
}

/// Gets the keys in `order` with `store.get`, one read transaction per call.
pub fn get_with_txn_per_get(store: &Store, data: &Dataset, order: &[usize]) -> Result<Reads> {
    time_reads(|| {
        let mut checksum = 0;
        for &index in order {
            let key = &data.keys[index];
            let document = store
                .get(DATABASE, key)?
                .with_context(|| format!("cairn-store lost key {key:?}"))?;
            checksum = add_to_checksum(checksum, &document.value);
        }
        Ok((order.len() as u64, checksum))
    })
}

/// Reads the whole database in key order, page after page, in one snapshot.
pub fn scan_all(store: &Store) -> Result<Reads> {
    time_reads(|| {
        let snapshot = store.snapshot()?;
        let view = snapshot.database(DATABASE)?;
        let mut count = 0;
        let mut checksum = 0;
        view.visit(&ScanRange::All, false, None, |document| {
            count += 1;
            checksum = add_to_checksum(checksum, document.value);
            true
        })?;
        Ok((count, checksum))
    })
}

/// Scans everything in pages handed over borrowed (`DatabaseView::scan_page`, as the
/// service's `scan` reads them).
pub fn scan_all_in_borrowed_pages(store: &Store) -> Result<Reads> {
    time_reads(|| {
        let snapshot = store.snapshot()?;
        let view = snapshot.database(DATABASE)?;
        let mut scan = Scan::all(SCAN_PAGE);
        let (mut count, mut checksum) = (0, 0);
        let mut last = String::new();
        loop {
            let more = view.scan_page(&scan, usize::MAX, |document| {
                count += 1;
                checksum = add_to_checksum(checksum, document.value);
                last.clear();
                last.push_str(document.key);
            })?;
            if !more {
                return Ok((count, checksum));
            }
            scan.after = Some(last.clone());
        }
    })
}

/// Scans everything in pages of owned documents, as `Store::scan` callers do.
pub fn scan_all_in_pages(store: &Store) -> Result<Reads> {
    time_reads(|| {
        let snapshot = store.snapshot()?;
        scan_view(&snapshot.database(DATABASE)?)
    })
}

fn scan_view(view: &DatabaseView<'_>) -> Result<(u64, u64)> {
    let mut scan = Scan::all(SCAN_PAGE);
    let mut count = 0;
    let mut checksum = 0;
    loop {
        let page = view.scan(&scan)?;
        for document in &page.docs {
            count += 1;
            checksum = add_to_checksum(checksum, &document.value);
        }
        if !page.more {
            return Ok((count, checksum));
        }
        scan.after = page.docs.last().map(|document| document.key.clone());
    }
}

/// `threads` threads each put random single keys with `store.put` (waiting for each
/// commit) for `duration`; the writer groups whatever is queued into one commit. Also
/// returns what the writer's groups took.
pub fn put_concurrently_for(
    store: &Store,
    threads: usize,
    duration: Duration,
    data: &Dataset,
) -> Result<(Run, GroupTimes)> {
    let times = Arc::new(Mutex::new(GroupTimes::default()));
    let recorder = times.clone();
    store.set_group_hook(Arc::new(move |group: GroupStats| {
        if let Ok(mut times) = recorder.lock() {
            times.add(group);
        }
    }));
    let start = Instant::now();
    let runs = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| put_single_keys_for(store, duration, data)))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .map_err(|_| anyhow!("a put thread panicked"))?
            })
            .collect::<Result<Vec<Run>>>()
    })?;
    let run = Run {
        ops: runs.iter().map(|run| run.ops).sum(),
        elapsed: start.elapsed(),
    };
    let times = *times.lock().map_err(|_| anyhow!("a group hook panicked"))?;
    Ok((run, times))
}

/// What the writer's groups took, summed over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupTimes {
    groups: u64,
    requests: u64,
    /// From a transaction's start to its fsync'd commit.
    transaction: Duration,
    /// Of which in LMDB's commit (pages written, fsync).
    commit: Duration,
}

impl GroupTimes {
    fn add(&mut self, group: GroupStats) {
        self.groups += 1;
        self.requests += group.requests as u64;
        self.transaction += group.duration;
        self.commit += group.commit;
    }

    /// Where a put's time went in `run` of `threads` callers, each always waiting for
    /// one put: per group, applying the writes and LMDB's commit; per put, the round
    /// trip, and what is left of it once its group's transaction is taken out (waiting
    /// for the group to start, and being woken after it).
    pub fn describe(&self, threads: usize, run: &Run) -> String {
        if self.groups == 0 || run.ops == 0 {
            return "group commit: no group was recorded".to_string();
        }
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let groups = self.groups as f64;
        let per_group = micros(self.transaction) / groups;
        let commit = micros(self.commit) / groups;
        let round_trip = micros(run.elapsed) * threads as f64 / run.ops as f64;
        format!(
            "group commit, where a put's time goes: {} groups of {:.1} puts on average; per \
             group {per_group:.0} µs, of which applying the writes {:.0} µs and LMDB's commit \
             (pages written, fsync) {commit:.0} µs; a put's round trip {round_trip:.0} µs, of \
             which {:.0} µs waiting for its group to start and being woken after it; the \
             writer was busy {:.0}% of the run",
            self.groups,
            self.requests as f64 / groups,
            per_group - commit,
            (round_trip - per_group).max(0.0),
            self.transaction.as_secs_f64() / run.elapsed.as_secs_f64() * 100.0
        )
    }
}

fn put_single_keys_for(store: &Store, duration: Duration, data: &Dataset) -> Result<Run> {
    let mut rng = rand::rng();
    repeat_for(duration, || {
        let value = data.random_value(&mut rng);
        store.put(DATABASE, &random_key(&mut rng), value, None)?;
        Ok(1)
    })
}
