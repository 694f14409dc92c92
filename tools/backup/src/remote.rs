//! The operations of `cairn-backup` on backups in object storage (`s3://BUCKET/PREFIX/
//! NAME`), through `cairn-remote`, exactly as a service's backup and restore jobs do
//! them: an upload is the ordinary verified backup written into a scratch directory and
//! then uploaded; a restore or a verification downloads and unpacks the backup into a
//! scratch directory (its archive checked against its manifest object), then restores
//! or verifies it as a local backup. The scratch directory (under `--tmp DIR`, else the
//! system's temporary directory) is removed when done, whatever happens. The object
//! store's refusals get a last word on what to do next.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cairn_remote::{check_endpoint, BackupUrl, Location, Remote, RemoteError, S3Settings};
use cairn_store::backup::{
    create_backup, restore_backup_with, verify_backup_with, BackupControl, BackupProgress,
    ProgressFn, ENV_FILE,
};
use cairn_store::{DirLock, StoreError};
use tempfile::TempDir;

use crate::args::{Output, RemoteFlags};
use crate::output;
use crate::progress::Bar;
use crate::run::{explain, open_source, print_verification};

/// Makes a verified backup of `src` in a scratch directory and uploads it as `url`.
pub fn upload(
    src: &Path,
    url: &BackupUrl,
    flags: &RemoteFlags,
    output: Output,
    control: &BackupControl,
    bar: &Bar,
) -> Result<()> {
    let started = Instant::now();
    let remote = connect(&url.location, flags)?;
    let store = open_source(src)?;
    let runtime = runtime()?;
    runtime
        .block_on(remote.refuse_existing(&url.name, &control.cancel))
        .map_err(explain_remote)?;
    let scratch = scratch(flags)?;
    let local = scratch.path().join(&url.name);
    let summary = create_backup(&store, src, &local, control).map_err(explain_scratch)?;
    drop(store);
    let archive_url = runtime
        .block_on(remote.upload(&url.name, &local, &progress(control), &control.cancel))
        .map_err(explain_remote)?;
    bar.clear();
    output::upload(output, &summary, &archive_url, started.elapsed());
    Ok(())
}

/// Downloads the backup `url` and verifies it.
pub fn verify(
    url: &BackupUrl,
    flags: &RemoteFlags,
    output: Output,
    control: &BackupControl,
    bar: &Bar,
) -> Result<()> {
    let started = Instant::now();
    let remote = connect(&url.location, flags)?;
    let scratch = scratch(flags)?;
    let backup = runtime()?
        .block_on(remote.download(
            &url.name,
            scratch.path(),
            &progress(control),
            &control.cancel,
        ))
        .map_err(explain_remote)?;
    let report = verify_backup_with(&backup, control).map_err(explain)?;
    bar.clear();
    print_verification(output, &url.to_string(), &report, started)
}

/// Downloads the backup `url` and restores it into `dir`, offline. A `dir` that a
/// service holds is refused before anything is downloaded.
pub fn restore(
    url: &BackupUrl,
    dir: &Path,
    keep_replaced: bool,
    flags: &RemoteFlags,
    output: Output,
    control: &BackupControl,
    bar: &Bar,
) -> Result<()> {
    let remote = connect(&url.location, flags)?;
    if dir.join(ENV_FILE).is_file() {
        drop(DirLock::acquire(dir).map_err(explain)?);
    }
    let scratch = scratch(flags)?;
    let backup = runtime()?
        .block_on(remote.download(
            &url.name,
            scratch.path(),
            &progress(control),
            &control.cancel,
        ))
        .map_err(explain_remote)?;
    let summary = restore_backup_with(&backup, dir, keep_replaced, control).map_err(explain)?;
    bar.clear();
    output::restore(output, &summary);
    Ok(())
}

/// Lists the backups under `location`, newest first.
pub fn list(location: &Location, flags: &RemoteFlags, output: Output) -> Result<()> {
    let remote = connect(location, flags)?;
    let backups = runtime()?.block_on(remote.list()).map_err(explain_remote)?;
    if backups.is_empty() && output == Output::Text {
        println!("no backups in {location}");
        return Ok(());
    }
    output::list(output, &backups);
    Ok(())
}

/// A client of `location`: the flags, then the `AWS_*` variables (as a service reads
/// them for what `[backup.s3]` leaves out).
fn connect(location: &Location, flags: &RemoteFlags) -> Result<Remote> {
    let mut settings = S3Settings {
        endpoint: flags.endpoint.clone(),
        region: flags.region.clone(),
        ..S3Settings::default()
    };
    let endpoint_from = settings.fill_from_env(|name| std::env::var(name).ok());
    if let Some(endpoint) = &settings.endpoint {
        check_endpoint(endpoint)
            .map_err(|reason| anyhow!("{}: {reason}", endpoint_from.unwrap_or("--s3-endpoint")))?;
    }
    if settings.access_key_id.is_none() || settings.secret_access_key.is_none() {
        bail!(
            "no credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN with temporary ones)"
        );
    }
    Remote::new(location.clone(), &settings).map_err(explain_remote)
}

/// The async runtime of the object store's requests (the file work runs beside it).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A new scratch directory, removed when dropped.
fn scratch(flags: &RemoteFlags) -> Result<TempDir> {
    let base = flags.scratch.clone().unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("cairn-backup-")
        .tempdir_in(&base)
        .with_context(|| {
            format!(
                "creating a scratch directory in {}: name another with --tmp DIR",
                base.display()
            )
        })
}

/// The progress callback of `control`, or one that drops reports.
fn progress(control: &BackupControl) -> ProgressFn {
    control
        .progress
        .clone()
        .unwrap_or_else(|| Arc::new(|_: &BackupProgress| {}))
}

/// A store error in the scratch directory: a full one says how to choose another.
fn explain_scratch(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::StorageFull { .. } => {
            anyhow!("{error} (--tmp DIR chooses where the scratch copy goes)")
        }
        other => explain(other),
    }
}

/// The object store's error, with what to do next where its message does not say it.
fn explain_remote(error: RemoteError) -> anyhow::Error {
    if let RemoteError::Local(error) = error {
        return explain_scratch(error);
    }
    let hint = match &error {
        RemoteError::Refused {
            code: Some(code), ..
        } if code == cairn_remote::NO_SUCH_BUCKET => {
            "check the bucket in the URL (and the endpoint), or create the bucket".to_string()
        }
        RemoteError::Refused {
            status: 401 | 403, ..
        } => "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the region, and what the key may do with the bucket".to_string(),
        RemoteError::Failed { .. } => {
            "check the endpoint (--s3-endpoint, AWS_ENDPOINT_URL) and that the object store answers"
                .to_string()
        }
        RemoteError::Missing { location, .. } => {
            format!("cairn-backup --list {location} shows the backups there")
        }
        RemoteError::Mismatch { .. } => {
            "the backup in the bucket is damaged or not one cairn-backup reads: use another one"
                .to_string()
        }
        RemoteError::Refused { .. } | RemoteError::Exists { .. } | RemoteError::Local(_) => {
            return anyhow::Error::new(error)
        }
    };
    anyhow!("{error}: {hint}")
}
