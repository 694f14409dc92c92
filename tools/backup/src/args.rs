//! The command line of `cairn-backup`: clap's parsing, then [`Args::action`], which
//! turns the arguments into the one thing to do or a usage error (exit status 2). A
//! backup is a directory, or `s3://BUCKET/PREFIX/NAME` in object storage.

use std::path::PathBuf;

use cairn_remote::{BackupUrl, Location};
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

In object storage (S3, garage, MinIO, …):
  export AWS_ENDPOINT_URL=http://127.0.0.1:3900 AWS_REGION=garage
  export AWS_ACCESS_KEY_ID=GK… AWS_SECRET_ACCESS_KEY=…
  cairn-backup ./data s3://cairn-backups/prod/db1/20261121  # backup, upload, verify
  cairn-backup --list s3://cairn-backups/prod/db1            # the backups there
  cairn-backup --verify s3://cairn-backups/prod/db1/20261121
  cairn-backup --restore s3://cairn-backups/prod/db1/20261121 ./data

A backup holds the compacted environment (store/data.mdb), cairn.toml, certs/ and
MANIFEST.json (BLAKE3 checksums, and each database's last seq); never backups/, tmp/,
sock or service.lock. It is written as DST.partial, hashed as it is written, and renamed
to DST once every database of the source passed the checks --verify makes.
In object storage the backup NAME is PREFIX/NAME.tar.zst and PREFIX/NAME.manifest.json,
as a service with [backup] url = \"s3://BUCKET/PREFIX\" makes them: each lists and
restores the other's. The local copy is made (and a download unpacked) in a scratch
directory under --tmp DIR, else $TMPDIR or /tmp, removed when done. The object store is
named by AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (else AWS for the region),
AWS_REGION or AWS_DEFAULT_REGION (else us-east-1), and the key by AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; --s3-endpoint and --s3-region win.
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

/// Back up a Cairn working directory (live, compacted, verified) into a directory or
/// object storage, verify a backup, or restore one offline.
#[derive(Debug, Parser)]
#[command(name = "cairn-backup", version, after_help = EXAMPLES)]
pub struct Args {
    /// SRC DST: back up the working directory SRC into the new directory DST, or upload
    /// it as the new backup s3://BUCKET/PREFIX/NAME. With --restore: the working
    /// directory DIR to restore into.
    #[arg(value_name = "PATH", value_hint = ValueHint::DirPath)]
    paths: Vec<String>,

    /// Re-check the backup DIR (or s3://BUCKET/PREFIX/NAME, downloaded first): its
    /// manifest, every file's checksum, and every database's documents against its
    /// change log. Names each file or database that fails
    #[arg(long, value_name = "BACKUP", conflicts_with_all = ["restore", "list"], value_hint = ValueHint::DirPath)]
    verify: Option<String>,

    /// Restore BACKUP (a directory, or s3://BUCKET/PREFIX/NAME) into the working
    /// directory DIR, offline (refused while a service runs on DIR): verified first, then
    /// swapped in atomically
    #[arg(long, value_name = "BACKUP", conflicts_with = "list", value_hint = ValueHint::DirPath)]
    restore: Option<String>,

    /// With --restore: remove the replaced directory instead of keeping it as
    /// DIR.replaced-TIMESTAMP
    #[arg(long, requires = "restore")]
    discard_replaced: bool,

    /// List the backups in object storage under s3://BUCKET/PREFIX, newest first
    #[arg(long, value_name = "URL")]
    list: Option<String>,

    /// Where the local copy of an upload, or a download, is made (in a new directory,
    /// removed when done); default: $TMPDIR, else /tmp
    #[arg(long = "tmp", value_name = "DIR", value_hint = ValueHint::DirPath)]
    scratch: Option<PathBuf>,

    /// The object store's endpoint, e.g. http://127.0.0.1:3900 (else AWS_ENDPOINT_URL_S3,
    /// AWS_ENDPOINT_URL, else AWS)
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,

    /// The region requests are signed for (else AWS_REGION, AWS_DEFAULT_REGION, else
    /// us-east-1)
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,

    /// Format of the summary on stdout
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Format of log lines on stderr (RUST_LOG sets the level; warn by default)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where a backup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Dir(PathBuf),
    Remote(BackupUrl),
}

/// What object storage needs besides a URL: the flags that override the `AWS_*`
/// variables, and where scratch copies go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteFlags {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub scratch: Option<PathBuf>,
}

/// The one thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Backup {
        src: PathBuf,
        dst: Place,
    },
    Verify {
        backup: Place,
    },
    Restore {
        backup: Place,
        dir: PathBuf,
        keep_replaced: bool,
    },
    List {
        location: Location,
    },
}

