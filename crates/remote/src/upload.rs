//! Uploading a verified local backup directory as the backup `NAME`: the directory is
//! packed (`archive::pack`) straight into a multipart upload of `NAME.tar.zst`, in parts
//! of `PART_BYTES` (more for a backup so large that 10,000 parts would not hold it),
//! `PARTS_IN_FLIGHT` at once; the archive is then read back and hashed, and
//! `NAME.manifest.json` is written last and read back (its presence is what makes a
//! backup exist). A failure or a cancel aborts the multipart upload and deletes what was
//! written.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_store::backup::{self, Manifest, ProgressFn};
use cairn_store::StoreError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::archive;
use crate::error::RemoteError;
use crate::manifest::{archive_object, manifest_object, RemoteManifest};
use crate::progress::Meter;
use crate::remote::Remote;
use crate::steps::{blocking, cancellable};

/// Size of the parts of an archive's multipart upload (all but the last), unless the
/// backup is too large for `MAX_PARTS` of them.
const PART_BYTES: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;
/// The most parts S3 takes in one multipart upload (numbered from 1).
const MAX_PARTS: u16 = 10_000;
/// The longest the clean-up after a failed upload may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The part size for a backup of `bytes` bytes: `PART_BYTES`, or whole MiB enough for
/// the archive to fit in nine tenths of `MAX_PARTS` (an archive of files that do not
/// compress is a little larger than they are).
fn part_bytes(bytes: u64) -> usize {
    let needed = bytes
        .div_ceil(u64::from(MAX_PARTS) * 9 / 10)
        .next_multiple_of(1 << 20);
    PART_BYTES.max(usize::try_from(needed).unwrap_or(usize::MAX))
}

