//! The on-disk format: the LMDB tables of the environment and the byte layout of every
//! key and record in them. `FORMAT.md` beside this crate documents the same layouts; the
//! two must change together, with a new `FORMAT_VERSION` and a migration step.

use serde::{Deserialize, Serialize};

use crate::checksum::crc32c_of as checksum;
use crate::error::{Result, StoreError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// Names of the LMDB tables (named databases) in the environment.
pub mod table {
    /// Service-wide facts: format version, service id, creation time, id counters.
    pub const META: &str = "meta";
    /// One record per database, keyed by its name.
    pub const CATALOG: &str = "catalog";
    /// Every document of every database, keyed by database id and document key.
    pub const DOCS: &str = "docs";
    /// The change logs of every database, keyed by database id and sequence number.
    pub const CHANGES: &str = "changes";
    /// The service's users, keyed by name.
    pub const USERS: &str = "users";
    /// Login sessions, keyed by the SHA-256 of their token.
    pub const SESSIONS: &str = "sessions";
    /// Background jobs, keyed by id (u64 BE).
    pub const JOBS: &str = "jobs";
    /// One configuration record per database (msgpack map), keyed by its name.
    pub const CONFIGS: &str = "configs";
    /// Secondary index entries: database id, index position, encoded value and
    /// document key as the key, an empty value.
    pub const INDEXES: &str = "indexes";
    /// Where each database stands in the change log of the service it follows or was
    /// migrated from (msgpack map), keyed by its name.
    pub const SYNC: &str = "sync";
    /// The journal: every committed transaction's table-level writes, keyed by journal
    /// seq (u64 BE), for mirrors (see `crate::journal`).
    pub const JOURNAL: &str = "journal";
}

/// Keys of the `meta` table.
pub mod meta_key {
    /// u32 big-endian: the format version.
    pub const FORMAT_VERSION: &str = "format_version";
    /// 16 random bytes chosen when the store is created.
    pub const SERVICE_ID: &str = "service_id";
    /// u64 big-endian: creation time in milliseconds since the Unix epoch.
    pub const CREATED_MS: &str = "created_ms";
    /// u32 big-endian: the id the next created database gets.
    pub const NEXT_DATABASE_ID: &str = "next_database_id";
    /// u64 big-endian: the id the next created job gets (1 when absent).
    pub const NEXT_JOB_ID: &str = "next_job_id";
    /// u64 big-endian: the change-log epoch, drawn at creation and again at each
    /// restore (0 when absent).
    pub const EPOCH: &str = "epoch";
    /// msgpack map: the service status an admin set (READ_WRITE when absent).
    pub const STATUS: &str = "status";
    /// msgpack map: where a migrated store came from and how far its migration went
    /// (absent in a store that was created, not migrated).
    pub const MIGRATION: &str = "migration";
    /// msgpack map: the service this one follows while a follower (`cairn-sync`) is
    /// attached, i.e. migration mode (absent otherwise).
    pub const FOLLOW: &str = "follow";
    /// u64 big-endian: when the last probe write committed (absent until one did).
    pub const PROBE: &str = "probe";
}

/// Size of the database id that prefixes keys of `docs` and `changes`.
pub const DATABASE_ID_BYTES: usize = 4;

/// A change-log operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Put = 1,
    Delete = 2,
}

/// How long a database's change log is kept. `None` keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep at most this many of the newest changes.
    pub max_changes: Option<u64>,
    /// Drop changes older than this many seconds.
    pub max_age_secs: Option<u64>,
}

/// The catalog record of one database (value of the `catalog` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRecord {
    pub id: u32,
    pub created_ms: u64,
    /// Seq of the newest change; 0 before the first.
    pub last_seq: u64,
    /// Every change with a seq up to and including this one was removed by retention.
    pub trimmed_through: u64,
    pub doc_count: u64,
    /// Bytes of document keys and stored values.
    pub doc_bytes: u64,
    /// Bytes of change-log keys and records.
    pub log_bytes: u64,
    pub retention: Retention,
}

const CATALOG_RECORD_VERSION: u8 = 1;
const CATALOG_RECORD_BYTES: usize = 1 + 4 + 8 * 8;

