//! Automatic READ_ONLY: reasons the service turns itself read-only for, kept apart from
//! the status an admin sets (they are not stored; the service works them out again).
//! - `low_disk_space`: the file system of the environment (`DIR/store`) has less free
//!   room than the threshold: `[status] min_free_bytes` or `min_free_percent` of the
//!   file system, whichever is smaller. Checked at start and every
//!   `[status] free_space_check_secs`.
//! - `disk_full`: a write failed because the file system was full. Cleared by the next
//!   free-space check that finds the room above the threshold.
//! - `map_full`: a write failed because the LMDB map was full. Cleared by a check that
//!   finds the pages in use leave at least 5% of the map (at most 1 GiB) free, e.g.
//!   after an admin deleted data.
//! - `io_error`: a read or write failed with an I/O error (the message names the
//!   errno). Each check then commits a probe write; the first that reaches the disk
//!   clears it.
//!
//! The mode callers see is the stricter of the admin's and READ_ONLY-if-any-reason
//! (DOWN > READ_ONLY > READ_WRITE). Admin calls always pass, so that an admin can free
//! room. Each reason that comes or goes is logged at WARN (by `service`) and sent to
//! the webhooks as a `status_changed` event.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_proto::{ErrorCode, WireError};
use cairn_store::ServiceMode;
use tokio::sync::Notify;

use crate::ops::shared::Shared;
use crate::ops::webhooks::WebhookEvent;
use crate::storage::now_ms;

pub use cairn_proto::values::ReasonCode;

/// One reason in force: what, a one-line message for callers, since when (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
    pub since_ms: u64,
}

/// The reasons in force, read by every call.
#[derive(Default)]
pub struct AutoStatus {
    /// In code order.
    reasons: RwLock<Arc<Vec<Reason>>>,
    /// Wakes the checker at once (a reload changed the thresholds).
    pub recheck: Notify,
}

impl AutoStatus {
    pub fn reasons(&self) -> Arc<Vec<Reason>> {
        self.reasons.read().expect("reasons lock").clone()
    }

    /// Raises `code` (or updates its message): true when it was not in force.
    fn raise(&self, code: ReasonCode, message: String) -> bool {
        let mut reasons = self.reasons.write().expect("reasons lock");
        let mut next = reasons.as_ref().clone();
        let new = match next.iter_mut().find(|r| r.code == code) {
            Some(reason) if reason.message == message => return false,
            Some(reason) => {
                reason.message = message;
                false
            }
            None => {
                next.push(Reason {
                    code,
                    message,
                    since_ms: now_ms(),
                });
                next.sort_by_key(|r| r.code);
                true
            }
        };
        *reasons = Arc::new(next);
        new
    }

    /// Clears `code`: the reason, if it was in force.
    fn clear(&self, code: ReasonCode) -> Option<Reason> {
        let mut reasons = self.reasons.write().expect("reasons lock");
        let position = reasons.iter().position(|r| r.code == code)?;
        let mut next = reasons.as_ref().clone();
        let gone = next.remove(position);
        *reasons = Arc::new(next);
        Some(gone)
    }

    fn has(&self, code: ReasonCode) -> bool {
        self.reasons().iter().any(|r| r.code == code)
    }
}

fn strictness(mode: ServiceMode) -> u8 {
    match mode {
        ServiceMode::ReadWrite => 0,
        ServiceMode::ReadOnly => 1,
        ServiceMode::Down => 2,
    }
}

/// The mode callers get: the stricter of the admin's and READ_ONLY when any automatic
/// reason is in force.
pub fn effective_mode(admin: ServiceMode, automatic: bool) -> ServiceMode {
    let auto = if automatic {
        ServiceMode::ReadOnly
    } else {
        ServiceMode::ReadWrite
    };
    if strictness(auto) > strictness(admin) {
        auto
    } else {
        admin
    }
}

/// The free room below which the service turns read-only: `min_free_bytes` or
/// `min_free_percent` of the file system's `total` bytes, whichever is smaller.
pub fn threshold(total: u64, min_free_bytes: u64, min_free_percent: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a share between 0 and `total`, rounded down, is the meaning"
    )]
    let share = (total as f64 * min_free_percent.clamp(0.0, 100.0) / 100.0) as u64;
    share.min(min_free_bytes)
}

/// Bytes for people: `512 MiB`, `1 GiB`, `1.5 GiB`, `300 B`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() < 0.05 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The message of a non-admin write refused for `reasons`.
pub fn read_only_message(reasons: &[Reason]) -> String {
    let why: Vec<&str> = reasons.iter().map(|r| r.message.as_str()).collect();
    format!("read-only: {}", why.join("; "))
}

/// Room the map must have again before `map_full` clears: 5% of it, at most 1 GiB.
fn map_headroom(map_size: u64) -> u64 {
    (map_size / 20).min(1 << 30)
}

