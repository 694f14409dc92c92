//! The crash test: a child process (`cairn-crash-writer`) writes through the store's
//! writer from several threads and prints each acknowledged write; the test kills it with
//! SIGKILL at a random moment, reopens the store and checks that every acknowledged
//! write is there and that the change log and the documents agree. It does so 24 times
//! in the same directory, so that the data of every earlier round must survive too.
//!
//! What is checked after each kill, on one consistent snapshot:
//! - the change log has every seq from 1 to `last_seq`, no gaps, each record valid;
//! - replaying the log from seq 0 rebuilds exactly the documents table (keys, values,
//!   and revs equal to the seq of each key's last change), and the catalog counters
//!   (doc count, last seq, oldest seq, doc and log bytes) match;
//! - every acknowledged write is in the log at its rev with its key and value, no two
//!   acknowledgements share a rev, acknowledged unique keys read back exactly, and each
//!   hot key is at or past its last acknowledged rev;
//! - batches are all or nothing, and each writer thread's keys form a gapless prefix
//!   that ends at its last acknowledged write or at most one write past it (the one in
//!   flight when the kill came): nothing was lost and nothing was invented.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_store::{ChangeOp, DirLock, Document, Scan, Snapshot, Store, StoreOptions};
use cairn_tests::crash::{
    expected_value, msgpack_str_value, parse_key, render_key, role, Ack, KeyKind, Role, BATCH_OPS,
    DATABASE, HOT_KEYS,
};
use rand::Rng;

/// Kills (and therefore rounds) per test run.
const ROUNDS: u32 = 24;
/// Writer threads of the child: two hot, one batch, two unique-key threads.
const THREADS: u32 = 5;
/// Every this many rounds (not the first), the child is killed before it acknowledged
/// anything: while it starts, opens the environment or writes its first commits.
const EARLY_KILL_EVERY: u32 = 6;
/// The longest wait for the child's first acknowledgement.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The child exits by itself after this long, should the test fail to kill it.
const CHILD_MAX_SECS: u64 = 120;
/// Page size of log and document reads.
const PAGE: usize = 4096;

/// Bytes a document takes in the catalog's `doc_bytes`: the stored key (database id and
/// key) and the stored value (rev, checksum and msgpack), as laid out in
/// `cairn_store::format`.
fn doc_bytes(key: &str, value: &[u8]) -> u64 {
    (4 + key.len() + 8 + cairn_store::format::CHECKSUM_BYTES + value.len()) as u64
}

/// Bytes a change takes in the catalog's `log_bytes`: its 12-byte key (database id and
/// seq) and its record (checksum, op, time, key length, key, value).
fn log_bytes(key: &str, value: Option<&[u8]>) -> u64 {
    (12 + cairn_store::format::CHECKSUM_BYTES + 11 + key.len() + value.map_or(0, <[u8]>::len))
        as u64
}

/// A running child, killed (and reaped) if the test leaves early.
struct CrashWriter {
    child: Child,
    acks: mpsc::Receiver<String>,
    stdout_reader: Option<JoinHandle<Result<bool>>>,
    stderr_reader: Option<JoinHandle<String>>,
}

