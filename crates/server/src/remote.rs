//! Remote backups in S3-compatible object storage (`[backup] url = "s3://BUCKET/PREFIX"`).
//! A backup `NAME` is two objects: `PREFIX/NAME.tar.zst`, the backup directory packed by
//! `crate::archive` and sent as a multipart upload in parts of `PART_BYTES`, then
//! downloaded again and re-hashed; and `PREFIX/NAME.manifest.json`, written last (its
//! presence is what makes a backup exist), holding the backup's `MANIFEST.json` with the
//! archive's size and SHA-256. A failed or canceled upload aborts the multipart upload and
//! deletes what it wrote. A restore downloads the archive into the service's scratch
//! directory, checks its SHA-256 against the manifest object, and unpacks it into a
//! backup directory for the ordinary verified restore. Only the service's own bucket and
//! prefix are ever read: callers name backups, never URLs.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_proto::{methods, ErrorCode, WireError};
use cairn_store::backup::{self, BackupProgress, Manifest, ProgressFn};
use cairn_store::StoreError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use rmpv::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::archive;
use crate::error::store_error_to_wire;

/// Suffix of a backup's archive object.
pub const ARCHIVE_SUFFIX: &str = ".tar.zst";
/// Suffix of a backup's manifest object.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Size of the parts of an archive's multipart upload (all but the last).
pub const PART_BYTES: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Layout version of a manifest object.
pub const REMOTE_MANIFEST_VERSION: u32 = 1;
/// How the archive is made, as the manifest object names it.
const ARCHIVE_FORMAT: &str = "tar+zstd";
/// Manifest objects fetched at once by `list`.
const LIST_FETCHES: usize = 8;
/// How often a wait on the object store looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// Least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(200);
/// The longest the clean-up after a failed upload may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `s3://BUCKET/PREFIX`: where a service keeps its backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// `a/b`, without slashes at either end; empty for the bucket's top.
    pub prefix: String,
}

impl FromStr for Location {
    type Err = String;

    fn from_str(url: &str) -> Result<Location, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?}: use s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(format!(
                "{url:?}: the bucket name {bucket:?} is not one S3 accepts (3-63 of a-z 0-9 . -)"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix_ok = prefix.is_empty()
            || prefix.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if !prefix_ok {
            return Err(format!(
                "{url:?}: the prefix {prefix:?} must be names of A-Z a-z 0-9 . _ - separated by /"
            ));
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the object store: `[backup.s3]`, else the `AWS_*` variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `http://HOST:PORT` or `https://…`; `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// `None`: `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "(hidden)");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .finish()
    }
}

/// What a manifest object (`NAME.manifest.json`) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteManifest {
    /// `REMOTE_MANIFEST_VERSION`.
    pub remote_manifest_version: u32,
    /// The backup's name.
    pub name: String,
    pub archive: ArchiveInfo,
    /// The backup's `MANIFEST.json`, as it is inside the archive.
    pub manifest: Manifest,
}

/// The archive object of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Its object name beside the manifest object, `NAME.tar.zst`.
    pub object: String,
    /// `tar+zstd`.
    pub format: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
}

/// Why a remote backup call failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The object store answered with an error.
    #[error("{what}: the object store refused it ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        what: String,
        status: u16,
        /// The S3 error code, e.g. `AccessDenied`.
        code: Option<String>,
        message: String,
    },
    /// The object store could not be reached, or the client could not be set up.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error("backup {name:?} already exists in {location}: choose another name")]
    Exists { name: String, location: String },
    #[error("no backup {name:?} in {location}")]
    Missing { name: String, location: String },
    /// What was read back is not what was written, or an object is not what it says.
    #[error("{what}: {reason}")]
    Mismatch { what: String, reason: String },
    /// A local step (the backup, scratch files, a cancel) failed.
    #[error(transparent)]
    Local(#[from] StoreError),
}

impl RemoteError {
    /// The wire form: `not_found`, `conflict`, the storage error's code, or `internal`,
    /// with the object store's status and code in `details` when it answered.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            RemoteError::Local(error) => return store_error_to_wire(error),
            RemoteError::Missing { .. } => ErrorCode::NotFound,
            RemoteError::Refused { status: 404, .. } => ErrorCode::NotFound,
            RemoteError::Exists { .. } | RemoteError::Mismatch { .. } => ErrorCode::Conflict,
            RemoteError::Refused { .. } | RemoteError::Failed { .. } => ErrorCode::Internal,
        };
        let wire = WireError::new(code, self.to_string());
        match self.s3_facts() {
            Some((status, s3_code)) => {
                let mut details = vec![(Value::from("s3_status"), Value::from(status))];
                if let Some(s3_code) = s3_code {
                    details.push((Value::from("s3_code"), Value::from(s3_code)));
                }
                wire.with_details(Value::Map(details))
            }
            None => wire,
        }
    }

    /// The object store's HTTP status and S3 error code, when it refused.
    pub fn s3_facts(&self) -> Option<(u16, Option<&str>)> {
        match self {
            RemoteError::Refused { status, code, .. } => Some((*status, code.as_deref())),
            _ => None,
        }
    }
}

