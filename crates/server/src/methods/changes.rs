//! `changes`: a page of a database's change log (`normal`), a page that waits for a
//! change (`longpoll`), or a stream of changes as they commit with heartbeats in between
//! (`continuous`), until the client cancels it or the database, a restore or the
//! shutdown ends it. A cursor of another epoch, or ahead of the log, is refused: a feed
//! never silently goes backwards.

use std::time::Duration;

use cairn_proto::methods::{self, to_value, ChangesArgs};
use cairn_proto::values::{FeedEndReason, FeedKind};
use cairn_proto::{ErrorCode, Message, WireError};
use rmpv::Value;
use tokio::sync::watch;

use crate::ops::lifecycle::DbState;
use crate::ops::shared::RESTORE_MESSAGE;
use crate::storage::blocking;
use crate::wire::IntoWire;

use super::data::decode_value;
use super::{Answer, CallContext};

/// Default page of `changes`.
const DEFAULT_CHANGES_LIMIT: u32 = 1000;
const DEFAULT_LONGPOLL_MS: u64 = 30_000;
const MAX_LONGPOLL_MS: u64 = 300_000;
const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
const MIN_HEARTBEAT_MS: u64 = 100;

pub(super) async fn changes(call: &CallContext, args: ChangesArgs) -> Result<Answer, WireError> {
    let limit = usize::try_from(args.limit.unwrap_or(DEFAULT_CHANGES_LIMIT)).unwrap_or(usize::MAX);
    // A live feed is not a call in flight (it would hold a database online for ever):
    // it is admitted, then ends when the database leaves Online.
    let admission = call.shared.databases.enter(&args.db)?;
    match args.feed.unwrap_or(FeedKind::Normal) {
        FeedKind::Normal => {
            let result = read_changes(call, &args.db, args.since, args.epoch, limit).await?;
            drop(admission);
            Ok(Answer::Value(to_value(&result)))
        }
        FeedKind::Longpoll => {
            drop(admission);
            longpoll(call, &args, limit)
                .await
                .map(|r| Answer::Value(to_value(&r)))
        }
        FeedKind::Continuous => {
            drop(admission);
            let db_state = call.shared.databases.watch(&args.db);
            continuous(call, args, limit, db_state).await?;
            Ok(Answer::Streamed)
        }
    }
}

/// A page, or once there is none yet, the first page after a change commits (or an
/// empty one after the timeout, or when the feed cannot go on).
async fn longpoll(
    call: &CallContext,
    args: &ChangesArgs,
    limit: usize,
) -> Result<methods::ChangesResult, WireError> {
    let wait = Duration::from_millis(
        args.timeout_ms
            .unwrap_or(DEFAULT_LONGPOLL_MS)
            .min(MAX_LONGPOLL_MS),
    );
    let mut db_state = call.shared.databases.watch(&args.db);
    let mut watch = call.shared.feeds.subscribe(&args.db, None);
    let feeds_end = call.shared.feeds_end();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut result = read_changes(call, &args.db, args.since, args.epoch, limit).await?;
        if !result.changes.is_empty() {
            return Ok(result);
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() || watch.borrow().is_none() {
                    continue;
                }
            }
            _ = left_online(&mut db_state) => {
                result.end_reason = Some(FeedEndReason::DatabaseOffline);
                return Ok(result);
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(result),
            _ = call.cancel.cancelled() => return Ok(result),
            _ = call.shared.shutdown.cancelled() => return Ok(result),
            _ = feeds_end.cancelled() => {
                return Err(WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE));
            }
        }
    }
}

