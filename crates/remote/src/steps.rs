//! Running one step of a remote operation: a wait on the object store that gives up
//! soon after a cancel (`cancellable`), and blocking file work off the async threads
//! (`blocking`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_store::StoreError;

use crate::error::RemoteError;

/// How often a wait on the object store looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Runs `work`, giving up with `Canceled` soon after `cancel` is set.
pub(crate) async fn cancellable<T>(
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

/// Runs the blocking `work` on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RemoteError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io("a backup step", std::io::Error::other(e.to_string())))?
        .map_err(RemoteError::from)
}
