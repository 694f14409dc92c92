//! The leader's side of its mirrors. `mirror.bootstrap` streams a compacted copy of the
//! environment (LMDB's copy under one read transaction, as a backup makes: writers never
//! wait) in chunks, then its length and SHA-256. `mirror.follow` checks a mirror's
//! position against the journal, then streams the entries after it as they commit, with
//! heartbeats carrying the leader's head, until the mirror cancels, a restore replaces
//! the data or the service stops. `mirror.forward` runs a call a mirror was sent as the
//! user who sent it, with every check this service makes of that user, and answers with
//! the journal's head once it committed.

use std::time::Duration;

use std::sync::Arc;

use cairn_proto::methods::{
    to_value, BootstrapChunk, BootstrapEnd, MirrorEnd, MirrorEntry, MirrorFollowArgs,
    MirrorForwardArgs, MirrorForwardResult, MirrorItem,
};
use cairn_proto::values::Via;
use cairn_proto::{Effect, ErrorCode, Message, Method, MethodKind, WireError};
use cairn_store::journal::{JournalPosition, Lineage};
use cairn_store::{JournalEntry, StoreError};
use rmpv::Value;
use sha2::Digest;

use crate::auth::{Caller, Identity};
use crate::error::{bad_request, store_error};
use crate::ops::shared::RESTORE_MESSAGE;
use crate::storage::{blocking, now_ms};

use super::{answer_one, session, Answer, CallContext};

/// Bytes of the copy per item of `mirror.bootstrap`.
const BOOTSTRAP_CHUNK_BYTES: usize = 1 << 20;
/// Most entries per item of `mirror.follow`.
const ENTRIES_PER_ITEM: usize = 1000;
const DEFAULT_HEARTBEAT_MS: u64 = 1000;
const MIN_HEARTBEAT_MS: u64 = 50;
/// The least an item may carry, whatever the mirror asks.
const MIN_ITEM_BYTES: usize = 4096;

pub(super) async fn bootstrap(call: &CallContext) -> Result<Answer, WireError> {
    let store = call.shared.store()?;
    let chunk_bytes = BOOTSTRAP_CHUNK_BYTES.min(call.answer_budget()).max(4096);
    let (outbox, cancel, id) = (call.outbox.clone(), call.cancel.clone(), call.id);
    let shutdown = call.shared.shutdown.clone();
    tracing::info!(user = call.user(), "a mirror bootstraps from this service");
    let end = blocking(move || {
        let mut hasher = sha2::Sha256::new();
        let mut total = 0u64;
        let mut pending = Vec::with_capacity(chunk_bytes);
        let send = |data: Vec<u8>| {
            let item = Message::Item {
                id,
                value: to_value(&BootstrapChunk { data }),
            };
            outbox
                .blocking_send(item.encode())
                .map_err(|_| StoreError::Canceled)
        };
        cairn_store::backup::stream_env_copy(&store, |bytes| {
            if cancel.is_cancelled() || shutdown.is_cancelled() {
                return Err(StoreError::Canceled);
            }
            hasher.update(bytes);
            total += bytes.len() as u64;
            let mut rest = bytes;
            while !rest.is_empty() {
                let room = chunk_bytes - pending.len();
                let (now, later) = rest.split_at(room.min(rest.len()));
                pending.extend_from_slice(now);
                rest = later;
                if pending.len() == chunk_bytes {
                    send(std::mem::replace(
                        &mut pending,
                        Vec::with_capacity(chunk_bytes),
                    ))?;
                }
            }
            Ok(())
        })?;
        if !pending.is_empty() {
            send(pending)?;
        }
        Ok(BootstrapEnd {
            bytes: total,
            sha256: hex::encode(hasher.finalize()),
        })
    })
    .await?;
    tracing::info!(bytes = end.bytes, "a mirror's bootstrap copy was sent");
    call.send(Message::End {
        id: call.id,
        value: to_value(&end),
    })
    .await;
    Ok(Answer::Streamed)
}

pub(super) async fn follow(
    call: &CallContext,
    args: MirrorFollowArgs,
) -> Result<Answer, WireError> {
    let fingerprint = match (args.crc, args.epoch) {
        (Some(crc), Some(epoch)) => Some((crc, epoch)),
        (None, None) if args.seq == 0 => None,
        _ => {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                "a position after seq 0 needs the crc and epoch of its entry",
            ))
        }
    };
    let position = JournalPosition {
        seq: args.seq,
        fingerprint,
    };
    let store = call.shared.store()?;
    let lineage = blocking(move || store.snapshot()?.journal_lineage(&position)).await?;
    match lineage {
        Lineage::Continues => {}
        Lineage::Compacted { first } => return Err(compacted(args.seq, first)),
        Lineage::Diverged { head } => {
            return Err(WireError::new(
                ErrorCode::ResyncRequired,
                format!(
                    "journal position {} is not in this service's history (its journal ends at {head}): the mirror must bootstrap again",
                    args.seq
                ),
            )
            .with_details(Value::Map(vec![(Value::from("head"), Value::from(head))])))
        }
    }
    let heartbeat = Duration::from_millis(
        args.heartbeat_ms
            .unwrap_or(DEFAULT_HEARTBEAT_MS)
            .max(MIN_HEARTBEAT_MS),
    );
    let mut journal = call.shared.feeds.journal();
    let feeds_end = call.shared.feeds_end();
    let budget = args
        .max_item_bytes
        .map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX))
        .min(call.answer_budget())
        .max(MIN_ITEM_BYTES);
    let mut since = args.seq;
    loop {
        let store = call.shared.store()?;
        let (entries, head) = blocking(move || {
            let snapshot = store.snapshot()?;
            let head = snapshot.journal_position()?.seq;
            Ok((
                snapshot.journal_entries(since, ENTRIES_PER_ITEM, budget)?,
                head,
            ))
        })
        .await?;
        if let Some(first) = entries.first() {
            if first.seq != since + 1 {
                return Err(compacted(since, first.seq));
            }
        }
        since = entries.last().map_or(since, |e| e.seq);
        let caught_up = since >= head;
        for item in items(entries, budget, head) {
            let message = Message::Item {
                id: call.id,
                value: to_value(&item),
            };
            if !call.send(message).await {
                return Ok(Answer::Streamed);
            }
        }
        if !caught_up {
            continue;
        }
        tokio::select! {
            changed = journal.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(heartbeat) => {}
            _ = call.cancel.cancelled() => break,
            _ = call.shared.shutdown.cancelled() => break,
            _ = feeds_end.cancelled() => {
                return Err(WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE));
            }
        }
    }
    call.send(Message::End {
        id: call.id,
        value: to_value(&MirrorEnd { head: since }),
    })
    .await;
    Ok(Answer::Streamed)
}

