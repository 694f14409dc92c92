//! Migration of a working directory of an older on-disk format to this release's, one
//! format step at a time (FORMAT.md has a section per step; today there is one step,
//! format 1 → 2), into a new directory: the source is opened read-only and never
//! changed. Everything moves: every database with its id, documents, revs, change log
//! (seqs, `last_seq`, `trimmed_through`, retention), configuration and state; the
//! change-log epoch; users with their password hashes, sessions, the jobs history, the
//! service status; `cairn.toml`, `certs/` and the other files of the directory. The
//! destination draws its own service id and records where it came from.
//!
//! Each document is checked as it moves (its key follows the key rules, its value is
//! one well-formed msgpack value within the value limit and its rev lies in the log,
//! every index can hold its values and unique indexes stay unique): one that fails is
//! left out, counted and, on request, written to a dump file. With the checks off the
//! bytes move as they are, and indexes that cannot be built are left stale for a resync.
//! Change records move as they are: the log stays identical.
//!
//! Progress is saved in the destination (its migration record, see `record`) in the
//! same transaction as the data it covers, so that a migration killed at any moment
//! finishes from where it stood (`from_last`) with the result of an uninterrupted run;
//! a store whose migration is unfinished is refused by every other open. At the end the
//! destination gets its files, `migration/offsets.json` (where the source's change logs
//! stood: a follower starts there) and the same positions in its `sync` table.

mod files;
mod read;
mod record;
mod source;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use heed::{Env, RwTxn, WithoutTls};

pub use record::{Cursor, MigrationRecord, Stage};
pub use write::{BATCH_BYTES, BATCH_CHANGES, BATCH_DOCUMENTS};

pub(crate) use self::files::started_from;
pub use self::files::STARTED_FILE;
use self::files::{copy_files, mark_started, write_offsets, Dump, MIGRATION_DIR, OFFSETS_FILE};
use self::source::{format_of, meta_value, Source, SourceDatabase, SourceMeta};
use crate::backup::check_free_space;
use crate::error::{Result, StoreError};
use crate::format::{meta_key, CatalogRecord, DatabaseConfig, SyncPosition, FORMAT_VERSION};
use crate::lock::DirLock;
use crate::store::{
    close_env, initialise_with, load, now_ms, open_env, EnvAccess, StoreOptions, Tables, Unfinished,
};

/// Refusals the summary names per database (all of them go to the dump).
const LISTED_REFUSALS: usize = 20;

/// How to migrate.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Finish the unfinished migration the destination holds (or start one where none
    /// was started yet).
    pub from_last: bool,
    /// Move documents as they are, without the per-document checks.
    pub safety_off: bool,
    /// Write every refused document to this file, one JSON object per line.
    pub dump_errors: Option<PathBuf>,
    /// The destination's map size and the value limit of the checks.
    pub store: StoreOptions,
}

/// Where a migration stands, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The database being moved.
    pub database: String,
    pub databases_done: usize,
    pub databases: usize,
    /// Documents moved (or refused) so far, of all databases.
    pub documents_done: u64,
    /// The source's documents, of all databases.
    pub documents: u64,
}

/// A document the checks refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key, lossily decoded when it is not UTF-8.
    pub key: String,
    pub rev: u64,
    pub error: String,
}

/// What happened to one database.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSummary {
    pub name: String,
    /// Documents in the destination.
    pub documents: u64,
    /// Documents the checks refused (in every run of this migration).
    pub refused: u64,
    /// The first refusals of this run.
    pub refusals: Vec<Refusal>,
    /// Change records in the destination.
    pub changes: u64,
    pub last_seq: u64,
    /// Its indexes wait for a resync (they were stale in the source, or could not be
    /// built with the checks off).
    pub indexes_stale: bool,
    /// Time spent on it by this run.
    pub seconds: f64,
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationSummary {
    pub source_dir: PathBuf,
    pub source_service_id: String,
    pub source_format: u32,
    pub dest_dir: PathBuf,
    pub dest_service_id: String,
    pub format: u32,
    /// This run finished an interrupted migration.
    pub resumed: bool,
    pub safety_off: bool,
    pub databases: Vec<DatabaseSummary>,
    /// Other files copied (`cairn.toml`, `certs/`, …).
    pub files: u64,
    pub offsets_file: PathBuf,
    pub seconds: f64,
}

