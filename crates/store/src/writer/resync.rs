//! The steps of a resync, which rebuilds a database's index entries while it is
//! offline: `resync_chunk` checks the next documents and writes the entries they lack
//! (refusing duplicates of unique values, removing entries whose document no longer
//! holds the value); `resync_finish` removes the entries no document backs and, at the
//! end, marks the indexes fresh or stale.

use std::ops::Bound;

use heed::PutFlags;

use super::apply::GroupTxn;
use super::requests::{IndexEntry, ResyncChunk};
use super::Failure;
use crate::error::StoreError;
use crate::format::{
    database_bounds, doc_key, doc_key_name, index_doc_key, index_key, split_doc_value,
    split_index_key,
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
        let indexes = self.tables.indexes()?;
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
                let (rev, value) = split_doc_value(stored)?;
                let mut errors = Vec::new();
                let mut entries = Vec::new();
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
                    let holders: Vec<String> = match indexes.get_duplicates(&self.wtxn, &ikey)? {
                        Some(iter) => iter
                            .map(|e| Ok(index_doc_key(e?.1)?.to_string()))
                            .collect::<Result<_, StoreError>>()?,
                        None => Vec::new(),
                    };
                    let mut duplicate = None;
                    for holder in holders.into_iter().filter(|h| *h != key) {
                        if self.yields(record.id, &holder, &index.pointer, &encoded)? {
                            duplicate = Some(holder);
                            break;
                        }
                        // An orphan: its document no longer holds the value.
                        indexes.delete_one_duplicate(&mut self.wtxn, &ikey, holder.as_bytes())?;
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
                match indexes.put_with_flags(
                    &mut self.wtxn,
                    PutFlags::NO_DUP_DATA,
                    &ikey,
                    key.as_bytes(),
                ) {
                    Ok(()) => changed = true,
                    Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => {}
                    Err(e) => return Err(e.into()),
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

    /// True when the document `key` exists and yields `encoded` at `pointer`.
    fn yields(
        &self,
        db_id: u32,
        key: &str,
        pointer: &[String],
        encoded: &[u8],
    ) -> Result<bool, Failure> {
        Ok(
            match self.tables.docs.get(&self.wtxn, &doc_key(db_id, key))? {
                Some(stored) => {
                    let (_, value) = split_doc_value(stored)?;
                    index_value(value, pointer).ok().flatten().as_deref() == Some(encoded)
                }
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
        let indexes = self.tables.indexes()?;
        let (low, high) = database_bounds(id);
        let start = after.map_or(&low[..], |entry| &entry.key[..]);
        let bounds = (Bound::Included(start), Bound::Excluded(&high[..]));
        let mut doomed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut checked = 0;
        let mut last = None;
        for entry in indexes.range(&self.wtxn, &bounds)? {
            let (ikey, dup) = entry?;
            if after.is_some_and(|a| (ikey, dup) <= (&a.key[..], &a.doc_key[..])) {
                continue;
            }
            if checked == limit {
                break;
            }
            checked += 1;
            last = Some(IndexEntry {
                key: ikey.to_vec(),
                doc_key: dup.to_vec(),
            });
            let (position, encoded) = split_index_key(ikey)?;
            let backed = match (compiled.get(usize::from(position)), index_doc_key(dup)) {
                (Some(index), Ok(key)) => self.yields(id, key, &index.pointer, encoded)?,
                _ => false,
            };
            if !backed {
                doomed.push((ikey.to_vec(), dup.to_vec()));
            }
        }
        for (ikey, dup) in &doomed {
            indexes.delete_one_duplicate(&mut self.wtxn, ikey, dup)?;
        }
        let next = if checked == limit { last } else { None };
        if next.is_none() {
            config.indexes_stale = errored > 0 && !config.indexes.is_empty();
            self.save_config(name, config)?;
        }
        Ok((doomed.len() as u64, next))
    }
}