impl CrashWriter {
    fn spawn(dir: &Path, run: u32) -> Result<CrashWriter> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-crash-writer"))
            .arg(dir)
            .args(["--run", &run.to_string()])
            .args(["--threads", &THREADS.to_string()])
            .args(["--max-secs", &CHILD_MAX_SECS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning cairn-crash-writer")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (sender, acks) = mpsc::channel();
        // Sends every complete line; answers whether a partial last line was dropped.
        let stdout_reader = std::thread::spawn(move || -> Result<bool> {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    return Ok(false);
                }
                if line.last() != Some(&b'\n') {
                    // The kill came in the middle of this line: it was never complete.
                    return Ok(true);
                }
                line.pop();
                let text = String::from_utf8(line.clone()).context("an ack line in UTF-8")?;
                if sender.send(text).is_err() {
                    return Ok(false);
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(CrashWriter {
            child,
            acks,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        })
    }

    /// Kills the child with SIGKILL, reaps it, and returns every complete line it
    /// printed, whether a partial last line was dropped, and its exit status and stderr.
    fn kill(mut self) -> Result<(Vec<String>, bool, ExitStatus, String)> {
        self.child.kill().context("killing the child")?;
        let status = self.child.wait().context("waiting for the child")?;
        // The child is gone, so both pipes are at their end and the readers finish.
        let stdout_reader = self.stdout_reader.take().expect("killed once");
        let stderr_reader = self.stderr_reader.take().expect("killed once");
        let partial = stdout_reader
            .join()
            .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))??;
        let stderr = stderr_reader
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
        let lines = self.acks.try_iter().collect();
        Ok((lines, partial, status, stderr))
    }
}

impl Drop for CrashWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything acknowledged so far, over all rounds.
#[derive(Default)]
struct Acked {
    /// Every acknowledgement by rev; a rev is never acknowledged twice.
    by_rev: BTreeMap<u64, Ack>,
    /// Highest acknowledged rev of each hot key.
    hot_last: HashMap<String, u64>,
    /// Highest acknowledged counter (`n`) of each unique-key or batch thread of a run.
    thread_last: HashMap<(u32, u32), u64>,
    puts: u64,
    deletes: u64,
}

impl Acked {
    fn add(&mut self, ack: Ack, run: u32) -> Result<()> {
        let kind = parse_key(ack.key()).with_context(|| {
            format!("acknowledged key {:?} is not a crash-writer key", ack.key())
        })?;
        match kind {
            KeyKind::Hot(_) => {
                let last = self.hot_last.entry(ack.key().to_string()).or_default();
                *last = (*last).max(ack.rev());
            }
            KeyKind::Unique { run: r, thread, n }
            | KeyKind::Batch {
                run: r, thread, n, ..
            } => {
                ensure!(
                    r == run,
                    "round {run} acknowledged {:?} of run {r}",
                    ack.key()
                );
                ensure!(
                    matches!(ack, Ack::Put { .. }),
                    "unique key {:?} acknowledged as deleted",
                    ack.key()
                );
                let last = self.thread_last.entry((r, thread)).or_default();
                *last = (*last).max(n);
            }
        }
        match &ack {
            Ack::Put { .. } => self.puts += 1,
            Ack::Delete { .. } => self.deletes += 1,
        }
        let rev = ack.rev();
        if let Some(earlier) = self.by_rev.insert(rev, ack.clone()) {
            bail!("rev {rev} acknowledged twice: {earlier:?} and {ack:?}");
        }
        Ok(())
    }
}

/// What the checks saw, for the progress line.
struct Checked {
    changes: u64,
    docs: u64,
}

/// Every change of the database, oldest first, read in pages from seq 0; checks that
/// the seqs run from 1 without a gap.
fn read_log(snapshot: &Snapshot, last_seq: u64) -> Result<Vec<cairn_store::Change>> {
    let view = snapshot.database(DATABASE)?;
    let mut log = Vec::new();
    let mut since = 0;
    // Each page moves `since` forward by at least one, or ends the loop.
    for _ in 0..=last_seq {
        let page = view.changes(since, PAGE)?;
        let Some(last) = page.last() else { break };
        since = last.seq;
        log.extend(page);
    }
    for (i, change) in log.iter().enumerate() {
        ensure!(
            change.seq == i as u64 + 1,
            "the change log skips from seq {} to seq {}",
            i,
            change.seq
        );
    }
    Ok(log)
}

/// Every document of the database, in key order, read in pages.
fn read_docs(snapshot: &Snapshot, doc_count: u64) -> Result<Vec<Document>> {
    let view = snapshot.database(DATABASE)?;
    let mut docs: Vec<Document> = Vec::new();
    let mut scan = Scan::all(PAGE);
    for _ in 0..=doc_count / PAGE as u64 + 1 {
        let page = view.scan(&scan)?;
        docs.extend(page.docs);
        if !page.more {
            return Ok(docs);
        }
        scan.after = docs.last().map(|d| d.key.clone());
    }
    bail!("the scan did not end after {doc_count} documents (the catalog's count)")
}

/// Checks the reopened store against the log, the documents and the acknowledgements.
fn check(store: &Store, acked: &Acked, runs: u32) -> Result<Checked> {
    let snapshot = store.snapshot()?;
    let view = snapshot.database(DATABASE)?;
    let info = view.info()?;
    let log = read_log(&snapshot, info.last_seq)?;
    let docs = read_docs(&snapshot, info.doc_count)?;

    // (b) The log, replayed from seq 0, rebuilds exactly the documents table.
    let mut rebuilt: BTreeMap<&str, (u64, &[u8])> = BTreeMap::new();
    let mut log_size = 0;
    for change in &log {
        let key = change.key.as_str();
        match (change.op, &change.value) {
            (ChangeOp::Put, Some(value)) => {
                rebuilt.insert(key, (change.seq, value));
            }
            (ChangeOp::Delete, None) => {
                ensure!(
                    rebuilt.remove(key).is_some(),
                    "seq {} deletes {key:?}, which did not exist",
                    change.seq
                );
            }
            (op, value) => bail!("seq {} is a {op:?} with value {value:?}", change.seq),
        }
        log_size += log_bytes(key, change.value.as_deref());
    }
    let scanned: BTreeMap<&str, (u64, &[u8])> = docs
        .iter()
        .map(|d| (d.key.as_str(), (d.rev, d.value.as_slice())))
        .collect();
    ensure!(scanned.len() == docs.len(), "the scan returned a key twice");
    if rebuilt != scanned {
        let keys: HashSet<&str> = rebuilt.keys().chain(scanned.keys()).copied().collect();
        let mut differ: Vec<_> = keys
            .into_iter()
            .filter(|k| rebuilt.get(k) != scanned.get(k))
            .collect();
        differ.sort();
        let first = differ[0];
        bail!(
            "the log and the documents disagree on {} keys; first {first:?}: log says {:?}, docs say {:?}",
            differ.len(),
            rebuilt.get(first),
            scanned.get(first)
        );
    }

    // (c) The catalog counters match what is there.
    ensure!(
        info.doc_count == docs.len() as u64,
        "doc_count is {}, the scan found {}",
        info.doc_count,
        docs.len()
    );
    ensure!(
        info.last_seq == log.last().map_or(0, |c| c.seq),
        "last_seq is {}, the log ends at {:?}",
        info.last_seq,
        log.last().map(|c| c.seq)
    );
    ensure!(
        info.oldest_seq == 1,
        "oldest_seq is {}, nothing was trimmed",
        info.oldest_seq
    );
    let docs_size: u64 = docs.iter().map(|d| doc_bytes(&d.key, &d.value)).sum();
    ensure!(
        info.doc_bytes == docs_size,
        "doc_bytes is {}, the documents take {docs_size}",
        info.doc_bytes
    );
    ensure!(
        info.log_bytes == log_size,
        "log_bytes is {}, the log takes {log_size}",
        info.log_bytes
    );

    // (a) Every acknowledged write is in the log at its rev, as acknowledged.
    for (rev, ack) in &acked.by_rev {
        let change = log.get(usize::try_from(*rev)? - 1).with_context(|| {
            format!(
                "acknowledged {ack:?} is lost: the log ends at seq {}",
                log.len()
            )
        })?;
        let matches = change.key == ack.key()
            && match ack {
                Ack::Put { value, .. } => {
                    change.op == ChangeOp::Put && change.value.as_ref() == Some(value)
                }
                Ack::Delete { .. } => change.op == ChangeOp::Delete,
            };
        ensure!(
            matches,
            "acknowledged {ack:?}, but seq {rev} of the log is {change:?}"
        );
        // Unique and batch keys are written once and never again: they read back exactly.
        if let (Ack::Put { key, value, .. }, Some(KeyKind::Unique { .. } | KeyKind::Batch { .. })) =
            (ack, parse_key(ack.key()))
        {
            let doc = view.get(key)?;
            let expected = Document {
                key: key.clone(),
                rev: *rev,
                value: value.clone(),
            };
            ensure!(
                doc.as_ref() == Some(&expected),
                "acknowledged {ack:?}, but the document is {doc:?}"
            );
        }
    }

    // Classify the log: each entry must be one the writers could have made.
    let mut hot_last_change: HashMap<&str, &cairn_store::Change> = HashMap::new();
    let mut counters: HashMap<(u32, u32), Vec<u64>> = HashMap::new();
    let mut batches: HashMap<(u32, u32, u64), Vec<(u64, u64)>> = HashMap::new();
    let mut written_once: HashSet<&str> = HashSet::new();
    for change in &log {
        let kind = parse_key(&change.key)
            .with_context(|| format!("seq {} writes a foreign key {:?}", change.seq, change.key))?;
        match kind {
            KeyKind::Hot(_) => {
                if let Some(value) = &change.value {
                    let name = msgpack_str_value(value);
                    ensure!(
                        name.is_some_and(|n| parse_key(n).is_some_and(|k| matches!(k, KeyKind::Unique { run, thread, .. } if run < runs && role(thread) == Role::Hot))),
                        "seq {} puts {:?} into {:?}, which no hot writer would",
                        change.seq,
                        value,
                        change.key
                    );
                }
                hot_last_change.insert(&change.key, change);
            }
            KeyKind::Unique { run, thread, n } | KeyKind::Batch { run, thread, n, .. } => {
                ensure!(
                    run < runs && thread < THREADS,
                    "seq {} writes {:?}, but no such writer ran",
                    change.seq,
                    change.key
                );
                ensure!(
                    written_once.insert(&change.key),
                    "seq {} writes {:?} a second time",
                    change.seq,
                    change.key
                );
                ensure!(
                    change.value == expected_value(kind),
                    "seq {} writes {:?} to {:?}",
                    change.seq,
                    change.value,
                    change.key
                );
                match kind {
                    KeyKind::Unique { .. } => {
                        ensure!(
                            role(thread) == Role::Unique,
                            "thread {thread} does not write unique keys"
                        );
                        counters.entry((run, thread)).or_default().push(n);
                    }
                    KeyKind::Batch { j, .. } => {
                        ensure!(
                            role(thread) == Role::Batch,
                            "thread {thread} does not batch"
                        );
                        let ops = batches.entry((run, thread, n)).or_default();
                        if ops.is_empty() {
                            counters.entry((run, thread)).or_default().push(n);
                        }
                        ops.push((j, change.seq));
                    }
                    KeyKind::Hot(_) => unreachable!(),
                }
            }
        }
    }

    // Batches are all or nothing: every op, in order, at consecutive seqs.
    for ((run, thread, n), ops) in &batches {
        let first = ops[0].1;
        let expected: Vec<(u64, u64)> = (0..BATCH_OPS).map(|j| (j, first + j)).collect();
        ensure!(
            *ops == expected,
            "batch {n} of run {run} thread {thread} is torn in the log: (op, seq) {ops:?}"
        );
    }

    // Each thread's writes are a gapless prefix 0..=m of its counter, where m is its
    // last acknowledged write or the one after it (in flight at the kill).
    let threads: HashSet<(u32, u32)> = counters
        .keys()
        .chain(acked.thread_last.keys())
        .copied()
        .collect();
    for (run, thread) in threads {
        let mut written = counters.get(&(run, thread)).cloned().unwrap_or_default();
        written.sort_unstable();
        ensure!(
            written.iter().enumerate().all(|(i, n)| *n == i as u64),
            "run {run} thread {thread} has gaps in its writes: {:?}...",
            &written[..written.len().min(20)]
        );
        let last = written.last().copied();
        match acked.thread_last.get(&(run, thread)) {
            Some(&acked_last) => ensure!(
                last.is_some_and(|m| m == acked_last || m == acked_last + 1),
                "run {run} thread {thread}: last acknowledged write {acked_last}, last stored {last:?}"
            ),
            None => ensure!(
                last.is_none_or(|m| m == 0),
                "run {run} thread {thread} acknowledged nothing, but stored up to {last:?}"
            ),
        }
    }

    // Hot keys: the newest change of each is at or after its last acknowledged one, and
    // the document (or its absence) is what that newest change left.
    for i in 0..HOT_KEYS {
        let key = render_key(KeyKind::Hot(i));
        let doc = view.get(&key)?;
        let Some(&acked_rev) = acked.hot_last.get(&key) else {
            continue;
        };
        let newest = hot_last_change.get(key.as_str()).with_context(|| {
            format!("{key:?} was acknowledged at rev {acked_rev} but has no change")
        })?;
        ensure!(
            newest.seq >= acked_rev,
            "{key:?}: acknowledged at rev {acked_rev}, newest change is seq {}",
            newest.seq
        );
        match (&doc, &newest.value) {
            (Some(doc), Some(value)) => ensure!(
                doc.rev == newest.seq && &doc.value == value && doc.rev >= acked_rev,
                "{key:?}: document {doc:?}, newest change {newest:?}"
            ),
            (None, None) => {}
            _ => bail!("{key:?}: document {doc:?}, newest change {newest:?}"),
        }
        if let (Some(doc), Some(ack)) = (&doc, acked.by_rev.get(&newest.seq)) {
            ensure!(
                matches!(ack, Ack::Put { value, .. } if *value == doc.value),
                "{key:?}: document {doc:?} at an acknowledged rev, but the ack was {ack:?}"
            );
        }
    }

    Ok(Checked {
        changes: log.len() as u64,
        docs: docs.len() as u64,
    })
}

/// Runs the child once, kills it, and returns the acknowledgements it printed.
fn crash_once(dir: &Path, run: u32, rng: &mut impl Rng) -> Result<(Vec<Ack>, bool)> {
    let writer = CrashWriter::spawn(dir, run)?;
    let mut first = None;
    if run % EARLY_KILL_EVERY == EARLY_KILL_EVERY - 1 {
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=15)));
    } else {
        match writer.acks.recv_timeout(FIRST_ACK_TIMEOUT) {
            Ok(line) => first = Some(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the child printed no ack within {FIRST_ACK_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let (_, _, status, stderr) = writer.kill()?;
                bail!("the child stopped before its first ack ({status}): {stderr}");
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(50..=400)));
    }
    let (lines, partial, status, stderr) = writer.kill()?;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "the child ended by itself ({status}) instead of by our SIGKILL: {stderr}"
    );
    ensure!(stderr.is_empty(), "the child complained: {stderr}");
    let acks = first
        .into_iter()
        .chain(lines)
        .map(|line| Ack::parse(&line))
        .collect::<Result<_>>()?;
    Ok((acks, partial))
}