impl MigrationSummary {
    /// Documents refused in every database.
    pub fn refused(&self) -> u64 {
        self.databases.iter().map(|db| db.refused).sum()
    }
}

/// Counts of one side of a database (see `counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideCounts {
    pub documents: u64,
    pub changes: u64,
    pub last_seq: u64,
}

/// One database's counts in the source and in the destination (`None` where it is not
/// there yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCounts {
    pub name: String,
    pub source: SideCounts,
    pub dest: Option<SideCounts>,
}

/// The on-disk format of the working directory `dir`; `NoStore` when it holds none.
pub fn directory_format(dir: &Path) -> Result<u32> {
    format_of(dir)
}

/// Per database, the documents, change records and last seq of the source and of the
/// destination; migrates nothing.
pub fn counts(src: &Path, dest: &Path) -> Result<Vec<DatabaseCounts>> {
    let source = Source::open(src)?;
    let txn = source.read()?;
    let mut dest_counts = destination_counts(dest)?;
    let mut out = Vec::new();
    for db in source.databases(&txn)? {
        let (documents, changes) = source.count(&txn, db.record.id)?;
        out.push(DatabaseCounts {
            dest: dest_counts.remove(&db.name),
            source: SideCounts {
                documents,
                changes,
                last_seq: db.record.last_seq,
            },
            name: db.name,
        });
    }
    Ok(out)
}

/// The destination's counts per database, read without writing a byte (none when it
/// holds no store yet).
fn destination_counts(dest: &Path) -> Result<BTreeMap<String, SideCounts>> {
    if !dest.join(crate::store::STORE_DIR).join("data.mdb").exists() {
        return Ok(BTreeMap::new());
    }
    let env = open_env(dest, &StoreOptions::default(), EnvAccess::Unshared)?;
    let counted = (|| {
        let Some((tables, _)) = load(&env, dest, Unfinished::Open)? else {
            return Ok(BTreeMap::new());
        };
        let txn = env.read_txn()?;
        let mut out = BTreeMap::new();
        for entry in tables.catalog.iter(&txn)? {
            let (name, record) = entry?;
            let record = CatalogRecord::decode(record)?;
            let (low, high) = crate::format::database_bounds(record.id);
            let bounds = (
                std::ops::Bound::Included(&low[..]),
                std::ops::Bound::Excluded(&high[..]),
            );
            let documents = tables.docs.range(&txn, &bounds)?.count() as u64;
            let changes = tables.changes.range(&txn, &bounds)?.count() as u64;
            out.insert(
                name.to_string(),
                SideCounts {
                    documents,
                    changes,
                    last_seq: record.last_seq,
                },
            );
        }
        Ok(out)
    })();
    close_env(env);
    counted
}

/// What the destination directory holds before a migration.
enum Destination {
    /// Missing, or an empty directory.
    Empty,
    /// A migration's mark (see `files::mark_started`) and at most an environment
    /// whose creation never committed: started, killed before its first commit. The
    /// source directory the mark names, if any.
    NotStarted(Option<String>),
    /// A store with a migration record.
    Migration(MigrationRecord),
    /// Anything else.
    Other(String),
}

fn inspect(dest: &Path) -> Result<Destination> {
    let entries = match std::fs::read_dir(dest) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::Empty),
        Err(e) => return Err(StoreError::io(format!("reading {}", dest.display()), e)),
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != crate::lock::LOCK_FILE)
        .collect();
    if names.is_empty() {
        return Ok(Destination::Empty);
    }
    match format_of(dest) {
        Err(StoreError::NoStore { .. })
            if names
                .iter()
                .all(|n| n == crate::store::STORE_DIR || n == MIGRATION_DIR) =>
        {
            Ok(Destination::NotStarted(started_from(dest)))
        }
        Err(StoreError::NoStore { .. }) => Ok(Destination::Other("holds files".to_string())),
        Err(error) => Err(error),
        Ok(version) if version != FORMAT_VERSION => Ok(Destination::Other(format!(
            "holds a store of format {version}"
        ))),
        Ok(_) => {
            let env = open_env(dest, &StoreOptions::default(), EnvAccess::Unshared)?;
            let record = meta_value(&env, meta_key::MIGRATION)
                .and_then(|record| record.as_deref().map(MigrationRecord::decode).transpose());
            close_env(env);
            Ok(match record? {
                Some(record) => Destination::Migration(record),
                None => Destination::Other("holds a store that was not migrated".to_string()),
            })
        }
    }
}

