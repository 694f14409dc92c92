//! `cairn-easycert`: the certificates of Cairn services and their users, in a certificate
//! directory (`--certdir`, else `$CAIRN_CERT_DIR`, else `~/.cairn/certs`): CAs, host and
//! user certificates, CSRs for an external CA and the signing of CSRs, encrypted PKCS#12
//! bundles, revocation lists, imports. Exit status: 0 on success, 1 on an error (a file
//! that exists, a missing CA, a bad CSR or name), 2 for usage errors.

mod args;
mod password;
mod run;

use std::process::ExitCode;

use anyhow::Result;
use cairn_certs::CertDir;
use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::args::Args;

fn main() -> ExitCode {
    let args = match cairn_clidoc::parse::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let action = match args.action() {
        Ok(action) => action,
        Err(message) => Args::command()
            .error(ErrorKind::ArgumentConflict, message)
            .exit(),
    };
    let outcome = certdir(&args).and_then(|dir| run::run(&dir, action));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn-easycert: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn certdir(args: &Args) -> Result<CertDir> {
    Ok(CertDir::new(match args.certdir() {
        Some(dir) => dir.clone(),
        None => CertDir::default_path()?,
    }))
}
