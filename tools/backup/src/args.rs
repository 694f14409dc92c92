//! The command line of `cairn-backup`: clap's parsing, then [`Args::action`], which
//! turns the arguments into the one thing to do or a usage error (exit status 2).

use std::path::PathBuf;

use clap::{Parser, ValueEnum, ValueHint};

const EXAMPLES: &str = "\
Examples:
  cairn-backup ./data /backups/data-20261121         # live: a service may be running on ./data
  cairn-backup ./data /backups/data-20261121 -o json # summary as JSON on stdout
  cairn-backup --verify /backups/data-20261121       # re-check any backup; exit 1 if damaged
  cairn-backup --restore /backups/data-20261121 ./data
      offline: stop the service first; ./data is replaced in one step and kept
      as ./data.replaced-TIMESTAMP
  cairn-backup --restore /backups/data-20261121 ./data --discard-replaced
  cairn-service /backups/data-20261121               # a backup is a working directory

A backup holds the compacted environment (store/data.mdb), cairn.toml, certs/ and
MANIFEST.json (checksums, and each database's last seq); never backups/, tmp/, sock or
service.lock. It is written as DST.partial and renamed to DST once verified.
Exit status: 0 on success, 1 on an error or a backup that does not verify, 2 for usage
errors.";

/// Output format of the summary on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Back up a Cairn working directory (live, compacted, verified), verify a backup, or
/// restore one offline.
#[derive(Debug, Parser)]
#[command(name = "cairn-backup", version, after_help = EXAMPLES)]
pub struct Args {
    /// SRC DST: back up the working directory SRC into the new directory DST. With
    /// --restore: the working directory DIR to restore into.
    #[arg(value_name = "PATH", value_hint = ValueHint::DirPath)]
    paths: Vec<PathBuf>,

    /// Re-check the backup DIR: its manifest, every file's checksum, and every
    /// database's documents against its change log. Names each file or database that fails
    #[arg(long, value_name = "DIR", conflicts_with = "restore", value_hint = ValueHint::DirPath)]
    verify: Option<PathBuf>,

    /// Restore BACKUP into the working directory DIR, offline (refused while a service
    /// runs on DIR): verified first, then swapped in atomically
    #[arg(long, value_name = "BACKUP", value_hint = ValueHint::DirPath)]
    restore: Option<PathBuf>,

    /// With --restore: remove the replaced directory instead of keeping it as
    /// DIR.replaced-TIMESTAMP
    #[arg(long, requires = "restore")]
    discard_replaced: bool,

    /// Format of the summary on stdout
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Format of log lines on stderr (RUST_LOG sets the level; warn by default)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The one thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Backup {
        src: PathBuf,
        dst: PathBuf,
    },
    Verify {
        dir: PathBuf,
    },
    Restore {
        backup: PathBuf,
        dir: PathBuf,
        keep_replaced: bool,
    },
}

impl Args {
    /// The action the arguments ask for, or what is wrong with them.
    pub fn action(&self) -> Result<Action, String> {
        match (&self.verify, &self.restore, self.paths.as_slice()) {
            (Some(dir), None, []) => Ok(Action::Verify { dir: dir.clone() }),
            (Some(_), None, _) => Err("--verify DIR takes no other path".to_string()),
            (None, Some(backup), [dir]) => Ok(Action::Restore {
                backup: backup.clone(),
                dir: dir.clone(),
                keep_replaced: !self.discard_replaced,
            }),
            (None, Some(_), _) => Err(
                "--restore BACKUP needs exactly one more path: the DIR to restore into".to_string(),
            ),
            (None, None, [src, dst]) => Ok(Action::Backup {
                src: src.clone(),
                dst: dst.clone(),
            }),
            (None, None, _) => Err(
                "give SRC and DST to make a backup, --verify DIR, or --restore BACKUP DIR"
                    .to_string(),
            ),
            (Some(_), Some(_), _) => Err("--verify and --restore exclude each other".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(args: &[&str]) -> Result<Action, String> {
        Args::try_parse_from(std::iter::once("cairn-backup").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?
            .action()
    }

    #[test]
    fn each_form_parses_to_its_action() {
        assert_eq!(
            action(&["a", "b"]),
            Ok(Action::Backup {
                src: "a".into(),
                dst: "b".into()
            })
        );
        assert_eq!(
            action(&["--verify", "b"]),
            Ok(Action::Verify { dir: "b".into() })
        );
        assert_eq!(
            action(&["--restore", "b", "d", "--discard-replaced"]),
            Ok(Action::Restore {
                backup: "b".into(),
                dir: "d".into(),
                keep_replaced: false
            })
        );
        assert!(action(&["a"]).is_err());
        assert!(action(&["--verify", "b", "c"]).is_err());
        assert!(action(&["--restore", "b"]).is_err());
        assert!(action(&["a", "b", "--discard-replaced"]).is_err());
        assert!(action(&["--verify", "a", "--restore", "b", "c"]).is_err());
    }
}