/// The items that carry `entries` (at most `budget` bytes of them each, as read): one,
/// a heartbeat when there are none, or the pieces of an entry larger than `budget`.
fn items(entries: Vec<JournalEntry>, budget: usize, head: u64) -> Vec<MirrorItem> {
    let item = |entries: Vec<MirrorEntry>| MirrorItem {
        entries,
        head,
        time_ms: now_ms(),
    };
    match <[JournalEntry; 1]>::try_from(entries) {
        Ok([entry]) if entry.value.len() > budget => {
            let pieces = entry.value.chunks(budget).count();
            entry
                .value
                .chunks(budget)
                .enumerate()
                .map(|(at, piece)| {
                    item(vec![MirrorEntry {
                        seq: entry.seq,
                        value: piece.to_vec(),
                        more: at + 1 < pieces,
                    }])
                })
                .collect()
        }
        Ok([entry]) => vec![item(vec![MirrorEntry {
            seq: entry.seq,
            value: entry.value,
            more: false,
        }])],
        Err(entries) => vec![item(
            entries
                .into_iter()
                .map(|e| MirrorEntry {
                    seq: e.seq,
                    value: e.value,
                    more: false,
                })
                .collect(),
        )],
    }
}

/// The error of a position whose next entries the journal no longer holds.
fn compacted(seq: u64, first: u64) -> WireError {
    WireError::new(
        ErrorCode::ChangesCompacted,
        format!(
            "the journal no longer holds the entries after {seq} (it begins at {first}): the mirror must bootstrap again"
        ),
    )
    .with_details(Value::Map(vec![(Value::from("first"), Value::from(first))]))
}

pub(super) async fn forward(
    call: &CallContext,
    args: MirrorForwardArgs,
) -> Result<Answer, WireError> {
    let method = Method::parse(&args.method)
        .filter(|m| m.effect() == Effect::Changes && m.kind() != MethodKind::Stream)
        .ok_or_else(|| {
            bad_request(format!(
                "{:?} is not a method a mirror forwards (one that changes the service)",
                args.method
            ))
        })?;
    let token_hash = args
        .token_hash
        .as_deref()
        .map(|hex_text| {
            hex::decode(hex_text)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| bad_request("token_hash is not 64 hex digits"))
        })
        .transpose()?;
    let identity = args.user.map(|user| Identity {
        user,
        via: args.via.unwrap_or(Via::Token),
        token_hash,
    });
    let peer = args.peer.as_deref().and_then(|p| p.parse().ok());
    let result = if method.kind() == MethodKind::Session {
        session::serve(&call.shared, identity.as_ref(), method, args.args, peer)
            .await?
            .0
    } else {
        let caller = match &identity {
            Some(identity) => Some(Arc::new(forwarded_caller(call, identity)?)),
            None => None,
        };
        let (outbox, _items) = tokio::sync::mpsc::channel(1);
        let answered = Box::pin(answer_one(
            call.shared.clone(),
            (identity, caller),
            method,
            args.args,
            outbox,
            call.cancel.clone(),
        ))
        .await;
        match answered.as_deref().map(Message::decode) {
            Some(Ok(Message::Result { value, .. })) => value,
            Some(Ok(Message::Error { error, .. })) => return Err(error),
            _ => {
                return Err(WireError::new(
                    ErrorCode::Internal,
                    format!("the forwarded {method} gave no result"),
                ))
            }
        }
    };
    let store = call.shared.store()?;
    let head = blocking(move || Ok(store.snapshot()?.journal_position()?.seq)).await?;
    Ok(Answer::Value(to_value(&MirrorForwardResult {
        result,
        head,
    })))
}

/// The caller a mirror forwards for, with the user record this service holds.
fn forwarded_caller(call: &CallContext, identity: &Identity) -> Result<Caller, WireError> {
    let store = call.shared.store()?;
    let generation = store.users_generation();
    let record = store
        .snapshot()
        .and_then(|s| s.user(&identity.user))
        .map_err(store_error)?
        .filter(|r| !r.locked)
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::BadCredentials,
                format!("user {:?} is unknown or locked here", identity.user),
            )
        })?;
    Ok(Caller {
        identity: identity.clone(),
        record,
        generation,
    })
}
