//! The writer: the one thread that owns every write transaction, with group commit.
//!
//! Callers on any thread submit a `Write` with a reply callback. The writer takes the
//! first waiting request, drains whatever else is queued (up to `max_group_requests`),
//! applies them all in one transaction, commits it once with fsync, and only then answers
//! every caller. A request whose condition fails (rev conflict, missing database) is
//! answered with its error and changes nothing, while the others in its group commit.
//! When a group fails as a whole (map or disk full), each of its requests is retried
//! alone, so one oversized write cannot fail its neighbours.
//!
//! The files of this folder: `requests.rs` (what callers send and get back),
//! `validation.rs` (input checks before a write is queued), `submit.rs` (the `Store`
//! methods that write), `apply.rs` (the transaction of one group), and what applies each
//! kind of write: `databases.rs`, `batch.rs`, `resync.rs`, `service_tables.rs`, `sync.rs`
//! (a follower's changes and migration mode); `journal.rs` records every table-level
//! write of a group as one journal entry and applies a leader's entries on a mirror.

mod apply;
mod batch;
mod databases;
mod journal;
mod requests;
mod resync;
mod service_tables;
mod submit;
mod sync;
mod validation;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use heed::{Env, WithoutTls};

pub use requests::{
    CommitHook, DatabaseCommit, GroupHook, GroupStats, IndexEntry, JournalEntry, JournalHook, Op,
    Reply, ResyncChunk, SyncLineage, Write, Written, MAX_BATCH_OPS,
};

use crate::error::{Result, StoreError};
use crate::store::{StoreOptions, Tables};
use apply::GroupTxn;

/// What the writer thread receives: a write, and the callback to answer it with.
pub(crate) enum WriterMessage {
    Write(Write, Reply),
}

/// What the writer tells the rest of the process after commits: the commit hook and the
/// group hook (set by the store's owner) and a counter of commits that changed users;
/// and what the process tells the writer: whether the store is a mirror's.
#[derive(Default)]
pub(crate) struct Signals {
    pub hook: RwLock<Option<CommitHook>>,
    pub group_hook: RwLock<Option<GroupHook>>,
    pub users_generation: std::sync::atomic::AtomicU64,
    /// A mirror's store takes its leader's journal entries (`MirrorApply`) and nothing
    /// else; any other store refuses them.
    pub mirror: std::sync::atomic::AtomicBool,
    pub journal_hook: RwLock<Option<JournalHook>>,
}

/// What the commits of one group (or of its writes retried one by one) left.
#[derive(Default)]
struct Committed {
    commits: Vec<DatabaseCommit>,
    /// The journal's newest seq once a commit added entries.
    journal_head: Option<u64>,
    /// Time spent in LMDB's commits (pages written, fsync).
    commit_time: std::time::Duration,
}

/// The signals, shared by the store and the writer thread.
pub(crate) type HookSlot = Arc<Signals>;

/// Starts the writer thread of `env`; it stops when every sender of its queue is gone.
pub(crate) fn spawn(
    env: Env<WithoutTls>,
    tables: Tables,
    options: StoreOptions,
    hook: HookSlot,
) -> (Sender<WriterMessage>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("cairn-writer".to_string())
        .spawn(move || run(env, tables, options, receiver, hook))
        .expect("spawning the writer thread");
    (sender, thread)
}

