//! The command line of `cairn-sync` (clap derive), with its examples: following (the
//! command without a subcommand), `status`, `cutover` and `abort`.

use std::path::PathBuf;

use cairn_client::ClientUrl;
use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

const EXAMPLES: &str = "\
Examples:
  # The cutover, from a running format-1 service on ./old to a new one:
  cairn-backup ./old /backups/old-1                      # with the old release
  cairn-migrate --src /backups/old-1 --dest ./new
  cairn-service ./new                                    # in migration mode once followed
  cairn-sync --src unix://./old/sock --dest unix://./new/sock --offsfile ./new/migration/offsets.json
  cairn-sync status --dest unix://./new/sock             # lag per database
  cairn-sync status --dest unix://./new/sock --src unix://./old/sock   # and what differs
  cairn-sync cutover --src unix://./old/sock --dest unix://./new/sock

  # Remote services, admin credentials in the URLs:
  cairn-sync --src 'ssl://root:PW@old.example/' --dest 'ssl://root:PW@new.example/'
  cairn-sync abort --dest 'ssl://root:PW@new.example/'   # give up: the data stays as it is

Following applies every change of the source's databases (or of each --db) to the
destination at its own seq, exactly once: the destination keeps each database's position
in the same transaction as the changes, so a follower killed at any moment resumes
where the destination stands. While a follower is attached the destination is in
migration mode (stored): its followed databases refuse other writers with
migration_in_progress. The cutover sets the source READ_ONLY, applies what is left,
compares document counts and a digest of every key, rev and value, brings users, grants,
configurations and states over, ends migration mode and says how long the source was
read-only. Exit status: 0 on success, 1 on an error (or digests that differ), 2 for
usage errors.";

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Follow one Cairn service's change log into another, and cut over.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-sync",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// A certificate directory with the CAs to trust and user certificates (repeatable;
    /// default: $CAIRN_CERT_DIR or ~/.cairn/certs).
    #[arg(long, global = true, value_name = "D", value_hint = ValueHint::DirPath)]
    pub certdir: Vec<PathBuf>,
    /// Output: lines for people, or JSON (one object per line while following).
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Following: the command without a subcommand.
#[derive(Debug, Clone, Args)]
pub struct FollowArgs {
    /// The service whose change log is followed (admin credentials).
    #[arg(long, value_name = "URL", required = true)]
    pub src: Option<ClientUrl>,
    /// The service the changes are applied to (admin credentials).
    #[arg(long, value_name = "URL", required = true)]
    pub dest: Option<ClientUrl>,
    /// Where each database starts: the migration's NEWDIR/migration/offsets.json.
    /// Without it, the positions stored in the destination.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub offsfile: Option<PathBuf>,
    /// Follow only this database (repeatable; default: every database of the source).
    #[arg(long = "db", value_name = "NAME")]
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Show migration mode and, per database, the applied seq, the source's head, the lag
    /// in changes and in seconds, the state and errors.
    Status {
        #[arg(long, value_name = "URL")]
        dest: ClientUrl,
        /// Also list the users, grants, configurations and states that differ from the
        /// source's (what the cutover will bring over).
        #[arg(long, value_name = "URL")]
        src: Option<ClientUrl>,
    },
    /// Set the source READ_ONLY, apply what is left, compare, bring users, grants and
    /// configurations over and end migration mode.
    Cutover {
        #[arg(long, value_name = "URL")]
        src: ClientUrl,
        #[arg(long, value_name = "URL")]
        dest: ClientUrl,
        /// Give up (and set the source back as it was) when the changes left are not
        /// applied within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout_secs: u64,
    },
    /// End migration mode without a cutover: the destination's data stays as it is.
    Abort {
        #[arg(long, value_name = "URL")]
        dest: ClientUrl,
    },
}
