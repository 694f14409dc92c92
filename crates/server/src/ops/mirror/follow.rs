//! The follow task of a mirror: connects to the leader (backing off with a cap after
//! failures), streams the journal entries after the store's own position
//! (`mirror.follow`) and applies each batch through the store's writer, which stores the
//! entries and the new position in one transaction; the service's in-memory state
//! (status, database states, migration mode) follows what the entries changed. A leader
//! whose history no longer continues the mirror's makes it bootstrap again.

use std::sync::Arc;
use std::time::Duration;

use cairn_client::ClientError;
use cairn_proto::methods::{to_value, MirrorEntry, MirrorFollowArgs, MirrorItem};
use cairn_proto::values::MirrorState;
use cairn_proto::{ErrorCode, Method};
use cairn_store::journal::EntryHeader;
use cairn_store::{JournalEntry, Store, StoreError, Write, Written};

use super::bootstrap::rebootstrap;
use super::{Mirror, Refusal, HEARTBEAT_MS};
use crate::ops::shared::Shared;
use crate::storage::write;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The position of `store`, noted as the mirror's applied position.
pub(super) fn note_position(mirror: &Mirror, store: &Store) -> Result<(), StoreError> {
    let snapshot = store.snapshot()?;
    let position = snapshot.journal_position()?;
    let time_ms = match position.seq {
        0 => 0,
        seq => snapshot
            .journal_entries(seq - 1, 1, usize::MAX)?
            .first()
            .map(|e| EntryHeader::decode(&e.value).map(|h| h.time_ms))
            .transpose()?
            .unwrap_or(0),
    };
    mirror.applied(position.seq, time_ms);
    Ok(())
}

/// Follows the leader until the service stops or the mirror is promoted.
pub async fn follow(shared: Arc<Shared>, mirror: Arc<Mirror>) {
    let _running = mirror.following.lock().await;
    if let Ok(store) = shared.store() {
        if let Err(error) = note_position(&mirror, &store) {
            tracing::error!(%error, "cannot read this mirror's journal position");
        }
    }
    let mut backoff = FIRST_BACKOFF;
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&shared, &mirror) => outcome,
            _ = shared.shutdown.cancelled() => return,
            _ = mirror.stop.cancelled() => return,
        };
        let reason = match outcome {
            Ok(()) => "the leader ended the stream".to_string(),
            Err(FollowError::Progressed(reason)) => {
                backoff = FIRST_BACKOFF;
                reason
            }
            Err(FollowError::Failed(reason)) => reason,
            Err(FollowError::Diverged(reason)) => {
                let outcome = tokio::select! {
                    outcome = rebootstrap(&shared, &mirror, &reason) => outcome,
                    _ = shared.shutdown.cancelled() => return,
                };
                match outcome {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    Err(error) => format!("{reason}; bootstrapping again failed: {error}"),
                }
            }
        };
        mirror.set_state(Some(&shared), MirrorState::Disconnected, reason);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.shutdown.cancelled() => return,
            _ = mirror.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why following stopped: after having applied something (the next attempt starts
/// afresh) or before, or because the leader's history no longer continues this
/// mirror's (it bootstraps again).
enum FollowError {
    Progressed(String),
    Failed(String),
    Diverged(String),
}

/// One connection's worth of following.
async fn follow_once(shared: &Arc<Shared>, mirror: &Mirror) -> Result<(), FollowError> {
    mirror.set_state(Some(shared), MirrorState::Connecting, String::new());
    let (client, _) = mirror.identify().await.map_err(|refusal| match refusal {
        Refusal::Unreachable(reason) | Refusal::Refused(reason) => FollowError::Failed(reason),
    })?;
    let store = shared.store().map_err(|e| FollowError::Failed(e.message))?;
    let position = store
        .snapshot()
        .and_then(|s| s.journal_position())
        .map_err(|e| FollowError::Failed(e.to_string()))?;
    let args = MirrorFollowArgs {
        seq: position.seq,
        crc: position.fingerprint.map(|(crc, _)| crc),
        epoch: position.fingerprint.map(|(_, epoch)| epoch),
        heartbeat_ms: Some(HEARTBEAT_MS),
        // Items this mirror's frames can hold (the message takes the rest).
        max_item_bytes: Some(shared.settings().max_frame_bytes.saturating_sub(64 << 10) as u64),
    };
    let mut stream = client
        .stream(Method::MirrorFollow.name(), to_value(&args))
        .await
        .map_err(|e| FollowError::Failed(e.to_string()))?;
    mirror.set_state(Some(shared), MirrorState::Following, String::new());
    let mut progressed = false;
    let mut pieces = Pieces::default();
    let fail = |progressed: bool, reason: String| {
        if progressed {
            FollowError::Progressed(reason)
        } else {
            FollowError::Failed(reason)
        }
    };
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| classify(progressed, &e))?;
        let item: MirrorItem = rmpv::ext::from_value(item).map_err(|e| {
            fail(
                progressed,
                format!("the leader sent an item that does not parse: {e}"),
            )
        })?;
        mirror.heard(item.head);
        let entries = pieces
            .add(item.entries)
            .map_err(|reason| fail(progressed, reason))?;
        let Some(last) = entries.last() else {
            continue;
        };
        let (seq, time_ms) = (
            last.seq,
            EntryHeader::decode(&last.value).map_or(0, |h| h.time_ms),
        );
        let store = shared.store().map_err(|e| fail(progressed, e.message))?;
        let service_changed = match write(&store, Write::MirrorApply { entries }).await {
            Ok(Written::MirrorApplied {
                service_changed, ..
            }) => service_changed,
            Ok(other) => {
                return Err(fail(
                    progressed,
                    format!("the store answered {other:?} to the leader's entries"),
                ))
            }
            Err(error) => return Err(fail(progressed, error.message)),
        };
        progressed = true;
        mirror.applied(seq, time_ms);
        if service_changed {
            shared.follow_mirrored(&store);
        }
    }
    Ok(())
}

/// The entries of a stream put back together: an entry larger than an item comes in
/// pieces, each but the last marked `more`.
#[derive(Default)]
struct Pieces {
    partial: Option<JournalEntry>,
}

impl Pieces {
    /// The whole entries among `entries`, with what earlier items began.
    fn add(&mut self, entries: Vec<MirrorEntry>) -> Result<Vec<JournalEntry>, String> {
        let mut whole = Vec::with_capacity(entries.len());
        for entry in entries {
            let value = match self.partial.take() {
                Some(partial) if partial.seq == entry.seq => {
                    let mut value = partial.value;
                    value.extend_from_slice(&entry.value);
                    value
                }
                Some(partial) => {
                    return Err(format!(
                        "the leader began entry {} in pieces and sent entry {} before its end",
                        partial.seq, entry.seq
                    ))
                }
                None => entry.value,
            };
            let joined = JournalEntry {
                seq: entry.seq,
                value,
            };
            if entry.more {
                self.partial = Some(joined);
            } else {
                whole.push(joined);
            }
        }
        Ok(whole)
    }
}

/// Why a follow stream failed: the leader's history no longer continuing this
/// mirror's (it bootstraps again), or anything else (it connects again).
fn classify(progressed: bool, error: &ClientError) -> FollowError {
    match error.code() {
        Some(ErrorCode::ChangesCompacted | ErrorCode::ResyncRequired) => FollowError::Diverged(
            format!("the leader's journal no longer continues this mirror's ({error})"),
        ),
        _ if progressed => FollowError::Progressed(error.to_string()),
        _ => FollowError::Failed(error.to_string()),
    }
}
