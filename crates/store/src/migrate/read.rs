//! The reading side of a migration. A thread of its own reads the source in key order,
//! checks each document (the checks of the module doc but one: whether a unique index
//! holds its value already, which only the destination knows), encodes what format 2
//! stores (the document value with its checksum, its index entries, each change record
//! with its checksum) and hands it over in chunks to the writer (`write`), which owns
//! the destination's write transactions: heed's stay on the thread that began them.
//! Both cores work, reads, checks and checksums here, puts and commits there.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, SyncSender};

use super::source::{Source, SourceDatabase};
use super::Refusal;
use crate::error::Result;
use crate::format::{append_change_record, append_doc_value, change_key_seq, DATABASE_ID_BYTES};
use crate::index::{index_value, position_byte, Compiled};
use crate::validate::{validate_key_bytes, validate_value};

/// Documents or change records in one chunk at most.
const CHUNK_ITEMS: usize = 1024;
/// Bytes in one chunk beyond which it is handed over.
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks read ahead of the writer at most.
const CHUNKS_AHEAD: usize = 4;

/// Runs `produce` on a thread of its own and hands what it sends, in order, to
/// `consume` on this one. An error of either stops both; the consumer's comes first.
pub(super) fn pipelined<T: Send>(
    produce: impl FnOnce(&SyncSender<T>) -> Result<()> + Send,
    consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel(CHUNKS_AHEAD);
        let producer = scope.spawn(move || produce(&sender));
        let consumed = receiver.iter().try_for_each(consume);
        // Without its receiver, the producer stops at its next send.
        drop(receiver);
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed.and(produced)
    })
}

/// What the reading side hands over: entries prepared in one buffer.
trait Chunk: Default {
    fn items(&self) -> usize;
    fn bytes_held(&self) -> usize;
}

/// Adds each stored entry to a chunk with `add` and hands the chunk over whenever it
/// is full, and at the end; stops early when the writer has stopped.
fn in_chunks<'t, C: Chunk>(
    entries: impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>,
    out: &SyncSender<C>,
    mut add: impl FnMut(&mut C, &[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut chunk = C::default();
    for entry in entries {
        let (key, value) = entry?;
        add(&mut chunk, key, value)?;
        let full = chunk.items() >= CHUNK_ITEMS || chunk.bytes_held() >= CHUNK_BYTES;
        if full && out.send(std::mem::take(&mut chunk)).is_err() {
            return Ok(());
        }
    }
    if chunk.items() > 0 {
        // A writer that has stopped has its own error to tell.
        let _ = out.send(chunk);
    }
    Ok(())
}

/// Prepared documents and the bytes they point into.
#[derive(Default)]
pub(super) struct DocumentChunk {
    bytes: Vec<u8>,
    pub(super) documents: Vec<PreparedDocument>,
    entries: Vec<PreparedEntry>,
}

/// One document read from the source.
pub(super) struct PreparedDocument {
    /// Its stored key (database id, then the key).
    pub(super) stored_key: Range<usize>,
    pub(super) verdict: Verdict,
}

/// What the reading side made of a document.
pub(super) enum Verdict {
    Move {
        /// Its format-2 value.
        value: Range<usize>,
        /// Its index entries, in `DocumentChunk::entries`.
        entries: Range<usize>,
        /// Some of its entries could not be built (checks off): the indexes wait for a
        /// resync.
        stale: bool,
    },
    Refuse {
        /// The source's stored value, for the dump.
        stored: Range<usize>,
        refusal: Refusal,
    },
}

/// One index entry of a document.
pub(super) struct PreparedEntry {
    /// The entry: the value's key (`index_key`), then the document key.
    bytes: Range<usize>,
    value_key_bytes: usize,
    /// The position of its index.
    pub(super) position: usize,
}

impl DocumentChunk {
    pub(super) fn bytes(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    pub(super) fn entries(&self, range: &Range<usize>) -> &[PreparedEntry] {
        &self.entries[range.clone()]
    }

    /// An entry's key, and the value's key it begins with.
    pub(super) fn entry(&self, entry: &PreparedEntry) -> (&[u8], &[u8]) {
        let bytes = self.bytes(&entry.bytes);
        (bytes, &bytes[..entry.value_key_bytes])
    }

    /// The stored key of the last document.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.documents.last().map(|doc| self.bytes(&doc.stored_key))
    }

    fn push(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    fn push_entry(&mut self, db_id: u32, position: usize, byte: u8, encoded: &[u8], key: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&db_id.to_be_bytes());
        self.bytes.push(byte);
        self.bytes.extend_from_slice(encoded);
        let value_key_bytes = self.bytes.len() - start;
        self.bytes.extend_from_slice(key);
        self.entries.push(PreparedEntry {
            bytes: start..self.bytes.len(),
            value_key_bytes,
            position,
        });
    }
}

impl Chunk for DocumentChunk {
    fn items(&self) -> usize {
        self.documents.len()
    }

    fn bytes_held(&self) -> usize {
        self.bytes.len()
    }
}

/// Reads, checks and encodes the documents of one database after a stored key.
pub(super) struct DocumentReader<'a> {
    pub(super) source: &'a Source,
    pub(super) db: &'a SourceDatabase,
    pub(super) compiled: &'a [Compiled],
    /// The indexes are built (they are not stale in the source).
    pub(super) build_indexes: bool,
    pub(super) safety_off: bool,
    pub(super) max_value_bytes: usize,
    pub(super) after: Option<Vec<u8>>,
}

