//! The operations of `cairn-backup` on directories: a backup of a working directory
//! (opened read-only, so it works beside a running service and never writes to it), the
//! verification of a backup, and an offline restore; backups in object storage go
//! through `crate::remote`. Store errors get a last word on what to do next where the
//! store's own message does not say it.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use cairn_store::backup::{
    create_backup, restore_backup_with, verify_backup_with, BackupControl, VerifyReport,
};
use cairn_store::{Store, StoreError, StoreOptions};

use crate::args::{Action, Output, Place, RemoteFlags};
use crate::output;
use crate::progress::Bar;
use crate::remote;

/// Does `action`, printing its summary in `output` form.
pub fn run(
    action: Action,
    flags: &RemoteFlags,
    output: Output,
    control: BackupControl,
) -> Result<()> {
    let bar = Bar::new();
    let control = bar.attach(control);
    let outcome = match action {
        Action::Backup {
            src,
            dst: Place::Dir(dst),
        } => backup(&src, &dst, output, &control, &bar),
        Action::Backup {
            src,
            dst: Place::Remote(url),
        } => remote::upload(&src, &url, flags, output, &control, &bar),
        Action::Verify {
            backup: Place::Dir(dir),
        } => verify(&dir, output, &control, &bar),
        Action::Verify {
            backup: Place::Remote(url),
        } => remote::verify(&url, flags, output, &control, &bar),
        Action::Restore {
            backup: Place::Dir(backup),
            dir,
            keep_replaced,
        } => restore(&backup, &dir, keep_replaced, output, &control, &bar),
        Action::Restore {
            backup: Place::Remote(url),
            dir,
            keep_replaced,
        } => remote::restore(&url, &dir, keep_replaced, flags, output, &control, &bar),
        Action::List { location } => remote::list(&location, flags, output),
    };
    bar.clear();
    outcome
}

/// The store of the working directory `src`, opened read-only to be backed up.
pub fn open_source(src: &Path) -> Result<Store> {
    Store::open_read_only(src, StoreOptions::default()).map_err(|error| {
        if let StoreError::NoStore { .. } = error {
            return anyhow!(
                "{} holds no cairn store (no store/data.mdb): name the working directory of a service",
                src.display()
            );
        }
        explain(error).context(format!("opening {} to read it", src.display()))
    })
}

fn backup(
    src: &Path,
    dst: &Path,
    output: Output,
    control: &BackupControl,
    bar: &Bar,
) -> Result<()> {
    let store = open_source(src)?;
    let summary = create_backup(&store, src, dst, control).map_err(|error| match error {
        // The copy holds what the source holds: the damage it names is the source's.
        StoreError::BackupInvalid { .. } => anyhow!(
            "{error}: nothing was kept; the copy holds what {} holds, so what fails is damaged there: restore that database from an earlier backup",
            src.display()
        ),
        other => explain(other),
    })?;
    bar.clear();
    output::backup(output, &summary);
    Ok(())
}

fn verify(dir: &Path, output: Output, control: &BackupControl, bar: &Bar) -> Result<()> {
    let started = Instant::now();
    let report = verify_backup_with(dir, control).map_err(explain)?;
    bar.clear();
    print_verification(output, &dir.display().to_string(), &report, started)
}

/// Prints the verification of the backup `subject`; an error when it does not verify.
pub fn print_verification(
    output: Output,
    subject: &str,
    report: &VerifyReport,
    started: Instant,
) -> Result<()> {
    output::verify(output, subject, report, started.elapsed());
    if !report.is_ok() {
        bail!(
            "{subject} does not verify (the problems are listed above): do not restore it; make a new backup"
        );
    }
    Ok(())
}

fn restore(
    backup: &Path,
    dir: &Path,
    keep_replaced: bool,
    output: Output,
    control: &BackupControl,
    bar: &Bar,
) -> Result<()> {
    let summary = restore_backup_with(backup, dir, keep_replaced, control).map_err(explain)?;
    bar.clear();
    output::restore(output, &summary);
    Ok(())
}

/// The store's error, with what to do next where its message does not say it.
pub fn explain(error: StoreError) -> anyhow::Error {
    let hint = match &error {
        StoreError::DirectoryInUse { .. } => {
            "stop the service on it first (a running service restores through its own restore job)"
        }
        StoreError::Canceled => "interrupted; nothing was left behind",
        StoreError::BackupInvalid { .. } => {
            "the backup is damaged: check it with cairn-backup --verify and use another one"
        }
        _ => return anyhow::Error::new(error),
    };
    anyhow!("{error}: {hint}")
}