/// Raises a reason, logging (and telling webhooks) when it is new.
fn raise_reason(shared: &Shared, code: ReasonCode, message: String) {
    let admin = shared.status().mode;
    let before = effective_mode(admin, !shared.auto.reasons().is_empty());
    if shared.auto.raise(code, message.clone()) {
        let after = effective_mode(admin, true);
        tracing::warn!(
            reason = code.as_str(),
            %message,
            status = after.as_str(),
            was = before.as_str(),
            by = "service",
            "automatic READ_ONLY reason raised"
        );
        status_changed(
            shared,
            before,
            after,
            format!("{}: {message}", code.as_str()),
        );
    }
}

/// Clears a reason, logging (and telling webhooks) when it was in force.
fn clear_reason(shared: &Shared, code: ReasonCode, why: &str) {
    let admin = shared.status().mode;
    let Some(gone) = shared.auto.clear(code) else {
        return;
    };
    let after = effective_mode(admin, !shared.auto.reasons().is_empty());
    let before = effective_mode(admin, true);
    tracing::warn!(
        reason = code.as_str(),
        was = %gone.message,
        %why,
        status = after.as_str(),
        by = "service",
        "automatic READ_ONLY reason cleared"
    );
    status_changed(
        shared,
        before,
        after,
        format!("{} cleared: {why}", code.as_str()),
    );
}

/// Tells the webhooks that the status changed by itself (a reason came or went; the
/// mode itself may stay, say under an admin's DOWN).
fn status_changed(shared: &Shared, old: ServiceMode, new: ServiceMode, reason: String) {
    shared.webhooks.emit(WebhookEvent::status_changed(
        Some(old.as_str().to_string()),
        new.as_str(),
        reason,
        "service",
    ));
}

/// Notes a write that failed: a full map or file system, or an I/O error, raises its
/// reason.
pub fn note_write_error(shared: &Shared, error: &WireError) {
    if error.code == ErrorCode::IoError {
        raise_reason(
            shared,
            ReasonCode::IoError,
            format!(
                "the disk failed: {}; writes are refused until a probe write succeeds",
                error.message
            ),
        );
        return;
    }
    if error.code != ErrorCode::StorageFull {
        return;
    }
    let map_full = error.details.as_ref().is_some_and(|details| {
        details
            .as_map()
            .into_iter()
            .flatten()
            .any(|(key, value)| key.as_str() == Some("full") && value.as_str() == Some("map"))
    });
    if map_full {
        let map_size = shared.settings().map_size as u64;
        raise_reason(
            shared,
            ReasonCode::MapFull,
            format!(
                "the LMDB map ({}) is full: delete data, or raise [store] map_size and restart",
                bytes_text(map_size)
            ),
        );
    } else {
        raise_reason(
            shared,
            ReasonCode::DiskFull,
            format!("a write failed: {}", error.message),
        );
    }
}

