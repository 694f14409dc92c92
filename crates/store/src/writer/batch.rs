//! Batches: operations on one database applied all or nothing. Every condition (revs,
//! existence, what each index can hold, unique values) is checked first against the
//! state the batch's earlier operations leave; only then are documents, change-log
//! entries, counters and index entries written.

use crate::journal::TableId;
use std::collections::HashMap;

use super::apply::GroupTxn;
use super::requests::Op;
use super::Failure;
use crate::error::StoreError;
use crate::format::{
    change_key, change_record, doc_key, doc_value, index_entry, index_key, read_doc_value,
    split_index_entry, table, ChangeOp, IndexDef,
};
use crate::index::{compile, display_encoded, index_value, position_byte};

impl GroupTxn<'_> {
    /// Checks every condition of the batch first (against the state the earlier
    /// operations of the batch leave), then applies it.
    pub(super) fn apply_batch(&mut self, db: &str, ops: &[Op]) -> Result<Vec<u64>, Failure> {
        self.apply_ops(db, ops, None)
    }

    /// Applies `ops` at the database's next seqs. A client's batch (`replayed: None`)
    /// is refused when the database follows another service (migration mode), is
    /// offline, or a condition fails, and its changes carry the group's time. A follower's (`Some(times)`, one per operation) replays
    /// what the source already accepted: the offline flag is the source's business, a
    /// delete of a document this database lacks (one a migration left out) still logs
    /// its tombstone, each change keeps its source time, and index entries that cannot
    /// be maintained leave the indexes stale for a resync instead of refusing the
    /// change.
    pub(super) fn apply_ops(
        &mut self,
        db: &str,
        ops: &[Op],
        replayed: Option<&[u64]>,
    ) -> Result<Vec<u64>, Failure> {
        if replayed.is_none() {
            self.refuse_if_followed(db)?;
        }
        let record = self.existing(db)?.clone();
        let config = self.config(db)?;
        if config.offline && replayed.is_none() {
            return Err(Failure::Request(StoreError::DatabaseOffline {
                name: db.to_string(),
            }));
        }
        // Stale indexes are left alone: a resync rebuilds them.
        let maintained =
            (!config.indexes.is_empty() && !config.indexes_stale).then(|| config.indexes.clone());
        // Rev of each key after the batch's operations so far; 0 = absent.
        let mut overlay: HashMap<&str, u64> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let key = op.key();
            let expected = match op {
                Op::Put { rev, .. } | Op::Delete { rev, .. } => *rev,
            };
            let seq = record.last_seq + i as u64 + 1;
            if let (Op::Put { .. }, None) = (op, expected) {
                // An unconditional put needs no look-up now: the apply pass learns what
                // it replaces from the same B-tree descent that writes it.
                overlay.insert(key, seq);
                continue;
            }
            let current = match overlay.get(key) {
                Some(rev) => *rev,
                None => match self.tables.docs.get(&self.wtxn, &doc_key(record.id, key))? {
                    Some(stored) => read_doc_value(db, record.id, key, stored)?.0,
                    None => 0,
                },
            };
            if let Some(expected) = expected.filter(|e| *e != current) {
                return Err(Failure::Request(StoreError::RevConflict {
                    key: key.to_string(),
                    expected,
                    current,
                }));
            }
            if matches!(op, Op::Delete { .. }) && current == 0 && replayed.is_none() {
                return Err(Failure::Request(StoreError::NotFound {
                    db: db.to_string(),
                    key: key.to_string(),
                }));
            }
            let new_rev = match op {
                Op::Put { .. } => seq,
                Op::Delete { .. } => 0,
            };
            overlay.insert(key, new_rev);
        }
        let index_changes = match &maintained {
            Some(defs) => match (self.index_changes(db, record.id, defs, ops), replayed) {
                (Ok(changes), _) => Some(changes),
                (Err(Failure::Request(error)), Some(_)) => {
                    tracing::warn!(db, %error, "a replayed change cannot be indexed here: the indexes are stale until a resync");
                    let mut config = self.config(db)?.clone();
                    config.indexes_stale = true;
                    self.save_config(db, config)?;
                    None
                }
                (Err(failure), _) => return Err(failure),
            },
            None => None,
        };

        let mut record = record;
        let mut revs = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let seq = record.last_seq + 1;
            let time_ms = replayed.map_or(self.now_ms, |times| times[i]);
            let key = op.key();
            let stored_key = doc_key(record.id, key);
            let change = match op {
                Op::Put { value, .. } => {
                    let stored = doc_value(record.id, key, seq, value);
                    let replaced = self
                        .tables
                        .docs
                        .get_or_put(&mut self.wtxn, &stored_key, &stored)?
                        .map(<[u8]>::len);
                    if let Some(old_len) = replaced {
                        self.put(TableId::Docs, &stored_key, &stored)?;
                        record.doc_bytes -= (stored_key.len() + old_len) as u64;
                    } else {
                        self.note_put(TableId::Docs, &stored_key, &stored);
                        record.doc_count += 1;
                    }
                    record.doc_bytes += (stored_key.len() + stored.len()) as u64;
                    change_record(record.id, seq, ChangeOp::Put, time_ms, key, Some(value))
                }
                Op::Delete { .. } => {
                    let old_len = self
                        .tables
                        .docs
                        .get(&self.wtxn, &stored_key)?
                        .map(<[u8]>::len);
                    match old_len {
                        Some(old_len) => {
                            self.delete(TableId::Docs, &stored_key)?;
                            record.doc_count -= 1;
                            record.doc_bytes -= (stored_key.len() + old_len) as u64;
                        }
                        None if replayed.is_some() => {}
                        None => {
                            return Err(Failure::Group(StoreError::Corrupt {
                                table: table::DOCS,
                                reason: format!("{key:?} vanished between check and delete"),
                            }))
                        }
                    }
                    change_record(record.id, seq, ChangeOp::Delete, time_ms, key, None)
                }
            };
            let log_key = change_key(record.id, seq);
            self.put(TableId::Changes, log_key, &change)?;
            record.log_bytes += (log_key.len() + change.len()) as u64;
            record.last_seq = seq;
            revs.push(seq);
        }
        if let Some(changes) = index_changes {
            for ((value_key, doc), change) in &changes.entries {
                match (change.before, change.after) {
                    (false, true) => self.put(TableId::Indexes, index_entry(value_key, doc), [])?,
                    (true, false) => {
                        self.delete(TableId::Indexes, index_entry(value_key, doc))?;
                    }
                    _ => {}
                }
            }
        }
        *self.existing_mut(db)? = record;
        Ok(revs)
    }

    /// The index entries a batch adds and removes, checked before anything is written:
    /// a value an index cannot hold is `IndexValue`, a unique value held by another
    /// document (after the batch's earlier operations) is `UniqueViolation`.
    fn index_changes<'o>(
        &self,
        db: &str,
        db_id: u32,
        defs: &[IndexDef],
        ops: &'o [Op],
    ) -> Result<IndexChanges<'o>, Failure> {
        let compiled = compile(defs)?;
        let indexes = self.tables.indexes;
        // The entries of each key the batch touched, as its earlier operations left it.
        let mut current: HashMap<&str, Vec<Option<Vec<u8>>>> = HashMap::new();
        let mut changes = IndexChanges::default();
        for op in ops {
            let key = op.key();
            let old = match current.remove(key) {
                Some(entries) => entries,
                None => match self.tables.docs.get(&self.wtxn, &doc_key(db_id, key))? {
                    // What the stored value yields; a value an index could not hold
                    // has no entry there.
                    Some(stored) => {
                        let (_, value) = read_doc_value(db, db_id, key, stored)?;
                        compiled
                            .iter()
                            .map(|index| index_value(value, &index.pointer).ok().flatten())
                            .collect()
                    }
                    None => vec![None; compiled.len()],
                },
            };
            for (position, encoded) in old.iter().enumerate() {
                if let Some(encoded) = encoded {
                    changes.remove(index_key(db_id, position_byte(position)?, encoded), key);
                }
            }
            let new = match op {
                Op::Put { value, .. } => compiled
                    .iter()
                    .map(|index| {
                        index_value(value, &index.pointer).map_err(|reason| {
                            Failure::Request(StoreError::IndexValue {
                                db: db.to_string(),
                                index: index.name.clone(),
                                key: key.to_string(),
                                reason,
                            })
                        })
                    })
                    .collect::<Result<Vec<_>, Failure>>()?,
                Op::Delete { .. } => vec![None; compiled.len()],
            };
            for (position, encoded) in new.iter().enumerate() {
                let Some(encoded) = encoded else { continue };
                let ikey = index_key(db_id, position_byte(position)?, encoded);
                if compiled[position].unique {
                    if let Some(holder) = self.holder(indexes, &changes, &ikey, key)? {
                        return Err(Failure::Request(StoreError::UniqueViolation {
                            db: db.to_string(),
                            index: compiled[position].name.clone(),
                            value: display_encoded(encoded),
                            key: key.to_string(),
                            existing_key: holder,
                        }));
                    }
                }
                changes.add(ikey, key, compiled[position].unique);
            }
            current.insert(key, new);
        }
        Ok(changes)
    }

    /// A document other than `key` that holds the value `ikey` of a unique index,
    /// taking the batch's changes so far into account.
    fn holder(
        &self,
        indexes: heed::Database<heed::types::Bytes, heed::types::Bytes>,
        changes: &IndexChanges<'_>,
        ikey: &[u8],
        key: &str,
    ) -> Result<Option<String>, Failure> {
        if let Some(holder) = changes.added_holder(ikey, key) {
            return Ok(Some(holder.to_string()));
        }
        for entry in indexes.prefix_iter(&self.wtxn, ikey)? {
            let (_, _, holder) = split_index_entry(entry?.0)?;
            if holder != key && !changes.removed(ikey, holder) {
                return Ok(Some(holder.to_string()));
            }
        }
        Ok(None)
    }
}