impl CatalogRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CATALOG_RECORD_BYTES);
        out.push(CATALOG_RECORD_VERSION);
        out.extend_from_slice(&self.id.to_be_bytes());
        for field in [
            self.created_ms,
            self.last_seq,
            self.trimmed_through,
            self.doc_count,
            self.doc_bytes,
            self.log_bytes,
            self.retention.max_changes.unwrap_or(0),
            self.retention.max_age_secs.unwrap_or(0),
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<CatalogRecord> {
        if bytes.len() < CATALOG_RECORD_BYTES || bytes[0] != CATALOG_RECORD_VERSION {
            return Err(StoreError::Corrupt {
                table: table::CATALOG,
                reason: format!(
                    "record of {} bytes with version byte {:?}",
                    bytes.len(),
                    bytes.first()
                ),
            });
        }
        let id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let field = |i: usize| {
            let at = 5 + 8 * i;
            u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        };
        let optional = |v: u64| (v != 0).then_some(v);
        Ok(CatalogRecord {
            id,
            created_ms: field(0),
            last_seq: field(1),
            trimmed_through: field(2),
            doc_count: field(3),
            doc_bytes: field(4),
            log_bytes: field(5),
            retention: Retention {
                max_changes: optional(field(6)),
                max_age_secs: optional(field(7)),
            },
        })
    }
}

/// One secondary index of a database, as declared in its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The index's name: the database naming rule (1-64 of `a-z 0-9 _ -`, starting
    /// with a letter), unique within the database.
    pub name: String,
    /// A JSON pointer (RFC 6901) into the document's msgpack value: "" for the whole
    /// value, otherwise `/`-separated tokens (`~0` for `~`, `~1` for `/`).
    pub field: String,
    /// Refuse two documents with the same value at `field`.
    #[serde(default)]
    pub unique: bool,
}

/// The configuration of one database (value of the `configs` table, keyed by its name).
/// An absent record reads as the default: online, no indexes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// Batches are refused while set; configuration changes and resyncs need it.
    pub offline: bool,
    /// The secondary indexes, in position order (an entry's key holds the position).
    pub indexes: Vec<IndexDef>,
    /// The index entries do not match the documents (definitions changed, or the last
    /// resync met errors): queries are refused and writes do not maintain them until
    /// a resync rebuilds them.
    pub indexes_stale: bool,
}

impl DatabaseConfig {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a database configuration always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<DatabaseConfig> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::CONFIGS,
            reason: format!("configuration record: {e}"),
        })
    }
}

/// What a query reads of a configuration record: its indexes' names in position order
/// and whether they are stale, borrowed from the stored bytes (a `find` decodes no more
/// of the record than this).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IndexNames<'a> {
    #[serde(borrow)]
    pub indexes: Vec<IndexName<'a>>,
    pub indexes_stale: bool,
}

/// One index's name in `IndexNames`.
#[derive(Debug, Deserialize)]
pub(crate) struct IndexName<'a> {
    pub name: &'a str,
}

impl<'a> IndexNames<'a> {
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<IndexNames<'a>> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::CONFIGS,
            reason: format!("configuration record: {e}"),
        })
    }
}

/// Where a database stands in the change log of another service (value of the `sync`
/// table, keyed by the database's name): the service, its change-log epoch, and the
/// seq of the last change of that database applied here. A migration writes the
/// positions of the source it read; a follower moves them along with every change it
/// applies. A msgpack map; readers ignore keys they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPosition {
    pub source_service_id: String,
    pub source_epoch: u64,
    pub seq: u64,
    /// When it was written (ms since the epoch).
    pub updated_ms: u64,
    /// When the source created its database (its `created_ms`): a database dropped and
    /// created again there has another. 0: not known (then not checked).
    #[serde(default)]
    pub source_created_ms: u64,
    /// Why the follower stopped this database's sync, kept until it is resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<SyncStop>,
}

/// Why a database's sync stopped: a stable code (`sync_gap`, `resync_required`,
/// `changes_compacted`, …), a line for a person, and the source seq it stopped at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStop {
    pub code: String,
    pub message: String,
    pub seq: u64,
    pub at_ms: u64,
}

/// Migration mode (`meta.follow`): the service whose change log a follower applies
/// here, as it was named when the sync was attached. While it is stored, the databases
/// with a sync position of that service refuse writes from anyone but the follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowRecord {
    pub source_service_id: String,
    /// The source's URL, without credentials.
    pub source: String,
    pub since_ms: u64,
}