#[test]
fn acknowledged_writes_survive_sigkill() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut rng = rand::rng();
    let mut acked = Acked::default();
    let mut partial_lines = 0;
    for run in 0..ROUNDS {
        let (acks, partial) =
            crash_once(dir.path(), run, &mut rng).with_context(|| format!("round {run}"))?;
        let round_acks = acks.len();
        partial_lines += u32::from(partial);
        for ack in acks {
            acked
                .add(ack, run)
                .with_context(|| format!("round {run}"))?;
        }
        // The kill released the directory lock with the process.
        let lock =
            DirLock::acquire(dir.path()).with_context(|| format!("round {run}: the lock"))?;
        let store = Store::open(dir.path(), StoreOptions::default())
            .with_context(|| format!("round {run}: reopening the store"))?;
        let checked = check(&store, &acked, run + 1).with_context(|| format!("round {run}"))?;
        eprintln!(
            "round {run:2}: {round_acks:5} acks, {} changes, {} documents ({:.1} s)",
            checked.changes,
            checked.docs,
            started.elapsed().as_secs_f64()
        );
        // Dropping the store waits until the environment is closed: the next child may
        // open it at once.
        drop(store);
        drop(lock);
    }
    let total = acked.by_rev.len();
    eprintln!(
        "{ROUNDS} kills, {total} acks ({} puts, {} deletes), {partial_lines} partial lines dropped, {:.1} s",
        acked.puts,
        acked.deletes,
        started.elapsed().as_secs_f64()
    );
    ensure!(
        total > 100,
        "only {total} writes were acknowledged in {ROUNDS} rounds"
    );
    ensure!(acked.deletes > 0, "no delete was acknowledged");
    let batch_threads = acked
        .thread_last
        .keys()
        .filter(|(_, thread)| role(*thread) == Role::Batch)
        .count();
    ensure!(batch_threads > 0, "no batch was acknowledged");
    Ok(())
}
