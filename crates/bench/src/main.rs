//! `cairn-bench`: side-by-side benchmarks of Cairn against raw heed. `cairn-bench store`
//! runs the same workloads (batched random puts, random gets, an ordered scan, and group
//! commit under many writers) through raw heed and through cairn-store in one process,
//! and tells what cairn-store's per-record checksums cost alone. `cairn-bench service` starts a real `cairn-service` and measures it over TLS on
//! loopback (durable puts and gets from many callers, pipelined gets, get latency beside
//! a bare TLS echo, memory after a load, time to ready) beside raw heed in-process, and
//! beside Redis with TLS and `appendfsync always` where it is installed.
//! `cairn-bench backup` times `cairn-backup` beside `mdb_copy -c` and `cp -r` on a
//! directory of about 1 GiB, its upload to a garage server beside `tar | zstd`, and a
//! live service's durable puts during backup jobs beside those without one. `cairn-bench migrate` times `cairn_store::migrate` on a
//! format-1 directory written with raw heed beside `mdb_copy -c` of it, and a `find`
//! page deep inside one index value in format 1 and in format 2 beside a point get.
//! `cairn-bench sync` times `cairn-sync` catching a destination service up with a source
//! database of 1,000,000 changes beside raw heed's puts, and the lag of each change
//! while 64 writers put on the source over TLS. `cairn-bench http` starts a real
//! `cairn-service` and measures its HTTPS JSON API with `oha` (gets over HTTP/1.1 and
//! HTTP/2, durable puts over HTTP/1.1, 64 in flight) beside its native protocol on the
//! same service in the same run. `cairn-bench mirror` times a mirror bootstrapping from
//! a leader of about 1 GiB beside `cairn-backup` of it, the mirror's lag while 64
//! writers put on the leader over TLS, and gets from 64 callers on the mirror beside
//! the same on its leader. Each prints each pair of figures, their ratio and target,
//! then how they were measured.

mod backup;
mod cairn;
mod data;
mod echo;
mod format1;
mod http;
mod mdb_copy;
mod measure;
mod migrate;
mod mirror;
mod oha;
mod process;
mod procfs;
mod raw;
mod redis;
mod remote;
mod report;
mod s3;
mod service;
mod sync;
mod workloads;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::backup::BackupSizes;
use crate::http::HttpSizes;
use crate::migrate::MigrateSizes;
use crate::mirror::MirrorSizes;
use crate::report::{Row, Sides};
use crate::service::ServiceSizes;
use crate::sync::SyncSizes;
use crate::workloads::Sizes;

const STORE_EXAMPLES: &str = "\
Examples:
  # The full comparison (1,000,000 keys, 10 s per group-commit run):
  cargo run --release -p cairn-bench -- store

  # A quick smoke check (20,000 keys, 1 s per group-commit run):
  cargo run --release -p cairn-bench -- store --quick

  # Rows as JSON, temporary stores on another disk:
  cargo run --release -p cairn-bench -- store --json --dir /mnt/nvme/tmp";

const SERVICE_EXAMPLES: &str = "\
Examples:
  # Build the service first: the bench runs target/release/cairn-service as it is.
  cargo build --release -p cairn-server -p cairn-bench

  # The full comparison (1,000,000 docs, 10 s per workload):
  ./target/release/cairn-bench service

  # A quick smoke check (20,000 docs, 1 s per workload):
  ./target/release/cairn-bench service --quick

  # Rows as JSON, the service's directory on another disk:
  cargo run --release -p cairn-bench -- service --json --dir /mnt/nvme/tmp";

const BACKUP_EXAMPLES: &str = "\
Examples:
  # Build the binaries first: the bench runs target/release/cairn-backup and
  # cairn-service as they are (gcc builds mdb_copy at run time).
  cargo build --release -p cairn-server -p cairn-backup -p cairn-bench

  # The full comparison (a directory of about 1 GiB; 3 backup jobs between 4 runs of
  # 10 s of puts without one):
  ./target/release/cairn-bench backup

  # A quick smoke check (64 MiB, runs of 2 s):
  ./target/release/cairn-bench backup --quick

  # Rows as JSON, the directories on another disk:
  ./target/release/cairn-bench backup --json --dir /mnt/nvme/tmp";

const MIGRATE_EXAMPLES: &str = "\
Examples:
  # The full comparison (1,000,000 documents; gcc builds mdb_copy at run time):
  cargo run --release -p cairn-bench -- migrate

  # A quick smoke check (20,000 documents, finds timed for 0.2 s each):
  cargo run --release -p cairn-bench -- migrate --quick

  # Rows as JSON, the directories on another disk:
  cargo run --release -p cairn-bench -- migrate --json --dir /mnt/nvme/tmp";