/// `s3://…` is a backup in object storage, anything else a directory.
fn place(text: &str) -> Result<Place, String> {
    if text.starts_with("s3://") {
        text.parse().map(Place::Remote)
    } else {
        Ok(Place::Dir(PathBuf::from(text)))
    }
}

impl Args {
    /// The action the arguments ask for, or what is wrong with them.
    pub fn action(&self) -> Result<Action, String> {
        let action = match (&self.verify, &self.restore, &self.list, self.paths.as_slice()) {
            (Some(backup), None, None, []) => Action::Verify {
                backup: place(backup)?,
            },
            (Some(_), None, None, _) => return Err("--verify BACKUP takes no other path".to_string()),
            (None, Some(backup), None, [dir]) => Action::Restore {
                backup: place(backup)?,
                dir: dir.into(),
                keep_replaced: !self.discard_replaced,
            },
            (None, Some(_), None, _) => {
                return Err(
                    "--restore BACKUP needs exactly one more path: the DIR to restore into"
                        .to_string(),
                )
            }
            (None, None, Some(url), []) => Action::List {
                location: url.parse()?,
            },
            (None, None, Some(_), _) => return Err("--list URL takes no other path".to_string()),
            (None, None, None, [src, dst]) => Action::Backup {
                src: src.into(),
                dst: place(dst)?,
            },
            (None, None, None, _) => {
                return Err(
                    "give SRC and DST to make a backup, --verify BACKUP, --restore BACKUP DIR or --list URL"
                        .to_string(),
                )
            }
            _ => return Err("--verify, --restore and --list exclude each other".to_string()),
        };
        let remote = match &action {
            Action::Backup { dst: place, .. }
            | Action::Verify { backup: place }
            | Action::Restore { backup: place, .. } => matches!(place, Place::Remote(_)),
            Action::List { .. } => true,
        };
        if !remote && self.remote_flags() != RemoteFlags::default() {
            return Err(
                "--tmp, --s3-endpoint and --s3-region are for backups in object storage (s3://…)"
                    .to_string(),
            );
        }
        Ok(action)
    }

    /// The flags of object storage.
    pub fn remote_flags(&self) -> RemoteFlags {
        RemoteFlags {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            scratch: self.scratch.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("cairn-backup").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    fn action(args: &[&str]) -> Result<Action, String> {
        parse(args)?.action()
    }

    fn remote(url: &str) -> Place {
        Place::Remote(url.parse().unwrap())
    }

    #[test]
    fn each_form_parses_to_its_action() {
        assert_eq!(
            action(&["a", "b"]),
            Ok(Action::Backup {
                src: "a".into(),
                dst: Place::Dir("b".into())
            })
        );
        assert_eq!(
            action(&["--verify", "b"]),
            Ok(Action::Verify {
                backup: Place::Dir("b".into())
            })
        );
        assert_eq!(
            action(&["--restore", "b", "d", "--discard-replaced"]),
            Ok(Action::Restore {
                backup: Place::Dir("b".into()),
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

    #[test]
    fn s3_urls_name_backups_in_object_storage() {
        assert_eq!(
            action(&["a", "s3://bucket/p/b1", "--tmp", "/scratch"]),
            Ok(Action::Backup {
                src: "a".into(),
                dst: remote("s3://bucket/p/b1")
            })
        );
        assert_eq!(
            action(&["--verify", "s3://bucket/b1"]),
            Ok(Action::Verify {
                backup: remote("s3://bucket/b1")
            })
        );
        assert_eq!(
            action(&["--restore", "s3://bucket/p/b1.tar.zst", "d"]),
            Ok(Action::Restore {
                backup: remote("s3://bucket/p/b1"),
                dir: "d".into(),
                keep_replaced: true
            })
        );
        assert_eq!(
            action(&["--list", "s3://bucket/p/", "--s3-endpoint", "http://h:1"]),
            Ok(Action::List {
                location: "s3://bucket/p".parse().unwrap()
            })
        );
        let flags = parse(&["--list", "s3://bucket", "--s3-region", "r", "--tmp", "/t"])
            .unwrap()
            .remote_flags();
        assert_eq!(
            flags,
            RemoteFlags {
                endpoint: None,
                region: Some("r".into()),
                scratch: Some("/t".into())
            }
        );
        for (args, needle) in [
            (&["a", "s3://bucket"][..], "s3://BUCKET/PREFIX/NAME"),
            (&["a", "s3://bucket/p/.x"], "backup name"),
            (&["--list", "s3://Bucket"], "bucket name"),
            (&["--list", "s3://bucket", "x"], "no other path"),
            (&["a", "b", "--tmp", "/t"], "object storage"),
            (
                &["--verify", "b", "--s3-endpoint", "http://h"],
                "object storage",
            ),
        ] {
            let error = action(args).unwrap_err();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
    }
}