/// One round of checks: the free space of the environment's file system, and the room
/// in the map while `map_full` is in force.
pub async fn check(shared: &Shared) {
    let settings = shared.settings();
    let path = shared.dir.join(cairn_store::STORE_DIR);
    let space = tokio::task::spawn_blocking(move || cairn_store::file_system_space(&path)).await;
    match space {
        Ok(Ok(space)) => {
            let limit = threshold(
                space.total_bytes,
                settings.min_free_bytes,
                settings.min_free_percent,
            );
            if space.available_bytes < limit {
                raise_reason(
                    shared,
                    ReasonCode::LowDiskSpace,
                    format!(
                        "free space {} is below {}: free some space",
                        bytes_text(space.available_bytes),
                        bytes_text(limit)
                    ),
                );
            } else {
                let why = format!(
                    "free space {} is at least {}",
                    bytes_text(space.available_bytes),
                    bytes_text(limit)
                );
                clear_reason(shared, ReasonCode::LowDiskSpace, &why);
                clear_reason(shared, ReasonCode::DiskFull, &why);
            }
        }
        Ok(Err(error)) => tracing::error!(%error, "cannot read the free space"),
        Err(error) => tracing::error!(%error, "cannot read the free space"),
    }
    if shared.auto.has(ReasonCode::IoError) {
        probe(shared).await;
    }
    if shared.auto.has(ReasonCode::MapFull) {
        let Ok(store) = shared.store() else { return };
        let usage = tokio::task::spawn_blocking(move || store.usage()).await;
        match usage {
            Ok(Ok(usage)) => {
                let env = usage.env;
                let room = env.map_size.saturating_sub(env.used_bytes());
                if room >= map_headroom(env.map_size) {
                    let why = format!(
                        "{} of the {} map is free",
                        bytes_text(room),
                        bytes_text(env.map_size)
                    );
                    clear_reason(shared, ReasonCode::MapFull, &why);
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "cannot read the map's usage"),
            Err(error) => tracing::error!(%error, "cannot read the map's usage"),
        }
    }
}

/// Commits a probe write: when it reaches the disk, `io_error` clears. When the
/// environment had a fatal error (a meta page did not reach the disk: LMDB refuses
/// every transaction from then on), it is closed and opened again first, which takes
/// it back to the last commit that did.
async fn probe(shared: &Shared) {
    let Ok(store) = shared.store() else { return };
    let probed =
        crate::storage::write(&store, cairn_store::Write::Probe { now_ms: now_ms() }).await;
    drop(store);
    match probed {
        Ok(_) => clear_reason(
            shared,
            ReasonCode::IoError,
            "a probe write reached the disk",
        ),
        Err(error) => {
            tracing::warn!(%error, "the probe write failed: still READ_ONLY");
            note_write_error(shared, &error);
            if is_fatal(&error) {
                reopen(shared).await;
            }
        }
    }
}

/// True for the error of an environment that must be opened again.
fn is_fatal(error: &WireError) -> bool {
    error.code == ErrorCode::IoError
        && error.details.as_ref().is_some_and(|details| {
            details
                .as_map()
                .into_iter()
                .flatten()
                .any(|(key, value)| key.as_str() == Some("fatal") && value.as_bool() == Some(true))
        })
}

/// How long calls in flight may keep the failed environment before the reopen gives up
/// (and tries again at the next check).
const REOPEN_DRAIN: Duration = Duration::from_secs(10);

/// Closes the failed environment once no call holds it, and opens it again.
async fn reopen(shared: &Shared) {
    let Some(failed) = shared.take_store() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + REOPEN_DRAIN;
    while failed.handles() > 1 {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("calls still hold the failed environment: reopening it later");
            shared.put_store(failed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = shared.dir.clone();
    let options = shared.settings().store_options();
    let reopened = tokio::task::spawn_blocking(move || {
        drop(failed);
        cairn_store::Store::open(&dir, options)
    })
    .await;
    match reopened {
        Ok(Ok(store)) => {
            tracing::warn!("the environment was opened again after its fatal error");
            shared.put_store(store);
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "the environment does not open again: the service cannot serve until restarted")
        }
        Err(error) => tracing::error!(%error, "reopening the environment failed"),
    }
}

/// Checks every `[status] free_space_check_secs` (at once after a reload) until the
/// service shuts down.
pub fn spawn(shared: Arc<Shared>) {
    let tasks = shared.background.clone();
    tasks.spawn(async move {
        loop {
            let every = shared
                .settings()
                .free_space_check
                .max(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shared.auto.recheck.notified() => {}
                _ = shared.shutdown.cancelled() => return,
            }
            check(&shared).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_smaller_bound() {
        const GIB: u64 = 1 << 30;
        // 5% of 100 GiB is 5 GiB: 1 GiB is smaller.
        assert_eq!(threshold(100 * GIB, GIB, 5.0), GIB);
        // 5% of 10 GiB is 512 MiB: smaller than 1 GiB.
        assert_eq!(threshold(10 * GIB, GIB, 5.0), GIB / 2);
        assert_eq!(threshold(10 * GIB, GIB, 0.0), 0);
        assert_eq!(threshold(10 * GIB, 0, 5.0), 0);
        assert_eq!(threshold(10 * GIB, u64::MAX, 100.0), 10 * GIB);
        assert_eq!(threshold(10 * GIB, u64::MAX, 250.0), 10 * GIB);
        assert_eq!(threshold(0, GIB, 5.0), 0);
    }

    #[test]
    fn the_stricter_mode_wins() {
        use ServiceMode::*;
        for (admin, automatic, expected) in [
            (ReadWrite, false, ReadWrite),
            (ReadWrite, true, ReadOnly),
            (ReadOnly, false, ReadOnly),
            (ReadOnly, true, ReadOnly),
            (Down, false, Down),
            (Down, true, Down),
        ] {
            assert_eq!(
                effective_mode(admin, automatic),
                expected,
                "{admin:?} {automatic}"
            );
        }
    }

    #[test]
    fn reasons_come_and_go_in_order() {
        let auto = AutoStatus::default();
        assert!(auto.raise(ReasonCode::MapFull, "map".into()));
        assert!(auto.raise(ReasonCode::LowDiskSpace, "low".into()));
        assert!(!auto.raise(ReasonCode::LowDiskSpace, "lower".into()));
        let reasons = auto.reasons();
        let codes: Vec<_> = reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["low_disk_space", "map_full"]);
        assert_eq!(reasons[0].message, "lower");
        assert_eq!(read_only_message(&reasons), "read-only: lower; map");
        assert!(auto.clear(ReasonCode::DiskFull).is_none());
        assert!(auto.clear(ReasonCode::LowDiskSpace).is_some());
        assert_eq!(auto.reasons().len(), 1);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes_text(300), "300 B");
        assert_eq!(bytes_text(512 << 20), "512 MiB");
        assert_eq!(bytes_text(1 << 30), "1 GiB");
        assert_eq!(bytes_text(3 << 29), "1.5 GiB");
        assert_eq!(map_headroom(1 << 40), 1 << 30);
        assert_eq!(map_headroom(100 << 20), 5 << 20);
    }
}