const SYNC_EXAMPLES: &str = "\
Examples:
  # Build the binaries first: the bench runs target/release/cairn-service and
  # cairn-sync as they are.
  cargo build --release -p cairn-server -p cairn-sync -p cairn-bench

  # The full comparison (1,000,000 changes caught up, 10 s of writes for the lag):
  ./target/release/cairn-bench sync

  # A quick smoke check (20,000 changes, 2 s of writes):
  ./target/release/cairn-bench sync --quick

  # Rows as JSON, the services' directories on another disk:
  ./target/release/cairn-bench sync --json --dir /mnt/nvme/tmp";

const HTTP_EXAMPLES: &str = "\
Examples:
  # Build the service first: the bench runs target/release/cairn-service as it is. oha
  # is installed into ~/.cache/cairn-bench on the first run (several minutes, once).
  cargo build --release -p cairn-server -p cairn-bench

  # The full comparison (1,000,000 docs, 10 s per workload):
  ./target/release/cairn-bench http

  # A quick smoke check (10,000 docs, 1 s per workload):
  ./target/release/cairn-bench http --quick

  # An oha binary of your own, rows as JSON, the service's directory on another disk:
  OHA_BIN=/usr/local/bin/oha ./target/release/cairn-bench http --json --dir /mnt/nvme/tmp";

const MIRROR_EXAMPLES: &str = "\
Examples:
  # Build the binaries first: the bench runs target/release/cairn-service and
  # cairn-backup as they are.
  cargo build --release -p cairn-server -p cairn-backup -p cairn-bench

  # The full comparison (a leader of about 1 GiB, 10 s of writes for the lag, 10 s of
  # gets on each service):
  ./target/release/cairn-bench mirror

  # A quick smoke check (64 MiB, 2 s of writes, 1 s of gets on each):
  ./target/release/cairn-bench mirror --quick

  # Rows as JSON, the services' directories on another disk:
  ./target/release/cairn-bench mirror --json --dir /mnt/nvme/tmp";

const EXAMPLES: &str = "\
Examples:
  # cairn-store against raw heed, in one process:
  cargo run --release -p cairn-bench -- store

  # A real cairn-service over TLS against raw heed, quickly:
  cargo run --release -p cairn-bench -- service --quick

  # cairn-backup against mdb_copy -c and cp -r, and puts during a backup:
  cargo run --release -p cairn-bench -- backup --quick

  # Migration from format 1 against mdb_copy -c, and deep find pages:
  cargo run --release -p cairn-bench -- migrate --quick

  # cairn-sync catching up and following a live source, quickly:
  cargo run --release -p cairn-bench -- sync --quick

  # The HTTPS JSON API (with oha) against the native protocol, quickly:
  cargo run --release -p cairn-bench -- http --quick

  # A mirror's bootstrap against cairn-backup, its lag, its gets against its leader:
  cargo run --release -p cairn-bench -- mirror --quick

  # Rows as JSON:
  cargo run --release -p cairn-bench -- service --json";

const STORE_SIDES: Sides = Sides {
    baseline: "raw heed",
    measured: "cairn-store",
};

const SERVICE_SIDES: Sides = Sides {
    baseline: "baseline",
    measured: "cairn-service",
};

const BACKUP_SIDES: Sides = Sides {
    baseline: "baseline",
    measured: "cairn",
};

const MIGRATE_SIDES: Sides = Sides {
    baseline: "baseline",
    measured: "cairn",
};

const SYNC_SIDES: Sides = Sides {
    baseline: "raw heed",
    measured: "cairn",
};

const HTTP_SIDES: Sides = Sides {
    baseline: "native",
    measured: "https",
};

const MIRROR_SIDES: Sides = Sides {
    baseline: "baseline",
    measured: "cairn",
};