impl FollowRecord {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a follow record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<FollowRecord> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::META,
            reason: format!("follow record: {e}"),
        })
    }
}

impl SyncPosition {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a sync position always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncPosition> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::SYNC,
            reason: format!("sync position: {e}"),
        })
    }
}

/// The start of the keys of the `indexes` entries of one value: database id (u32 BE),
/// index position (u8), then the value encoded by `crate::index` (sortable and
/// self-delimiting). Every key that starts with it is an entry of that value.
pub fn index_key(db_id: u32, position: u8, encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATABASE_ID_BYTES + 1 + encoded.len());
    out.extend_from_slice(&db_id.to_be_bytes());
    out.push(position);
    out.extend_from_slice(encoded);
    out
}

/// Key of one `indexes` entry: the value's key (`index_key`) then the document key's
/// UTF-8 bytes. Keys sort by (value, document key).
pub fn index_entry(value_key: &[u8], doc_key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value_key.len() + doc_key.len());
    out.extend_from_slice(value_key);
    out.extend_from_slice(doc_key.as_bytes());
    out
}

/// The index position, the encoded value and the document key of an `indexes` key.
pub fn split_index_entry(stored: &[u8]) -> Result<(u8, &[u8], &str)> {
    let corrupt = || StoreError::Corrupt {
        table: table::INDEXES,
        reason: format!("index key of {} bytes is not an index entry", stored.len()),
    };
    let Some([position, rest @ ..]) = stored.get(DATABASE_ID_BYTES..) else {
        return Err(corrupt());
    };
    let value_len = crate::index::encoded_len(rest).ok_or_else(corrupt)?;
    let (encoded, doc) = rest.split_at(value_len);
    let doc = std::str::from_utf8(doc).map_err(|_| corrupt())?;
    if doc.is_empty() {
        return Err(corrupt());
    }
    Ok((*position, encoded, doc))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read = 1,
    /// Write includes read.
    Write = 2,
}

/// A user (value of the `users` table, keyed by the user's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub admin: bool,
    /// A locked user cannot authenticate by any means.
    pub locked: bool,
    pub created_ms: u64,
    /// The argon2id hash in PHC string form; `None`: certificate-only user.
    pub password_hash: Option<String>,
    /// Grants per database name.
    pub grants: std::collections::BTreeMap<String, Access>,
}

/// Most grants one user may hold (the record counts them in a u16).
pub const MAX_GRANTS: usize = 10_000;

/// Longest password hash a user record holds, in bytes (its length is a u16). The
/// argon2id hashes the service makes take about 100.
pub const MAX_PASSWORD_HASH_BYTES: usize = 65_535;

const USER_RECORD_VERSION: u8 = 1;

impl UserRecord {
    /// The stored bytes.
    ///
    /// # Panics
    ///
    /// When the layout cannot hold the record: more than 65 535 grants, a password hash
    /// longer than `MAX_PASSWORD_HASH_BYTES`, or a grant on a name longer than 255
    /// bytes. The writer refuses such a record before it gets here (more than
    /// `MAX_GRANTS` grants: `TooManyGrants`; a longer hash: `InvalidArgument`; a name
    /// that breaks the naming rule: `InvalidName`).
    pub fn encode(&self) -> Vec<u8> {
        let hash = self.password_hash.as_deref().unwrap_or_default();
        let hash_len =
            u16::try_from(hash.len()).expect("the writer refuses longer password hashes");
        let grant_count = u16::try_from(self.grants.len())
            .expect("the writer refuses more than MAX_GRANTS grants");
        let mut out = Vec::with_capacity(16 + hash.len() + 32 * self.grants.len());
        out.push(USER_RECORD_VERSION);
        out.push(u8::from(self.admin) | (u8::from(self.locked) << 1));
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&hash_len.to_be_bytes());
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(&grant_count.to_be_bytes());
        for (db, access) in &self.grants {
            out.push(u8::try_from(db.len()).expect("database names are at most 64 bytes"));
            out.extend_from_slice(db.as_bytes());
            out.push(*access as u8);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<UserRecord> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            table: table::USERS,
            reason: reason.to_string(),
        };
        let mut reader = ByteReader::new(bytes, table::USERS);
        if reader.u8()? != USER_RECORD_VERSION {
            return Err(corrupt("unknown user record version"));
        }
        let flags = reader.u8()?;
        let created_ms = reader.u64()?;
        let hash_len = usize::from(reader.u16()?);
        let hash = reader.text(hash_len)?;
        let grant_count = reader.u16()?;
        let mut grants = std::collections::BTreeMap::new();
        for _ in 0..grant_count {
            let name_len = usize::from(reader.u8()?);
            let db = reader.text(name_len)?;
            let access = match reader.u8()? {
                1 => Access::Read,
                2 => Access::Write,
                _ => return Err(corrupt("unknown access level")),
            };
            grants.insert(db, access);
        }
        Ok(UserRecord {
            admin: flags & 1 != 0,
            locked: flags & 2 != 0,
            created_ms,
            password_hash: (!hash.is_empty()).then_some(hash),
            grants,
        })
    }
}