impl DocumentReader<'_> {
    pub(super) fn run(&self, out: &SyncSender<DocumentChunk>) -> Result<()> {
        let txn = self.source.read()?;
        let entries = self
            .source
            .docs(&txn, self.db.record.id, self.after.as_deref())?;
        in_chunks(
            entries,
            out,
            |chunk: &mut DocumentChunk, stored_key, stored| {
                let key = &stored_key[DATABASE_ID_BYTES..];
                let key_range = chunk.push(stored_key);
                let verdict = if self.safety_off {
                    self.as_it_is(chunk, key, stored)
                } else {
                    self.checked(chunk, key, stored)
                };
                chunk.documents.push(PreparedDocument {
                    stored_key: key_range,
                    verdict,
                });
                Ok(())
            },
        )
    }

    /// The checks of one document (see the module doc) but its unique indexes, and
    /// when it passes, its value and index entries.
    fn checked(&self, chunk: &mut DocumentChunk, key: &[u8], stored: &[u8]) -> Verdict {
        let lossy = || String::from_utf8_lossy(key).into_owned();
        let Some((rev, value)) = split_format1_doc(stored) else {
            let refusal = Refusal {
                key: lossy(),
                rev: 0,
                error: format!(
                    "the stored value has {} bytes, fewer than a rev",
                    stored.len()
                ),
            };
            return refused(chunk, stored, refusal);
        };
        let refuse = |chunk: &mut DocumentChunk, error: String| {
            let refusal = Refusal {
                key: lossy(),
                rev,
                error,
            };
            refused(chunk, stored, refusal)
        };
        let key_text = match validate_key_bytes(key) {
            Ok(text) => text,
            Err(error) => return refuse(chunk, error.to_string()),
        };
        let last_seq = self.db.record.last_seq;
        if rev == 0 || rev > last_seq {
            return refuse(
                chunk,
                format!("rev {rev} is outside 1..={last_seq} (the database's last seq)"),
            );
        }
        if let Err(error) = validate_value(value, self.max_value_bytes) {
            return refuse(chunk, error.to_string());
        }
        let (bytes_before, entries_before) = (chunk.bytes.len(), chunk.entries.len());
        if self.build_indexes {
            for (position, index) in self.compiled.iter().enumerate() {
                let built = match index_value(value, &index.pointer) {
                    Ok(None) => continue,
                    Ok(Some(encoded)) => position_byte(position)
                        .map(|byte| (byte, encoded))
                        .map_err(|_| "no position for it".to_string()),
                    Err(reason) => Err(reason),
                };
                match built {
                    Ok((byte, encoded)) => chunk.push_entry(
                        self.db.record.id,
                        position,
                        byte,
                        &encoded,
                        key_text.as_bytes(),
                    ),
                    Err(reason) => {
                        chunk.bytes.truncate(bytes_before);
                        chunk.entries.truncate(entries_before);
                        return refuse(chunk, format!("index {:?}: {reason}", index.name));
                    }
                }
            }
        }
        let entries = entries_before..chunk.entries.len();
        let start = chunk.bytes.len();
        append_doc_value(&mut chunk.bytes, self.db.record.id, key, rev, value);
        Verdict::Move {
            value: start..chunk.bytes.len(),
            entries,
            stale: false,
        }
    }

    /// A document as it is (`safety_off`): its index entries where they can be built.
    fn as_it_is(&self, chunk: &mut DocumentChunk, key: &[u8], stored: &[u8]) -> Verdict {
        let (rev, value) = split_format1_doc(stored).unwrap_or((0, stored));
        let entries_before = chunk.entries.len();
        let mut stale = false;
        if self.build_indexes {
            match std::str::from_utf8(key) {
                Err(_) => stale = true,
                Ok(key_text) => {
                    for (position, index) in self.compiled.iter().enumerate() {
                        match (index_value(value, &index.pointer), position_byte(position)) {
                            (Ok(None), _) => {}
                            (Ok(Some(encoded)), Ok(byte)) => chunk.push_entry(
                                self.db.record.id,
                                position,
                                byte,
                                &encoded,
                                key_text.as_bytes(),
                            ),
                            _ => stale = true,
                        }
                    }
                }
            }
        }
        let entries = entries_before..chunk.entries.len();
        let start = chunk.bytes.len();
        append_doc_value(&mut chunk.bytes, self.db.record.id, key, rev, value);
        Verdict::Move {
            value: start..chunk.bytes.len(),
            entries,
            stale,
        }
    }
}

