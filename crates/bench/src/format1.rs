//! Format 1, frozen, for the `migrate` benchmark: a writer of a format-1 working
//! directory with raw heed, byte for byte in the layouts of the release at commit
//! 03ebda0 (`git show 03ebda0:crates/store/FORMAT.md`), and the way that release's
//! `find` resumed a page inside one index value. Nothing here uses cairn-store's format
//! code (but to decode a configuration record, whose layout both formats share), so that
//! nothing of format 2 pretends to be format 1.
//!
//! The directory holds one database of msgpack maps `{kind, n, body}` of 100 bytes,
//! with one index on `/kind`: every document holds the same value, so one value of the
//! index is held by all of them. Its change log is real: a put per document, a second
//! put for every tenth, and documents put then deleted. The tables format 1 created are
//! all there (`users`, `sessions` and `jobs` empty), `indexes` with DUP_SORT: one key per
//! (database, index, value), the document keys as its duplicates.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cairn_store::{DatabaseConfig, Document, IndexKey};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, DatabaseFlags, Env, EnvFlags, EnvOpenOptions, WithoutTls};
use rand::Rng;

use crate::data::random_key;

/// The database, its id and its one index.
pub const DATABASE: &str = "events";
const DATABASE_ID: u32 = 1;
pub const INDEX: &str = "by_kind";
const INDEX_FIELD: &str = "/kind";
const INDEX_POSITION: u8 = 0;
/// The value every document holds at the index.
pub const KIND: &str = "event";

/// Bytes of an `indexes` key before the encoded value: database id and position.
const INDEX_PREFIX_BYTES: usize = 5;
/// Format 1's tag of a string in an encoded index value (the UTF-8 bytes follow, with
/// no escaping and no terminator: the value is the rest of the key).
const TAG_TEXT: u8 = 0x40;
/// Version byte of a catalog record.
const CATALOG_RECORD_VERSION: u8 = 1;
/// Change-record operations.
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// Creation time of the store and of the database; change `seq` is stamped this + seq.
const CREATED_MS: u64 = 1_700_000_000_000;
const SERVICE_ID: [u8; 16] = [0xf1; 16];
const EPOCH: u64 = 0x0f0f_0001;
/// LMDB map size: 1 TiB of address space, as the store's.
const MAP_SIZE: usize = 1 << 40;

/// Payload bytes of a document's `body` (a msgpack bin 8), so that a value is 100 bytes.
const BODY_BYTES: usize = 74;
/// Every tenth document is put a second time; one document in a hundred more is put
/// then deleted.
const OVERWRITE_EVERY: usize = 10;
const DELETED_PER: usize = 100;

/// What was written.
pub struct Written {
    /// The documents' keys, in key order (the order of the index value's entries).
    pub keys: Vec<String>,
    /// Change records in the log (its last seq: nothing is trimmed).
    pub changes: u64,
    pub elapsed: Duration,
}

/// One change of the log to write, naming the key by its number: a put of a new random
/// body, or a delete.
enum Change {
    Put(usize),
    Delete(usize),
}

/// The tables of a format-1 store that the writer fills.
struct Tables {
    meta: Database<'static, Bytes, Bytes>,
    catalog: Database<'static, Bytes, Bytes>,
    docs: Database<'static, Bytes, Bytes>,
    changes: Database<'static, Bytes, Bytes>,
    configs: Database<'static, Bytes, Bytes>,
    indexes: Database<'static, Bytes, Bytes>,
}

