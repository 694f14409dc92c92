//! Every table-level write of a group goes through here: `GroupTxn::put`, `delete`,
//! `delete_range` and `clear` make the write and record it, and `append_journal` stores
//! what the group recorded as one journal entry before the commit, then trims the
//! journal to its retention. A mirror's `MirrorApply` makes the writes of a leader's
//! entries instead (`apply_entries`) and stores each entry as it came, at its seq.

use std::ops::Bound;

use super::apply::GroupTxn;
use super::requests::{JournalEntry, Written};
use super::Failure;
use crate::error::StoreError;
use crate::format::{meta_key, CatalogRecord};
use crate::journal::{encode_entry, entry_key, entry_ops, EntryHeader, JournalOp, TableId};

impl GroupTxn<'_> {
    /// Writes `value` under `key` in `table`.
    pub(super) fn put(
        &mut self,
        table: TableId,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), Failure> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.tables.raw(table).put(&mut self.wtxn, key, value)?;
        self.journal.put(table, key, value);
        Ok(())
    }

    /// Records a put that LMDB already made (`get_or_put` found the key absent).
    pub(super) fn note_put(&mut self, table: TableId, key: &[u8], value: &[u8]) {
        self.journal.put(table, key, value);
    }

    /// Deletes `key` from `table`; answers whether it was there.
    pub(super) fn delete(
        &mut self,
        table: TableId,
        key: impl AsRef<[u8]>,
    ) -> Result<bool, Failure> {
        let key = key.as_ref();
        let deleted = self.tables.raw(table).delete(&mut self.wtxn, key)?;
        if deleted {
            self.journal.delete(table, key);
        }
        Ok(deleted)
    }

    /// Deletes every key of `table` between `low` and `high`.
    pub(super) fn delete_range(
        &mut self,
        table: TableId,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
    ) -> Result<(), Failure> {
        let deleted = self
            .tables
            .raw(table)
            .delete_range(&mut self.wtxn, &(low, high))?;
        if deleted > 0 {
            self.journal.delete_range(table, low, high);
        }
        Ok(())
    }

    /// Empties `table`.
    pub(super) fn clear(&mut self, table: TableId) -> Result<(), Failure> {
        self.tables.raw(table).clear(&mut self.wtxn)?;
        self.journal.clear(table);
        Ok(())
    }

    /// The newest journal entry: its seq and where the journal's bytes end after it
    /// (`(0, 0)` for an empty journal).
    fn journal_head(&self) -> Result<(u64, u64), Failure> {
        match self.tables.journal.last(&self.wtxn)? {
            Some((key, value)) => {
                let seq = crate::journal::entry_seq(key)?;
                Ok((seq, EntryHeader::decode(value)?.end(value.len())))
            }
            None => Ok((0, 0)),
        }
    }

    /// Stores what the group recorded as the next journal entry (nothing when it wrote
    /// nothing), then trims the journal.
    pub(super) fn append_journal(&mut self) -> Result<(), Failure> {
        if self.journal.is_empty() {
            return Ok(());
        }
        let epoch = match self.tables.meta.get(&self.wtxn, meta_key::EPOCH)? {
            Some(bytes) => bytes.try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        let (head, end) = self.journal_head()?;
        let seq = head + 1;
        let entry = encode_entry(seq, epoch, self.now_ms, end, &self.journal);
        self.tables
            .journal
            .put(&mut self.wtxn, &entry_key(seq), &entry)?;
        self.appended = Some(seq);
        self.trim_journal(end + entry.len() as u64)
    }

    /// Drops the oldest entries while the journal holds more than its retention, always
    /// keeping the newest (a mirror's position is checked against it).
    fn trim_journal(&mut self, end: u64) -> Result<(), Failure> {
        loop {
            let Some((key, value)) = self.tables.journal.first(&self.wtxn)? else {
                return Ok(());
            };
            let start = EntryHeader::decode(value)?.start;
            let newest = start + value.len() as u64 >= end;
            if newest || end - start <= self.journal_retain_bytes {
                return Ok(());
            }
            let key = key.to_vec();
            self.tables.journal.delete(&mut self.wtxn, &key)?;
        }
    }

    /// Applies a leader's journal entries, which must continue this journal, and
    /// stores each at its seq. Answers the seq of the last one.
    pub(super) fn apply_entries(&mut self, entries: &[JournalEntry]) -> Result<Written, Failure> {
        let (mut head, _) = self.journal_head()?;
        // The entries were checked when they were queued: here only that they
        // continue this journal, before anything is written.
        for (at, entry) in entries.iter().enumerate() {
            let expected = head + 1 + at as u64;
            if entry.seq != expected {
                return Err(Failure::Request(StoreError::JournalGap {
                    expected,
                    got: entry.seq,
                }));
            }
        }
        let mut end = 0;
        for entry in entries {
            for op in entry_ops(&entry.value)? {
                self.apply_op(&op)?;
            }
            self.tables
                .journal
                .put(&mut self.wtxn, &entry_key(entry.seq), &entry.value)?;
            end = EntryHeader::decode(&entry.value)?.end(entry.value.len());
            head = entry.seq;
        }
        if !entries.is_empty() {
            self.appended = Some(head);
            self.trim_journal(end)?;
        }
        Ok(Written::MirrorApplied {
            head,
            users_changed: self.mirrored.users_changed,
            service_changed: self.mirrored.service_changed,
        })
    }

    /// Makes one write of a leader's entry, noting what the service must learn of it
    /// (databases whose log moved, users and sessions that changed).
    fn apply_op(&mut self, op: &JournalOp<'_>) -> Result<(), Failure> {
        match *op {
            JournalOp::Put { table, key, value } => {
                self.tables.raw(table).put(&mut self.wtxn, key, value)?;
                self.note_mirrored(table, key, Some(value))?;
            }
            JournalOp::Delete { table, key } => {
                self.tables.raw(table).delete(&mut self.wtxn, key)?;
                self.note_mirrored(table, key, None)?;
            }
            JournalOp::DeleteRange { table, low, high } => {
                self.tables
                    .raw(table)
                    .delete_range(&mut self.wtxn, &(low, high))?;
                self.note_mirrored_table(table);
            }
            JournalOp::Clear { table } => {
                self.tables.raw(table).clear(&mut self.wtxn)?;
                self.note_mirrored_table(table);
            }
        }
        Ok(())
    }

    /// Notes a write to `table` as a whole (a range, a clear).
    fn note_mirrored_table(&mut self, table: TableId) {
        self.mirrored.users_changed |= matches!(table, TableId::Users | TableId::Sessions);
        self.mirrored.service_changed |=
            matches!(table, TableId::Meta | TableId::Configs | TableId::Sync);
    }

    fn note_mirrored(
        &mut self,
        table: TableId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), Failure> {
        match table {
            TableId::Catalog => {
                let name = String::from_utf8_lossy(key).into_owned();
                let last_seq = value
                    .map(CatalogRecord::decode)
                    .transpose()?
                    .map(|record| record.last_seq);
                self.mirrored.service_changed |= last_seq.is_none();
                self.mirrored.databases.insert(name, last_seq);
            }
            other => self.note_mirrored_table(other),
        }
        Ok(())
    }
}