#[derive(Debug, Parser)]
#[command(
    name = "cairn-bench",
    version,
    about = "Side-by-side benchmarks of Cairn against raw heed on the same workloads",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compares raw heed and cairn-store on the same workloads.
    ///
    /// Runs batched random puts, random gets, an ordered scan and group commit through
    /// both, in fresh temporary directories, and prints each pair of throughputs with
    /// their ratio and target, then what the per-record CRC-32C checksums cost alone
    /// beside a get and a put, and the peak RSS. Every commit fsyncs, so the disk under
    /// --dir is part of what is measured.
    #[command(after_help = STORE_EXAMPLES)]
    Store(StoreArgs),

    /// Measures a real cairn-service over TLS on loopback, beside raw heed.
    ///
    /// Starts the cairn-service binary beside this one (building it with cargo if it is
    /// missing) on a fresh temporary directory, loads it with documents in batches of
    /// 1000, and measures its anonymous memory after idling, durable puts and gets from
    /// 64 callers on 4 connections, gets with 128 in flight on one connection, get
    /// latency one call at a time beside a bare TLS echo of the same frame sizes, and
    /// its time to ready when restarted on the loaded directory. Raw heed runs the same
    /// keys and values in this process for the baselines. The bench's client and the
    /// service share the machine's cores.
    #[command(after_help = SERVICE_EXAMPLES)]
    Service(ServiceArgs),

    /// Times cairn-backup beside mdb_copy -c and cp -r, and puts during a backup.
    ///
    /// Builds a working directory of about 1 GiB through cairn-store (random keys,
    /// 1000-byte values, the whole change log), builds mdb_copy with gcc from the LMDB
    /// sources heed links, and times, once each from a warm page cache: cairn-backup
    /// (with its verification), mdb_copy -c and cp -r. Then it starts cairn-service on
    /// the directory and compares durable puts from 64 callers over TLS during backup
    /// jobs (backup.start) with those without one, in alternating rounds.
    #[command(after_help = BACKUP_EXAMPLES)]
    Backup(BackupArgs),

    /// Times the migration from format 1 beside mdb_copy -c, and deep find pages.
    ///
    /// Writes a format-1 working directory with raw heed (1,000,000 documents of 100
    /// bytes in one database, one index whose one value they all hold, their change
    /// log), builds mdb_copy with gcc from the LMDB sources heed links, and times in 3
    /// rounds, from a warm page cache: mdb_copy -c of it, and cairn_store::migrate (what
    /// cairn-migrate runs) into a new directory with its checks and with --safety-off.
    /// Then it times pages of 100 documents (and of 1) of that index value, from its
    /// start, its middle and its end, in format 1 (raw heed, stepping over the value's documents up
    /// to the cursor as format 1's find did) and in format 2 (Store::find on the migrated
    /// copy), beside a point get.
    #[command(after_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),

    /// Times cairn-sync catching up a source beside raw heed, and its lag under writes.
    ///
    /// Writes a source database of 1,000,000 changes (16-byte random keys, 100-byte
    /// values) through cairn-store and starts cairn-service on it, then, in 3 rounds:
    /// raw heed putting the same keys and values in this process, 1000 puts per fsync'd
    /// commit, and a fresh destination cairn-service attached to the source with
    /// cairn-sync (the binary beside this one) spawned and timed until the destination
    /// has applied every change. Then, the last follower live, 64 writers put on the
    /// source over TLS (4 connections) into a new database, and each put's lag is timed
    /// from the source's answer until the destination's change feed shows its seq. The
    /// two services, the follower and the bench share the machine's cores.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),

    /// Measures a real cairn-service's HTTPS JSON API with oha, beside its native protocol.
    ///
    /// Starts the cairn-service binary beside this one on a fresh temporary directory,
    /// loads it over the native protocol with 1,000,000 documents (keys of 16 digits,
    /// 100-byte values), gives root a password and logs in once over HTTPS (POST
    /// /v1/auth/session). Then, on the same TLS port, 64 requests in flight each: gets of
    /// random loaded keys from 64 native callers on 4 connections, over HTTP/1.1 on 64
    /// keep-alive connections and over HTTP/2 with 16 streams on each of 4 connections;
    /// durable puts of new keys from 64 native callers on 4 connections and over HTTP/1.1
    /// on 64 connections. The HTTP requests carry the session token and are made by oha,
    /// installed on the first run with cargo install into
    /// ${XDG_CACHE_HOME:-$HOME/.cache}/cairn-bench, unless OHA_BIN names an oha binary.
    /// oha, the bench's client and the service share the machine's cores.
    #[command(after_help = HTTP_EXAMPLES)]
    Http(HttpArgs),

    /// Times a mirror's bootstrap beside cairn-backup, its lag, and its gets beside its leader's.
    ///
    /// Builds a leader's working directory of about 1 GiB through cairn-store as the
    /// backup bench does (random keys, 1000-byte values, the whole change log), adds
    /// 100,000 documents of 100-byte values for the gets, and starts cairn-service on it.
    /// Then it times cairn-backup of the live leader, and a mirror (cairn-service
    /// --mirror unix://LEADER/sock, the binary beside this one) from its spawn on an
    /// empty directory until its status shows it following with the leader's whole
    /// journal applied. The mirror following, 64 writers put on the leader over TLS (4
    /// connections) into a new database, and each put's lag is timed from the leader's
    /// answer until the mirror's change feed shows its seq. Last, 64 callers on 4 TLS
    /// connections get random documents from the leader, then from the mirror, the
    /// leader idle. The two services, cairn-backup and the bench share the machine's
    /// cores.
    #[command(after_help = MIRROR_EXAMPLES)]
    Mirror(MirrorArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Smaller sizes for a smoke check: 20,000 keys and 1 s per group-commit run.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (the checksums' cost and the peak RSS then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the temporary environments are created [default: the system
    /// temporary directory]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServiceArgs {
    /// Smaller sizes for a smoke check: 20,000 docs and 1 s per workload.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (baseline and ratio are null for rows without a baseline; the notes on how they
    /// were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the service's working directory and raw heed's environment
    /// are created [default: the system temporary directory]. Use a directory on the
    /// disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Smaller sizes for a smoke check: a directory of 64 MiB and runs of 2 s of puts.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (the notes on how they were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the working directory and the copies are made [default: the
    /// system temporary directory]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// Smaller sizes for a smoke check: 20,000 documents, finds timed for 0.2 s each.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (baseline and ratio are null for rows without a baseline; the notes on how they
    /// were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the format-1 directory and the copies are made [default: the
    /// system temporary directory]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Smaller sizes for a smoke check: 20,000 changes and 2 s of writes.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (baseline and ratio are null for rows without a baseline; the notes on how they
    /// were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the services' working directories and raw heed's environments
    /// are made [default: the system temporary directory]. Use a directory on the disk
    /// you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct HttpArgs {
    /// Smaller sizes for a smoke check: 10,000 docs and 1 s per workload.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (baseline: the native protocol's figure, cairn: HTTP's; the notes on how they
    /// were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the service's working directory is created [default: the
    /// system temporary directory]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct MirrorArgs {
    /// Smaller sizes for a smoke check: a leader of 64 MiB, 2 s of writes and 1 s of
    /// gets on each service.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (baseline and ratio are null for rows without a baseline; the notes on how they
    /// were measured then go to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the leader's and the mirror's working directories and the
    /// backup are made [default: the system temporary directory]. Use a directory on
    /// the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Store(args) => run_store(&args),
        Command::Service(args) => run_service(&args),
        Command::Backup(args) => run_backup(&args),
        Command::Migrate(args) => run_migrate(&args),
        Command::Sync(args) => run_sync(&args),
        Command::Http(args) => run_http(&args),
        Command::Mirror(args) => run_mirror(&args),
    }
}

