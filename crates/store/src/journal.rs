//! The journal: every committed write transaction of a leader, as the table-level puts
//! and deletes it made, one entry per group commit keyed by a service-wide journal seq.
//! A mirror applies the entries in order and copies them into its own journal at the
//! same seqs, so its environment holds exactly what the leader's holds (the `journal`
//! table of FORMAT.md). This file is the entry's byte layout and what reading it
//! needs: the tables an entry may name, the operations, the checksum and the lineage
//! check a mirror's position goes through before it follows.

use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::format::table;

/// Every table of the environment, with the byte a journal entry names it by (its
/// place in `ALL`). The journal itself is the last and is never journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableId {
    Meta,
    Catalog,
    Docs,
    Changes,
    Users,
    Sessions,
    Jobs,
    Configs,
    Indexes,
    Sync,
    Journal,
}

impl TableId {
    /// Every table, in the order of their ids (and of `Tables::from_handles`).
    pub const ALL: [TableId; 11] = [
        TableId::Meta,
        TableId::Catalog,
        TableId::Docs,
        TableId::Changes,
        TableId::Users,
        TableId::Sessions,
        TableId::Jobs,
        TableId::Configs,
        TableId::Indexes,
        TableId::Sync,
        TableId::Journal,
    ];

    /// The table's LMDB name.
    pub const fn name(self) -> &'static str {
        match self {
            TableId::Meta => table::META,
            TableId::Catalog => table::CATALOG,
            TableId::Docs => table::DOCS,
            TableId::Changes => table::CHANGES,
            TableId::Users => table::USERS,
            TableId::Sessions => table::SESSIONS,
            TableId::Jobs => table::JOBS,
            TableId::Configs => table::CONFIGS,
            TableId::Indexes => table::INDEXES,
            TableId::Sync => table::SYNC,
            TableId::Journal => table::JOURNAL,
        }
    }

    fn id(self) -> u8 {
        self as u8
    }

    fn from_id(id: u8) -> Result<TableId> {
        TableId::ALL
            .get(usize::from(id))
            .copied()
            .filter(|t| *t != TableId::Journal)
            .ok_or_else(|| corrupt(format!("an operation names table {id}")))
    }
}

/// One operation of a journal entry, borrowing the entry's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp<'a> {
    Put {
        table: TableId,
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        table: TableId,
        key: &'a [u8],
    },
    DeleteRange {
        table: TableId,
        low: Bound<&'a [u8]>,
        high: Bound<&'a [u8]>,
    },
    Clear {
        table: TableId,
    },
}

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;
const OP_CLEAR: u8 = 4;

const BOUND_UNBOUNDED: u8 = 0;
const BOUND_INCLUDED: u8 = 1;
const BOUND_EXCLUDED: u8 = 2;

/// The operations of one transaction as they are made, encoded at once.
#[derive(Debug, Default)]
pub(crate) struct OpsBuffer {
    bytes: Vec<u8>,
}

impl OpsBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("LMDB keys and values fit in u32");
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(bytes);
    }

    fn bound(&mut self, bound: Bound<&[u8]>) {
        match bound {
            Bound::Unbounded => self.bytes.push(BOUND_UNBOUNDED),
            Bound::Included(key) => {
                self.bytes.push(BOUND_INCLUDED);
                self.bytes(key);
            }
            Bound::Excluded(key) => {
                self.bytes.push(BOUND_EXCLUDED);
                self.bytes(key);
            }
        }
    }

    pub(crate) fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(&[table.id(), OP_PUT]);
        self.bytes(key);
        self.bytes(value);
    }

    pub(crate) fn delete(&mut self, table: TableId, key: &[u8]) {
        self.bytes.extend_from_slice(&[table.id(), OP_DELETE]);
        self.bytes(key);
    }

    pub(crate) fn delete_range(&mut self, table: TableId, low: Bound<&[u8]>, high: Bound<&[u8]>) {
        self.bytes.extend_from_slice(&[table.id(), OP_DELETE_RANGE]);
        self.bound(low);
        self.bound(high);
    }

    pub(crate) fn clear(&mut self, table: TableId) {
        self.bytes.extend_from_slice(&[table.id(), OP_CLEAR]);
    }
}

/// Bytes of an entry's header: CRC-32C (u32), epoch (u64), time (u64), start (u64).
pub const ENTRY_HEADER_BYTES: usize = 4 + 8 + 8 + 8;

/// The key of the entry with journal seq `seq`.
pub fn entry_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The journal seq of a stored key.
pub fn entry_seq(key: &[u8]) -> Result<u64> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(format!("a key of {} bytes", key.len())))
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: table::JOURNAL,
        reason,
    }
}

/// The header of a stored entry, the fields a mirror's position is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// The CRC-32C of the entry's key and of everything after the checksum.
    pub crc: u32,
    /// The change-log epoch of the service when the entry was written.
    pub epoch: u64,
    /// When the transaction committed (ms since the Unix epoch).
    pub time_ms: u64,
    /// How many bytes of entries the journal held before this one since it began: the
    /// journal keeps what lies within its retention from the newest entry's end.
    pub start: u64,
}

impl EntryHeader {
    pub fn decode(value: &[u8]) -> Result<EntryHeader> {
        if value.len() < ENTRY_HEADER_BYTES {
            return Err(corrupt(format!("an entry of {} bytes", value.len())));
        }
        let u64_at = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().expect("8"));
        Ok(EntryHeader {
            crc: u32::from_be_bytes(value[0..4].try_into().expect("4")),
            epoch: u64_at(4),
            time_ms: u64_at(12),
            start: u64_at(20),
        })
    }

    /// Where the journal's bytes end after the entry of `len` bytes with this header.
    pub fn end(&self, len: usize) -> u64 {
        self.start + len as u64
    }
}

