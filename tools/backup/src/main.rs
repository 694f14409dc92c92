//! `cairn-backup`: backups of a Cairn working directory, made live beside a running
//! service (LMDB's compacting copy under one read transaction: consistent, writers never
//! wait), verified before they are renamed into place or uploaded to object storage
//! (`s3://BUCKET/PREFIX/NAME`, as a service's backup jobs do); `--verify` re-checks any
//! backup, `--restore` puts one back offline, atomically, and `--list` shows those in a
//! bucket. Exit status: 0 on success, 1 on an error or a backup that does not verify, 2
//! for usage errors.

mod args;
mod output;
mod progress;
mod remote;
mod run;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use cairn_store::backup::BackupControl;
use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::args::{Args, LogFormat};

fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let args = match cairn_clidoc::parse::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let action = match args.action() {
        Ok(action) => action,
        Err(message) => Args::command()
            .error(ErrorKind::WrongNumberOfValues, message)
            .exit(),
    };
    install_logging(args.log_format);
    let control = BackupControl::new(format!("cairn-backup {}", env!("CARGO_PKG_VERSION")));
    signals::cancel_on_signals(control.cancel.clone());
    match run::run(action, &args.remote_flags(), args.output, control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn-backup: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