fn run_mirror(args: &MirrorArgs) -> Result<()> {
    let sizes = if args.quick {
        MirrorSizes::quick()
    } else {
        MirrorSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = mirror::run_mirror_comparison(sizes, &base)?;
    print_report(&report.rows, MIRROR_SIDES, &report.notes, args.json)
}

fn run_http(args: &HttpArgs) -> Result<()> {
    let sizes = if args.quick {
        HttpSizes::quick()
    } else {
        HttpSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = http::run_http_comparison(sizes, &base)?;
    print_report(&report.rows, HTTP_SIDES, &report.notes, args.json)
}

fn run_sync(args: &SyncArgs) -> Result<()> {
    let sizes = if args.quick {
        SyncSizes::quick()
    } else {
        SyncSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = sync::run_sync_comparison(sizes, &base)?;
    print_report(&report.rows, SYNC_SIDES, &report.notes, args.json)
}

fn run_migrate(args: &MigrateArgs) -> Result<()> {
    let sizes = if args.quick {
        MigrateSizes::quick()
    } else {
        MigrateSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = migrate::run_migrate_comparison(sizes, &base)?;
    print_report(&report.rows, MIGRATE_SIDES, &report.notes, args.json)
}

fn run_backup(args: &BackupArgs) -> Result<()> {
    let sizes = if args.quick {
        BackupSizes::quick()
    } else {
        BackupSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = backup::run_backup_comparison(sizes, &base)?;
    print_report(&report.rows, BACKUP_SIDES, &report.notes, args.json)
}

fn run_store(args: &StoreArgs) -> Result<()> {
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut report = workloads::run_store_comparison(sizes, &base)?;
    report
        .notes
        .push(format!("peak RSS (VmHWM): {} KiB", procfs::peak_rss_kib()?));
    print_report(&report.rows, STORE_SIDES, &report.notes, args.json)
}

fn run_service(args: &ServiceArgs) -> Result<()> {
    let sizes = if args.quick {
        ServiceSizes::quick()
    } else {
        ServiceSizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = service::run_service_comparison(sizes, &base)?;
    print_report(&report.rows, SERVICE_SIDES, &report.notes, args.json)
}

/// Prints the table, the targets and the notes, or the rows as JSON and the notes on
/// stderr.
fn print_report(rows: &[Row], sides: Sides, notes: &[String], json: bool) -> Result<()> {
    if json {
        println!("{}", report::render_json(rows)?);
        for note in notes {
            eprintln!("{note}");
        }
    } else {
        println!("{}", report::render_table(rows, sides));
        println!("{}", report::render_targets(rows, sides));
        for note in notes {
            println!("{note}");
        }
    }
    Ok(())
}