/// Writes a format-1 working directory in `dir` (see the module doc) with `docs`
/// documents, `per_commit` changes per commit. Commits are not fsync'd (one sync at the
/// end): this is the benchmark's setup, not what it measures.
pub fn write(dir: &Path, docs: usize, per_commit: usize, rng: &mut impl Rng) -> Result<Written> {
    let start = Instant::now();
    let deleted = docs / DELETED_PER;
    let all_keys = unique_keys(docs + deleted, rng);
    let mut log: Vec<Change> = (0..docs).map(Change::Put).collect();
    log.extend((0..docs).step_by(OVERWRITE_EVERY).map(Change::Put));
    for extra in docs..docs + deleted {
        log.extend([Change::Put(extra), Change::Delete(extra)]);
    }

    let path = dir.join("store");
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE).max_dbs(16);
    // SAFETY: a fresh environment that nothing else opens while it is written; NO_SYNC
    // only risks this setup's data on a crash of the machine, and it is synced below.
    let env = unsafe {
        options.flags(EnvFlags::NO_SYNC);
        options.open(&path)
    }
    .with_context(|| format!("opening a heed environment in {}", path.display()))?;
    let written = fill(&env, &all_keys, &log, per_commit, rng);
    let synced = env.force_sync();
    env.prepare_for_closing().wait();
    let (doc_count, changes) = written?;
    synced?;
    ensure!(
        doc_count == docs as u64,
        "the format-1 writer left {doc_count} documents, expected {docs}"
    );
    let mut keys = all_keys;
    keys.truncate(docs);
    keys.sort_unstable();
    Ok(Written {
        keys,
        changes,
        elapsed: start.elapsed(),
    })
}

/// `count` distinct random keys. (No key is cloned: a million small copies freed among
/// the kept keys would leave the heap in pieces, and slow every allocation of the
/// finds measured later in this process.)
fn unique_keys(count: usize, rng: &mut impl Rng) -> Vec<String> {
    let mut keys: Vec<String> = (0..count).map(|_| random_key(rng)).collect();
    loop {
        let mut seen = HashSet::with_capacity(count);
        let repeated: Vec<usize> = (0..count)
            .filter(|&i| !seen.insert(keys[i].as_str()))
            .collect();
        if repeated.is_empty() {
            return keys;
        }
        for i in repeated {
            keys[i] = random_key(rng);
        }
    }
}

/// Creates the tables and writes everything; the documents left and the changes.
fn fill(
    env: &Env<WithoutTls>,
    keys: &[String],
    log: &[Change],
    per_commit: usize,
    rng: &mut impl Rng,
) -> Result<(u64, u64)> {
    let tables = create_tables(env)?;
    let mut seq = 0u64;
    let (mut doc_count, mut doc_bytes, mut log_bytes) = (0u64, 0u64, 0u64);
    let value_key = index_value_key(DATABASE_ID, INDEX_POSITION);
    for chunk in log.chunks(per_commit) {
        let mut wtxn = env.write_txn()?;
        for change in chunk {
            seq += 1;
            let change_key = [&DATABASE_ID.to_be_bytes()[..], &seq.to_be_bytes()].concat();
            let record = match *change {
                Change::Put(number) => {
                    let key = keys[number].as_bytes();
                    let value = document(number, rng)?;
                    let doc_key = doc_key(DATABASE_ID, key);
                    let stored = [&seq.to_be_bytes()[..], &value].concat();
                    if tables.docs.get(&wtxn, &doc_key)?.is_none() {
                        doc_count += 1;
                        doc_bytes += (doc_key.len() + stored.len()) as u64;
                        // The value at the index never changes: an overwrite keeps its entry.
                        tables.indexes.put(&mut wtxn, &value_key, key)?;
                    }
                    tables.docs.put(&mut wtxn, &doc_key, &stored)?;
                    change_record(OP_PUT, seq, key, &value)?
                }
                Change::Delete(number) => {
                    let key = keys[number].as_bytes();
                    let doc_key = doc_key(DATABASE_ID, key);
                    let stored = tables
                        .docs
                        .get(&wtxn, &doc_key)?
                        .context("the format-1 writer deletes a document it put")?;
                    doc_count -= 1;
                    doc_bytes -= (doc_key.len() + stored.len()) as u64;
                    tables.docs.delete(&mut wtxn, &doc_key)?;
                    tables
                        .indexes
                        .delete_one_duplicate(&mut wtxn, &value_key, key)?;
                    change_record(OP_DELETE, seq, key, &[])?
                }
            };
            log_bytes += (change_key.len() + record.len()) as u64;
            tables.changes.put(&mut wtxn, &change_key, &record)?;
        }
        wtxn.commit()?;
    }
    let mut wtxn = env.write_txn()?;
    let record = catalog_record(seq, doc_count, doc_bytes, log_bytes);
    tables
        .catalog
        .put(&mut wtxn, DATABASE.as_bytes(), &record)?;
    tables
        .configs
        .put(&mut wtxn, DATABASE.as_bytes(), &config_record()?)?;
    tables.meta.put(
        &mut wtxn,
        b"next_database_id",
        &(DATABASE_ID + 1).to_be_bytes(),
    )?;
    wtxn.commit()?;
    Ok((doc_count, seq))
}