/// A login session (value of the `sessions` table, keyed by the token's SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

const SESSION_RECORD_VERSION: u8 = 1;

impl SessionRecord {
    /// The stored bytes.
    ///
    /// # Panics
    ///
    /// With a user name longer than 255 bytes, which the writer refuses before it gets
    /// here (`InvalidName`: names are at most 64 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.user.len());
        out.push(SESSION_RECORD_VERSION);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.push(u8::try_from(self.user.len()).expect("user names are at most 64 bytes"));
        out.extend_from_slice(self.user.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionRecord> {
        let mut reader = ByteReader::new(bytes, table::SESSIONS);
        if reader.u8()? != SESSION_RECORD_VERSION {
            return Err(StoreError::Corrupt {
                table: table::SESSIONS,
                reason: "unknown session record version".to_string(),
            });
        }
        let created_ms = reader.u64()?;
        let expires_ms = reader.u64()?;
        let user_len = usize::from(reader.u8()?);
        let user = reader.text(user_len)?;
        Ok(SessionRecord {
            user,
            created_ms,
            expires_ms,
        })
    }
}

/// Reads big-endian fields off a record, reporting a short or bad record as corrupt.
struct ByteReader<'a> {
    bytes: &'a [u8],
    table: &'static str,
}

impl<'a> ByteReader<'a> {
    fn new(bytes: &'a [u8], table: &'static str) -> ByteReader<'a> {
        ByteReader { bytes, table }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(StoreError::Corrupt {
                table: self.table,
                reason: "record shorter than its fields".to_string(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn text(&mut self, n: usize) -> Result<String> {
        let table = self.table;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| StoreError::Corrupt {
            table,
            reason: "text field is not UTF-8".to_string(),
        })
    }
}

/// Key of the `docs` table: database id (u32 BE) then the document key's UTF-8 bytes.
pub fn doc_key(db_id: u32, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATABASE_ID_BYTES + key.len());
    out.extend_from_slice(&db_id.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// `bytes` as text, or `None` when they are not UTF-8. Keys are almost always ASCII,
/// which is checked a word at a time; `std::str::from_utf8` steps through a short
/// string that does not start on a word boundary (a key inside an LMDB page) one byte
/// at a time, which cost a tenth of a scan step.
fn stored_text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// The document key inside a `docs` key.
pub fn doc_key_name(stored: &[u8]) -> Result<&str> {
    stored
        .get(DATABASE_ID_BYTES..)
        .and_then(stored_text)
        .ok_or_else(|| StoreError::Corrupt {
            table: table::DOCS,
            reason: "document key is not a database id followed by UTF-8".to_string(),
        })
}

/// Bytes of the CRC-32C checksum stored with every document and change record.
pub const CHECKSUM_BYTES: usize = 4;

/// The error of a stored record whose checksum does not match, logged at ERROR where it
/// is found: damaged bytes are never served.
fn damaged(db: &str, what: String) -> StoreError {
    tracing::error!(db, what, "a stored record fails its checksum");
    StoreError::Damaged {
        db: db.to_string(),
        what,
    }
}

/// Value of the `docs` table: rev (u64 BE), the CRC-32C (u32 BE) of database id ‖
/// document key ‖ rev ‖ value, then the msgpack value.
pub fn doc_value(db_id: u32, key: &str, rev: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + CHECKSUM_BYTES + value.len());
    append_doc_value(&mut out, db_id, key.as_bytes(), rev, value);
    out
}

/// Appends `doc_value` to `out`, for a key given as bytes (a migration copies a key as
/// it is).
pub(crate) fn append_doc_value(out: &mut Vec<u8>, db_id: u32, key: &[u8], rev: u64, value: &[u8]) {
    let rev_bytes = rev.to_be_bytes();
    let crc = checksum(&[&db_id.to_be_bytes(), key, &rev_bytes, value]);
    out.extend_from_slice(&rev_bytes);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(value);
}

/// The rev and msgpack value of the stored document `key` of database `db` (id
/// `db_id`), after checking its checksum: `Damaged` when it does not match.
pub fn read_doc_value<'a>(
    db: &str,
    db_id: u32,
    key: &str,
    stored: &'a [u8],
) -> Result<(u64, &'a [u8])> {
    let Some((rev_bytes, rest)) = stored.split_first_chunk::<8>() else {
        return Err(damaged(
            db,
            format!("document {key:?} ({} bytes)", stored.len()),
        ));
    };
    let Some((crc, value)) = rest.split_first_chunk::<CHECKSUM_BYTES>() else {
        return Err(damaged(
            db,
            format!("document {key:?} ({} bytes)", stored.len()),
        ));
    };
    if u32::from_be_bytes(*crc)
        != checksum(&[&db_id.to_be_bytes(), key.as_bytes(), rev_bytes, value])
    {
        return Err(damaged(db, format!("document {key:?}")));
    }
    Ok((u64::from_be_bytes(*rev_bytes), value))
}

/// Key of the `changes` table: database id (u32 BE) then seq (u64 BE).
pub fn change_key(db_id: u32, seq: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&db_id.to_be_bytes());
    out[4..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The seq inside a `changes` key.
pub fn change_key_seq(stored: &[u8]) -> Result<u64> {
    stored
        .get(4..12)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| StoreError::Corrupt {
            table: table::CHANGES,
            reason: format!("change key of {} bytes", stored.len()),
        })
}

/// Value of the `changes` table: the CRC-32C (u32 BE) of the change's key (database id
/// ‖ seq) and of the body, then the body: op (u8), time in ms (u64 BE), key length (u16
/// BE), the key's bytes, then for a put the msgpack value.
///
/// # Panics
///
/// With a key longer than 65 535 bytes, which the writer refuses before it gets here
/// (`InvalidKey`: keys are at most `MAX_KEY_BYTES`, 400).
pub fn change_record(
    db_id: u32,
    seq: u64,
    op: ChangeOp,
    time_ms: u64,
    key: &str,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let value = value.unwrap_or_default();
    let key_len = u16::try_from(key.len()).expect("document keys are at most 400 bytes");
    let mut out = Vec::with_capacity(CHECKSUM_BYTES + 11 + key.len() + value.len());
    out.extend_from_slice(&[0; CHECKSUM_BYTES]);
    out.push(op as u8);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    let crc = checksum(&[&change_key(db_id, seq), &out[CHECKSUM_BYTES..]]);
    out[..CHECKSUM_BYTES].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Appends to `out` the change record `seq` of database `db_id` made of a body (format
/// 1's record, as a migration copies it): its checksum, then the body as it is.
pub(crate) fn append_change_record(out: &mut Vec<u8>, db_id: u32, seq: u64, body: &[u8]) {
    let crc = checksum(&[&change_key(db_id, seq), body]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(body);
}

/// A decoded `changes` record, borrowing from the stored bytes.
#[derive(Debug)]
pub struct ChangeRecordRef<'a> {
    pub op: ChangeOp,
    pub time_ms: u64,
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// The change `seq` of database `db` (id `db_id`), after checking its checksum:
/// `Damaged` when it does not match.
pub fn read_change_record<'a>(
    db: &str,
    db_id: u32,
    seq: u64,
    stored: &'a [u8],
) -> Result<ChangeRecordRef<'a>> {
    let Some((crc, body)) = stored.split_first_chunk::<CHECKSUM_BYTES>() else {
        return Err(damaged(
            db,
            format!("change {seq} ({} bytes)", stored.len()),
        ));
    };
    if u32::from_be_bytes(*crc) != checksum(&[&change_key(db_id, seq), body]) {
        return Err(damaged(db, format!("change {seq}")));
    }
    decode_change_body(body)
}

/// The body of a change record (format 1's whole record): op, time, key, value.
pub(crate) fn decode_change_body(stored: &[u8]) -> Result<ChangeRecordRef<'_>> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table: table::CHANGES,
        reason: reason.to_string(),
    };
    if stored.len() < 11 {
        return Err(corrupt("change record shorter than its header"));
    }
    let op = match stored[0] {
        1 => ChangeOp::Put,
        2 => ChangeOp::Delete,
        _ => return Err(corrupt("unknown change op")),
    };
    let time_ms = u64::from_be_bytes(stored[1..9].try_into().expect("8 bytes"));
    let key_len = usize::from(u16::from_be_bytes([stored[9], stored[10]]));
    let key_bytes = stored
        .get(11..11 + key_len)
        .ok_or_else(|| corrupt("change record key runs past its end"))?;
    let key = std::str::from_utf8(key_bytes).map_err(|_| corrupt("change key is not UTF-8"))?;
    let value = match op {
        ChangeOp::Put => Some(&stored[11 + key_len..]),
        ChangeOp::Delete => None,
    };
    Ok(ChangeRecordRef {
        op,
        time_ms,
        key,
        value,
    })
}

