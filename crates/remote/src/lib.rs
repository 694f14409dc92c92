//! `cairn-remote`: Cairn's backups in S3-compatible object storage, for the service's
//! backup and restore jobs (`[backup] url`) and for `cairn-backup` alike. A backup `NAME`
//! under `s3://BUCKET/PREFIX` is two objects: `PREFIX/NAME.tar.zst`, the backup directory
//! packed by `archive` and sent as a multipart upload, then downloaded again and
//! re-hashed; and `PREFIX/NAME.manifest.json`, written last (its presence is what makes a
//! backup exist), holding the backup's `MANIFEST.json` with the archive's size and
//! SHA-256. A failed or canceled upload aborts the multipart upload and deletes what it
//! wrote. A download checks the archive's SHA-256 against the manifest object and
//! unpacks it into a backup directory for the ordinary verified restore. Requests are
//! signed S3 requests sent over `reqwest`; the object store's refusals keep its HTTP
//! status and S3 error code as values (`RemoteError`).

mod archive;
mod download;
mod error;
mod http;
mod location;
mod manifest;
mod progress;
mod reader;
mod remote;
mod retry;
mod s3;
mod settings;
mod steps;
#[cfg(test)]
mod test_server;
mod upload;

pub use error::{RemoteError, NO_SUCH_BUCKET};
pub use location::{check_backup_name, BackupUrl, Location};
pub use manifest::{archive_object, RemoteBackup};
pub use remote::Remote;
pub use s3::StoredObject;
pub use settings::{check_endpoint, S3Settings, AWS_VARIABLES};