/// Creates format 1's nine tables and its meta, as its `initialise` did, in one commit.
fn create_tables(env: &Env<WithoutTls>) -> Result<Tables> {
    let wtxn = env.write_txn()?;
    let tables = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
            let mut plain = Vec::new();
            for name in [
                "meta", "catalog", "docs", "changes", "users", "sessions", "jobs", "configs",
            ] {
                plain.push(opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?);
            }
            let indexes = opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name("indexes")
                .flags(DatabaseFlags::DUP_SORT)
                .create(wtxn)?;
            let meta = plain[0];
            meta.put(wtxn, b"format_version", &1u32.to_be_bytes())?;
            meta.put(wtxn, b"service_id", &SERVICE_ID)?;
            meta.put(wtxn, b"created_ms", &CREATED_MS.to_be_bytes())?;
            meta.put(wtxn, b"next_database_id", &DATABASE_ID.to_be_bytes())?;
            meta.put(wtxn, b"epoch", &EPOCH.to_be_bytes())?;
            Ok(CommitOrAbort::<_, ()>::Commit((
                meta, plain[1], plain[2], plain[3], plain[7], indexes,
            )))
        })?
        .unwrap_commit();
    let (meta, catalog, docs, changes, configs, indexes) = tables;
    Ok(Tables {
        meta,
        catalog,
        docs,
        changes,
        configs,
        indexes,
    })
}

/// Key of `docs`: the database id, then the document key.
fn doc_key(db_id: u32, key: &[u8]) -> Vec<u8> {
    [&db_id.to_be_bytes()[..], key].concat()
}

/// Key of `indexes` for the one value in the index at `position` of database `db_id`:
/// database id ‖ position ‖ 0x40 ‖ the string.
fn index_value_key(db_id: u32, position: u8) -> Vec<u8> {
    let mut out = db_id.to_be_bytes().to_vec();
    out.extend_from_slice(&[position, TAG_TEXT]);
    out.extend_from_slice(KIND.as_bytes());
    out
}