/// The writer thread: takes a group of requests, commits it, answers its callers.
fn run(
    env: Env<WithoutTls>,
    tables: Tables,
    options: StoreOptions,
    receiver: Receiver<WriterMessage>,
    hook: HookSlot,
) {
    // Waking dozens of callers takes a while; a second thread does it, so that the
    // writer can begin the next transaction at once.
    let (answers, answer_queue) = mpsc::channel::<Vec<(Reply, Result<Written>)>>();
    let notifier = std::thread::Builder::new()
        .name("cairn-notifier".to_string())
        .spawn(move || {
            for answered in answer_queue {
                for (reply, outcome) in answered {
                    reply(outcome);
                }
            }
        })
        .expect("spawning the notifier thread");
    let mut group: Vec<(Write, Reply)> = Vec::new();
    while let Ok(WriterMessage::Write(write, reply)) = receiver.recv() {
        group.push((write, reply));
        while group.len() < options.max_group_requests {
            match receiver.try_recv() {
                Ok(WriterMessage::Write(write, reply)) => group.push((write, reply)),
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = group.iter().map(|(w, _)| w).collect();
        let started = std::time::Instant::now();
        let mut committed = Committed::default();
        let settings = GroupSettings {
            journal_retain_bytes: options.journal_retain_bytes,
            mirror: hook.mirror.load(std::sync::atomic::Ordering::SeqCst),
        };
        let outcomes = match commit_group(&env, tables, settings, &writes, &mut committed) {
            Ok(outcomes) => outcomes,
            Err(error) if writes.len() > 1 => {
                tracing::warn!(%error, requests = writes.len(), "group commit failed, retrying its writes one by one");
                writes
                    .iter()
                    .map(|w| {
                        commit_group(&env, tables, settings, &[w], &mut committed)
                            .and_then(|mut o| o.remove(0))
                    })
                    .collect()
            }
            Err(error) => vec![Err(error)],
        };
        let group_hook = hook.group_hook.read().map(|h| h.clone()).unwrap_or(None);
        if let Some(group_hook) = group_hook {
            group_hook(GroupStats {
                requests: writes.len(),
                duration: started.elapsed(),
                commit: committed.commit_time,
                committed: outcomes.iter().any(Result::is_ok),
            });
        }
        if !committed.commits.is_empty() {
            let hook = hook.hook.read().map(|h| h.clone()).unwrap_or(None);
            if let Some(hook) = hook {
                hook(&committed.commits);
            }
        }
        if let Some(head) = committed.journal_head {
            let journal_hook = hook.journal_hook.read().map(|h| h.clone()).unwrap_or(None);
            if let Some(journal_hook) = journal_hook {
                journal_hook(head);
            }
        }
        let users_changed = outcomes.iter().any(|o| {
            matches!(
                o,
                Ok(Written::UserSaved
                    | Written::UserDeleted
                    | Written::SessionDeleted(true)
                    | Written::MirrorApplied {
                        users_changed: true,
                        ..
                    })
            ) || matches!(o, Ok(Written::SessionsPurged(n)) if *n > 0)
        });
        if users_changed {
            hook.users_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let answered: Vec<(Reply, Result<Written>)> = group
            .drain(..)
            .map(|(_, reply)| reply)
            .zip(outcomes)
            .collect();
        if let Err(mpsc::SendError(answered)) = answers.send(answered) {
            for (reply, outcome) in answered {
                reply(outcome);
            }
        }
    }
    drop(answers);
    let _ = notifier.join();
}

/// Below this much free space, an I/O error while writing is taken for a full disk.
const LOW_FREE_SPACE_BYTES: u64 = 64 << 20;

/// Applies `writes` in one transaction and commits it. The outer error fails the whole
/// group (nothing was committed); inner errors belong to single writes that changed
/// nothing.
fn commit_group(
    env: &Env<WithoutTls>,
    tables: Tables,
    settings: GroupSettings,
    writes: &[&Write],
    committed: &mut Committed,
) -> Result<Vec<Result<Written>>> {
    try_commit_group(env, tables, settings, writes, committed)
        .map_err(|error| explain_io_failure(error, env))
}

/// What a group's transaction needs to know beyond its writes.
#[derive(Clone, Copy)]
struct GroupSettings {
    journal_retain_bytes: u64,
    mirror: bool,
}

/// LMDB reports a short write (what a full file system gives) as EIO: when the file
/// system of the environment has almost no room left, say so.
fn explain_io_failure(error: StoreError, env: &Env<WithoutTls>) -> StoreError {
    let StoreError::Io { source, .. } = &error else {
        return error;
    };
    if source.raw_os_error() != Some(5 /* EIO */) {
        return error;
    }
    match rustix::fs::statvfs(env.path()) {
        Ok(stats) if stats.f_bavail.saturating_mul(stats.f_frsize) < LOW_FREE_SPACE_BYTES => {
            StoreError::StorageFull {
                reason: format!(
                    "the file system is full ({} bytes free, the write failed with {source}): free some space",
                    stats.f_bavail.saturating_mul(stats.f_frsize)
                ),
            }
        }
        _ => error,
    }
}

fn try_commit_group(
    env: &Env<WithoutTls>,
    tables: Tables,
    settings: GroupSettings,
    writes: &[&Write],
    committed: &mut Committed,
) -> Result<Vec<Result<Written>>> {
    let mut txn = GroupTxn::new(env.write_txn()?, tables, settings.journal_retain_bytes);
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let mirrored = matches!(write, Write::MirrorApply { .. });
        if mirrored != settings.mirror {
            outcomes.push(Err(if settings.mirror {
                StoreError::MirrorReadOnly
            } else {
                StoreError::NotAMirror
            }));
            continue;
        }
        match txn.apply(write) {
            Ok(written) => outcomes.push(Ok(written)),
            Err(Failure::Request(error)) => outcomes.push(Err(error)),
            Err(Failure::Group(error)) => return Err(error),
        }
    }
    let (commits, journal_head, commit_time) = txn.finish()?;
    committed.commit_time += commit_time;
    committed.commits.extend(commits);
    committed.journal_head = journal_head.or(committed.journal_head);
    Ok(outcomes)
}

/// Why `apply` failed: the request's own fault (nothing was written), or a storage
/// failure that leaves the transaction unusable.
enum Failure {
    Request(StoreError),
    Group(StoreError),
}

impl From<heed::Error> for Failure {
    fn from(error: heed::Error) -> Self {
        Failure::Group(error.into())
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StorageFull { .. }
            | StoreError::MapFull
            | StoreError::Io { .. }
            | StoreError::Lmdb(_)
            | StoreError::Corrupt { .. } => Failure::Group(error),
            other => Failure::Request(other),
        }
    }
}
