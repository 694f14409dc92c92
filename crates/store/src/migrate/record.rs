//! The migration record, kept in the destination's `meta` table (key `migration`) and
//! written in the same transaction as the data each step of the migration moves: where
//! the store came from (the source's directory, service id, format and epoch), whether
//! the checks were off, and how far it went (the databases done, the one under way with
//! its stage and the last key or seq copied, documents refused so far, the length of the
//! dump file). A store whose record is not finished is refused by every open but the
//! migration's own, so that a half-migrated directory is never served. A msgpack map;
//! readers ignore keys they do not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::format::table;

/// How far a migration went, and where the store came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// The source directory, as given.
    pub source_dir: String,
    pub source_service_id: String,
    pub source_format: u32,
    pub source_epoch: u64,
    pub started_ms: u64,
    /// When the migration ended; `None` while it is unfinished.
    pub finished_ms: Option<u64>,
    /// The per-document checks were skipped (`--safety-off`).
    pub safety_off: bool,
    /// Databases whose documents and change log are all here, by name.
    pub done: Vec<String>,
    /// The database under way, if any.
    pub current: Option<Cursor>,
    /// Documents refused by the checks, per database.
    pub refused: BTreeMap<String, u64>,
    /// Length of the dump of refused documents after the last commit (a resumed run cuts
    /// the file back to it, so that it lists each refusal once).
    pub dump_bytes: u64,
}

/// Where the database under way stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub db: String,
    pub stage: Stage,
    /// The last stored key copied in this stage (a `docs` or `changes` key of the
    /// source), `None` before the first.
    pub after: Option<Vec<u8>>,
}

/// What of a database is being copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Documents,
    Changes,
}

impl MigrationRecord {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a migration record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<MigrationRecord> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::META,
            reason: format!("migration record: {e}"),
        })
    }

    /// True once the migration has ended.
    pub fn is_finished(&self) -> bool {
        self.finished_ms.is_some()
    }
}