fn refused(chunk: &mut DocumentChunk, stored: &[u8], refusal: Refusal) -> Verdict {
    Verdict::Refuse {
        stored: chunk.push(stored),
        refusal,
    }
}

/// A format-1 document value: its rev, then the msgpack value.
fn split_format1_doc(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (rev, value) = stored.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*rev), value))
}

/// Change records with their checksums, and the bytes they point into.
#[derive(Default)]
pub(super) struct ChangeChunk {
    bytes: Vec<u8>,
    /// Each record's stored key and format-2 value.
    pub(super) records: Vec<(Range<usize>, Range<usize>)>,
}

impl ChangeChunk {
    pub(super) fn bytes(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    /// The stored key of the last record.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.records.last().map(|(key, _)| self.bytes(key))
    }
}

impl Chunk for ChangeChunk {
    fn items(&self) -> usize {
        self.records.len()
    }

    fn bytes_held(&self) -> usize {
        self.bytes.len()
    }
}

/// Reads the change records of one database after a stored key and gives each its
/// checksum; the bodies stay as they are.
pub(super) struct ChangeReader<'a> {
    pub(super) source: &'a Source,
    pub(super) db_id: u32,
    pub(super) after: Option<Vec<u8>>,
}

impl ChangeReader<'_> {
    pub(super) fn run(&self, out: &SyncSender<ChangeChunk>) -> Result<()> {
        let txn = self.source.read()?;
        let entries = self
            .source
            .changes(&txn, self.db_id, self.after.as_deref())?;
        in_chunks(entries, out, |chunk: &mut ChangeChunk, stored_key, body| {
            let seq = change_key_seq(stored_key)?;
            let start = chunk.bytes.len();
            chunk.bytes.extend_from_slice(stored_key);
            let key_end = chunk.bytes.len();
            append_change_record(&mut chunk.bytes, self.db_id, seq, body);
            chunk
                .records
                .push((start..key_end, key_end..chunk.bytes.len()));
            Ok(())
        })
    }
}
