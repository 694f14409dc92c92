//! The deep check of a copied environment: for every database, its documents and its
//! change log must agree with its catalog record and with each other. Counts and bytes
//! match the catalog; the log holds every seq from the oldest kept to `last_seq` with no
//! gap; a document's rev is the seq of its newest change, which is a put of the same
//! value; a key whose newest change is a delete has no document, and one whose newest
//! change is a put has one. Documents or changes of no database are reported too.

use std::collections::HashMap;
use std::ops::Bound;

use super::progress::Tracker;
use crate::error::{Result, StoreError};
use crate::format::{
    change_key, change_key_seq, database_bounds, doc_key, doc_key_name, read_change_record,
    read_doc_value, CatalogRecord, ChangeOp,
};
use crate::store::Snapshot;

/// Most problems reported about one database; the rest are counted.
const MAX_PROBLEMS_PER_DATABASE: usize = 10;

/// Problems of one database (or of entries that belong to none).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    shown: Vec<String>,
    hidden: usize,
}

impl Findings {
    fn add(&mut self, problem: String) {
        if self.shown.len() < MAX_PROBLEMS_PER_DATABASE {
            self.shown.push(problem);
        } else {
            self.hidden += 1;
        }
    }

    /// The problems, with a last line counting those left out.
    pub(crate) fn into_lines(mut self) -> Vec<String> {
        if self.hidden > 0 {
            self.shown
                .push(format!("and {} more problems like these", self.hidden));
        }
        self.shown
    }
}

/// Every database of the snapshot in name order, with its catalog record.
pub(crate) fn catalog(snapshot: &Snapshot) -> Result<Vec<(String, CatalogRecord)>> {
    let mut out = Vec::new();
    for entry in snapshot.tables.catalog.iter(&snapshot.txn)? {
        let (name, bytes) = entry?;
        out.push((name.to_string(), CatalogRecord::decode(bytes)?));
    }
    Ok(out)
}

/// What `check_database` found, and how many entries it walked.
#[derive(Debug)]
pub(crate) struct Checked {
    pub findings: Findings,
    pub docs: u64,
    pub changes: u64,
}

/// Checks one database's documents and change log against their checksums, its record
/// and each other.
pub(crate) fn check_database(
    snapshot: &Snapshot,
    name: &str,
    record: &CatalogRecord,
    tracker: &mut Tracker,
) -> Result<Checked> {
    let mut findings = Findings::default();
    let docs = check_documents(snapshot, name, record, tracker, &mut findings)?;
    if docs != record.doc_count {
        findings.add(format!(
            "{docs} documents, its catalog says {}",
            record.doc_count
        ));
    }
    let changes = check_log(snapshot, name, record, tracker, &mut findings)?;
    Ok(Checked {
        findings,
        docs,
        changes,
    })
}

/// Walks the documents; returns how many there are.
fn check_documents(
    snapshot: &Snapshot,
    name: &str,
    record: &CatalogRecord,
    tracker: &mut Tracker,
    findings: &mut Findings,
) -> Result<u64> {
    let (txn, tables) = (&snapshot.txn, snapshot.tables);
    let (low, high) = database_bounds(record.id);
    let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
    let (mut count, mut bytes) = (0u64, 0u64);
    for entry in tables.docs.range(txn, &bounds)? {
        let (stored_key, stored) = entry?;
        count += 1;
        let size = (stored_key.len() + stored.len()) as u64;
        bytes += size;
        tracker.advance(size)?;
        let key = doc_key_name(stored_key)?;
        let (rev, value) = match read_doc_value(name, record.id, key, stored) {
            Ok(read) => read,
            Err(error) => {
                findings.add(damage(error));
                continue;
            }
        };
        if rev == 0 || rev > record.last_seq {
            findings.add(format!(
                "document {key:?} has rev {rev}, outside 1..={}",
                record.last_seq
            ));
            continue;
        }
        if rev <= record.trimmed_through {
            continue; // its change was trimmed by retention
        }
        let change = tables.changes.get(txn, &change_key(record.id, rev))?;
        let agrees = match change.map(|c| read_change_record(name, record.id, rev, c)) {
            Some(Ok(c)) => c.op == ChangeOp::Put && c.key == key && c.value == Some(value),
            // A damaged change is reported by the walk of the log.
            Some(Err(_)) => true,
            None => false,
        };
        if !agrees {
            findings.add(format!(
                "document {key:?} (rev {rev}) does not match change {rev} of the log"
            ));
        }
    }
    if bytes != record.doc_bytes {
        findings.add(format!(
            "documents take {bytes} bytes, its catalog says {}",
            record.doc_bytes
        ));
    }
    Ok(count)
}