/// One index entry ((index key, document key)) a batch touches: whether it was stored
/// before the batch and whether it is after it.
#[derive(Debug, Clone, Copy)]
struct EntryChange {
    before: bool,
    after: bool,
}

/// The index entries a batch touches, with the documents it gave each index key.
#[derive(Default)]
struct IndexChanges<'o> {
    entries: HashMap<(Vec<u8>, &'o str), EntryChange>,
    added: HashMap<Vec<u8>, Vec<&'o str>>,
}

impl<'o> IndexChanges<'o> {
    /// The batch removes the entry (stored before, unless the batch added it).
    fn remove(&mut self, ikey: Vec<u8>, key: &'o str) {
        self.entries
            .entry((ikey, key))
            .or_insert(EntryChange {
                before: true,
                after: true,
            })
            .after = false;
    }

    /// The batch adds the entry; `unique`: remember its holder for `added_holder`.
    fn add(&mut self, ikey: Vec<u8>, key: &'o str, unique: bool) {
        if unique {
            let holders = self.added.entry(ikey.clone()).or_default();
            if !holders.contains(&key) {
                holders.push(key);
            }
        }
        self.entries
            .entry((ikey, key))
            .or_insert(EntryChange {
                before: false,
                after: true,
            })
            .after = true;
    }

    /// True when the batch removed the stored entry.
    fn removed(&self, ikey: &[u8], key: &str) -> bool {
        // The map's key holds a `&'o str`; look it up through an owned copy.
        self.entries
            .get(&(ikey.to_vec(), key))
            .is_some_and(|c| !c.after)
    }

    /// A document other than `key` the batch gave the entry to and did not take back.
    fn added_holder(&self, ikey: &[u8], key: &str) -> Option<&'o str> {
        self.added.get(ikey)?.iter().copied().find(|holder| {
            *holder != key
                && self
                    .entries
                    .get(&(ikey.to_vec(), *holder))
                    .is_some_and(|c| c.after)
        })
    }
}
