//! The steps of a resync, which rebuilds a database's index entries while it is
//! offline: `resync_chunk` checks the next documents and writes the entries they lack
//! (refusing duplicates of unique values, removing entries whose document no longer
//! holds the value); `resync_finish` removes the entries no document backs and, at the
//! end, marks the indexes fresh or stale.

use crate::journal::TableId;
use std::ops::Bound;

use super::apply::GroupTxn;
use super::requests::{IndexEntry, ResyncChunk};
use super::Failure;
use crate::format::{
    database_bounds, doc_key, doc_key_name, index_entry, index_key, read_doc_value,
    split_index_entry,
};
use crate::index::{compile, display_encoded, index_value, position_byte, Compiled};
use crate::store::as_slice_bound;
use crate::validate::validate_value;

impl GroupTxn<'_> {
    /// Checks the next `limit` documents after `after` and writes the index entries
    /// they lack (see `Write::ResyncChunk`).
    pub(super) fn resync_chunk(
        &mut self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ResyncChunk, Failure> {
        let config = self.offline_config(name)?;
        let record = self.existing(name)?.clone();
        let compiled = compile(&config.indexes)?;
        let indexes = self.tables.indexes;
        // First read: what each document yields (nothing is written while the cursor
        // is open).
        struct Checked {
            key: String,
            entries: Vec<(u8, Vec<u8>)>,
            errors: Vec<String>,
        }
        let mut checked: Vec<Checked> = Vec::new();
        {
            let (low, high) = database_bounds(record.id);
            let low = match after {
                Some(after) => Bound::Excluded(doc_key(record.id, after)),
                None => Bound::Included(low),
            };
            let bounds = (as_slice_bound(&low), Bound::Excluded(&high[..]));
            for entry in self.tables.docs.range(&self.wtxn, &bounds)? {
                if checked.len() == limit {
                    break;
                }
                let (stored_key, stored) = entry?;
                let key = doc_key_name(stored_key)?.to_string();
                let mut errors = Vec::new();
                let mut entries = Vec::new();
                let (rev, value) = match read_doc_value(name, record.id, &key, stored) {
                    Ok(read) => read,
                    Err(damaged) => {
                        errors.push(damaged.to_string());
                        checked.push(Checked {
                            key,
                            entries,
                            errors,
                        });
                        continue;
                    }
                };
                if rev == 0 || rev > record.last_seq {
                    errors.push(format!(
                        "rev {rev} is outside 1..={} (the database's last seq)",
                        record.last_seq
                    ));
                }
                match validate_value(value, usize::MAX) {
                    Err(e) => errors.push(e.to_string()),
                    Ok(()) => {
                        for (position, index) in compiled.iter().enumerate() {
                            match index_value(value, &index.pointer) {
                                Ok(Some(encoded)) => {
                                    entries.push((position_byte(position)?, encoded))
                                }
                                Ok(None) => {}
                                Err(reason) => {
                                    errors.push(format!("index {:?}: {reason}", index.name))
                                }
                            }
                        }
                    }
                }
                checked.push(Checked {
                    key,
                    entries,
                    errors,
                });
            }
        }
        let mut chunk = ResyncChunk {
            last_key: checked.last().map(|c| c.key.clone()),
            ..ResyncChunk::default()
        };
        for Checked {
            key,
            entries,
            mut errors,
        } in checked
        {
            chunk.processed += 1;
            let mut changed = false;
            for (position, encoded) in entries {
                let ikey = index_key(record.id, position, &encoded);
                let index = &compiled[usize::from(position)];
                if index.unique {
                    let holders: Vec<String> = indexes
                        .prefix_iter(&self.wtxn, &ikey)?
                        .map(|e| Ok(split_index_entry(e?.0)?.2.to_string()))
                        .collect::<Result<_, Failure>>()?;
                    let mut duplicate = None;
                    for holder in holders.into_iter().filter(|h| *h != key) {
                        if self.yields(name, record.id, &holder, &index.pointer, &encoded)? {
                            duplicate = Some(holder);
                            break;
                        }
                        // An orphan: its document no longer holds the value.
                        self.delete(TableId::Indexes, index_entry(&ikey, &holder))?;
                    }
                    if let Some(holder) = duplicate {
                        errors.push(format!(
                            "duplicate value {} of unique index {:?}, held by {holder:?}",
                            display_encoded(&encoded),
                            index.name
                        ));
                        continue;
                    }
                }
                let entry = index_entry(&ikey, &key);
                if indexes.get(&self.wtxn, &entry)?.is_none() {
                    self.put(TableId::Indexes, &entry, [])?;
                    changed = true;
                }
            }
            if changed {
                chunk.changed += 1;
            }
            if !errors.is_empty() {
                chunk.errors.push((key, errors.join("; ")));
            }
        }
        Ok(chunk)
    }

    /// True when the document `key` exists, is sound and yields `encoded` at
    /// `pointer`.
    fn yields(
        &self,
        db: &str,
        db_id: u32,
        key: &str,
        pointer: &[String],
        encoded: &[u8],
    ) -> Result<bool, Failure> {
        Ok(
            match self.tables.docs.get(&self.wtxn, &doc_key(db_id, key))? {
                Some(stored) => match read_doc_value(db, db_id, key, stored) {
                    Ok((_, value)) => {
                        index_value(value, pointer).ok().flatten().as_deref() == Some(encoded)
                    }
                    Err(_) => false,
                },
                None => false,
            },
        )
    }

    /// Removes every index entry of `name` that no document backs, and marks the
    /// indexes fresh or stale (see `Write::ResyncFinish`).
    pub(super) fn resync_finish(
        &mut self,
        name: &str,
        errored: u64,
        after: Option<&IndexEntry>,
        limit: usize,
    ) -> Result<(u64, Option<IndexEntry>), Failure> {
        let mut config = self.offline_config(name)?;
        let id = self.existing(name)?.id;
        let compiled: Vec<Compiled> = compile(&config.indexes)?;
        let indexes = self.tables.indexes;
        let (low, high) = database_bounds(id);
        let start = match after {
            Some(entry) => Bound::Excluded(&entry.key[..]),
            None => Bound::Included(&low[..]),
        };
        let bounds = (start, Bound::Excluded(&high[..]));
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        let mut checked = 0;
        let mut last = None;
        for entry in indexes.range(&self.wtxn, &bounds)? {
            let (stored, _) = entry?;
            if checked == limit {
                break;
            }
            checked += 1;
            last = Some(IndexEntry {
                key: stored.to_vec(),
            });
            let backed = match split_index_entry(stored) {
                Ok((position, encoded, key)) => match compiled.get(usize::from(position)) {
                    Some(index) => self.yields(name, id, key, &index.pointer, encoded)?,
                    None => false,
                },
                Err(_) => false,
            };
            if !backed {
                doomed.push(stored.to_vec());
            }
        }
        for key in &doomed {
            self.delete(TableId::Indexes, key)?;
        }
        let next = if checked == limit { last } else { None };
        if next.is_none() {
            config.indexes_stale = errored > 0 && !config.indexes.is_empty();
            self.save_config(name, config)?;
        }
        Ok((doomed.len() as u64, next))
    }
}
