//! `cairn-sync`: follows one Cairn service's change log into another (the destination
//! applies each change once, at the source's seq), shows where each database stands,
//! cuts over (the source READ_ONLY, the rest applied, both sides compared, users,
//! grants and configurations brought over, migration mode ended) or aborts. Exit
//! status: 0 on success, 1 on an error or when a cutover finds contents that differ, 2
//! for usage errors.

mod apply;
mod args;
mod cutover;
mod digest;
mod follow;
mod offsets;
mod print;
mod side;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_client::methods::{call, SyncDetachArgs, SyncStatusResult};
use cairn_client::values::SyncEnd;

use crate::args::{Cli, Command, Output};
use crate::cutover::{Carried, CutoverPlan, CutoverReport};
use crate::follow::FollowPlan;
use crate::print::Printer;
use crate::side::Side;

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("results always encode")
    );
}

/// Seconds with one decimal, for people.
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn status_text(status: &SyncStatusResult) -> String {
    let mut out = match &status.migration {
        Some(mode) => format!(
            "migration mode: following {} (service {})\n",
            mode.source, mode.source_service_id
        ),
        None => "migration mode: off\n".to_string(),
    };
    out.push_str(&format!(
        "{:<24} {:<12} {:>12} {:>12} {:>10} {:>9}  error\n",
        "database", "state", "applied", "source head", "lag", "lag time"
    ));
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    for db in &status.databases {
        out.push_str(&format!(
            "{:<24} {:<12} {:>12} {:>12} {:>10} {:>9}  {}\n",
            db.db,
            db.state.as_str(),
            db.applied_seq,
            or_dash(db.head_seq.map(|s| s.to_string())),
            or_dash(db.lag_changes.map(|s| s.to_string())),
            or_dash(db.lag_ms.map(seconds)),
            db.error.as_ref().map_or(String::new(), |e| format!(
                "{} at seq {}: {}",
                e.code, e.seq, e.message
            )),
        ));
    }
    out.trim_end().to_string()
}

/// Users, grants, configurations and states, one line each, after `prefix`.
fn carried_text(carried: &Carried, prefix: &str) -> String {
    let mut out = String::new();
    for line in carried.users.iter().chain(&carried.configs) {
        out.push_str(&format!("{prefix}{line}\n"));
    }
    for line in &carried.not_carried {
        out.push_str(&format!("not carried: {line}\n"));
    }
    out
}

fn cutover_text(report: &CutoverReport) -> String {
    let mut out = String::new();
    for db in &report.databases {
        out.push_str(&format!(
            "{}: {} at seq {}: {} documents here, {} on the source{}\n",
            db.db,
            if db.same { "same" } else { "DIFFERENT" },
            db.last_seq,
            db.destination.documents,
            db.source.documents,
            if db.by == "counts" {
                " (compared by counts: offline on a side)"
            } else {
                ""
            }
        ));
    }
    for db in &report.dropped {
        out.push_str(&format!("{db}: dropped (dropped on the source)\n"));
    }
    out.push_str(&carried_text(&report.carried, ""));
    if report.done {
        out.push_str(&format!(
            "cut over: {} serves everything {} held; the source was read-only for {} and stays so: point clients at the destination and stop the source",
            report.destination,
            report.source,
            seconds(report.read_only_ms)
        ));
    } else {
        out.push_str(&format!(
            "the contents differ: the source stays READ_ONLY and {} in migration mode (read-only for {} so far); compare the databases marked DIFFERENT, then cut over again or abort",
            report.destination,
            seconds(report.read_only_ms)
        ));
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let certs = &cli.common.certdir;
    let output = cli.common.output;
    match cli.command {
        None => {
            let (Some(src), Some(dest)) = (cli.follow.src, cli.follow.dest) else {
                unreachable!("clap requires --src and --dest without a subcommand")
            };
            let printer = Arc::new(Printer::new(output));
            let plan = FollowPlan {
                src: Arc::new(Side::new("source", src, certs)),
                dest: Arc::new(Side::new("destination", dest, certs)),
                offsfile: cli.follow.offsfile,
                only: cli.follow.databases,
            };
            let outcome = follow::follow(plan, printer.clone()).await;
            printer.finish();
            outcome.map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Status { dest, src }) => {
            let dest = Side::new("destination", dest, certs);
            let client = dest.client().await?;
            let status = apply::dest_status(&client)
                .await
                .with_context(|| format!("reading the sync status of {}", dest.name()))?;
            let differences = match src {
                Some(src) => Some(
                    cutover::differences(&Side::new("source", src, certs), &client)
                        .await
                        .context("comparing users, grants and configurations")?,
                ),
                None => None,
            };
            match output {
                Output::Text => {
                    println!("{}", status_text(&status));
                    match differences.as_ref().map(|d| carried_text(d, "differs: ")) {
                        Some(text) if text.is_empty() => {
                            println!("users, grants, configurations and states: as on the source")
                        }
                        Some(text) => print!("{text}"),
                        None => {}
                    }
                }
                Output::Json => print_json(&serde_json::json!({
                    "migration": status.migration,
                    "databases": status.databases,
                    "differences": differences,
                })),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Cutover {
            src,
            dest,
            timeout_secs,
        }) => {
            let plan = CutoverPlan {
                src: Arc::new(Side::new("source", src, certs)),
                dest: Arc::new(Side::new("destination", dest, certs)),
                timeout: Duration::from_secs(timeout_secs),
            };
            let report = cutover::cutover(&plan).await?;
            match output {
                Output::Text => println!("{}", cutover_text(&report)),
                Output::Json => print_json(&report),
            }
            Ok(if report.done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::Abort { dest }) => {
            let dest = Side::new("destination", dest, certs);
            let client = dest.client().await?;
            let before = client
                .request::<call::SyncDetach>(&SyncDetachArgs {
                    reason: SyncEnd::Abort,
                })
                .await
                .with_context(|| format!("ending migration mode on {}", dest.name()))?;
            match output {
                Output::Text => println!(
                    "migration mode ended on {}: its {} followed database(s) keep the data they hold and take writes again; nothing was cut over\n{}",
                    dest.name(),
                    before.databases.len(),
                    status_text(&before)
                ),
                Output::Json => print_json(&before),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = match cairn_clidoc::parse::<Cli>() {
        Ok(cli) => cli,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn-sync: error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cairn-sync: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
