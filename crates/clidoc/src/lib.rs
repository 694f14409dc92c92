//! `cairn-clidoc`: the man page and the shell completions of each of Cairn's binaries,
//! generated from the binary's own clap definition, so that they never drift from its
//! `--help`. Every binary parses its arguments through [`parse`], which answers two
//! flags before anything else: `--man` prints the binary's man page (roff, section 1:
//! `cairn-service --man > cairn-service.1`), and `--completions SHELL` prints a
//! completion script for bash, zsh, fish, elvish or PowerShell
//! (`cairn --completions bash > /etc/bash_completion.d/cairn`). `--help` says so.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Command, Parser};
use clap_complete::Shell;

/// What `--help` adds about the two flags.
const PACKAGING_HELP: &str = "\
Packaging: --man prints this program's man page (roff, section 1); --completions SHELL
prints a completion script for bash, zsh, fish, elvish or powershell.";

/// Parses this process's arguments as `P`, after answering `--man` and
/// `--completions SHELL` (`Err`: the exit status to end with; clap itself exits on
/// `--help` and on bad arguments).
pub fn parse<P: Parser>() -> Result<P, ExitCode> {
    let command = documented(P::command());
    let mut args = std::env::args_os().skip(1);
    if let Some(code) = generate(command.clone(), args.next(), args.next()) {
        return Err(code);
    }
    let matches = command.get_matches();
    P::from_arg_matches(&matches).map_err(|error| error.exit())
}

/// `command` with the packaging flags said in its help.
fn documented(command: Command) -> Command {
    let after = match command.get_after_help() {
        Some(text) => format!("{text}\n\n{PACKAGING_HELP}"),
        None => PACKAGING_HELP.to_string(),
    };
    command.after_help(after)
}

/// Answers `--man` or `--completions SHELL` given as the first arguments, writing to
/// stdout; `None` for anything else.
fn generate(
    command: Command,
    first: Option<OsString>,
    second: Option<OsString>,
) -> Option<ExitCode> {
    let mut out = std::io::stdout().lock();
    match first?.to_str()? {
        "--man" => Some(finish(man_page(command, &mut out))),
        "--completions" => {
            let shell = second.as_ref().and_then(|s| s.to_str()).unwrap_or("");
            match shell.parse::<Shell>() {
                Ok(shell) => Some(finish(completions(command, shell, &mut out))),
                Err(_) => {
                    eprintln!(
                        "{}: error: --completions takes bash, zsh, fish, elvish or powershell, not {shell:?}",
                        command.get_name()
                    );
                    Some(ExitCode::from(2))
                }
            }
        }
        _ => None,
    }
}

fn finish(written: std::io::Result<()>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: writing to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the man page of `command` (roff, section 1).
pub fn man_page(command: Command, out: &mut impl Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command).render(out)
}

/// Writes a completion script of `command` for `shell`.
pub fn completions(
    mut command: Command,
    shell: Shell,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, out);
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Debug, Parser)]
    #[command(
        name = "demo",
        about = "A demo",
        after_help = "Examples:\n  demo ./data"
    )]
    struct Demo {
        /// The directory.
        dir: String,
        #[command(subcommand)]
        command: Option<DemoCommand>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum DemoCommand {
        /// Shows the status.
        Status,
    }

    #[test]
    fn man_pages_and_completions_come_from_the_definition() {
        let command = documented(Demo::command());
        let mut man = Vec::new();
        man_page(command.clone(), &mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{man}");
        assert!(man.contains(".TH demo 1"), "{man}");
        assert!(man.contains("Shows the status"), "{man}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            completions(command.clone(), shell, &mut script).unwrap();
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("status"), "{shell}: {script}");
        }
        let help = command.clone().render_long_help().to_string();
        assert!(
            help.contains("Examples:") && help.contains("--man prints"),
            "{help}"
        );
        assert!(generate(
            command.clone(),
            Some("--completions".into()),
            Some("tcsh".into())
        )
        .is_some());
        assert!(generate(command, Some("./data".into()), None).is_none());
    }
}
