//! The service's error type (starting and running a service), how storage errors and
//! remote backup errors become wire errors with stable codes, and the few wire errors
//! every room makes.

use cairn_proto::{ErrorCode, WireError};
use cairn_remote::RemoteError;
use cairn_store::StoreError;
use rmpv::Value;

/// Why a service could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{source_name}: {reason}")]
    Settings { source_name: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Certs(#[from] cairn_certs::CertError),
    #[error("cannot listen on {url}: {source}")]
    Bind {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A malformed call.
pub fn bad_request(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

/// An object in a state that refuses the call.
pub fn conflict(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Conflict, message)
}

/// An unexpected failure inside the service.
pub fn internal(reason: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Internal, reason.to_string())
}

/// The wire form of a storage error (by value, for `map_err`).
pub fn store_error(error: StoreError) -> WireError {
    store_error_to_wire(&error)
}

/// The wire form of a storage error.
pub fn store_error_to_wire(error: &StoreError) -> WireError {
    let message = error.to_string();
    let code = match error {
        StoreError::NotFound { .. } | StoreError::UserMissing { .. } => ErrorCode::NotFound,
        StoreError::RevConflict { current, .. } => {
            return WireError::new(ErrorCode::RevConflict, message).with_details(Value::Map(vec![
                (Value::from("current"), Value::from(*current)),
            ]))
        }
        StoreError::ChangesCompacted { oldest, .. } => {
            return WireError::new(ErrorCode::ChangesCompacted, message).with_details(Value::Map(
                vec![(Value::from("oldest"), Value::from(*oldest))],
            ))
        }
        StoreError::UniqueViolation {
            index,
            existing_key,
            ..
        } => {
            return WireError::new(ErrorCode::UniqueViolation, message).with_details(Value::Map(
                vec![
                    (Value::from("index"), Value::from(index.as_str())),
                    (
                        Value::from("existing_key"),
                        Value::from(existing_key.as_str()),
                    ),
                ],
            ))
        }
        StoreError::DatabaseOffline { .. } => {
            return WireError::new(ErrorCode::DatabaseOffline, message).with_details(Value::Map(
                vec![(Value::from("state"), Value::from("Offline"))],
            ))
        }
        StoreError::SyncGap { expected, got, .. } => {
            return WireError::new(ErrorCode::SyncGap, message).with_details(Value::Map(vec![
                (Value::from("expected"), Value::from(*expected)),
                (Value::from("got"), Value::from(*got)),
            ]))
        }
        StoreError::SyncLineage { .. } => ErrorCode::ResyncRequired,
        StoreError::MigrationInProgress { .. } => ErrorCode::MigrationInProgress,
        StoreError::SyncPositionMissing { .. }
        | StoreError::NotFollowing
        | StoreError::FollowConflict { .. } => ErrorCode::Conflict,
        StoreError::DatabaseOnline { .. } => ErrorCode::Conflict,
        StoreError::IndexValue { .. } => ErrorCode::InvalidValue,
        StoreError::IndexMissing { .. } => ErrorCode::NotFound,
        StoreError::IndexStale { .. } => ErrorCode::IndexStale,
        StoreError::InvalidKey { .. } => ErrorCode::InvalidKey,
        StoreError::InvalidName { .. } => ErrorCode::InvalidName,
        StoreError::InvalidValue { .. } => ErrorCode::InvalidValue,
        StoreError::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
        StoreError::InvalidArgument { .. } => ErrorCode::BadRequest,
        StoreError::DatabaseExists { .. } => ErrorCode::DatabaseExists,
        StoreError::DatabaseMissing { .. } => ErrorCode::DatabaseMissing,
        StoreError::UserExists { .. } => ErrorCode::Conflict,
        StoreError::TooManyGrants { .. } => ErrorCode::BadRequest,
        StoreError::StorageFull { .. } => {
            return WireError::new(ErrorCode::StorageFull, message)
                .with_details(Value::Map(vec![(Value::from("full"), Value::from("disk"))]))
        }
        StoreError::MapFull => {
            return WireError::new(ErrorCode::StorageFull, message)
                .with_details(Value::Map(vec![(Value::from("full"), Value::from("map"))]))
        }
        StoreError::Closed | StoreError::ReadOnly { .. } => ErrorCode::Unavailable,
        StoreError::MirrorReadOnly => ErrorCode::MirrorReadOnly,
        StoreError::NotAMirror => ErrorCode::Conflict,
        StoreError::JournalGap { .. } => ErrorCode::SyncGap,
        StoreError::Canceled => ErrorCode::Conflict,
        StoreError::BackupInvalid { .. } => ErrorCode::Conflict,
        // Logged at ERROR by the store where it found it.
        StoreError::Damaged { .. } => ErrorCode::Corrupt,
        StoreError::Corrupt { .. } => {
            tracing::error!(%error, "storage failure");
            ErrorCode::Corrupt
        }
        // A backup of another format given to a restore: migrate it first.
        StoreError::FormatMismatch { .. }
        | StoreError::MigrationUnfinished { .. }
        | StoreError::Migration { .. } => ErrorCode::Conflict,
        StoreError::EnvironmentFailed => {
            tracing::error!(%error, "storage I/O failure");
            return WireError::new(ErrorCode::IoError, message)
                .with_details(Value::Map(vec![(Value::from("fatal"), Value::from(true))]));
        }
        StoreError::Io { source, .. } => {
            tracing::error!(%error, "storage I/O failure");
            let errno = source.raw_os_error().unwrap_or_default();
            return WireError::new(ErrorCode::IoError, message)
                .with_details(Value::Map(vec![(Value::from("errno"), Value::from(errno))]));
        }
        StoreError::DirectoryInUse { .. }
        | StoreError::NoStore { .. }
        | StoreError::StoreExists { .. }
        | StoreError::Lmdb(_) => {
            tracing::error!(%error, "storage failure");
            ErrorCode::Internal
        }
    };
    WireError::new(code, message)
}

/// The wire form of a remote backup error: `not_found`, `conflict`, the storage error's
/// code, or `internal`, with the object store's status and code in `details` when it
/// answered.
pub fn remote_error_to_wire(error: &RemoteError) -> WireError {
    let code = match error {
        RemoteError::Local(error) => return store_error_to_wire(error),
        RemoteError::Missing { .. } => ErrorCode::NotFound,
        RemoteError::Refused { status: 404, .. } => ErrorCode::NotFound,
        RemoteError::Exists { .. } | RemoteError::Mismatch { .. } => ErrorCode::Conflict,
        RemoteError::Refused { .. } | RemoteError::Failed { .. } => ErrorCode::Internal,
    };
    let wire = WireError::new(code, error.to_string());
    match error.s3_facts() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_store_s_refusal_is_kept_on_the_wire() {
        let refused = RemoteError::Refused {
            what: "listing s3://b/p/".into(),
            status: 403,
            code: Some("AccessDenied".into()),
            message: "Forbidden: Invalid signature".into(),
        };
        let wire = remote_error_to_wire(&refused);
        assert_eq!(wire.code, ErrorCode::Internal);
        assert_eq!(
            wire.message,
            "listing s3://b/p/: the object store refused it (403 AccessDenied): Forbidden: Invalid signature"
        );
        assert_eq!(
            wire.details.unwrap().to_string(),
            r#"{"s3_status": 403, "s3_code": "AccessDenied"}"#
        );
        let no_bucket = RemoteError::Refused {
            what: "reading s3://nope/b1.manifest.json".into(),
            status: 404,
            code: Some("NoSuchBucket".into()),
            message: "Bucket not found".into(),
        };
        assert_eq!(remote_error_to_wire(&no_bucket).code, ErrorCode::NotFound);
        let missing = RemoteError::Missing {
            name: "b1".into(),
            location: "s3://b/p".into(),
        };
        let wire = remote_error_to_wire(&missing);
        assert_eq!((wire.code, wire.details), (ErrorCode::NotFound, None));
        let exists = RemoteError::Exists {
            name: "b1".into(),
            location: "s3://b/p".into(),
        };
        assert_eq!(remote_error_to_wire(&exists).code, ErrorCode::Conflict);
        let canceled = RemoteError::Local(StoreError::Canceled);
        assert_eq!(remote_error_to_wire(&canceled).code, ErrorCode::Conflict);
    }

    #[test]
    fn storage_errors_keep_their_meaning_on_the_wire() {
        let conflict = store_error_to_wire(&StoreError::RevConflict {
            key: "k".into(),
            expected: 1,
            current: 2,
        });
        assert_eq!(conflict.code, ErrorCode::RevConflict);
        assert_eq!(conflict.code.status(), 409);
        assert!(conflict.details.unwrap().to_string().contains('2'));
        let full = store_error_to_wire(&StoreError::StorageFull {
            reason: "disk".into(),
        });
        assert_eq!(full.code.status(), 507);
        assert_eq!(full.details.unwrap().to_string(), r#"{"full": "disk"}"#);
        let map = store_error_to_wire(&StoreError::MapFull);
        assert_eq!(map.code, ErrorCode::StorageFull);
        assert_eq!(map.details.unwrap().to_string(), r#"{"full": "map"}"#);
        let missing = store_error_to_wire(&StoreError::DatabaseMissing { name: "x".into() });
        assert_eq!(
            (missing.code, missing.code.status()),
            (ErrorCode::DatabaseMissing, 404)
        );
    }
}
