//! `cairn-bench`: side-by-side benchmarks of Cairn against raw heed. `cairn-bench store`
//! runs the same workloads (batched random puts, random gets, an ordered scan, and group
//! commit under many writers) through raw heed and through cairn-store in one process,
//! then prints each pair of throughputs, their ratio and target, and the peak RSS.

mod cairn;
mod data;
mod measure;
mod raw;
mod report;
mod workloads;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::workloads::Sizes;

const EXAMPLES: &str = "\
Examples:
  # The full comparison (1,000,000 keys, 10 s per group-commit run):
  cargo run --release -p cairn-bench -- store

  # A quick smoke check (20,000 keys, 1 s per group-commit run):
  cargo run --release -p cairn-bench -- store --quick

  # Rows as JSON, temporary stores on another disk:
  cargo run --release -p cairn-bench -- store --json --dir /mnt/nvme/tmp";

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
    /// their ratio and target, then the peak RSS. Every commit fsyncs, so the disk under
    /// --dir is part of what is measured.
    #[command(after_help = EXAMPLES)]
    Store(StoreArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Smaller sizes for a smoke check: 20,000 keys and 1 s per group-commit run.
    #[arg(long)]
    quick: bool,

    /// Prints the rows as a JSON array of {name, baseline, cairn, unit, ratio} objects
    /// (the peak RSS then goes to stderr).
    #[arg(long)]
    json: bool,

    /// Directory in which the temporary environments are created [default: the system
    /// temporary directory]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Store(args) => run_store(&args),
    }
}

fn run_store(args: &StoreArgs) -> Result<()> {
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let rows = workloads::run_store_comparison(sizes, &base)?;
    let peak_rss = format!("peak RSS (VmHWM): {} KiB", report::peak_rss_kib()?);
    if args.json {
        println!("{}", report::render_json(&rows)?);
        eprintln!("{peak_rss}");
    } else {
        println!("{}", report::render_table(&rows));
        println!("{}", report::render_targets(&rows));
        println!("{peak_rss}");
    }
    Ok(())
}