/// Changes after `since`, the seq to resume from and the epoch. A cursor of another
/// epoch, or ahead of the log, is refused.
async fn read_changes(
    call: &CallContext,
    db: &str,
    since: u64,
    epoch: Option<u64>,
    limit: usize,
) -> Result<methods::ChangesResult, WireError> {
    let store = call.shared.store()?;
    let db = db.to_string();
    let budget = call.answer_budget();
    let (current_epoch, db_last_seq, changes) = blocking(move || {
        let snapshot = store.snapshot()?;
        let current_epoch = snapshot.epoch()?;
        let view = snapshot.database(&db)?;
        let db_last_seq = view.info()?.last_seq;
        let trusted = since <= db_last_seq && epoch.is_none_or(|e| e == current_epoch);
        let changes = if trusted {
            view.changes_within(since, limit, budget)?
        } else {
            Vec::new()
        };
        Ok((current_epoch, db_last_seq, changes))
    })
    .await?;
    if since > db_last_seq || epoch.is_some_and(|e| e != current_epoch) {
        return Err(WireError::new(
            ErrorCode::ResyncRequired,
            format!(
                "cursor {since} (epoch {}) does not belong to this log (last seq {db_last_seq}, epoch {current_epoch}): a restore replaced the data; resynchronise from a full read",
                epoch.map_or("-".to_string(), |e| e.to_string())
            ),
        )
        .with_details(Value::Map(vec![
            (Value::from("epoch"), Value::from(current_epoch)),
            (Value::from("last_seq"), Value::from(db_last_seq)),
        ])));
    }
    let last_seq = changes.last().map_or(since, |c| c.seq);
    let changes = changes
        .into_iter()
        .map(change_entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(methods::ChangesResult {
        changes,
        last_seq,
        epoch: current_epoch,
        end_reason: None,
    })
}

fn change_entry(change: cairn_store::Change) -> Result<methods::ChangeEntry, WireError> {
    Ok(methods::ChangeEntry {
        seq: change.seq,
        op: change.op.into_wire(),
        key: change.key,
        value: change.value.as_deref().map(decode_value).transpose()?,
        time_ms: change.time_ms,
    })
}

/// A continuous feed: items as changes commit, heartbeats in between, until the
/// client cancels, the database goes away or the service shuts down.
async fn continuous(
    call: &CallContext,
    args: ChangesArgs,
    limit: usize,
    mut db_state: Option<watch::Receiver<DbState>>,
) -> Result<(), WireError> {
    let heartbeat = Duration::from_millis(
        args.heartbeat_ms
            .unwrap_or(DEFAULT_HEARTBEAT_MS)
            .max(MIN_HEARTBEAT_MS),
    );
    let _live = call.shared.metrics.live_feed();
    let mut watch = call.shared.feeds.subscribe(&args.db, None);
    let feeds_end = call.shared.feeds_end();
    let mut since = args.since;
    let mut epoch = args.epoch;
    let item = |item: methods::FeedItem| Message::Item {
        id: call.id,
        value: to_value(&item),
    };
    let reason = loop {
        let page = read_changes(call, &args.db, since, epoch, limit).await?;
        since = page.last_seq;
        epoch = Some(page.epoch);
        let caught_up = page.changes.len() < limit;
        for change in page.changes {
            if !call.send(item(methods::FeedItem::Change(change))).await {
                return Ok(());
            }
        }
        if !caught_up {
            continue;
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break FeedEndReason::ShuttingDown;
                }
                if watch.borrow().is_none() {
                    break FeedEndReason::DatabaseDropped;
                }
            }
            _ = tokio::time::sleep(heartbeat) => {
                if !call.send(item(methods::FeedItem::Heartbeat { last_seq: since })).await {
                    return Ok(());
                }
            }
            _ = left_online(&mut db_state) => break FeedEndReason::DatabaseOffline,
            _ = call.cancel.cancelled() => break FeedEndReason::Canceled,
            _ = call.shared.shutdown.cancelled() => break FeedEndReason::ShuttingDown,
            _ = feeds_end.cancelled() => break FeedEndReason::Restore,
        }
    };
    let end = methods::FeedEnd {
        reason,
        last_seq: since,
    };
    call.send(Message::End {
        id: call.id,
        value: to_value(&end),
    })
    .await;
    Ok(())
}

/// Resolves once the watched database is no longer online (never without a watch).
async fn left_online(state: &mut Option<watch::Receiver<DbState>>) {
    match state {
        Some(state) => {
            if state.wait_for(|s| *s != DbState::Online).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
