//! Downloading the backup `NAME` into a scratch directory: its manifest object is read,
//! the archive is downloaded (after checking that the scratch directory has room for it
//! and for what it unpacks to), its size and SHA-256 are checked against the manifest
//! object, and it is unpacked (`archive::unpack`) into a backup directory whose
//! `MANIFEST.json` must be the one the manifest object holds. The caller restores or
//! verifies that directory as it would a local backup.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_store::backup::{self, ProgressFn};
use cairn_store::StoreError;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::archive;
use crate::error::RemoteError;
use crate::manifest::RemoteManifest;
use crate::progress::Meter;
use crate::remote::Remote;
use crate::steps::{blocking, cancellable};

impl Remote {
    /// Downloads the backup `name` into the scratch directory `scratch` (which must
    /// exist), checks the archive's SHA-256 against the manifest object, and unpacks it
    /// into `scratch/NAME`; returns that backup directory. What it wrote is removed on
    /// failure.
    pub async fn download(
        &self,
        name: &str,
        scratch: &Path,
        report: &ProgressFn,
        cancel: &Arc<AtomicBool>,
    ) -> Result<PathBuf, RemoteError> {
        let remote = cancellable(cancel, self.manifest(name)).await??;
        let needed = remote.archive.size + remote.manifest.bytes();
        let target = scratch.to_path_buf();
        blocking(move || backup::check_free_space(&target, needed, "the download")).await?;
        let file = scratch.join(&remote.archive.object);
        let dest = scratch.join(name);
        let outcome = self
            .download_into(&remote, &file, &dest, report, cancel)
            .await;
        let _ = std::fs::remove_file(&file);
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        outcome.map(|()| dest)
    }

    async fn download_into(
        &self,
        remote: &RemoteManifest,
        file: &Path,
        dest: &Path,
        report: &ProgressFn,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), RemoteError> {
        let object = &remote.archive.object;
        let what = format!("downloading {}", self.url(object));
        let mut meter = Meter::new(report);
        meter.step(what.clone(), remote.archive.size + remote.manifest.bytes());
        let mut reader = cancellable(cancel, self.s3.get(&self.key(object), &what))
            .await?
            .map_err(|error| match error {
                error if error.is_missing_object() => RemoteError::Mismatch {
                    what: what.clone(),
                    reason: "the manifest object is there but the archive is not".to_string(),
                },
                other => other,
            })?;
        let local = |e: std::io::Error| {
            RemoteError::from(StoreError::io(format!("writing {}", file.display()), e))
        };
        let mut out = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(file).await.map_err(local)?,
        );
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = cancellable(cancel, reader.chunk()).await?? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            meter.advance(chunk.len() as u64);
            out.write_all(&chunk).await.map_err(local)?;
        }
        out.flush().await.map_err(local)?;
        drop(out);
        let sha256 = hex::encode(hasher.finalize());
        if (size, &sha256) != (remote.archive.size, &remote.archive.sha256) {
            return Err(RemoteError::Mismatch {
                what,
                reason: format!(
                    "{size} bytes with SHA-256 {sha256} arrived; the manifest object says {} bytes with SHA-256 {}",
                    remote.archive.size, remote.archive.sha256
                ),
            });
        }

        meter.step(format!("unpacking {object}"), remote.manifest.bytes());
        let (ticks, mut ticked) = mpsc::unbounded_channel::<u64>();
        let unpacker = {
            let (file, dest, manifest, cancel) = (
                file.to_path_buf(),
                dest.to_path_buf(),
                remote.manifest.clone(),
                cancel.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let input = std::io::BufReader::new(std::fs::File::open(&file)?);
                archive::unpack(input, &dest, &manifest, &mut |n| {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("canceled"));
                    }
                    let _ = ticks.send(n);
                    Ok(())
                })
            })
        };
        tokio::pin!(unpacker);
        let unpacked = loop {
            tokio::select! {
                Some(n) = ticked.recv() => meter.advance(n),
                done = &mut unpacker => break done,
            }
        };
        let unpacked = unpacked.map_err(|e| RemoteError::Failed {
            what: format!("unpacking {object}"),
            reason: e.to_string(),
        })?;
        match unpacked {
            Ok(()) => {}
            Err(_) if cancel.load(Ordering::SeqCst) => return Err(StoreError::Canceled.into()),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(RemoteError::Mismatch {
                    what: format!("unpacking {}", self.url(object)),
                    reason: error.to_string(),
                })
            }
            Err(error) => {
                return Err(
                    StoreError::io(format!("unpacking into {}", dest.display()), error).into(),
                )
            }
        }
        let inside = {
            let dest = dest.to_path_buf();
            blocking(move || backup::read_manifest(&dest)).await?
        };
        if inside.manifest_checksum != remote.manifest.manifest_checksum {
            return Err(RemoteError::Mismatch {
                what: format!("unpacking {}", self.url(object)),
                reason: "the archive's MANIFEST.json is not the one its manifest object holds"
                    .to_string(),
            });
        }
        Ok(())
    }
}
