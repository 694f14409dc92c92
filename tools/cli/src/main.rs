//! `cairn`: the command-line client of a Cairn service. It reaches a service over its
//! unix socket (`--dir DIR`) or TLS (`--url ssl://...`), makes one call per command
//! (data, databases, users, sessions, change feeds) and prints the result as text or
//! JSON. Exit status: 0 on success, 1 when the service answers with an error or cannot be
//! reached, 2 for usage errors (clap's, and bad input such as malformed JSON).

mod args;
mod commands;
mod connect;
mod input;
mod jobs;
mod output;

use std::process::ExitCode;

use cairn_client::{json, ClientError};

use crate::args::{Cli, UsageError};

fn main() -> ExitCode {
    let cli = match cairn_clidoc::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn: error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let closed_stdout = error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            if closed_stdout {
                // The reader of our output went away (e.g. `| head`): nothing to say.
                return ExitCode::SUCCESS;
            }
            let mut message = format!("cairn: error: {error:#}");
            let details = error
                .downcast_ref::<ClientError>()
                .and_then(ClientError::wire)
                .and_then(|wire| wire.details.as_ref());
            if let Some(details) = details {
                message.push_str(&format!(" (details: {})", json::to_string(details)));
            }
            eprintln!("{message}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
