//! `cairn-migrate`: moves a Cairn working directory of an older on-disk format (usually a
//! backup) to the current format in a new directory, one format step at a time,
//! checkpointed in the destination so that an interrupted run finishes with
//! `--from-last`; the source is never changed. The work is `cairn_store::migrate`'s;
//! this binary parses the command line, shows progress and prints the summary. Exit
//! status: 0 when everything moved, 1 on an error or when documents were left out, 2
//! for usage errors.

mod args;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use cairn_store::migrate::{self, MigrateOptions};

use crate::args::{Args, Output};
use crate::progress::Bar;

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("summaries always encode")
    );
}

/// Prints the counts of the source and the destination.
fn counts(args: &Args) -> anyhow::Result<ExitCode> {
    let counts = migrate::counts(&args.src, &args.dest).with_context(|| {
        format!(
            "counting {} and {}",
            args.src.display(),
            args.dest.display()
        )
    })?;
    match args.output {
        Output::Text => println!("{}", output::counts_text(&counts)),
        Output::Json => print_json(
            &counts
                .iter()
                .map(output::CountsJson::new)
                .collect::<Vec<_>>(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Migrates, with a progress bar on a terminal, and prints the summary.
fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let options = MigrateOptions {
        from_last: args.from_last,
        safety_off: args.safety_off,
        dump_errors: args.dump_errors.clone(),
        ..MigrateOptions::default()
    };
    let bar = Bar::new();
    let outcome = migrate::migrate(&args.src, &args.dest, &options, &mut |p| bar.show(p));
    bar.clear();
    let summary = outcome.with_context(|| {
        format!(
            "migrating {} to {}",
            args.src.display(),
            args.dest.display()
        )
    })?;
    match args.output {
        Output::Text => println!("{}", output::summary_text(&summary)),
        Output::Json => print_json(&output::SummaryJson::new(&summary)),
    }
    Ok(if summary.refused() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let args = match cairn_clidoc::parse::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let outcome = if args.counts {
        counts(&args)
    } else {
        run(&args)
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cairn-migrate: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
