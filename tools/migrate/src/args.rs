//! The command line of `cairn-migrate` (clap derive), with its examples.

use std::path::PathBuf;

use clap::{Parser, ValueEnum, ValueHint};

const EXAMPLES: &str = "\
Examples:
  cairn-backup ./data /backups/data-20261121          # with the old release, beside its service
  cairn-migrate --src /backups/data-20261121 --dest ./data2
  cairn-service ./data2                               # serves the same data, format 2
  cairn-migrate --src /backups/data-20261121 --dest ./data2 --from-last
      finish a migration that was interrupted (killed, out of room, …)
  cairn-migrate --src /backups/data-20261121 --dest ./data2 --dump-errors refused.jsonl
  cairn-migrate --src /backups/data-20261121 --dest ./data2 --counts -o json

The source is opened read-only and never changed; a directory a service is running on
is refused (migrate a backup of it). NEWDIR must not exist or be empty; it gets the
source's databases (ids, documents, revs, change logs with their seqs), users with their
passwords, sessions, jobs history, status, cairn.toml and certs/, a service id of its
own, and migration/offsets.json: where the source's change logs stood, for a follower.
Each document is checked (key, msgpack value, rev, indexes); one that fails is left
out, counted and listed (all of them in --dump-errors FILE, one JSON object per line);
--safety-off moves the bytes as they are. Progress is saved in NEWDIR with the data it
covers: --from-last finishes an interrupted migration exactly as an uninterrupted one.
Exit status: 0 when everything moved, 1 on an error or when documents were left out
(NEWDIR is usable; the summary says what is missing), 2 for usage errors.";

/// Output format of the summary on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Move a Cairn working directory (usually a backup) of an older on-disk format to the
/// current one, into a new directory.
#[derive(Debug, Parser)]
#[command(name = "cairn-migrate", version, after_help = EXAMPLES)]
pub struct Args {
    /// The working directory to migrate (never changed).
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub src: PathBuf,
    /// Where the migrated directory goes: must not exist or be empty (created 0700).
    #[arg(long, value_name = "NEWDIR", value_hint = ValueHint::DirPath)]
    pub dest: PathBuf,
    /// Finish the migration NEWDIR holds from where it stopped (or start one if none was
    /// started there yet).
    #[arg(long)]
    pub from_last: bool,
    /// Move documents as they are, without the per-document checks (faster; indexes that
    /// cannot be built are left stale for a resync).
    #[arg(long)]
    pub safety_off: bool,
    /// Write every document left out to FILE, one JSON object per line (database, key,
    /// rev, error, the stored bytes).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub dump_errors: Option<PathBuf>,
    /// Migrate nothing: print, per database, the documents, change-log entries and last
    /// seq of the source and of NEWDIR, and their differences.
    #[arg(long, conflicts_with_all = ["from_last", "safety_off", "dump_errors"])]
    pub counts: bool,
    /// How the summary is printed on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
