//! The `Store` methods that write: `submit` (queue a write with a reply callback) and
//! `write` (block until it is committed), the blocking helpers built on them (one per
//! kind of write), and the commit hook and users generation the writer keeps up.

use std::sync::mpsc;

use super::requests::{CommitHook, GroupHook, JournalHook, Op, Reply, ResyncChunk, Write, Written};
use super::validation::validate_write;
use super::WriterMessage;
use crate::error::{Result, StoreError};
use crate::format::{IndexDef, Retention};
use crate::store::{Store, MAX_SCAN_LIMIT};

impl Store {
    /// Queues a write; `reply` is called once with its outcome, after the commit that
    /// holds it (or at once, on this thread, when the input is invalid).
    pub fn submit(&self, write: Write, reply: Reply) {
        if let Err(error) = validate_write(&write, self.shared.options.max_value_bytes) {
            reply(Err(error));
            return;
        }
        let Some(sender) = &self.shared.sender else {
            reply(Err(StoreError::Closed));
            return;
        };
        if let Err(mpsc::SendError(WriterMessage::Write(_, reply))) =
            sender.send(WriterMessage::Write(write, reply))
        {
            reply(Err(StoreError::Closed));
        }
    }

    /// Submits a write and blocks until it is committed (or refused).
    pub fn write(&self, write: Write) -> Result<Written> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(
            write,
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        );
        receiver.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Creates a database that keeps its whole change log.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.create_database_with(name, Retention::default())
    }

    /// Creates a database with a change-log retention.
    pub fn create_database_with(&self, name: &str, retention: Retention) -> Result<()> {
        self.write(Write::CreateDatabase {
            name: name.to_string(),
            retention,
            offline: false,
        })
        .map(|_| ())
    }

    /// Creates a database that starts offline.
    pub fn create_database_offline(&self, name: &str, retention: Retention) -> Result<()> {
        self.write(Write::CreateDatabase {
            name: name.to_string(),
            retention,
            offline: true,
        })
        .map(|_| ())
    }

    /// Takes a database offline (`true`) or online; answers whether the flag changed.
    pub fn set_offline(&self, name: &str, offline: bool) -> Result<bool> {
        match self.write(Write::SetOffline {
            name: name.to_string(),
            offline,
        })? {
            Written::OfflineSet { changed } => Ok(changed),
            other => unreachable!("set_offline answered {other:?}"),
        }
    }

    /// Replaces an offline database's index definitions and retention; answers
    /// `(indexes_changed, indexes_stale)`.
    pub fn set_database_config(
        &self,
        name: &str,
        indexes: Vec<IndexDef>,
        retention: Retention,
    ) -> Result<(bool, bool)> {
        match self.write(Write::SetDatabaseConfig {
            name: name.to_string(),
            indexes,
            retention,
        })? {
            Written::DatabaseConfigSet {
                indexes_changed,
                indexes_stale,
            } => Ok((indexes_changed, indexes_stale)),
            other => unreachable!("set_database_config answered {other:?}"),
        }
    }

    /// One resync step (see `Write::ResyncChunk`).
    pub fn resync_chunk(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ResyncChunk> {
        match self.write(Write::ResyncChunk {
            name: name.to_string(),
            after: after.map(str::to_string),
            limit,
        })? {
            Written::ResyncChunk(chunk) => Ok(chunk),
            other => unreachable!("resync_chunk answered {other:?}"),
        }
    }

    /// The last resync steps (see `Write::ResyncFinish`), one after the other until
    /// the end; answers the entries removed.
    pub fn resync_finish(&self, name: &str, errored: u64) -> Result<u64> {
        let mut removed = 0;
        let mut after = None;
        loop {
            match self.write(Write::ResyncFinish {
                name: name.to_string(),
                errored,
                after,
                limit: MAX_SCAN_LIMIT,
            })? {
                Written::ResyncFinished {
                    removed: more,
                    next,
                } => {
                    removed += more;
                    match next {
                        Some(entry) => after = Some(entry),
                        None => return Ok(removed),
                    }
                }
                other => unreachable!("resync_finish answered {other:?}"),
            }
        }
    }

    /// Drops a database with its documents and its change log.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.write(Write::DropDatabase {
            name: name.to_string(),
        })
        .map(|_| ())
    }

    /// Stores a document and returns its new rev.
    pub fn put(&self, db: &str, key: &str, value: &[u8], rev: Option<u64>) -> Result<u64> {
        self.batch(
            db,
            vec![Op::Put {
                key: key.to_string(),
                value: value.to_vec(),
                rev,
            }],
        )
        .map(|revs| revs[0])
    }

    /// Deletes a document and returns the seq of its tombstone.
    pub fn delete(&self, db: &str, key: &str, rev: Option<u64>) -> Result<u64> {
        self.batch(
            db,
            vec![Op::Delete {
                key: key.to_string(),
                rev,
            }],
        )
        .map(|revs| revs[0])
    }

    /// Applies operations all or nothing; returns each one's new rev.
    pub fn batch(&self, db: &str, ops: Vec<Op>) -> Result<Vec<u64>> {
        match self.write(Write::Batch {
            db: db.to_string(),
            ops,
        })? {
            Written::Batch(revs) => Ok(revs),
            other => unreachable!("a batch answered {other:?}"),
        }
    }

    /// Sets the hook called after every group of writes the writer took, committed or
    /// not (replacing any earlier one). Metrics use it.
    pub fn set_group_hook(&self, hook: GroupHook) {
        *self
            .shared
            .commit_hook
            .group_hook
            .write()
            .expect("the group hook lock is never poisoned") = Some(hook);
    }

    /// Calls `hook` after each commit that added journal entries, with the newest seq
    /// (replacing any earlier hook).
    pub fn set_journal_hook(&self, hook: JournalHook) {
        *self
            .shared
            .commit_hook
            .journal_hook
            .write()
            .expect("the journal hook lock is never poisoned") = Some(hook);
    }

    /// Makes the store a mirror's (it then takes `Write::MirrorApply` and refuses every
    /// other write with `MirrorReadOnly`) or a leader's again.
    pub fn set_mirror(&self, mirror: bool) {
        self.shared
            .commit_hook
            .mirror
            .store(mirror, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the store is a mirror's.
    pub fn is_mirror(&self) -> bool {
        self.shared
            .commit_hook
            .mirror
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets the hook called after every commit that changed databases (replacing any
    /// earlier one). Change feeds use it to wake up.
    pub fn set_commit_hook(&self, hook: CommitHook) {
        *self
            .shared
            .commit_hook
            .hook
            .write()
            .expect("the commit hook lock is never poisoned") = Some(hook);
    }

    /// A number that changes after every commit that saved or deleted a user or deleted
    /// sessions (before its callers are answered): a cached user record or session
    /// older than it must be read again.
    pub fn users_generation(&self) -> u64 {
        self.shared
            .commit_hook
            .users_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Applies age-based retention to every database; returns the entries removed.
    pub fn trim_changes(&self) -> Result<u64> {
        match self.write(Write::TrimChanges)? {
            Written::Trimmed(n) => Ok(n),
            other => unreachable!("a trim answered {other:?}"),
        }
    }
}