/// A change record: op, time (ms), key length (u16), key, then a put's value.
fn change_record(op: u8, seq: u64, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![op];
    out.extend_from_slice(&(CREATED_MS + seq).to_be_bytes());
    out.extend_from_slice(&u16::try_from(key.len())?.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Ok(out)
}

/// The catalog record (69 bytes) of the database, no retention.
fn catalog_record(last_seq: u64, doc_count: u64, doc_bytes: u64, log_bytes: u64) -> Vec<u8> {
    let mut out = vec![CATALOG_RECORD_VERSION];
    out.extend_from_slice(&DATABASE_ID.to_be_bytes());
    for field in [
        CREATED_MS, last_seq, 0, doc_count, doc_bytes, log_bytes, 0, 0,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out
}

/// A msgpack fixstr (at most 31 bytes).
fn push_str(out: &mut Vec<u8>, text: &str) -> Result<()> {
    ensure!(text.len() < 32, "{text:?} is too long for a msgpack fixstr");
    out.push(0xa0 | u8::try_from(text.len())?);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The configuration record: `{offline: false, indexes: [{name, field, unique: false}],
/// indexes_stale: false}`, the map format 1 wrote with rmp-serde.
fn config_record() -> Result<Vec<u8>> {
    const FALSE: u8 = 0xc2;
    let mut out = vec![0x83];
    push_str(&mut out, "offline")?;
    out.push(FALSE);
    push_str(&mut out, "indexes")?;
    out.extend_from_slice(&[0x91, 0x83]);
    for (name, text) in [("name", INDEX), ("field", INDEX_FIELD)] {
        push_str(&mut out, name)?;
        push_str(&mut out, text)?;
    }
    push_str(&mut out, "unique")?;
    out.push(FALSE);
    push_str(&mut out, "indexes_stale")?;
    out.push(FALSE);
    Ok(out)
}

/// Document number `n`: the msgpack map `{kind: "event", n: n (u32), body: bin 8 of
/// random bytes}`, 100 bytes.
fn document(n: usize, rng: &mut impl Rng) -> Result<Vec<u8>> {
    let mut out = vec![0x83];
    push_str(&mut out, "kind")?;
    push_str(&mut out, KIND)?;
    push_str(&mut out, "n")?;
    out.push(0xce);
    out.extend_from_slice(&u32::try_from(n)?.to_be_bytes());
    push_str(&mut out, "body")?;
    out.extend_from_slice(&[0xc4, u8::try_from(BODY_BYTES)?]);
    let mut body = [0u8; BODY_BYTES];
    rng.fill(&mut body[..]);
    out.extend_from_slice(&body);
    Ok(out)
}

/// A format-1 directory opened with raw heed to read pages as format 1's `find` did.
pub struct Reader {
    env: Env<WithoutTls>,
    catalog: Database<'static, Bytes, Bytes>,
    configs: Database<'static, Bytes, Bytes>,
    docs: Database<'static, Bytes, Bytes>,
    indexes: Database<'static, Bytes, Bytes>,
}

impl Reader {
    /// Opens the environment of the format-1 working directory `dir`.
    pub fn open(dir: &Path) -> Result<Reader> {
        let path = dir.join("store");
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(16);
        // SAFETY: the bench's own scratch environment; nothing writes it any more.
        let env = unsafe { options.open(&path) }
            .with_context(|| format!("opening the format-1 environment {}", path.display()))?;
        let rtxn = env.read_txn()?;
        let tables = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
                let mut tables = Vec::new();
                for name in ["catalog", "configs", "docs", "indexes"] {
                    tables.push(
                        opener
                            .open_database::<Bytes, Bytes>(rtxn, Some(name))?
                            .with_context(|| format!("the format-1 store has no {name} table"))?,
                    );
                }
                Ok(CommitOrAbort::<_, ()>::Commit((
                    tables[0], tables[1], tables[2], tables[3],
                )))
            })?
            .unwrap_commit();
        let (catalog, configs, docs, indexes) = tables;
        Ok(Reader {
            env,
            catalog,
            configs,
            docs,
            indexes,
        })
    }

    /// One page of `limit` documents of the index value, resuming strictly after the
    /// document key `after` (from the first without one), as format 1's `find` did in
    /// its own read transaction: the database's id from its catalog record, the index's
    /// position from its configuration (a msgpack map both formats share, decoded with
    /// cairn-store as format 1 did with the same rmp-serde code), then from the value's
    /// first duplicate, a step over each duplicate up to the cursor's key (heed has no
    /// MDB_GET_BOTH_RANGE), and each document of the page read from `docs`, with the
    /// value decoded from the key.
    pub fn find_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(IndexKey, Document)>> {
        let rtxn = self.env.read_txn()?;
        let record = self
            .catalog
            .get(&rtxn, DATABASE.as_bytes())?
            .context("the format-1 store has no catalog record")?;
        let id = record
            .get(1..5)
            .context("a catalog record shorter than its id")?;
        let id = u32::from_be_bytes(id.try_into()?);
        let config = self
            .configs
            .get(&rtxn, DATABASE.as_bytes())?
            .context("the format-1 store has no configuration record")?;
        let position = DatabaseConfig::decode(config)?
            .indexes
            .iter()
            .position(|def| def.name == INDEX)
            .with_context(|| format!("the configuration has no index {INDEX:?}"))?;
        let value_key = index_value_key(id, u8::try_from(position)?);
        let bounds = (
            Bound::Included(value_key.as_slice()),
            Bound::Included(value_key.as_slice()),
        );
        let mut page = Vec::with_capacity(limit);
        for entry in self.indexes.range(&rtxn, &bounds)? {
            let (key, dup) = entry?;
            if let Some(after) = after {
                if key == value_key.as_slice() && dup <= after.as_bytes() {
                    continue;
                }
            }
            if page.len() == limit {
                break;
            }
            let name = std::str::from_utf8(dup).context("a document key is not UTF-8")?;
            let stored = self
                .docs
                .get(&rtxn, &doc_key(id, dup))?
                .with_context(|| format!("the index lists {name:?}, which does not exist"))?;
            let (rev, value) = stored
                .split_first_chunk::<8>()
                .context("a document shorter than its rev")?;
            page.push((
                decode_text(&key[INDEX_PREFIX_BYTES..])?,
                Document {
                    key: name.to_string(),
                    rev: u64::from_be_bytes(*rev),
                    value: value.to_vec(),
                },
            ));
        }
        Ok(page)
    }
}

/// A string value of an index in format 1's encoding: its tag, then its UTF-8 bytes.
fn decode_text(encoded: &[u8]) -> Result<IndexKey> {
    match encoded.split_first() {
        Some((&TAG_TEXT, text)) => Ok(IndexKey::Text(String::from_utf8(text.to_vec())?)),
        _ => anyhow::bail!("an index value that is not a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::migrate::{self, MigrateOptions};
    use cairn_store::{IndexQuery, Store, StoreOptions};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn documents_are_100_byte_msgpack_maps_with_the_indexed_field() {
        let value = document(7, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(value.len(), 100);
        cairn_store::validate_value(&value, 100).expect("cairn-store accepts it");
        let decoded = rmpv::decode::read_value(&mut &value[..]).unwrap();
        let field = |name: &str| {
            let map = decoded.as_map().unwrap();
            map.iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(field("kind").as_str(), Some(KIND));
        assert_eq!(field("n").as_u64(), Some(7));
    }

    #[test]
    fn the_configuration_is_format_1s_map() {
        let config = DatabaseConfig::decode(&config_record().unwrap()).unwrap();
        assert!(!config.offline && !config.indexes_stale);
        assert_eq!(config.indexes.len(), 1);
        assert_eq!(
            (
                config.indexes[0].name.as_str(),
                config.indexes[0].field.as_str()
            ),
            (INDEX, INDEX_FIELD)
        );
        assert!(!config.indexes[0].unique);
    }

    /// The written directory is format 1 to the migration, which moves all of it; then
    /// format 1's pages and format 2's are the same at every depth.
    #[test]
    fn a_written_directory_migrates_and_both_formats_page_alike() {
        let scratch = tempfile::tempdir().unwrap();
        let (src, dest) = (scratch.path().join("f1"), scratch.path().join("f2"));
        let docs = 250;
        let written = write(&src, docs, 64, &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(written.keys.len(), docs);
        assert_eq!(written.changes, 250 + 25 + 2 * 2);
        assert_eq!(migrate::directory_format(&src).unwrap(), 1);
        let summary =
            migrate::migrate(&src, &dest, &MigrateOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(summary.refused(), 0);
        let db = &summary.databases[0];
        assert_eq!((db.documents, db.changes, db.last_seq), (250, 279, 279));
        assert!(!db.indexes_stale);
        let counts = migrate::counts(&src, &dest).unwrap();
        assert_eq!(counts[0].dest, Some(counts[0].source));

        let store = Store::open_read_only(&dest, StoreOptions::default()).unwrap();
        let reader = Reader::open(&src).unwrap();
        for depth in [0usize, 1, 124, 240, 249] {
            let after = depth.checked_sub(1).map(|i| written.keys[i].clone());
            let old = reader.find_page(after.as_deref(), 10).unwrap();
            let query = IndexQuery {
                after: after.map(|key| (IndexKey::Text(KIND.to_string()), key)),
                ..IndexQuery::exact(INDEX, IndexKey::Text(KIND.to_string()), 10)
            };
            let new = store.find(DATABASE, &query).unwrap().docs;
            assert_eq!(old, new, "depth {depth}");
            assert_eq!(old.len(), 10.min(docs - depth));
            assert_eq!(old[0].1.key, written.keys[depth]);
        }
    }
}