/// Encodes the entry `seq` holding `ops`.
pub(crate) fn encode_entry(
    seq: u64,
    epoch: u64,
    time_ms: u64,
    start: u64,
    ops: &OpsBuffer,
) -> Vec<u8> {
    let mut value = Vec::with_capacity(ENTRY_HEADER_BYTES + ops.bytes.len());
    value.extend_from_slice(&[0; 4]);
    value.extend_from_slice(&epoch.to_be_bytes());
    value.extend_from_slice(&time_ms.to_be_bytes());
    value.extend_from_slice(&start.to_be_bytes());
    value.extend_from_slice(&ops.bytes);
    let crc = entry_crc(seq, &value[4..]);
    value[0..4].copy_from_slice(&crc.to_be_bytes());
    value
}

fn entry_crc(seq: u64, body: &[u8]) -> u32 {
    crate::checksum::crc32c_of(&[&entry_key(seq), body])
}

/// Checks the entry `seq`'s checksum and returns its header: a damaged entry (or one
/// moved to another seq) is `Corrupt`, never applied.
pub fn check_entry(seq: u64, value: &[u8]) -> Result<EntryHeader> {
    let header = EntryHeader::decode(value)?;
    if entry_crc(seq, &value[4..]) != header.crc {
        tracing::error!(seq, "a journal entry fails its checksum");
        return Err(corrupt(format!(
            "entry {seq} fails its checksum: the bytes are damaged"
        )));
    }
    Ok(header)
}

/// The operations of a checked entry, in the order they were made.
pub fn entry_ops(value: &[u8]) -> Result<Vec<JournalOp<'_>>> {
    let mut reader = Reader {
        rest: value.get(ENTRY_HEADER_BYTES..).unwrap_or_default(),
    };
    let mut ops = Vec::new();
    while !reader.rest.is_empty() {
        let table = TableId::from_id(reader.byte()?)?;
        let op = match reader.byte()? {
            OP_PUT => JournalOp::Put {
                table,
                key: reader.bytes()?,
                value: reader.bytes()?,
            },
            OP_DELETE => JournalOp::Delete {
                table,
                key: reader.bytes()?,
            },
            OP_DELETE_RANGE => JournalOp::DeleteRange {
                table,
                low: reader.bound()?,
                high: reader.bound()?,
            },
            OP_CLEAR => JournalOp::Clear { table },
            other => return Err(corrupt(format!("an operation of kind {other}"))),
        };
        ops.push(op);
    }
    Ok(ops)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupt("an entry ends inside an operation".to_string()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }

    fn bound(&mut self) -> Result<Bound<&'a [u8]>> {
        match self.byte()? {
            BOUND_UNBOUNDED => Ok(Bound::Unbounded),
            BOUND_INCLUDED => Ok(Bound::Included(self.bytes()?)),
            BOUND_EXCLUDED => Ok(Bound::Excluded(self.bytes()?)),
            other => Err(corrupt(format!("a range bound of kind {other}"))),
        }
    }
}

/// Where a mirror stands in a leader's journal: the seq of the last entry it applied
/// and that entry's checksum and epoch (`None` at seq 0, before any entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPosition {
    pub seq: u64,
    pub fingerprint: Option<(u32, u64)>,
}

/// How a mirror's position stands against a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    /// The journal holds the position's entry (or begins right after it): the mirror
    /// follows on from it.
    Continues,
    /// The journal no longer holds the entries after the position (retention): the
    /// mirror must bootstrap again.
    Compacted { first: u64 },
    /// The position is past the journal's head, or its entry is another one (a restore,
    /// another service): the histories differ.
    Diverged { head: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_refuse_damage() {
        let mut ops = OpsBuffer::default();
        ops.put(TableId::Docs, b"k", b"v");
        ops.delete(TableId::Users, b"alice");
        ops.delete_range(
            TableId::Changes,
            Bound::Included(b"a"),
            Bound::Excluded(b"b"),
        );
        ops.delete_range(TableId::Indexes, Bound::Unbounded, Bound::Included(b"z"));
        ops.clear(TableId::Jobs);
        let entry = encode_entry(7, 42, 1000, 99, &ops);
        let header = check_entry(7, &entry).unwrap();
        assert_eq!((header.epoch, header.time_ms, header.start), (42, 1000, 99));
        assert_eq!(header.end(entry.len()), 99 + entry.len() as u64);
        let decoded = entry_ops(&entry).unwrap();
        assert_eq!(
            decoded,
            vec![
                JournalOp::Put {
                    table: TableId::Docs,
                    key: b"k",
                    value: b"v"
                },
                JournalOp::Delete {
                    table: TableId::Users,
                    key: b"alice"
                },
                JournalOp::DeleteRange {
                    table: TableId::Changes,
                    low: Bound::Included(b"a"),
                    high: Bound::Excluded(b"b")
                },
                JournalOp::DeleteRange {
                    table: TableId::Indexes,
                    low: Bound::Unbounded,
                    high: Bound::Included(b"z")
                },
                JournalOp::Clear {
                    table: TableId::Jobs
                },
            ]
        );
        // Another seq, a flipped bit, a cut entry: refused.
        assert!(check_entry(8, &entry).is_err());
        let mut flipped = entry.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(check_entry(7, &flipped).is_err());
        assert!(check_entry(7, &entry[..10]).is_err());
        assert!(entry_ops(&entry[..entry.len() - 1]).is_err());
    }

    #[test]
    fn table_ids_follow_all() {
        for (at, table) in TableId::ALL.iter().enumerate() {
            assert_eq!(usize::from(table.id()), at);
        }
        assert!(TableId::from_id(TableId::Journal.id()).is_err());
        assert!(TableId::from_id(200).is_err());
    }
}
