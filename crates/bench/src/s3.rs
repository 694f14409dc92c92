//! The `backup` benchmark's object-storage row: a backup directory uploaded as the
//! service's backup jobs and `cairn-backup DIR s3://…` upload it (one tar + zstd
//! archive streamed in a multipart upload, read back and checked, then its manifest
//! object) to a real garage server on 127.0.0.1 (the tests' harness starts it, and
//! installs garage into the user's cache on first use), beside a plain `tar | zstd` of
//! the same directory into nothing, at the same zstd level, on one thread.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_store::backup::ProgressFn;
use cairn_tests::garage::Garage;

/// zstd's level, as `cairn_remote` compresses archives.
const ZSTD_LEVEL: &str = "-3";

/// The times of the upload and of `tar | zstd`.
pub struct Uploaded {
    pub upload: Duration,
    pub tar_zstd: Duration,
    pub archive_bytes: u64,
}

/// Uploads the backup `dir` to a fresh garage server, and times `tar | zstd` of it.
pub fn upload_beside_tar_zstd(dir: &Path) -> Result<Uploaded> {
    crate::workloads::progress("tar | zstd of the backup directory");
    let tar_zstd = time_tar_zstd(dir)?;
    crate::workloads::progress("starting garage on 127.0.0.1");
    let garage = Garage::start()?;
    let remote = garage.remote("bench")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report: ProgressFn = Arc::new(|_| {});
    let cancel = Arc::new(AtomicBool::new(false));
    crate::workloads::progress("uploading the backup to garage (tar + zstd, read back)");
    let started = Instant::now();
    runtime.block_on(remote.upload("bench-backup", dir, &report, &cancel))?;
    let upload = started.elapsed();
    let archive_bytes = garage
        .objects("bench/")?
        .iter()
        .filter(|(key, _)| key.ends_with(".tar.zst"))
        .map(|(_, size)| size)
        .sum();
    if archive_bytes == 0 {
        bail!("the upload left no archive in the bucket");
    }
    Ok(Uploaded {
        upload,
        tar_zstd,
        archive_bytes,
    })
}

/// The wall time of `tar -C DIR -cf - . | zstd -3 -T1 > /dev/null`.
fn time_tar_zstd(dir: &Path) -> Result<Duration> {
    let started = Instant::now();
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar (install it)")?;
    let archive = tar.stdout.take().context("tar's output")?;
    let zstd = Command::new("zstd")
        .args([ZSTD_LEVEL, "-T1", "-q", "-c"])
        .stdin(archive)
        .stdout(Stdio::null())
        .status()
        .context("running zstd (Debian: apt-get install zstd)")?;
    let tar = tar.wait()?;
    if !tar.success() || !zstd.success() {
        bail!("tar | zstd failed: tar {tar}, zstd {zstd}");
    }
    Ok(started.elapsed())
}
