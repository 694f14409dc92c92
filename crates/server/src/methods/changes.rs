//! `changes`: a page of a database's change log (`normal`), a page that waits for a
//! change (`longpoll`), or a stream of changes as they commit with heartbeats in between
//! (`continuous`; with `batched`, the changes read together as one item), until the
//! client cancels it or the database, a restore or the shutdown ends it. A cursor of
//! another epoch, or ahead of the log, is refused: a feed never silently goes
//! backwards. Pages and items are encoded on the blocking thread that reads them, from
//! the snapshot's bytes (`cairn_proto::pages`).

use std::time::Duration;

use cairn_proto::methods::{self, to_value, ChangesArgs};
use cairn_proto::pages::{self, ChangeRef, Entries};
use cairn_proto::values::{FeedEndReason, FeedKind};
use cairn_proto::{ErrorCode, Message, WireError};
use cairn_store::ChangeRecordRef;
use rmpv::Value;
use tokio::sync::watch;

use crate::ops::lifecycle::DbState;
use crate::ops::shared::RESTORE_MESSAGE;
use crate::storage::blocking;
use crate::wire::IntoWire;

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
            let (page, end) = read_page(call, &args.db, args.since, args.epoch, limit).await?;
            drop(admission);
            Ok(Answer::Encoded(end.result(call.id, &page, None)))
        }
        FeedKind::Longpoll => {
            drop(admission);
            longpoll(call, &args, limit).await.map(Answer::Encoded)
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
) -> Result<Vec<u8>, WireError> {
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
        let (page, end) = read_page(call, &args.db, args.since, args.epoch, limit).await?;
        let result = |reason| end.result(call.id, &page, reason);
        if !page.is_empty() {
            return Ok(result(None));
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() || watch.borrow().is_none() {
                    continue;
                }
            }
            _ = left_online(&mut db_state) => {
                return Ok(result(Some(FeedEndReason::DatabaseOffline)));
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(result(None)),
            _ = call.cancel.cancelled() => return Ok(result(None)),
            _ = call.shared.shutdown.cancelled() => return Ok(result(None)),
            _ = feeds_end.cancelled() => {
                return Err(WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE));
            }
        }
    }
}

/// Where a page of changes ended: the seq to resume from, the epoch, and whether it
/// reached the log's newest change (a page the byte budget cut short did not).
struct PageEnd {
    last_seq: u64,
    epoch: u64,
    caught_up: bool,
}

impl PageEnd {
    /// The result message of a `normal` or `longpoll` page.
    fn result(&self, id: u64, page: &Entries, end_reason: Option<FeedEndReason>) -> Vec<u8> {
        pages::changes_result(id, page, self.last_seq, self.epoch, end_reason)
    }
}

/// The change `seq` as the wire carries it.
fn change_ref(seq: u64, change: ChangeRecordRef<'_>) -> ChangeRef<'_> {
    ChangeRef {
        seq,
        op: change.op.into_wire(),
        key: change.key,
        value: change.value,
        time_ms: change.time_ms,
    }
}

/// A page of changes after `since`, as entries of a result.
async fn read_page(
    call: &CallContext,
    db: &str,
    since: u64,
    epoch: Option<u64>,
    limit: usize,
) -> Result<(Entries, PageEnd), WireError> {
    read_changes(
        call,
        db,
        (since, epoch),
        limit,
        Entries::new(),
        |page, _, seq, change| {
            page.push_change(change_ref(seq, change));
        },
    )
    .await
}

/// Changes after `since` for a continuous feed: one item message each.
async fn read_items(
    call: &CallContext,
    db: &str,
    since: u64,
    epoch: Option<u64>,
    limit: usize,
) -> Result<(Vec<Vec<u8>>, PageEnd), WireError> {
    read_changes(
        call,
        db,
        (since, epoch),
        limit,
        Vec::new(),
        |items, id, seq, change| {
            items.push(pages::change_item(id, change_ref(seq, change)));
        },
    )
    .await
}

/// Changes after the cursor `(since, epoch)`, each given to `take` with the call's id
/// on the blocking thread that reads them, into `into`; and where the page ended. A
/// cursor of another epoch, or ahead of the log, is refused.
async fn read_changes<T: Send + 'static>(
    call: &CallContext,
    db: &str,
    (since, epoch): (u64, Option<u64>),
    limit: usize,
    mut into: T,
    take: fn(&mut T, u64, u64, ChangeRecordRef<'_>),
) -> Result<(T, PageEnd), WireError> {
    let store = call.shared.store()?;
    let db = db.to_string();
    let (id, budget) = (call.id, call.answer_budget());
    let (current_epoch, db_last_seq, last_seq, into) = blocking(move || {
        let snapshot = store.snapshot()?;
        let current_epoch = snapshot.epoch()?;
        let view = snapshot.database(&db)?;
        let db_last_seq = view.info()?.last_seq;
        let trusted = since <= db_last_seq && epoch.is_none_or(|e| e == current_epoch);
        let mut last_seq = since;
        if trusted {
            view.changes_page(since, limit, budget, |seq, change| {
                last_seq = seq;
                take(&mut into, id, seq, change);
            })?;
        }
        Ok((current_epoch, db_last_seq, last_seq, into))
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
    Ok((
        into,
        PageEnd {
            last_seq,
            epoch: current_epoch,
            caught_up: last_seq >= db_last_seq,
        },
    ))
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
        let (items, end) = if args.batched {
            let (page, end) = read_page(call, &args.db, since, epoch, limit).await?;
            let item = (!page.is_empty()).then(|| pages::changes_item(call.id, &page));
            (item.into_iter().collect(), end)
        } else {
            read_items(call, &args.db, since, epoch, limit).await?
        };
        since = end.last_seq;
        epoch = Some(end.epoch);
        let caught_up = end.caught_up;
        for body in items {
            if call.outbox.send(body).await.is_err() {
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
