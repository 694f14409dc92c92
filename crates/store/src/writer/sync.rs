//! Writes of a follower (`cairn-sync`) and of migration mode: attaching (the `follow`
//! record of `meta` and the starting positions in `sync`), creating a database the
//! source created, applying the source's changes at their own seqs with the position
//! in the same transaction (exactly once: what lies at or below the position is
//! skipped, a gap or another lineage is refused), recording why a database's sync
//! stopped, and leaving migration mode.

use super::apply::GroupTxn;
use super::requests::{Op, SyncLineage, Written};
use super::Failure;
use crate::error::StoreError;
use crate::format::{meta_key, FollowRecord, Retention, SyncPosition, SyncStop};
use crate::journal::TableId;
use crate::store::now_ms;

impl GroupTxn<'_> {
    /// The follow record (migration mode), if any: read once per group (every client
    /// batch asks), kept in step by the writes below that change it.
    fn follow_record(&mut self) -> Result<Option<FollowRecord>, Failure> {
        if let Some(cached) = &self.follow {
            return Ok(cached.clone());
        }
        let stored = self
            .tables
            .meta
            .get(&self.wtxn, meta_key::FOLLOW)?
            .map(FollowRecord::decode)
            .transpose()?;
        self.follow = Some(stored.clone());
        Ok(stored)
    }

    /// The follow record; `NotFollowing` when migration mode is off.
    fn following(&mut self) -> Result<FollowRecord, Failure> {
        self.follow_record()?
            .ok_or(Failure::Request(StoreError::NotFollowing))
    }

    fn sync_position(&self, db: &str) -> Result<Option<SyncPosition>, Failure> {
        Ok(self
            .tables
            .sync
            .get(&self.wtxn, db)?
            .map(SyncPosition::decode)
            .transpose()?)
    }

    fn save_sync_position(&mut self, db: &str, position: &SyncPosition) -> Result<(), Failure> {
        self.put(TableId::Sync, db, position.encode())?;
        Ok(())
    }

    /// Refuses a client's write to a database that follows the source of migration
    /// mode (checked in the transaction that would write, so nothing slips past it).
    pub(super) fn refuse_if_followed(&mut self, db: &str) -> Result<(), Failure> {
        let Some(follow) = self.follow_record()? else {
            return Ok(());
        };
        match self.sync_position(db)? {
            Some(position) if position.source_service_id == follow.source_service_id => {
                Err(Failure::Request(StoreError::MigrationInProgress {
                    db: db.to_string(),
                    source_url: follow.source,
                }))
            }
            _ => Ok(()),
        }
    }

    /// Enters migration mode and stores the starting positions the databases lack.
    pub(super) fn sync_attach(
        &mut self,
        follow: &FollowRecord,
        positions: &[(String, SyncPosition)],
    ) -> Result<Written, Failure> {
        if let Some(current) = self.follow_record()? {
            if current.source_service_id != follow.source_service_id {
                return Err(Failure::Request(StoreError::FollowConflict {
                    source_url: current.source,
                    service_id: current.source_service_id,
                }));
            }
        }
        let mut fresh = Vec::new();
        for (db, position) in positions {
            let last_seq = self.existing(db)?.last_seq;
            match self.sync_position(db)? {
                Some(stored) => check_lineage(db, &stored, &lineage_of(position))?,
                None if last_seq != position.seq => {
                    return Err(Failure::Request(StoreError::SyncGap {
                        db: db.clone(),
                        expected: last_seq + 1,
                        got: position.seq + 1,
                    }))
                }
                None => fresh.push((db, position)),
            }
        }
        for (db, position) in fresh {
            self.save_sync_position(db, position)?;
        }
        let follow = match self.follow_record()? {
            // Attached again by the same source: the mode keeps its start.
            Some(current) => FollowRecord {
                since_ms: current.since_ms,
                ..follow.clone()
            },
            None => follow.clone(),
        };
        self.put(TableId::Meta, meta_key::FOLLOW, follow.encode())?;
        self.follow = Some(Some(follow));
        Ok(Written::SyncAttached)
    }

    /// Creates a database the followed source created, with its position.
    pub(super) fn sync_create_database(
        &mut self,
        name: &str,
        retention: Retention,
        offline: bool,
        position: &SyncPosition,
    ) -> Result<Written, Failure> {
        let follow = self.following()?;
        if position.source_service_id != follow.source_service_id {
            return Err(Failure::Request(StoreError::SyncLineage {
                db: name.to_string(),
                reason: format!(
                    "the position names service {}, the followed source is {}",
                    position.source_service_id, follow.source_service_id
                ),
            }));
        }
        if let Some(stored) = self.sync_position(name)? {
            if self.record(name)?.is_some() {
                check_lineage(name, &stored, &lineage_of(position))?;
                return Ok(Written::DatabaseCreated);
            }
        }
        let written = self.create_database(name, retention, offline)?;
        self.save_sync_position(name, position)?;
        Ok(written)
    }

    /// Applies a follower's changes at their seqs and moves the position along.
    pub(super) fn sync_apply(
        &mut self,
        db: &str,
        lineage: &SyncLineage,
        first_seq: u64,
        ops: &[Op],
        times_ms: &[u64],
    ) -> Result<Written, Failure> {
        let follow = self.following()?;
        if lineage.service_id != follow.source_service_id {
            return Err(Failure::Request(StoreError::SyncLineage {
                db: db.to_string(),
                reason: format!(
                    "migration mode follows service {}, not {}",
                    follow.source_service_id, lineage.service_id
                ),
            }));
        }
        let last_seq = self.existing(db)?.last_seq;
        let mut position = self
            .sync_position(db)?
            .ok_or_else(|| Failure::Request(StoreError::SyncPositionMissing { db: db.into() }))?;
        check_lineage(db, &position, lineage)?;
        // Already applied: at or below the position (a follower resending after a kill).
        let skip = usize::try_from((position.seq + 1).saturating_sub(first_seq))
            .unwrap_or(usize::MAX)
            .min(ops.len());
        let next = first_seq + skip as u64;
        if skip == ops.len() {
            return Ok(Written::SyncApplied {
                seq: position.seq,
                applied: 0,
            });
        }
        if next != position.seq + 1 || last_seq != position.seq {
            return Err(Failure::Request(StoreError::SyncGap {
                db: db.to_string(),
                expected: last_seq.max(position.seq) + 1,
                got: next,
            }));
        }
        let revs = self.apply_ops(db, &ops[skip..], Some(&times_ms[skip..]))?;
        position.seq = *revs.last().expect("at least one change applied");
        position.updated_ms = now_ms();
        position.stopped = None;
        self.save_sync_position(db, &position)?;
        Ok(Written::SyncApplied {
            seq: position.seq,
            applied: revs.len() as u64,
        })
    }

    /// Records or clears why a database's sync stopped.
    pub(super) fn sync_stopped(
        &mut self,
        db: &str,
        stop: Option<&SyncStop>,
    ) -> Result<Written, Failure> {
        // After a cutover or an abort, a follower's late word changes nothing.
        self.following()?;
        let mut position = self
            .sync_position(db)?
            .ok_or_else(|| Failure::Request(StoreError::SyncPositionMissing { db: db.into() }))?;
        position.stopped = stop.cloned();
        self.save_sync_position(db, &position)?;
        Ok(Written::SyncStopSet)
    }

    /// Leaves migration mode.
    pub(super) fn sync_detach(&mut self) -> Result<Written, Failure> {
        let follow = self.follow_record()?;
        if follow.is_some() {
            self.delete(TableId::Meta, meta_key::FOLLOW)?;
            self.follow = Some(None);
        }
        Ok(Written::SyncDetached(follow))
    }
}