/// Walks the change log in seq order; returns how many entries it has.
fn check_log(
    snapshot: &Snapshot,
    name: &str,
    record: &CatalogRecord,
    tracker: &mut Tracker,
    findings: &mut Findings,
) -> Result<u64> {
    let (txn, tables) = (&snapshot.txn, snapshot.tables);
    let (low, high) = database_bounds(record.id);
    let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
    let mut next = record.trimmed_through + 1;
    let (mut count, mut bytes) = (0u64, 0u64);
    // Keys with no document whose newest change so far is a put (a lost document
    // unless a later delete follows).
    let mut put_but_absent: HashMap<String, u64> = HashMap::new();
    for entry in tables.changes.range(txn, &bounds)? {
        let (stored_key, stored) = entry?;
        count += 1;
        let size = (stored_key.len() + stored.len()) as u64;
        bytes += size;
        tracker.advance(size)?;
        let seq = change_key_seq(stored_key)?;
        if seq < next {
            findings.add(format!(
                "change {seq} is older than the oldest kept ({})",
                record.trimmed_through + 1
            ));
        } else if seq > next {
            findings.add(format!(
                "the change log is missing seqs {next}..={}",
                seq - 1
            ));
        }
        next = next.max(seq + 1);
        let change = match read_change_record(name, record.id, seq, stored) {
            Ok(change) => change,
            Err(error) => {
                findings.add(damage(error));
                continue;
            }
        };
        let doc = tables.docs.get(txn, &doc_key(record.id, change.key))?;
        // A damaged document is reported by the walk of the documents.
        let rev = doc.map(|stored| {
            read_doc_value(name, record.id, change.key, stored).map_or(u64::MAX, |(rev, _)| rev)
        });
        match (change.op, rev) {
            (ChangeOp::Put, Some(rev)) if rev < seq => findings.add(format!(
                "document {:?} has rev {rev}, older than its change {seq}",
                change.key
            )),
            (ChangeOp::Put, None) => {
                put_but_absent.insert(change.key.to_string(), seq);
            }
            (ChangeOp::Delete, Some(rev)) if rev <= seq => findings.add(format!(
                "document {:?} (rev {rev}) exists though change {seq} deleted it",
                change.key
            )),
            (ChangeOp::Delete, None) => {
                put_but_absent.remove(change.key);
            }
            _ => {}
        }
    }
    if next - 1 != record.last_seq {
        findings.add(format!(
            "the change log ends at seq {}, its catalog says last_seq {}",
            next - 1,
            record.last_seq
        ));
    }
    let mut lost: Vec<(u64, String)> = put_but_absent
        .into_iter()
        .map(|(key, seq)| (seq, key))
        .collect();
    lost.sort();
    for (seq, key) in lost {
        findings.add(format!(
            "document {key:?} is missing though change {seq} put it"
        ));
    }
    if bytes != record.log_bytes {
        findings.add(format!(
            "the change log takes {bytes} bytes, its catalog says {}",
            record.log_bytes
        ));
    }
    Ok(count)
}

/// A finding for a record that fails its checksum (or does not decode).
fn damage(error: StoreError) -> String {
    match error {
        StoreError::Damaged { what, .. } => {
            format!("{what} fails its checksum: the bytes on disk are damaged")
        }
        other => other.to_string(),
    }
}

/// Entries of the `docs` and `changes` tables that belong to no database in the catalog.
pub(crate) fn orphans(
    snapshot: &Snapshot,
    counted_docs: u64,
    counted_changes: u64,
) -> Result<Vec<String>> {
    let (txn, tables) = (&snapshot.txn, snapshot.tables);
    let mut out = Vec::new();
    let docs = tables.docs.len(txn)?;
    if docs != counted_docs {
        out.push(format!(
            "{} documents belong to no database",
            docs.abs_diff(counted_docs)
        ));
    }
    let changes = tables.changes.len(txn)?;
    if changes != counted_changes {
        out.push(format!(
            "{} change-log entries belong to no database",
            changes.abs_diff(counted_changes)
        ));
    }
    Ok(out)
}