/// The key range `[prefix, next(prefix))` holding every key of one database.
/// Database ids stay below `u32::MAX` (see `MAX_DATABASE_ID`), so the bound exists.
pub fn database_bounds(db_id: u32) -> (Vec<u8>, Vec<u8>) {
    let next = db_id
        .checked_add(1)
        .expect("database ids stay below u32::MAX");
    (db_id.to_be_bytes().to_vec(), next.to_be_bytes().to_vec())
}

/// The largest database id ever handed out.
pub const MAX_DATABASE_ID: u32 = u32::MAX - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_keys_read_back_as_text_and_bytes_that_are_not_utf8_are_corrupt() {
        for key in [
            "k",
            "plain-ascii-key-of-24-by",
            "ünïcode-ключ",
            "mixed ascii then é",
        ] {
            assert_eq!(doc_key_name(&doc_key(9, key)).unwrap(), key);
        }
        for bytes in [&b"\xff"[..], b"ascii then \xc3", b"\xed\xa0\x80 surrogate"] {
            let stored = [&9u32.to_be_bytes()[..], bytes].concat();
            assert!(matches!(
                doc_key_name(&stored),
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert!(doc_key_name(&[0, 0]).is_err(), "shorter than a database id");
    }

    #[test]
    fn catalog_records_round_trip() {
        let record = CatalogRecord {
            id: 7,
            created_ms: 1_700_000_000_000,
            last_seq: 42,
            trimmed_through: 3,
            doc_count: 10,
            doc_bytes: 1234,
            log_bytes: 5678,
            retention: Retention {
                max_changes: Some(100),
                max_age_secs: None,
            },
        };
        let bytes = record.encode();
        assert_eq!(bytes.len(), CATALOG_RECORD_BYTES);
        assert_eq!(CatalogRecord::decode(&bytes).unwrap(), record);
        assert!(CatalogRecord::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn change_records_round_trip_and_their_checksum_holds_them() {
        let put = change_record(7, 42, ChangeOp::Put, 99, "kéy", Some(&[0x2a]));
        let decoded = read_change_record("d", 7, 42, &put).unwrap();
        assert_eq!(decoded.op, ChangeOp::Put);
        assert_eq!(decoded.time_ms, 99);
        assert_eq!(decoded.key, "kéy");
        assert_eq!(decoded.value, Some(&[0x2a][..]));
        let delete = change_record(7, 43, ChangeOp::Delete, 5, "k", None);
        assert_eq!(read_change_record("d", 7, 43, &delete).unwrap().value, None);
        // A flipped bit, a record moved to another seq or database, a short record.
        let mut flipped = put.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for (db_id, seq, stored) in [
            (7, 42, &flipped[..]),
            (7, 43, &put[..]),
            (8, 42, &put[..]),
            (7, 43, &delete[..5]),
        ] {
            let error = read_change_record("d", db_id, seq, stored).unwrap_err();
            assert!(
                matches!(&error, StoreError::Damaged { db, what } if db == "d" && what.starts_with(&format!("change {seq}"))),
                "{error}"
            );
        }
    }

    #[test]
    fn document_values_round_trip_and_their_checksum_holds_them() {
        let stored = doc_value(3, "k", 9, b"\x92\x01\x02");
        assert_eq!(stored.len(), 8 + CHECKSUM_BYTES + 3);
        assert_eq!(
            read_doc_value("d", 3, "k", &stored).unwrap(),
            (9, &b"\x92\x01\x02"[..])
        );
        let mut flipped = stored.clone();
        flipped[2] ^= 0x10;
        for (db_id, key, bytes) in [
            (3, "k", &flipped[..]),
            (3, "other", &stored[..]),
            (4, "k", &stored[..]),
            (3, "k", &stored[..10]),
        ] {
            assert!(
                matches!(
                    read_doc_value("d", db_id, key, bytes),
                    Err(StoreError::Damaged { .. })
                ),
                "{db_id} {key} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn user_and_session_records_round_trip() {
        let user = UserRecord {
            admin: false,
            locked: true,
            created_ms: 17,
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string()),
            grants: [
                ("db1".to_string(), Access::Read),
                ("db2".to_string(), Access::Write),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(UserRecord::decode(&user.encode()).unwrap(), user);
        let bare = UserRecord {
            password_hash: None,
            grants: Default::default(),
            ..user.clone()
        };
        assert_eq!(UserRecord::decode(&bare.encode()).unwrap(), bare);
        let encoded = user.encode();
        assert!(UserRecord::decode(&encoded[..encoded.len() - 1]).is_err());

        let session = SessionRecord {
            user: "alice".to_string(),
            created_ms: 1,
            expires_ms: 2,
        };
        assert_eq!(SessionRecord::decode(&session.encode()).unwrap(), session);
        assert!(SessionRecord::decode(&session.encode()[..5]).is_err());
    }

    #[test]
    fn configs_round_trip_and_ignore_unknown_keys() {
        let config = DatabaseConfig {
            offline: true,
            indexes: vec![IndexDef {
                name: "by_email".to_string(),
                field: "/email".to_string(),
                unique: true,
            }],
            indexes_stale: false,
        };
        assert_eq!(DatabaseConfig::decode(&config.encode()).unwrap(), config);
        // A later format's extra key, and a missing one, read fine.
        #[derive(Serialize)]
        struct Later {
            offline: bool,
            extra: u32,
        }
        let later = rmp_serde::to_vec_named(&Later {
            offline: true,
            extra: 5,
        })
        .unwrap();
        assert_eq!(
            DatabaseConfig::decode(&later).unwrap(),
            DatabaseConfig {
                offline: true,
                ..DatabaseConfig::default()
            }
        );
        assert!(DatabaseConfig::decode(&[0xc1]).is_err());
    }

    #[test]
    fn index_entries_split_back() {
        let value = index_key(3, 2, &[0x40, b'x', 0, 0]);
        assert_eq!(value, [0, 0, 0, 3, 2, 0x40, b'x', 0, 0]);
        let entry = index_entry(&value, "doc");
        assert_eq!(
            split_index_entry(&entry).unwrap(),
            (2, &[0x40, b'x', 0, 0][..], "doc")
        );
        let number = index_entry(&index_key(3, 0, &[0x20, 1, 2, 3, 4, 5, 6, 7, 8]), "n");
        assert_eq!(split_index_entry(&number).unwrap().2, "n");
        for bad in [&entry[..5], &value[..], &entry[..7]] {
            assert!(split_index_entry(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn keys_order_by_database_then_key() {
        assert!(doc_key(1, "zzz") < doc_key(2, "a"));
        assert!(change_key(1, u64::MAX) < change_key(2, 0));
        assert!(change_key(1, 255) < change_key(1, 256));
        let (low, high) = database_bounds(1);
        assert!(low <= doc_key(1, "a") && doc_key(1, "a") < high);
        assert!(doc_key(2, "a") >= high);
        let (low, high) = database_bounds(MAX_DATABASE_ID);
        assert!(low < high);
    }
}