/// Hashes and counts the bytes of an archive while cutting it into upload parts.
struct PartWriter {
    parts: mpsc::Sender<Bytes>,
    part_bytes: usize,
    buffer: Vec<u8>,
    hasher: Sha256,
    size: u64,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_bytes));
        self.parts
            .blocking_send(Bytes::from(part))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.part_bytes - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.buffer.len() == self.part_bytes {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Remote {
    /// Uploads the verified local backup directory `dir` as the new backup `name` (see
    /// `refuse_existing` and the module doc); returns the archive's URL. On failure or
    /// cancel nothing of it is left in the bucket.
    pub async fn upload(
        &self,
        name: &str,
        dir: &Path,
        report: &ProgressFn,
        cancel: &Arc<AtomicBool>,
    ) -> Result<String, RemoteError> {
        let outcome = self.upload_new(name, dir, report, cancel).await;
        if outcome.is_err() {
            for object in [archive_object(name), manifest_object(name)] {
                let what = format!("deleting {}", self.url(&object));
                let deleted = tokio::time::timeout(
                    CLEANUP_TIMEOUT,
                    self.s3.delete(&self.key(&object), &what),
                )
                .await;
                if !matches!(deleted, Ok(Ok(()))) {
                    tracing::warn!(object = %self.url(&object), "cannot delete what a failed upload left");
                }
            }
        }
        outcome
    }

    async fn upload_new(
        &self,
        name: &str,
        dir: &Path,
        report: &ProgressFn,
        cancel: &Arc<AtomicBool>,
    ) -> Result<String, RemoteError> {
        let archive = archive_object(name);
        let manifest = {
            let dir = dir.to_path_buf();
            blocking(move || backup::read_manifest(&dir)).await?
        };
        let mut meter = Meter::new(report);
        let bytes = manifest.bytes();
        // Packing, then reading the archive back (no larger than what it packs, as a rule).
        meter.step(format!("uploading {}", self.url(&archive)), 2 * bytes);
        let (size, sha256) = self
            .put_archive(&archive, dir, &manifest, &mut meter, cancel)
            .await?;

        meter.step(format!("verifying {}", self.url(&archive)), size);
        let (read_size, read_sha256) = self.hash_object(&archive, &mut meter, cancel).await?;
        if (read_size, &read_sha256) != (size, &sha256) {
            return Err(RemoteError::Mismatch {
                what: format!("verifying {}", self.url(&archive)),
                reason: format!(
                    "{read_size} bytes with SHA-256 {read_sha256} were read back, {size} bytes with SHA-256 {sha256} were written"
                ),
            });
        }

        let index = manifest_object(name);
        meter.step(format!("writing {}", self.url(&index)), 0);
        let remote = RemoteManifest::new(name, size, sha256, manifest);
        let mut json = serde_json::to_vec_pretty(&remote).map_err(|e| RemoteError::Mismatch {
            what: format!("writing {}", self.url(&index)),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        let what = format!("writing {}", self.url(&index));
        cancellable(
            cancel,
            self.s3.put(
                &self.key(&index),
                Bytes::from(json),
                "application/json",
                &what,
            ),
        )
        .await??;
        let read = cancellable(cancel, self.manifest(name)).await??;
        if read != remote {
            return Err(RemoteError::Mismatch {
                what: format!("verifying {}", self.url(&index)),
                reason: "what was read back is not what was written".to_string(),
            });
        }
        meter.step("uploaded and verified".to_string(), 0);
        Ok(self.url(&archive))
    }

    /// Packs `dir` into the archive object `object` with a multipart upload; returns the
    /// archive's size and SHA-256. A failure aborts the upload.
    async fn put_archive(
        &self,
        object: &str,
        dir: &Path,
        manifest: &Manifest,
        meter: &mut Meter,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(u64, String), RemoteError> {
        let what = format!("uploading {}", self.url(object));
        let key = self.key(object);
        let upload_id = cancellable(cancel, self.s3.create_multipart(&key, &what)).await??;
        let part_bytes = part_bytes(manifest.bytes());
        let (parts, mut incoming) = mpsc::channel::<Bytes>(1);
        let (ticks, mut ticked) = mpsc::unbounded_channel::<u64>();
        let packer = {
            let (dir, manifest, cancel) = (dir.to_path_buf(), manifest.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let mut writer = PartWriter {
                    parts,
                    part_bytes,
                    buffer: Vec::with_capacity(part_bytes),
                    hasher: Sha256::new(),
                    size: 0,
                };
                let mut tick = |n: u64| {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("canceled"));
                    }
                    let _ = ticks.send(n);
                    Ok(())
                };
                archive::pack(&dir, &manifest, &mut writer, &mut tick)?;
                if !writer.buffer.is_empty() {
                    writer.send()?;
                }
                Ok::<_, std::io::Error>((writer.size, hex::encode(writer.hasher.finalize())))
            })
        };
        let mut etags: Vec<String> = Vec::new();
        let mut parts_begun: u16 = 0;
        let mut in_flight = FuturesUnordered::new();
        let fed: Result<(), RemoteError> = async {
            loop {
                let next = cancellable(cancel, async {
                    loop {
                        tokio::select! {
                            Some(n) = ticked.recv() => meter.advance(n),
                            part = incoming.recv() => return part,
                        }
                    }
                })
                .await?;
                let Some(part) = next else {
                    break;
                };
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(sent) = cancellable(cancel, in_flight.next()).await? {
                        record(&mut etags, sent?);
                    }
                }
                parts_begun += 1;
                if parts_begun > MAX_PARTS {
                    return Err(RemoteError::Failed {
                        what: what.clone(),
                        reason: format!(
                            "the archive takes more than {MAX_PARTS} parts of {part_bytes} bytes"
                        ),
                    });
                }
                let (key, upload_id, what) = (&key, &upload_id, &what);
                let number = parts_begun;
                in_flight.push(async move {
                    let etag = self
                        .s3
                        .upload_part(key, upload_id, number, part, what)
                        .await?;
                    Ok::<_, RemoteError>((number, etag))
                });
            }
            while let Some(sent) = cancellable(cancel, in_flight.next()).await? {
                record(&mut etags, sent?);
            }
            Ok(())
        }
        .await;
        drop(incoming);
        let packed = packer
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        while let Ok(n) = ticked.try_recv() {
            meter.advance(n);
        }
        let finished = match (fed, packed) {
            (Err(error), _) => Err(error),
            (Ok(()), Err(_)) if cancel.load(Ordering::SeqCst) => Err(StoreError::Canceled.into()),
            (Ok(()), Err(error)) => {
                Err(StoreError::io(format!("packing {}", dir.display()), error).into())
            }
            (Ok(()), Ok(packed)) => {
                match self
                    .s3
                    .complete_multipart(&key, &upload_id, &etags, &what)
                    .await
                {
                    Ok(()) => return Ok(packed),
                    Err(error) => Err(error),
                }
            }
        };
        drop(in_flight);
        let aborting = format!("aborting the upload of {}", self.url(object));
        match tokio::time::timeout(
            CLEANUP_TIMEOUT,
            self.s3.abort_multipart(&key, &upload_id, &aborting),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, object = %self.url(object), "cannot abort a failed multipart upload")
            }
            Err(_) => {
                tracing::warn!(object = %self.url(object), "aborting a failed multipart upload timed out")
            }
        }
        finished
    }

    /// Reads the object `object` through; returns its size and SHA-256.
    async fn hash_object(
        &self,
        object: &str,
        meter: &mut Meter,
        cancel: &AtomicBool,
    ) -> Result<(u64, String), RemoteError> {
        let what = format!("reading {}", self.url(object));
        let mut reader = cancellable(cancel, self.s3.get(&self.key(object), &what)).await??;
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = cancellable(cancel, reader.chunk()).await?? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            meter.advance(chunk.len() as u64);
        }
        Ok((size, hex::encode(hasher.finalize())))
    }
}

/// Puts the ETag of part `number` in its place (parts finish in any order).
fn record(etags: &mut Vec<String>, (number, etag): (u16, String)) {
    let index = usize::from(number) - 1;
    if etags.len() <= index {
        etags.resize(index + 1, String::new());
    }
    etags[index] = etag;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_only_for_backups_too_large_for_ten_thousand() {
        assert_eq!(part_bytes(0), PART_BYTES);
        assert_eq!(part_bytes(60 << 30), PART_BYTES, "60 GiB: 8 MiB parts");
        let huge: u64 = 1 << 40;
        let part = part_bytes(huge) as u64;
        assert!(part > PART_BYTES as u64 && part % (1 << 20) == 0, "{part}");
        assert!(
            huge.div_ceil(part) <= u64::from(MAX_PARTS) * 9 / 10,
            "{part}"
        );

        let mut etags = Vec::new();
        record(&mut etags, (2, "b".into()));
        record(&mut etags, (1, "a".into()));
        assert_eq!(etags, ["a", "b"]);
    }
}