fn lineage_of(position: &SyncPosition) -> SyncLineage {
    SyncLineage {
        service_id: position.source_service_id.clone(),
        epoch: position.source_epoch,
        created_ms: position.source_created_ms,
    }
}

/// Refuses a lineage other than the stored position's: another service, another epoch,
/// another creation of the database (when both times are known).
fn check_lineage(db: &str, stored: &SyncPosition, lineage: &SyncLineage) -> Result<(), Failure> {
    let reason = if stored.source_service_id != lineage.service_id {
        format!(
            "it follows service {}, not {}",
            stored.source_service_id, lineage.service_id
        )
    } else if stored.source_epoch != lineage.epoch {
        format!(
            "the source's change log is of epoch {} now, this database holds epoch {} (the source was restored from a backup)",
            lineage.epoch, stored.source_epoch
        )
    } else if stored.source_created_ms != 0
        && lineage.created_ms != 0
        && stored.source_created_ms != lineage.created_ms
    {
        format!(
            "the source's database was created at {} ms, this one follows the one created at {} ms (it was dropped and created again)",
            lineage.created_ms, stored.source_created_ms
        )
    } else {
        return Ok(());
    };
    Err(Failure::Request(StoreError::SyncLineage {
        db: db.to_string(),
        reason,
    }))
}
