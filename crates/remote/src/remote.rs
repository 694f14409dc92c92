//! `Remote`: the backups of one location `s3://BUCKET/PREFIX`, named, never addressed by
//! URL. Listing, reading a backup's manifest object, deleting a backup, and refusing a
//! name already taken live here; uploading and downloading are in `upload` and
//! `download`.

use std::fmt;
use std::sync::atomic::AtomicBool;

use futures_util::stream::StreamExt;

use crate::error::RemoteError;
use crate::location::{check_backup_name, Location};
use crate::manifest::{
    archive_object, manifest_object, RemoteBackup, RemoteManifest, MANIFEST_SUFFIX,
};
use crate::s3::{StoredObject, S3};
use crate::settings::S3Settings;
use crate::steps::cancellable;

/// Manifest objects fetched at once by `list`.
const LIST_FETCHES: usize = 8;

/// A backup location in an S3-compatible object store.
pub struct Remote {
    pub(crate) s3: S3,
    location: Location,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remote({})", self.location)
    }
}

impl Remote {
    /// A client for `location` (no request is made yet). Plain `http://` endpoints are
    /// allowed, and requests are path-style (`ENDPOINT/BUCKET/KEY`), as S3-compatible
    /// servers expect.
    pub fn new(location: Location, s3: &S3Settings) -> Result<Remote, RemoteError> {
        let s3 = S3::new(s3, &location.bucket).map_err(|reason| RemoteError::Failed {
            what: format!("setting up the S3 client for {location}"),
            reason,
        })?;
        Ok(Remote { s3, location })
    }

    /// The key of `object` under the prefix.
    pub(crate) fn key(&self, object: &str) -> String {
        if self.location.prefix.is_empty() {
            object.to_string()
        } else {
            format!("{}/{object}", self.location.prefix)
        }
    }

    /// `s3://BUCKET/PREFIX/OBJECT`.
    pub fn url(&self, object: &str) -> String {
        format!("{}/{object}", self.location)
    }

    fn missing(&self, name: &str) -> RemoteError {
        RemoteError::Missing {
            name: name.to_string(),
            location: self.location.to_string(),
        }
    }

    /// The names of the objects directly under the prefix.
    async fn objects(&self) -> Result<Vec<String>, RemoteError> {
        let under = self.key("");
        let listed = self
            .s3
            .list(&under, Some("/"), &format!("listing {}/", self.location))
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&under).map(str::to_string))
            .collect())
    }

    /// Every object under the prefix, at every level, with its full key and size, in key
    /// order: what a backup left behind.
    pub async fn stored_objects(&self) -> Result<Vec<StoredObject>, RemoteError> {
        self.s3
            .list(&self.key(""), None, &format!("listing {}/", self.location))
            .await
    }

    /// Reads the manifest object of the backup `name`: `Missing` when there is none.
    pub(crate) async fn manifest(&self, name: &str) -> Result<RemoteManifest, RemoteError> {
        let object = manifest_object(name);
        let what = format!("reading {}", self.url(&object));
        let bytes = match self.s3.get_bytes(&self.key(&object), &what).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_missing_object() => return Err(self.missing(name)),
            Err(error) => return Err(error),
        };
        let remote: RemoteManifest =
            serde_json::from_slice(&bytes).map_err(|e| RemoteError::Mismatch {
                what: what.clone(),
                reason: format!("not a backup manifest: {e}"),
            })?;
        remote
            .check(name)
            .map_err(|reason| RemoteError::Mismatch { what, reason })?;
        Ok(remote)
    }

    /// The complete backups (those with a manifest object), newest first.
    pub async fn list(&self) -> Result<Vec<RemoteBackup>, RemoteError> {
        let names: Vec<String> = self
            .objects()
            .await?
            .into_iter()
            .filter_map(|o| o.strip_suffix(MANIFEST_SUFFIX).map(str::to_string))
            .filter(|n| check_backup_name(n).is_ok())
            .collect();
        let fetches: Vec<_> = names.iter().map(|n| self.manifest(n)).collect();
        let fetched: Vec<Result<RemoteManifest, RemoteError>> = futures_util::stream::iter(fetches)
            .buffer_unordered(LIST_FETCHES)
            .collect()
            .await;
        let mut list = Vec::new();
        for remote in fetched {
            let remote = match remote {
                Ok(remote) => remote,
                // Deleted since the listing, or not one of ours: not a backup.
                Err(error @ (RemoteError::Missing { .. } | RemoteError::Mismatch { .. })) => {
                    tracing::warn!(%error, "skipped in the backup list");
                    continue;
                }
                Err(error) => return Err(error),
            };
            list.push(RemoteBackup {
                archive_url: self.url(&remote.archive.object),
                name: remote.name,
                manifest: remote.manifest,
            });
        }
        list.sort_by(|a, b| {
            (b.manifest.created_ms, &b.name).cmp(&(a.manifest.created_ms, &a.name))
        });
        Ok(list)
    }

    /// Deletes both objects of the backup `name` (the archive first, so that a backup
    /// stays listed until nothing of it is left).
    pub async fn delete(&self, name: &str) -> Result<(), RemoteError> {
        let manifest = manifest_object(name);
        // GET, not HEAD: an error's body says what is wrong.
        let what = format!("reading {}", self.url(&manifest));
        match self.s3.get_bytes(&self.key(&manifest), &what).await {
            Ok(_) => {}
            Err(error) if error.is_missing_object() => return Err(self.missing(name)),
            Err(error) => return Err(error),
        }
        for object in [archive_object(name), manifest] {
            let what = format!("deleting {}", self.url(&object));
            self.s3.delete(&self.key(&object), &what).await?;
        }
        Ok(())
    }

    /// `Exists` when the bucket holds an object of the backup `name`. The first request
    /// of a backup: a store that refuses it does so before anything is copied.
    pub async fn refuse_existing(
        &self,
        name: &str,
        cancel: &AtomicBool,
    ) -> Result<(), RemoteError> {
        let objects = cancellable(cancel, self.objects()).await??;
        let ours = [archive_object(name), manifest_object(name)];
        if objects.iter().any(|o| ours.contains(o)) {
            return Err(RemoteError::Exists {
                name: name.to_string(),
                location: self.location.to_string(),
            });
        }
        Ok(())
    }
}