fn refuse(reason: String) -> StoreError {
    StoreError::Migration { reason }
}

/// Migrates the working directory `src` (of an older format) into `dest` (see the
/// module doc), calling `progress` as it goes.
pub fn migrate(
    src: &Path,
    dest: &Path,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationSummary> {
    let started = Instant::now();
    let source = Source::open(src)?;
    let source_dir = crate::backup::absolute(src)?;
    let (meta, databases) = {
        let txn = source.read()?;
        (source.meta(&txn)?, source.databases(&txn)?)
    };
    let state = inspect(dest)?;
    let resumed = match (&state, options.from_last) {
        (Destination::Empty, _) | (Destination::NotStarted(_), true) => false,
        (Destination::NotStarted(from), false) => {
            let from = from
                .as_ref()
                .map(|from| format!(" from {from}"))
                .unwrap_or_default();
            return Err(refuse(format!(
                "{} holds an unfinished migration{from}: add --from-last, or remove it",
                dest.display()
            )));
        }
        (Destination::Migration(record), _) if record.is_finished() => {
            return Err(refuse(format!(
                "{} holds a finished migration from {}: nothing is left to do (remove it to migrate again)",
                dest.display(),
                record.source_dir
            )))
        }
        (Destination::Migration(record), false) => {
            return Err(refuse(format!(
                "{} holds an unfinished migration from {}: add --from-last, or remove it",
                dest.display(),
                record.source_dir
            )))
        }
        (Destination::Migration(record), true) => {
            if record.source_service_id != meta.service_id || record.source_epoch != meta.epoch
            {
                return Err(refuse(format!(
                    "{} holds a migration from {} (service {}), not from {} (service {}): --from-last finishes a migration from the same source only",
                    dest.display(),
                    record.source_dir,
                    record.source_service_id,
                    source_dir.display(),
                    meta.service_id
                )));
            }
            true
        }
        (Destination::Other(what), _) => {
            return Err(refuse(format!(
                "{} {what}: give a directory that does not exist or is empty",
                dest.display()
            )))
        }
    };
    check_room(src, dest, &databases)?;
    if !dest.exists() {
        crate::backup::create_dir(dest, 0o700)?;
    }
    let _lock = DirLock::acquire(dest)?;
    mark_started(dest, &source_dir)?;
    let env = open_env(dest, &options.store, EnvAccess::Writable)?;
    let outcome = Migration {
        source: &source,
        source_dir: &source_dir,
        meta: &meta,
        databases: &databases,
        dest,
        env: &env,
        options,
    }
    .run(resumed, progress);
    close_env(env);
    let mut summary = outcome?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `StorageFull` unless the destination's file system has room for the source's data
/// (its pages in use, an eighth more for the checksums and the wider index keys) and
/// files, less what a resumed migration wrote already.
fn check_room(src: &Path, dest: &Path, databases: &[SourceDatabase]) -> Result<()> {
    let data: u64 = databases
        .iter()
        .map(|db| db.record.doc_bytes + db.record.log_bytes)
        .sum();
    let files: u64 = crate::backup::walk(src, &files::skipped)?
        .iter()
        .map(|f| f.size)
        .sum();
    let written = std::fs::metadata(dest.join(crate::backup::ENV_FILE)).map_or(0, |m| m.len());
    let needed = (data + data / 8 + files + (1 << 20)).saturating_sub(written);
    // A destination not made yet is checked where it will be made (the parent of a
    // relative `new` is the current directory).
    let at = if dest.exists() {
        dest.to_path_buf()
    } else {
        crate::backup::parent(&crate::backup::absolute(dest)?).to_path_buf()
    };
    check_free_space(&at, needed, "the migration")
}

/// One run of a migration.
struct Migration<'a> {
    source: &'a Source,
    source_dir: &'a Path,
    meta: &'a SourceMeta,
    databases: &'a [SourceDatabase],
    dest: &'a Path,
    env: &'a Env<WithoutTls>,
    options: &'a MigrateOptions,
}

/// How one database went in this run.
#[derive(Default)]
struct Moved {
    refusals: Vec<Refusal>,
    seconds: f64,
}

impl Migration<'_> {
    fn run(self, resumed: bool, progress: &mut dyn FnMut(&Progress)) -> Result<MigrationSummary> {
        let (tables, mut record) = if resumed {
            self.reopen()?
        } else {
            self.begin()?
        };
        let mut dump = match &self.options.dump_errors {
            Some(path) => Some(Dump::open(path, record.dump_bytes)?),
            None => None,
        };
        let total: u64 = self.databases.iter().map(|db| db.record.doc_count).sum();
        let mut done_documents: u64 = self
            .databases
            .iter()
            .filter(|db| record.done.contains(&db.name))
            .map(|db| db.record.doc_count)
            .sum();
        let mut moved: BTreeMap<String, Moved> = BTreeMap::new();
        for db in self.databases {
            if record.done.contains(&db.name) {
                continue;
            }
            let began = Instant::now();
            let mut this = Moved::default();
            let mut cursor = match &record.current {
                Some(cursor) if cursor.db == db.name => cursor.clone(),
                _ => Cursor {
                    db: db.name.clone(),
                    stage: Stage::Documents,
                    after: None,
                },
            };
            if cursor.stage == Stage::Documents {
                let databases_done = record.done.len();
                let mut report = |read: u64| {
                    done_documents += read;
                    progress(&Progress {
                        database: db.name.clone(),
                        databases_done,
                        databases: self.databases.len(),
                        documents_done: done_documents,
                        documents: total,
                    });
                };
                self.documents(
                    &tables,
                    db,
                    &mut record,
                    &mut cursor,
                    &mut dump,
                    &mut this,
                    &mut report,
                )?;
            }
            self.changes(&tables, db, &mut record, &mut cursor)?;
            this.seconds = began.elapsed().as_secs_f64();
            moved.insert(db.name.clone(), this);
        }
        let files = self.finish(&tables, &mut record)?;
        self.summary(&tables, &record, moved, files, resumed)
    }

    /// Creates the destination's store with its service tables, the catalog and the
    /// configurations of every database, and the migration record, in one commit.
    fn begin(&self) -> Result<(Tables, MigrationRecord)> {
        let record = MigrationRecord {
            source_dir: self.source_dir.display().to_string(),
            source_service_id: self.meta.service_id.clone(),
            source_format: source::SOURCE_FORMAT,
            source_epoch: self.meta.epoch,
            started_ms: now_ms(),
            finished_ms: None,
            safety_off: self.options.safety_off,
            done: Vec::new(),
            current: None,
            refused: BTreeMap::new(),
            dump_bytes: 0,
        };
        let (tables, _) = initialise_with(self.env, |tables, wtxn| {
            let meta = tables.meta;
            meta.put(wtxn, meta_key::EPOCH, &self.meta.epoch.to_be_bytes())?;
            meta.put(
                wtxn,
                meta_key::NEXT_DATABASE_ID,
                &self.meta.next_database_id.to_be_bytes(),
            )?;
            if let Some(next) = self.meta.next_job_id {
                meta.put(wtxn, meta_key::NEXT_JOB_ID, &next.to_be_bytes())?;
            }
            if let Some(status) = &self.meta.status {
                meta.put(wtxn, meta_key::STATUS, status)?;
            }
            meta.put(wtxn, meta_key::MIGRATION, &record.encode())?;
            self.copy_service_tables(tables, wtxn)?;
            for db in self.databases {
                let fresh = CatalogRecord {
                    doc_count: 0,
                    doc_bytes: 0,
                    log_bytes: 0,
                    ..db.record.clone()
                };
                tables.catalog.put(wtxn, &db.name, &fresh.encode())?;
                tables.configs.put(wtxn, &db.name, &db.config.encode())?;
            }
            Ok(())
        })?;
        Ok((tables, record))
    }

    /// Users, sessions and jobs: their records have the same layout in both formats.
    fn copy_service_tables(&self, tables: &Tables, wtxn: &mut RwTxn) -> Result<()> {
        let txn = self.source.read()?;
        for entry in self.source.users.iter(&txn)? {
            let (name, user) = entry?;
            crate::format::UserRecord::decode(user)?;
            tables.users.put(wtxn, name, user)?;
        }
        for entry in self.source.sessions.iter(&txn)? {
            let (hash, session) = entry?;
            crate::format::SessionRecord::decode(session)?;
            tables.sessions.put(wtxn, hash, session)?;
        }
        for entry in self.source.jobs.iter(&txn)? {
            let (id, job) = entry?;
            crate::jobs::JobRecord::decode(job)?;
            tables.jobs.put(wtxn, id, job)?;
        }
        Ok(())
    }

    /// Opens the destination of an interrupted migration and reads its record.
    fn reopen(&self) -> Result<(Tables, MigrationRecord)> {
        let Some((tables, _)) = load(self.env, self.dest, Unfinished::Open)? else {
            // The creation never committed: start afresh.
            return self.begin();
        };
        let txn = self.env.read_txn()?;
        let record = tables
            .meta
            .get(&txn, meta_key::MIGRATION)?
            .map(MigrationRecord::decode)
            .transpose()?
            .ok_or_else(|| refuse(format!("{} holds no migration", self.dest.display())))?;
        Ok((tables, record))
    }

    /// The files, the offsets, the sync positions, and the record marked finished.
    fn finish(&self, tables: &Tables, record: &mut MigrationRecord) -> Result<u64> {
        let files = copy_files(self.source_dir, self.dest)?;
        let positions: Vec<(String, u64, u64)> = self
            .databases
            .iter()
            .map(|db| (db.name.clone(), db.record.last_seq, db.record.created_ms))
            .collect();
        write_offsets(self.dest, self.meta, self.source_dir, &positions)?;
        let mut wtxn = self.env.write_txn()?;
        let now = now_ms();
        for db in self.databases {
            let position = SyncPosition {
                source_service_id: self.meta.service_id.clone(),
                source_epoch: self.meta.epoch,
                seq: db.record.last_seq,
                updated_ms: now,
                source_created_ms: db.record.created_ms,
                stopped: None,
            };
            tables.sync.put(&mut wtxn, &db.name, &position.encode())?;
        }
        record.finished_ms = Some(now);
        tables
            .meta
            .put(&mut wtxn, meta_key::MIGRATION, &record.encode())?;
        wtxn.commit()?;
        Ok(files)
    }

    fn summary(
        &self,
        tables: &Tables,
        record: &MigrationRecord,
        mut moved: BTreeMap<String, Moved>,
        files: u64,
        resumed: bool,
    ) -> Result<MigrationSummary> {
        let txn = self.env.read_txn()?;
        let service_id = tables
            .meta
            .get(&txn, meta_key::SERVICE_ID)?
            .map(hex::encode)
            .unwrap_or_default();
        let mut databases = Vec::new();
        for db in self.databases {
            let catalog =
                CatalogRecord::decode(tables.catalog.get(&txn, &db.name)?.ok_or_else(|| {
                    StoreError::DatabaseMissing {
                        name: db.name.clone(),
                    }
                })?)?;
            let config = tables
                .configs
                .get(&txn, &db.name)?
                .map(DatabaseConfig::decode)
                .transpose()?
                .unwrap_or_default();
            let this = moved.remove(&db.name).unwrap_or_default();
            databases.push(DatabaseSummary {
                name: db.name.clone(),
                documents: catalog.doc_count,
                refused: record.refused.get(&db.name).copied().unwrap_or(0),
                refusals: this.refusals,
                changes: catalog.last_seq.saturating_sub(catalog.trimmed_through),
                last_seq: catalog.last_seq,
                indexes_stale: config.indexes_stale && !config.indexes.is_empty(),
                seconds: this.seconds,
            });
        }
        Ok(MigrationSummary {
            source_dir: self.source_dir.to_path_buf(),
            source_service_id: self.meta.service_id.clone(),
            source_format: record.source_format,
            dest_dir: self.dest.to_path_buf(),
            dest_service_id: service_id,
            format: FORMAT_VERSION,
            resumed,
            safety_off: record.safety_off,
            databases,
            files,
            offsets_file: self.dest.join(OFFSETS_FILE),
            seconds: 0.0,
        })
    }
}