/// The text of `<Tag>…</Tag>` in an S3 error body.
fn xml_field<'b>(body: &'b str, tag: &str) -> Option<&'b str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..end].trim())
}

/// Turns an object store error into a `RemoteError` saying what was being done: the
/// server's status, S3 code and message when it answered, else what went wrong.
fn store_failure(what: impl Into<String>, error: object_store::Error) -> RemoteError {
    let what = what.into();
    let mut texts = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = current {
        texts.push(e.to_string());
        current = e.source();
    }
    for text in &texts {
        let Some(at) = text.find("Server returned non-2xx status code: ") else {
            continue;
        };
        let rest = &text[at + "Server returned non-2xx status code: ".len()..];
        let Some(status) = rest.get(..3).and_then(|s| s.parse::<u16>().ok()) else {
            continue;
        };
        let body = rest.split_once(": ").map_or("", |(_, body)| body);
        let reason = rest
            .split_once(": ")
            .map_or(rest, |(status, _)| status)
            .to_string();
        let message = xml_field(body, "Message")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or(reason);
        return RemoteError::Refused {
            what,
            status,
            code: xml_field(body, "Code").map(str::to_string),
            message,
        };
    }
    let mut reason = String::new();
    for text in texts {
        if !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
    }
    RemoteError::Failed { what, reason }
}

/// True when the object (not its bucket) does not exist.
fn is_missing_object(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
        && !error.to_string().contains("NoSuchBucket")
}

/// Runs `work`, giving up with `Canceled` soon after `cancel` is set.
async fn cancellable<T>(
    cancel: &AtomicBool,
    work: impl Future<Output = T>,
) -> Result<T, RemoteError> {
    tokio::pin!(work);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(StoreError::Canceled.into());
        }
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = tokio::time::sleep(CANCEL_POLL) => {}
        }
    }
}

/// Counts bytes of one remote step and reports them now and then.
struct Meter {
    report: ProgressFn,
    done: u64,
    total: u64,
    message: String,
    last: Instant,
}

impl Meter {
    fn new(report: &ProgressFn) -> Meter {
        Meter {
            report: report.clone(),
            done: 0,
            total: 0,
            message: String::new(),
            last: Instant::now(),
        }
    }

    /// Begins a step of `bytes` more work: reports at once.
    fn step(&mut self, message: String, bytes: u64) {
        self.message = message;
        self.total = self.done + bytes;
        self.send();
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.total = self.total.max(self.done);
        if self.last.elapsed() >= REPORT_EVERY {
            self.send();
        }
    }

    fn send(&mut self) {
        self.last = Instant::now();
        (self.report)(&BackupProgress {
            bytes_done: self.done,
            bytes_total: self.total,
            message: self.message.clone(),
        });
    }
}

/// Hashes and counts the bytes of an archive while cutting it into upload parts.
struct PartWriter {
    parts: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    hasher: Sha256,
    size: u64,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES));
        self.parts
            .blocking_send(Bytes::from(part))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = PART_BYTES - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.buffer.len() == PART_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A service's backup location in an S3-compatible object store.
