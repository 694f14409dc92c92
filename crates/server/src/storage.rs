//! How the async service reaches the synchronous store: a write is submitted to the
//! store's group-commit writer and awaited without blocking an async thread, and a read
//! that can be long runs on a blocking thread. Every room uses these; none defines its
//! own.

use cairn_proto::{ErrorCode, WireError};
use cairn_store::{Store, StoreError, Write, Written};
use tokio::sync::oneshot;

use crate::error::{internal, store_error};

pub use cairn_store::now_ms;

/// Submits a write and waits for its fsync'd commit.
pub async fn write(store: &Store, write: Write) -> Result<Written, WireError> {
    let (sender, receiver) = oneshot::channel();
    store.submit(
        write,
        Box::new(move |outcome| {
            let _ = sender.send(outcome);
        }),
    );
    receiver
        .await
        .map_err(|_| WireError::new(ErrorCode::Unavailable, "the store is closing"))?
        .map_err(store_error)
}

/// Runs a read (or any other work on the store's files) on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(internal)?
        .map_err(store_error)
}

/// Runs work on a blocking thread, keeping its storage error as it is (for jobs, whose
/// failures are described from the storage error itself).
pub async fn blocking_store<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io(what.to_string(), std::io::Error::other(e.to_string())))?
}
