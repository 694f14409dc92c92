//! The command line of `cairn` (clap derive): global options that say where the service
//! is, how to authenticate and how to print, then one subcommand per operation. Also the
//! [`UsageError`] that input checks outside clap raise, so that they exit 2 like clap's.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cairn_client::values::{Access, FeedKind, ServiceMode, WireEnum};
use cairn_client::ClientUrl;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  cairn --dir ./data status
  cairn --dir ./data db create notes --max-changes 100000
  cairn --dir ./data put notes n1 '{\"title\": \"hello\", \"tags\": [\"a\", \"b\"]}'
  cairn --dir ./data -o json get notes n1
  cairn --dir ./data put notes n1 '{\"title\": \"v2\"}' --rev 3    # only if n1 is at rev 3
  cairn --dir ./data scan notes --prefix n --limit 10
  printf '%s\\n' '{\"op\":\"put\",\"key\":\"a\",\"value\":1}' '{\"op\":\"del\",\"key\":\"b\"}' \\
      | cairn --dir ./data batch notes
  cairn --dir ./data changes notes --feed continuous -o json
  cairn --dir ./data user add alice --password-stdin < alice.pw
  cairn --dir ./data user grant alice notes write
  TOKEN=$(cairn --url ssl://alice@db1:27460/ login --password-stdin < alice.pw)
  cairn --url ssl://alice@db1:27460/ --token \"$TOKEN\" db list
  cairn --url 'ssl://alice:pw@127.0.0.1:27460/?hostname=localhost' --certdir ./data/certs db list
  cairn --url 'ssl://root@127.0.0.1:27460/?hostname=localhost' --certdir ./data/certs whoami
  cairn --url unix:///var/lib/cairn/sock whoami

Where the service is: --dir DIR talks to the unix socket DIR/sock of a local service, as
root, and trusts DIR/certs; --url ssl://[USER[:PASSWORD]@]HOST[:PORT]/[?hostname=NAME]
reaches it over TLS, trusting the CAs of --certdir (default: $CAIRN_CERT_DIR, else
~/.cairn/certs) and presenting the client certificate users/USER.crt when it has one.
A URL password logs in; --token authenticates with a token from `cairn login`.
Passwords are never flags: put them in the URL or give them on stdin (--password-stdin).

Values: JSON on the command line or stdin becomes msgpack: objects become maps with string
keys (in their order), integers stay integers (u64 or i64), other numbers become f64.
Values print back as JSON: msgpack binary as a base64 string (standard, padded), map keys
that are not strings as their JSON text, ext values as {\"ext\": TYPE, \"data\": BASE64},
NaN and infinities as null.

Output: text for people by default; -o json prints one JSON object per command (streams:
one object per line, each line flushed).

Exit status: 0 on success; 1 when the service answers with an error (its code, status and
message go to stderr, e.g. `cairn: error: rev_conflict (409): ...`) or cannot be reached;
2 for usage errors (bad arguments, bad JSON input).";

/// The command-line client of a Cairn service.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// A local service's working directory: connect to its unix socket DIR/sock as root.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "url")]
    pub dir: Option<PathBuf>,
    /// The service's URL: ssl://[USER[:PASSWORD]@]HOST[:PORT]/[?hostname=NAME] or
    /// unix://PATH.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<ClientUrl>,
    /// Certificate directory with the CAs to trust and user certificates (default: DIR/certs
    /// with --dir, else $CAIRN_CERT_DIR or ~/.cairn/certs).
    #[arg(long, global = true, value_name = "D")]
    pub certdir: Option<PathBuf>,
    /// Authenticate with this session token (from `cairn login`).
    #[arg(long, global = true, value_name = "T")]
    pub token: Option<String>,
    /// Output format: text for people, or JSON (one object per command; streams: one per
    /// line).
    #[arg(short = 'o', long = "output", global = true, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub output: Format,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the service's status (READ_WRITE, READ_ONLY or DOWN) and its messages, or set
    /// it (admin).
    #[command(after_help = "\
Examples:
  cairn --dir ./data status
  cairn --dir ./data status set READ_ONLY --message \"moving to new disks\" --pending \"DOWN at 03:00 UTC\"
  cairn --dir ./data status set READ_WRITE")]
    Status {
        #[command(subcommand)]
        action: Option<StatusCommand>,
    },
    /// Show who this connection is authenticated as, and how.
    Whoami,
    /// Log in with a password and print a session token (for --token).
    #[command(after_help = "\
The password comes from the URL (ssl://USER:PASSWORD@HOST/) or, with --password-stdin,
from the first line of stdin. Text output is the token alone, e.g.
  TOKEN=$(cairn --url ssl://alice@db1/ login --password-stdin < alice.pw)")]
    Login {
        /// The user to log in as (default: the URL's user).
        #[arg(long)]
        user: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke a session token: TOKEN, else the one given with --token.
    Logout {
        /// The token to revoke.
        token: Option<String>,
    },
    /// Create, drop, list or inspect databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Write a document's value (JSON), optionally only if it is at a rev.
    #[command(after_help = "\
Examples:
  cairn --dir ./data put notes n1 '{\"title\": \"hello\"}'
  cairn --dir ./data put notes n1 '\"a string\"' --rev 0     # only if n1 does not exist
  cairn --dir ./data put notes big - < value.json           # the value from stdin")]
    Put {
        /// The database.
        db: String,
        /// The document's key.
        key: String,
        /// The value as JSON, or `-` to read it from stdin.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Write only if the document's rev is N (0: only if it does not exist).
        #[arg(long, value_name = "N")]
        rev: Option<u64>,
    },
    /// Print a document: its rev and its value as JSON.
    Get {
        /// The database.
        db: String,
        /// The document's key.
        key: String,
    },
    /// Delete a document, optionally only if it is at a rev.
    Del {
        /// The database.
        db: String,
        /// The document's key.
        key: String,
        /// Delete only if the document's rev is N.
        #[arg(long, value_name = "N")]
        rev: Option<u64>,
    },
    /// List documents in key order: by prefix or between bounds, one page.
    #[command(after_help = "\
When the range goes on after the page, a hint on stderr says how to resume (--after KEY);
-o json prints {\"docs\": [...], \"more\": BOOL}.")]
    Scan(ScanOptions),
    /// Apply operations from stdin (JSON lines) all or nothing.
    #[command(after_help = "\
Each non-blank line of stdin is one operation:
  {\"op\": \"put\", \"key\": \"k1\", \"value\": {\"any\": \"JSON\"}, \"rev\": 3}
  {\"op\": \"del\", \"key\": \"k2\"}
\"rev\" is optional and makes the operation conditional (put with rev 0: only if absent).
If any operation fails, none is applied. Bad JSON is a usage error (exit 2).")]
    Batch {
        /// The database.
        db: String,
    },
    /// Find documents by a secondary index: one value, or a range with --start/--end.
    #[command(after_help = "\
Values are JSON (a bare word is taken as a string): strings, numbers, booleans.
Examples:
  cairn --dir ./data find users by_email '\"ann@example.com\"'
  cairn --dir ./data find orders by_total --start 10 --end 100 --limit 20
  cairn --dir ./data -o json find orders by_total --start 100 --reverse
When the range goes on after the page, a hint on stderr says how to resume.")]
    Find(FindOptions),
    /// Read a database's change log: a page, a long poll, or a continuous feed.
    #[command(after_help = "\
Examples:
  cairn --dir ./data changes notes --since 10
  cairn --dir ./data changes notes --since 10 --feed longpoll --timeout 60
  cairn --dir ./data -o json changes notes --feed continuous

With --feed continuous, -o json prints one object per line: {\"type\": \"change\", ...},
{\"type\": \"heartbeat\", \"last_seq\": N}, and at the end {\"type\": \"end\", \"reason\": ...};
text output prints changes only, then the end. The feed ends (exit status 0) when
--timeout passes or the service ends it (database dropped, shutdown): the end says why.")]
    Changes(ChangesOptions),
    /// Manage users, their passwords and their grants.
    #[command(subcommand)]
    User(UserCommand),
    /// Start, list and delete backups (live, compacted, verified copies).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore the service's data from one of its backups.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// List, show, wait for and cancel background jobs (backups, restores).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Show the room the data takes (admin): the directory and backups on disk, the free
    /// space of their file systems, the environment's used and free pages, and each
    /// database's documents, bytes and change-log entries.
    #[command(after_help = "\
Free pages are room inside store/data.mdb that later writes reuse; a compacted backup
(cairn backup start, cairn-backup) leaves them out, and so is smaller by about as much.
Examples:
  cairn --dir ./data usage
  cairn --dir ./data -o json usage")]
    Usage,
    /// The service's settings (admin): reload DIR/cairn.toml while it runs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make the mirror this command reaches (usually --dir MIRRORDIR) the leader.
    #[command(after_help = "\
Gracefully: the leader stops taking writes, the mirror applies everything it committed,
becomes the leader, and the old leader turns into a mirror of it (it reaches the new
leader at --advertise, by default the mirror's first ssl:// listener). The output says
how long writes were refused. With --force (the leader is gone): the mirror becomes the
leader at what it has applied, under a new change-log epoch, and says the last position
it had seen from the old leader. The new role is kept in DIR/role.json.
Examples:
  cairn --dir ./replica promote
  cairn --dir ./replica promote --advertise 'ssl://root@db2:27460/'
  cairn --dir ./replica -o json promote --force")]
    Promote {
        /// The leader is gone: promote at what this mirror applied.
        #[arg(long)]
        force: bool,
        /// The URL the old leader reaches this service at.
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Make the service read DIR/cairn.toml again and apply what can change at run time
    /// (log level, limits, [status] thresholds, webhooks, backup schedule); prints what
    /// changed and what needs a restart. An invalid file is refused (exit 1) and the
    /// running settings stay in force.
    #[command(after_help = "\
Settings applied at once: [log] level, [limits] (but max_value_bytes), [auth]
session_ttl_secs, [status], [[webhooks]], [backup] schedule and keep; new limits apply
to new connections. listen, [store] map_size, [limits] max_value_bytes, [backup] dir, url
and s3 are reported as needing a restart. SIGHUP to cairn-service does the same.
Examples:
  cairn --dir ./data config reload
  cairn --dir ./data -o json config reload")]
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Start a backup job into the service's backup directory (or bucket); prints the job.
    #[command(after_help = "\
Examples:
  cairn --dir ./data backup start                    # named after the UTC time
  cairn --dir ./data backup start --name before-upgrade --wait")]
    Start {
        /// The backup's name (default: the UTC time, e.g. 20261121T030000Z).
        #[arg(long)]
        name: Option<String>,
        /// Wait for the job to end, with a progress bar (as `jobs wait`).
        #[arg(long)]
        wait: bool,
    },
    /// List the complete backups, newest first.
    List,
    /// Delete a backup.
    Delete {
        /// The backup's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Start a restore job from a backup of the service's own backup directory (or bucket).
    #[command(after_help = "\
While the restore runs, non-admin callers are told the service is DOWN (restore in
progress) and live change feeds end; afterwards readers must resynchronise.")]
    Start {
        /// The backup's name (see `backup list`).
        name: String,
        /// Wait for the job to end, with a progress bar (as `jobs wait`).
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs of this type: BACKUP, RESTORE or RESYNC (in any case; the service
        /// judges the filter).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only jobs in this status: QUEUED, STARTED, IN_PROGRESS, COMPLETED, FAILED or
        /// CANCELED (in any case; the service judges the filter).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one job.
    Show {
        /// The job's id.
        id: u64,
    },
    /// Wait until a job ends, with a progress bar on a terminal; exits 1 unless it
    /// COMPLETED.
    Wait {
        /// The job's id.
        id: u64,
    },
    /// Ask a running job to stop (a canceled backup leaves nothing behind).
    Cancel {
        /// The job's id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatusCommand {
    /// Set the status: READ_WRITE, READ_ONLY (non-admin writes refused) or DOWN
    /// (non-admin calls refused); the messages are shown to callers.
    Set {
        /// The new status.
        #[arg(value_parser = one_of::<ServiceMode>())]
        status: ServiceMode,
        /// The current message (at most 256 characters).
        #[arg(long)]
        message: Option<String>,
        /// The pending maintenance message (at most 256 characters).
        #[arg(long)]
        pending: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create a database, with a change-log retention if given.
    Create {
        /// The new database's name.
        name: String,
        /// Keep at most N changes in the change log.
        #[arg(long, value_name = "N")]
        max_changes: Option<u64>,
        /// Keep changes for at most S seconds.
        #[arg(long, value_name = "S")]
        max_age_secs: Option<u64>,
        /// Create it offline: it serves nothing until `db online` (configure it first).
        #[arg(long)]
        offline: bool,
    },
    /// Take a database offline (admin): new calls on it get 503 database_offline, calls
    /// in flight finish first, its live change feeds end; answers once it is Offline.
    /// Asking again changes nothing.
    #[command(after_help = "\
Examples:
  cairn --dir ./data db offline orders --reason \"rebuilding indexes\"
  cairn --dir ./data db config orders --set orders.json
  cairn --dir ./data db resync orders --wait
  cairn --dir ./data db online orders")]
    Offline {
        /// The database.
        name: String,
        /// Why, for the log and webhooks.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Bring a database online (admin), at once or after --delay seconds (Starting until
    /// then). Refused while a resync runs; asking again changes nothing.
    Online {
        /// The database.
        name: String,
        /// Stay Starting this many seconds first.
        #[arg(long, value_name = "S")]
        delay: Option<u64>,
        /// Why, for the log and webhooks.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show a database's configuration (JSON), or replace it with --set FILE while the
    /// database is offline.
    #[command(after_help = "\
The configuration is JSON; `offline`, `state` and `indexes_stale` are shown, not set:
  {\"retention\": {\"max_changes\": 100000},
   \"indexes\": [{\"name\": \"by_email\", \"field\": \"/email\", \"unique\": true},
               {\"name\": \"by_city\", \"field\": \"/address/city\"}]}
`field` is a JSON pointer into the value (\"\" is the whole value). Changing the indexes
of a database that holds documents makes them stale until `cairn db resync NAME`.
Examples:
  cairn --dir ./data db config orders > orders.json
  cairn --dir ./data db config orders --set orders.json")]
    Config {
        /// The database.
        name: String,
        /// Replace the configuration with this JSON file (`-`: stdin).
        #[arg(long, value_name = "FILE")]
        set: Option<PathBuf>,
    },
    /// Rebuild the indexes of an offline database and check every document, as a job.
    Resync {
        /// The database.
        name: String,
        /// Wait for the job to end, with a progress bar (as `jobs wait`).
        #[arg(long)]
        wait: bool,
    },
    /// Drop a database with its documents and change log.
    Drop {
        /// The database to drop.
        name: String,
    },
    /// List the databases (for a non-admin: those it has a grant on).
    List,
    /// Show a database's counters and retention.
    Info {
        /// The database.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ScanOptions {
    /// The database.
    pub db: String,
    /// Only keys that start with P.
    #[arg(long, value_name = "P", conflicts_with_all = ["start", "end"])]
    pub prefix: Option<String>,
    /// Keys from K on (inclusive unless --start-exclusive).
    #[arg(long, value_name = "K")]
    pub start: Option<String>,
    /// Leave out the --start key itself.
    #[arg(long, requires = "start")]
    pub start_exclusive: bool,
    /// Keys before K (exclusive unless --end-inclusive).
    #[arg(long, value_name = "K")]
    pub end: Option<String>,
    /// Include the --end key itself.
    #[arg(long, requires = "end")]
    pub end_inclusive: bool,
    /// At most N documents (the service's default: 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Descending key order.
    #[arg(long)]
    pub reverse: bool,
    /// Resume after the key K (the last key of the previous page).
    #[arg(long, value_name = "K")]
    pub after: Option<String>,
}

#[derive(Debug, Args)]
pub struct FindOptions {
    /// The database.
    pub db: String,
    /// The index (see `db config`).
    pub index: String,
    /// The exact value to find (JSON).
    #[arg(allow_hyphen_values = true, conflicts_with_all = ["start", "end"])]
    pub value: Option<String>,
    /// Values from V on (inclusive unless --start-exclusive).
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// Leave out the --start value itself.
    #[arg(long, requires = "start")]
    pub start_exclusive: bool,
    /// Values before V (exclusive unless --end-inclusive).
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub end: Option<String>,
    /// Include the --end value itself.
    #[arg(long, requires = "end")]
    pub end_inclusive: bool,
    /// At most N documents (the service's default: 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Descending order.
    #[arg(long)]
    pub reverse: bool,
    /// Resume after this value (JSON) ...
    #[arg(
        long,
        value_name = "V",
        requires = "after_key",
        allow_hyphen_values = true
    )]
    pub after_value: Option<String>,
    /// ... and this key (the last of the previous page).
    #[arg(long, value_name = "K", requires = "after_value")]
    pub after_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChangesOptions {
    /// The database.
    pub db: String,
    /// Only changes with a seq greater than N.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub since: u64,
    /// At most N changes (normal and longpoll feeds; the service's default: 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// normal: what is there now; longpoll: wait for a change; continuous: follow changes.
    #[arg(long, value_parser = one_of::<FeedKind>(), default_value = "normal")]
    pub feed: FeedKind,
    /// The epoch of --since (from an earlier result): refused with resync_required if a
    /// restore replaced the data since.
    #[arg(long, value_name = "E")]
    pub epoch: Option<u64>,
    /// longpoll: wait at most S seconds (service default 30); continuous: stop after S
    /// seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
    /// continuous: send a heartbeat after S seconds without a change (service default 10).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub heartbeat: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; without --password-stdin it can only use a client certificate.
    Add {
        /// The new user's name.
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// Read the user's password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (read from the first line of stdin).
    Passwd {
        /// The user.
        name: String,
        /// Read the new password from the first line of stdin (required).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user read or write (which includes read) access to a database.
    Grant {
        /// The user.
        name: String,
        /// The database.
        db: String,
        /// read, or write (which includes read).
        #[arg(value_parser = one_of::<Access>())]
        access: Access,
    },
    /// Remove a user's grant on a database.
    Revoke {
        /// The user.
        name: String,
        /// The database.
        db: String,
    },
    /// List users with their grants.
    List,
    /// Show one user: grants, and failed logins with the delay they cost.
    Show {
        /// The user.
        name: String,
    },
    /// Delete a user and revoke its tokens.
    Del {
        /// The user.
        name: String,
    },
}

/// A parser of one of the values of a protocol enum, listing them in `--help`.
fn one_of<T: WireEnum + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::all().iter().map(|v| v.as_str()))
        .map(|text| T::parse_ignore_case(&text).expect("clap admits only the listed values"))
}

/// Seconds, possibly fractional, as a duration.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds, e.g. 30 or 0.5"))
}

/// Bad input found after clap's parsing (bad JSON, a missing password): exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["cairn", "db", "list", "--dir", "d", "-o", "json"]).unwrap();
        assert_eq!(cli.global.output, Format::Json);
        assert_eq!(cli.global.dir, Some(PathBuf::from("d")));
        let err = Cli::try_parse_from(["cairn", "--dir", "d", "--url", "unix:///s", "status"]);
        assert!(err.is_err(), "--dir and --url conflict");
        let err = Cli::try_parse_from(["cairn", "--url", "http://x", "status"]).unwrap_err();
        assert!(err.to_string().contains("use ssl://"), "{err}");
    }

    #[test]
    fn values_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["cairn", "put", "d", "k", "-5"]).unwrap();
        assert!(matches!(cli.command, Command::Put { value, .. } if value == "-5"));
    }

    #[test]
    fn seconds_may_be_fractional() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