pub struct Remote {
    store: AmazonS3,
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
        let failed = |reason: String| RemoteError::Failed {
            what: format!("setting up the S3 client for {location}"),
            reason,
        };
        let (Some(key_id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
            return Err(failed(
                "no access key: set [backup.s3] access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
            ));
        };
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(60));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = &s3.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| failed(e.to_string()))?;
        Ok(Remote { store, location })
    }

    fn path(&self, object: &str) -> ObjectPath {
        if self.location.prefix.is_empty() {
            ObjectPath::from(object)
        } else {
            ObjectPath::from(format!("{}/{object}", self.location.prefix))
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
        let prefix = (!self.location.prefix.is_empty())
            .then(|| ObjectPath::from(self.location.prefix.as_str()));
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| store_failure(format!("listing {}/", self.location), e))?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }

    /// Reads the manifest object of the backup `name`.
    async fn manifest(&self, name: &str) -> Result<RemoteManifest, RemoteError> {
        let object = format!("{name}{MANIFEST_SUFFIX}");
        let what = format!("reading {}", self.url(&object));
        let bytes = match self.store.get(&self.path(&object)).await {
            Ok(found) => found.bytes().await,
            Err(error) => Err(error),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(error) if is_missing_object(&error) => return Err(self.missing(name)),
            Err(error) => return Err(store_failure(what, error)),
        };
        let remote: RemoteManifest =
            serde_json::from_slice(&bytes).map_err(|e| RemoteError::Mismatch {
                what: what.clone(),
                reason: format!("not a backup manifest: {e}"),
            })?;
        if remote.remote_manifest_version != REMOTE_MANIFEST_VERSION
            || remote.name != name
            || remote.archive.object != format!("{name}{ARCHIVE_SUFFIX}")
            || remote.archive.format != ARCHIVE_FORMAT
        {
            return Err(RemoteError::Mismatch {
                what,
                reason: format!(
                    "version {}, name {:?}, archive {:?} ({}): not a manifest of backup {name:?} this service reads",
                    remote.remote_manifest_version, remote.name, remote.archive.object, remote.archive.format
                ),
            });
        }
        Ok(remote)
    }

    /// The complete backups (those with a manifest object), newest first.
    pub async fn list(&self) -> Result<Vec<methods::BackupInfo>, RemoteError> {
        let names: Vec<String> = self
            .objects()
            .await?
            .into_iter()
            .filter_map(|o| o.strip_suffix(MANIFEST_SUFFIX).map(str::to_string))
            .filter(|n| crate::ops::backup::validate_backup_name(n).is_ok())
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
            list.push(methods::BackupInfo {
                location: self.url(&remote.archive.object),
                name: remote.name,
                created_ms: remote.manifest.created_ms,
                service_id: remote.manifest.service_id.clone(),
                format_version: remote.manifest.format_version,
                bytes: remote.manifest.bytes(),
                files: remote.manifest.files.len() as u64,
                databases: remote.manifest.databases.len() as u64,
            });
        }
        list.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.name.cmp(&a.name)));
        Ok(list)
    }

    /// Deletes both objects of the backup `name` (the archive first, so that a backup
    /// stays listed until nothing of it is left).
    pub async fn delete(&self, name: &str) -> Result<(), RemoteError> {
        let manifest = format!("{name}{MANIFEST_SUFFIX}");
        // GET, not HEAD: an error's body says what is wrong.
        match self.store.get(&self.path(&manifest)).await {
            Ok(_) => {}
            Err(error) if is_missing_object(&error) => return Err(self.missing(name)),
            Err(error) => {
                return Err(store_failure(
                    format!("reading {}", self.url(&manifest)),
                    error,
                ))
            }
        }
        for object in [
            format!("{name}{ARCHIVE_SUFFIX}"),
            format!("{name}{MANIFEST_SUFFIX}"),
        ] {
            self.store
                .delete(&self.path(&object))
                .await
                .map_err(|e| store_failure(format!("deleting {}", self.url(&object)), e))?;
        }
        Ok(())
    }

    /// `Exists` when the bucket holds an object of the backup `name`. The first request
    /// of a backup job: a store that refuses it does so before anything is copied.
    pub async fn refuse_existing(
        &self,
        name: &str,
        cancel: &AtomicBool,
    ) -> Result<(), RemoteError> {
        let objects = cancellable(cancel, self.objects()).await??;
        let ours = [
            format!("{name}{ARCHIVE_SUFFIX}"),
            format!("{name}{MANIFEST_SUFFIX}"),
        ];
        if objects.iter().any(|o| ours.contains(o)) {
            return Err(RemoteError::Exists {
                name: name.to_string(),
                location: self.location.to_string(),
            });
        }
        Ok(())
    }

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
        let archive = format!("{name}{ARCHIVE_SUFFIX}");
        let index = format!("{name}{MANIFEST_SUFFIX}");
        let outcome = self.upload_new(name, dir, report, cancel).await;
        if outcome.is_err() {
            for object in [&archive, &index] {
                let deleted =
                    tokio::time::timeout(CLEANUP_TIMEOUT, self.store.delete(&self.path(object)))
                        .await;
                if !matches!(deleted, Ok(Ok(()))) {
                    tracing::warn!(object = %self.url(object), "cannot delete what a failed upload left");
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
        let archive = format!("{name}{ARCHIVE_SUFFIX}");
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

        let index = format!("{name}{MANIFEST_SUFFIX}");
        meter.step(format!("writing {}", self.url(&index)), 0);
        let remote = RemoteManifest {
            remote_manifest_version: REMOTE_MANIFEST_VERSION,
            name: name.to_string(),
            archive: ArchiveInfo {
                object: archive.clone(),
                format: ARCHIVE_FORMAT.to_string(),
                size,
                sha256,
            },
            manifest,
        };
        let mut json = serde_json::to_vec_pretty(&remote).map_err(|e| RemoteError::Mismatch {
            what: format!("writing {}", self.url(&index)),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        cancellable(
            cancel,
            self.store.put(&self.path(&index), PutPayload::from(json)),
        )
        .await?
        .map_err(|e| store_failure(format!("writing {}", self.url(&index)), e))?;
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
        let mut upload = cancellable(cancel, self.store.put_multipart(&self.path(object)))
            .await?
            .map_err(|e| store_failure(what.clone(), e))?;
        let (parts, mut incoming) = mpsc::channel::<Bytes>(1);
        let (ticks, mut ticked) = mpsc::unbounded_channel::<u64>();
        let packer = {
            let (dir, manifest, cancel) = (dir.to_path_buf(), manifest.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let mut writer = PartWriter {
                    parts,
                    buffer: Vec::with_capacity(PART_BYTES),
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
        let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
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
                        sent.map_err(|e| store_failure(what.clone(), e))?;
                    }
                }
                in_flight.push(upload.put_part(PutPayload::from(part)));
            }
            while let Some(sent) = cancellable(cancel, in_flight.next()).await? {
                sent.map_err(|e| store_failure(what.clone(), e))?;
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
            (Ok(()), Ok(packed)) => match upload.complete().await {
                Ok(_) => return Ok(packed),
                Err(error) => Err(store_failure(what.clone(), error)),
            },
        };
        drop(in_flight);
        match tokio::time::timeout(CLEANUP_TIMEOUT, upload.abort()).await {
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
        let found = cancellable(cancel, self.store.get(&self.path(object)))
            .await?
            .map_err(|e| store_failure(what.clone(), e))?;
        let mut stream = found.into_stream();
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = cancellable(cancel, stream.next()).await? {
            let chunk = chunk.map_err(|e| store_failure(what.clone(), e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            meter.advance(chunk.len() as u64);
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

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
        let found = cancellable(cancel, self.store.get(&self.path(object)))
            .await?
            .map_err(|e| match e {
                e if is_missing_object(&e) => RemoteError::Mismatch {
                    what: what.clone(),
                    reason: "the manifest object is there but the archive is not".to_string(),
                },
                other => store_failure(what.clone(), other),
            })?;
        let local = |e: std::io::Error| {
            RemoteError::from(StoreError::io(format!("writing {}", file.display()), e))
        };
        let mut out = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(file).await.map_err(local)?,
        );
        let mut stream = found.into_stream();
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = cancellable(cancel, stream.next()).await? {
            let chunk = chunk.map_err(|e| store_failure(what.clone(), e))?;
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
        if inside.manifest_sha256 != remote.manifest.manifest_sha256 {
            return Err(RemoteError::Mismatch {
                what: format!("unpacking {}", self.url(object)),
                reason: "the archive's MANIFEST.json is not the one its manifest object holds"
                    .to_string(),
            });
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RemoteError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io("a backup step", std::io::Error::other(e.to_string())))?
        .map_err(RemoteError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_a_bucket_and_a_plain_prefix() {
        let full: Location = "s3://cairn-backups/prod/db1/".parse().unwrap();
        assert_eq!(
            (full.bucket.as_str(), full.prefix.as_str()),
            ("cairn-backups", "prod/db1")
        );
        assert_eq!(full.to_string(), "s3://cairn-backups/prod/db1");
        let top: Location = "s3://bucket".parse().unwrap();
        assert_eq!(
            (top.prefix.as_str(), top.to_string().as_str()),
            ("", "s3://bucket")
        );
        for bad in [
            "http://bucket/x",
            "s3://",
            "s3://Bucket/x",
            "s3://b/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/a b",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_server_s_refusal_is_kept() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message></Error>";
        assert_eq!(xml_field(body, "Code"), Some("AccessDenied"));
        assert_eq!(
            xml_field(body, "Message"),
            Some("Forbidden: Invalid signature")
        );
        assert_eq!(xml_field(body, "Resource"), None);
        let refused = RemoteError::Refused {
            what: "listing s3://b/p/".into(),
            status: 403,
            code: Some("AccessDenied".into()),
            message: "Forbidden: Invalid signature".into(),
        };
        assert_eq!(
            refused.to_string(),
            "listing s3://b/p/: the object store refused it (403 AccessDenied): Forbidden: Invalid signature"
        );
        let wire = refused.to_wire();
        assert_eq!(wire.code, ErrorCode::Internal);
        assert!(wire.details.unwrap().to_string().contains("AccessDenied"));
        let missing = RemoteError::Missing {
            name: "b1".into(),
            location: "s3://b/p".into(),
        };
        assert_eq!(missing.to_wire().code, ErrorCode::NotFound);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = S3Settings {
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("GK1") && !shown.contains("very-secret"),
            "{shown}"
        );
    }
}
