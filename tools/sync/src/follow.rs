//! The follower: attaches the destination (migration mode, the starting positions),
//! then keeps one task per followed database. A task reads the source's change log
//! from the position the destination holds: by pages while it is behind (at most
//! `READ_AHEAD` changes held), then through the continuous change feed, which pushes
//! each change as it commits (no polling). It applies what arrived in `sync.apply`
//! calls, one in flight while the next is read. It reports its state to the destination and prints
//! a line per change of state. A lost connection or a restarting service is tried
//! again from the destination's position; a gap, another lineage or compacted changes
//! stop that database's sync (stored on the destination) while the others go on. Every
//! two seconds the source's databases are listed again: one it created is created on
//! the destination and followed, one it dropped is reported (the cutover drops it).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use cairn_client::methods::{
    call, ChangeEntry, ChangesArgs, ChangesResult, DbConfigSettings, FeedItem, SyncApplyResult,
    SyncAttachArgs, SyncCreateArgs, SyncError, SyncReportArgs,
};
use cairn_client::values::{DbState, FeedEndReason, FeedKind, SyncState};
use cairn_client::{Client, ClientError, ErrorCode, FeedStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::apply::{apply, change_bytes, dest_status, stops_the_sync, Lineage};
use crate::apply::{APPLY_BYTES, APPLY_CHANGES};
use crate::offsets::Offsets;
use crate::print::{Event, Printer};
use crate::side::Side;

/// Changes read ahead of the destination, per database.
const READ_AHEAD: usize = 20_000;
/// Changes per page read while behind the source (one `sync.apply` call's worth).
const PAGE: u32 = 2_000;
const _: () = assert!(PAGE as usize == APPLY_CHANGES);
/// How often the source's databases are listed again.
const DISCOVER_EVERY: Duration = Duration::from_secs(2);
/// The source's heartbeat on an idle feed.
const HEARTBEAT_MS: u64 = 1_000;
/// A live database reports at least this often (the destination's status shows a
/// follower silent for 30 s as idle).
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// The longest a call to either service may take before it is tried again.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A continuous feed silent this long (heartbeats included) is taken for lost.
const FEED_SILENCE: Duration = Duration::from_secs(5 * HEARTBEAT_MS / 1000);
/// How long the databases' tasks get to end once the follower stops.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A database is live while it is at most this many changes and this long behind.
const LIVE_CHANGES: u64 = APPLY_CHANGES as u64;
const LIVE_MS: u64 = 1_000;
/// Waits between tries after a failure that may pass.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the follower was asked.
pub struct FollowPlan {
    pub src: Arc<Side>,
    pub dest: Arc<Side>,
    pub offsfile: Option<std::path::PathBuf>,
    /// Only these databases (empty: all).
    pub only: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a database's task ended.
enum Ended {
    Canceled,
    Dropped,
}

/// Why a try failed: for good (stored on the destination), or for now.
enum Failure {
    Stop { code: String, message: String },
    Retry(String),
}

fn classify(error: ClientError) -> Failure {
    if stops_the_sync(&error) {
        Failure::Stop {
            code: error.code().map_or("internal", |c| c.as_str()).to_string(),
            message: error.to_string(),
        }
    } else {
        Failure::Retry(format!("{error:#}"))
    }
}

/// The stop of a database the source dropped and created again.
fn recreated(db: &str, created_ms: u64, followed_ms: u64) -> Failure {
    Failure::Stop {
        code: ErrorCode::ResyncRequired.as_str().to_string(),
        message: format!(
            "{db} was dropped and created again on the source (created at {created_ms} ms, this database follows the one created at {followed_ms} ms): migrate a new backup of the source to follow it"
        ),
    }
}

fn retry(error: anyhow::Error) -> Failure {
    Failure::Retry(format!("{error:#}"))
}

/// Attaches the destination and follows until stopped (Ctrl-C, SIGTERM) or until
/// migration mode ends on the destination.
pub async fn follow(plan: FollowPlan, printer: Arc<Printer>) -> anyhow::Result<()> {
    let source_id = plan.src.identify().await?;
    let dest_id = plan.dest.identify().await?;
    if source_id == dest_id {
        bail!(
            "{} and {} are the same service ({source_id}): the destination must be another one",
            plan.src.name(),
            plan.dest.name()
        );
    }
    let dest = plan.dest.client().await?;
    let status = dest_status(&dest)
        .await
        .context("reading the destination's sync status")?;
    if let Some(mode) = status.migration.as_ref() {
        if mode.source_service_id != source_id {
            bail!(
                "{} already follows {} (service {}), not {} (service {source_id}): end that sync first (cairn-sync abort --dest URL)",
                plan.dest.name(),
                mode.source,
                mode.source_service_id,
                plan.src.name()
            );
        }
    }
    let positions = match &plan.offsfile {
        Some(path) => {
            let offsets = Offsets::read(path)?;
            if offsets.source_service_id != source_id {
                bail!(
                    "{} holds the positions of service {}, but {} is service {source_id}: give the offsets file of a migration of this source's backup",
                    path.display(),
                    offsets.source_service_id,
                    plan.src.name()
                );
            }
            offsets.positions()
        }
        None if status
            .databases
            .iter()
            .any(|d| d.source_service_id == source_id) =>
        {
            Vec::new()
        }
        None => bail!(
            "the destination has no sync position: give --offsfile NEWDIR/migration/offsets.json (written by cairn-migrate)"
        ),
    };
    dest.request::<call::SyncAttach>(&SyncAttachArgs {
        source_service_id: source_id.clone(),
        source: plan.src.name(),
        positions,
    })
    .await
    .with_context(|| format!("attaching {} to {}", plan.dest.name(), plan.src.name()))?;
    printer.event(&Event::Attached {
        source: plan.src.name(),
        source_service_id: source_id.clone(),
        destination: plan.dest.name(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    let follower = Arc::new(Follower {
        src: plan.src.clone(),
        dest: plan.dest.clone(),
        source_id,
        printer: printer.clone(),
        stop: stop.clone(),
    });
    let reason = supervise(&follower, &plan.only).await;
    stop.cancel();
    printer.event(&Event::Ended { reason });
    Ok(())
}

/// Cancels `stop` on Ctrl-C or SIGTERM.
async fn stop_on_signal(stop: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stop.cancelled() => {}
    }
    stop.cancel();
}

struct Follower {
    src: Arc<Side>,
    dest: Arc<Side>,
    source_id: String,
    printer: Arc<Printer>,
    stop: CancellationToken,
}

/// Starts a task per database and looks for new and dropped ones until stopped; the
/// reason it stopped.
async fn supervise(follower: &Arc<Follower>, only: &[String]) -> String {
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut reported_drops = HashSet::new();
    let reason = loop {
        let looked = tokio::time::timeout(
            CALL_TIMEOUT,
            discover(follower, only, &mut tasks, &mut reported_drops),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the services did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))
        });
        match looked {
            Ok(true) => {}
            Ok(false) => {
                break "migration mode of this source ended on the destination (a cutover or an abort)".to_string()
            }
            Err(error) => follower.printer.event(&Event::Retrying {
                db: "*".to_string(),
                error: format!("{error:#}"),
            }),
        }
        tokio::select! {
            _ = follower.stop.cancelled() => break "asked to stop".to_string(),
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    };
    follower.stop.cancel();
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for (_, mut task) in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
    reason
}

/// One look at both sides: starts the tasks of databases not followed yet (creating
/// those the source created), reports drops. `false` when migration mode is off.
async fn discover(
    follower: &Arc<Follower>,
    only: &[String],
    tasks: &mut HashMap<String, JoinHandle<()>>,
    reported_drops: &mut HashSet<String>,
) -> anyhow::Result<bool> {
    let src = follower.src.client().await?;
    let dest = follower.dest.client().await?;
    let status = dest_status(&dest).await?;
    if status
        .migration
        .as_ref()
        .is_none_or(|mode| mode.source_service_id != follower.source_id)
    {
        return Ok(false);
    }
    let wanted = |db: &str| only.is_empty() || only.iter().any(|o| o == db);
    let source_dbs = src
        .db_list()
        .await
        .context("listing the source's databases")?;
    let on_source: HashSet<&str> = source_dbs.iter().map(|d| d.name.as_str()).collect();
    for info in source_dbs.iter().filter(|d| wanted(&d.name)) {
        // A task that ended because the source dropped the database starts again when
        // it is back (and stops at once if it is another database of the same name);
        // one that stopped with an error waits for the operator.
        let stopped = status
            .databases
            .iter()
            .any(|d| d.db == info.name && d.error.is_some());
        match tasks.get(&info.name) {
            Some(task) if !task.is_finished() || stopped => continue,
            _ => {}
        }
        if !status.databases.iter().any(|d| d.db == info.name) {
            let epoch = status
                .databases
                .iter()
                .find(|d| d.source_service_id == follower.source_id)
                .map(|d| d.source_epoch);
            // One database that cannot be created does not hold the others back.
            if let Err(error) = create(follower, &src, &dest, info, epoch).await {
                follower.printer.event(&Event::Retrying {
                    db: info.name.clone(),
                    error: format!("{error:#}"),
                });
                continue;
            }
        }
        let task_follower = follower.clone();
        let db = info.name.clone();
        tasks.insert(
            info.name.clone(),
            tokio::spawn(async move { task_follower.follow_database(db).await }),
        );
    }
    for position in &status.databases {
        let gone = position.source_service_id == follower.source_id
            && wanted(&position.db)
            && !on_source.contains(position.db.as_str());
        if gone && reported_drops.insert(position.db.clone()) {
            follower.printer.event(&Event::Dropped {
                db: position.db.clone(),
            });
        }
    }
    Ok(true)
}

/// Creates on the destination a database the source created, with its settings.
async fn create(
    follower: &Follower,
    src: &Client,
    dest: &Client,
    info: &cairn_client::methods::DbInfo,
    known_epoch: Option<u64>,
) -> anyhow::Result<()> {
    // The epoch is the source's, for every database: read it from a change page only
    // when no position holds it (an offline database serves no page).
    let epoch = match known_epoch {
        Some(epoch) => epoch,
        None => {
            src.changes(&ChangesArgs {
                db: info.name.clone(),
                limit: Some(1),
                ..ChangesArgs::default()
            })
            .await
            .with_context(|| format!("reading the epoch of {}", info.name))?
            .epoch
        }
    };
    let config = src
        .db_config(&info.name)
        .await
        .with_context(|| format!("reading the configuration of {}", info.name))?;
    // Created offline when its indexes must be defined first (an empty database gets
    // them fresh), then brought to the source's state.
    let indexed = !config.indexes.is_empty();
    dest.request::<call::SyncCreate>(&SyncCreateArgs {
        db: info.name.clone(),
        retention: info.retention,
        offline: indexed || info.state == DbState::Offline,
        epoch,
        created_ms: info.created_ms,
    })
    .await
    .with_context(|| format!("creating {} on the destination", info.name))?;
    if indexed {
        dest.db_config_set(
            &info.name,
            DbConfigSettings {
                retention: config.retention,
                indexes: config.indexes,
            },
        )
        .await
        .with_context(|| format!("configuring {} on the destination", info.name))?;
        if info.state != DbState::Offline {
            dest.db_online(
                &info.name,
                None,
                Some("created by cairn-sync, as on the source"),
            )
            .await?;
        }
    }
    follower.printer.event(&Event::Created {
        db: info.name.clone(),
    });
    Ok(())
}

/// An apply in flight.
type InFlight = Pin<Box<dyn Future<Output = Result<SyncApplyResult, Failure>> + Send>>;

/// Resolves with the apply in flight; never without one.
async fn landed(in_flight: &mut Option<InFlight>) -> Result<SyncApplyResult, Failure> {
    match in_flight {
        Some(apply) => apply.await,
        None => std::future::pending().await,
    }
}

/// A page of changes being read.
type Paging = Pin<Box<dyn Future<Output = Result<ChangesResult, ClientError>> + Send>>;

/// The page being read; never without one.
async fn next_page(paging: &mut Option<Paging>) -> Result<ChangesResult, ClientError> {
    match paging {
        Some(page) => page.await,
        None => std::future::pending().await,
    }
}

/// The next item of the feed; never while it is closed.
async fn next_item(feed: &mut Option<FeedStream>) -> Option<Result<FeedItem, ClientError>> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

/// A call that does not answer within `CALL_TIMEOUT` is tried again (the destination
/// skips what it applied already).
async fn within<T>(call: impl Future<Output = Result<T, ClientError>>) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(outcome) => outcome.map_err(classify),
        Err(_) => Err(Failure::Retry(format!(
            "no answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Where one database's sync stands, as the task last said it.
struct Standing {
    state: Option<SyncState>,
    applied: u64,
    head: u64,
    /// The position of the first try: the progress bar counts from it.
    started_at: Option<u64>,
    last_report: Instant,
    /// The failure of the last try, while they fail the same way.
    retrying: Option<String>,
}

impl Follower {
    /// One database: tries again after failures that may pass, stops on those that
    /// will not.
    async fn follow_database(self: Arc<Self>, db: String) {
        let mut wait = RETRY_FIRST;
        let mut standing = Standing {
            state: None,
            applied: 0,
            head: 0,
            started_at: None,
            last_report: Instant::now(),
            retrying: None,
        };
        loop {
            match self.follow_once(&db, &mut standing).await {
                Ok(Ended::Canceled) => return,
                Ok(Ended::Dropped) => {
                    self.printer.event(&Event::Dropped { db });
                    return;
                }
                Err(Failure::Stop { code, message }) => {
                    self.stopped(&db, &standing, code, message).await;
                    return;
                }
                Err(Failure::Retry(error)) => {
                    // Said once, not at every try.
                    if standing.retrying.as_ref() != Some(&error) {
                        self.printer.event(&Event::Retrying {
                            db: db.clone(),
                            error: error.clone(),
                        });
                        standing.retrying = Some(error);
                    }
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Stores the stop on the destination (when it can be reached) and says so.
    async fn stopped(&self, db: &str, standing: &Standing, code: String, message: String) {
        let seq = standing.applied + 1;
        let report = SyncReportArgs {
            db: db.to_string(),
            state: SyncState::Stopped,
            head_seq: standing.head,
            pending_since_ms: None,
            error: Some(SyncError {
                code: code.clone(),
                message: message.clone(),
                seq,
                at_ms: 0,
            }),
        };
        if let Ok(dest) = self.dest.client().await {
            let _ = within(dest.request::<call::SyncReport>(&report)).await;
        }
        self.printer.event(&Event::Stopped {
            db: db.to_string(),
            code,
            message,
            seq,
        });
    }

    /// Tells the destination and the operator where the database stands, when that
    /// changed (or every `REPORT_EVERY` while nothing changes).
    async fn standing(
        &self,
        dest: &Client,
        db: &str,
        standing: &mut Standing,
        pending: &VecDeque<ChangeEntry>,
    ) {
        // Live: less than a second and a batch behind the source.
        let behind = standing.head.saturating_sub(standing.applied);
        let oldest_ms = pending
            .front()
            .map_or(0, |c| now_ms().saturating_sub(c.time_ms));
        let state = if behind <= LIVE_CHANGES && oldest_ms <= LIVE_MS {
            SyncState::Live
        } else {
            SyncState::CatchingUp
        };
        self.printer.progress(
            db,
            standing.head.saturating_sub(standing.applied),
            standing
                .applied
                .saturating_sub(standing.started_at.unwrap_or(0)),
        );
        let changed = standing.state != Some(state);
        if !changed && standing.last_report.elapsed() < REPORT_EVERY {
            return;
        }
        standing.state = Some(state);
        standing.last_report = Instant::now();
        let report = SyncReportArgs {
            db: db.to_string(),
            state,
            head_seq: standing.head,
            pending_since_ms: pending.front().map(|c| c.time_ms),
            error: None,
        };
        // A report that does not arrive is no reason to stop applying.
        let _ = within(dest.request::<call::SyncReport>(&report)).await;
        if changed {
            self.printer.event(&Event::State {
                db: db.to_string(),
                state: state.as_str(),
                applied_seq: standing.applied,
                head_seq: standing.head,
            });
        }
    }

    /// Follows one database from the destination's position until the feed or an
    /// apply fails, the source drops it, or the follower stops.
    async fn follow_once(&self, db: &str, standing: &mut Standing) -> Result<Ended, Failure> {
        let src = self.src.client().await.map_err(retry)?;
        let dest = self.dest.client().await.map_err(retry)?;
        let status = within(dest_status(&dest)).await?;
        let position = status
            .databases
            .iter()
            .find(|d| d.db == db)
            .ok_or_else(|| Failure::Stop {
                code: ErrorCode::Conflict.as_str().to_string(),
                message: format!("{db} has no sync position on the destination"),
            })?;
        let info = match src.db_info(db).await {
            Ok(info) => info,
            Err(error) if error.code() == Some(ErrorCode::DatabaseMissing) => {
                return Ok(Ended::Dropped)
            }
            Err(error) => return Err(classify(error)),
        };
        if position.source_created_ms != 0 && position.source_created_ms != info.created_ms {
            return Err(recreated(db, info.created_ms, position.source_created_ms));
        }
        // The service identified at the start, not the position's: the destination
        // checks them against each other and against migration mode.
        let lineage = Lineage {
            db: db.to_string(),
            source_service_id: self.source_id.clone(),
            epoch: position.source_epoch,
            created_ms: info.created_ms,
        };
        standing.applied = position.applied_seq;
        standing.head = info.last_seq.max(position.applied_seq);
        standing.started_at.get_or_insert(position.applied_seq);
        let open = |since: u64| {
            let args = ChangesArgs {
                db: db.to_string(),
                since,
                limit: Some(1_000),
                feed: Some(FeedKind::Continuous),
                heartbeat_ms: Some(HEARTBEAT_MS),
                epoch: Some(position.source_epoch),
                ..ChangesArgs::default()
            };
            let src = src.clone();
            async move { src.changes_feed(&args).await }
        };
        let page_after = |since: u64| -> Paging {
            let args = ChangesArgs {
                db: db.to_string(),
                since,
                limit: Some(PAGE),
                epoch: Some(position.source_epoch),
                ..ChangesArgs::default()
            };
            let src = src.clone();
            Box::pin(async move { src.changes(&args).await })
        };
        // Behind the source, pages are pulled (at most `READ_AHEAD` changes held);
        // caught up, the continuous feed pushes each change as it commits.
        let mut feed: Option<FeedStream> = None;
        let mut paging: Option<Paging> = None;
        self.standing(&dest, db, standing, &VecDeque::new()).await;
        let mut buffer: VecDeque<ChangeEntry> = VecDeque::new();
        let mut received = position.applied_seq;
        let mut in_flight: Option<InFlight> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_item = Instant::now();
        loop {
            if in_flight.is_none() && !buffer.is_empty() {
                let (mut count, mut bytes) = (0, 0);
                while count < buffer.len() && count < APPLY_CHANGES && bytes < APPLY_BYTES {
                    bytes += change_bytes(&buffer[count]);
                    count += 1;
                }
                let changes: Vec<ChangeEntry> = buffer.drain(..count).collect();
                let pending_since = buffer.front().map(|c| c.time_ms);
                let (dest, lineage, head) = (dest.clone(), lineage.clone(), standing.head);
                in_flight = Some(Box::pin(async move {
                    within(apply(&dest, &lineage, changes, head, pending_since)).await
                }));
            }
            // The client keeps what a feed sends until it is read: when the destination
            // falls behind, the feed is closed and pages take over again.
            if buffer.len() >= READ_AHEAD {
                feed = None;
            }
            if feed.is_none() && paging.is_none() && buffer.len() < READ_AHEAD {
                paging = Some(page_after(received));
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(Ended::Canceled),
                item = next_item(&mut feed) => match item.inspect(|_| last_item = Instant::now()) {
                    Some(Ok(FeedItem::Change(change))) => {
                        standing.retrying = None;
                        if change.seq > received {
                            received = change.seq;
                            standing.head = standing.head.max(change.seq);
                            buffer.push_back(change);
                        }
                    }
                    Some(Ok(FeedItem::Heartbeat { last_seq })) => {
                        standing.retrying = None;
                        standing.head = standing.head.max(last_seq);
                        if in_flight.is_none() {
                            self.standing(&dest, db, standing, &buffer).await;
                        }
                    }
                    Some(Err(error)) => return Err(classify(error)),
                    None => {
                        let ended = feed.as_ref().and_then(|f| f.end()).map(|end| end.reason);
                        return match ended {
                            Some(FeedEndReason::DatabaseDropped) => Ok(Ended::Dropped),
                            reason => Err(Failure::Retry(format!(
                                "the source ended the feed ({})",
                                reason.map_or("without a reason", |r| r.as_str())
                            ))),
                        };
                    }
                },
                page = next_page(&mut paging) => {
                    paging = None;
                    let page = page.map_err(classify)?;
                    standing.retrying = None;
                    let caught_up = page.changes.len() < PAGE as usize;
                    for change in page.changes {
                        if change.seq > received {
                            received = change.seq;
                            standing.head = standing.head.max(change.seq);
                            buffer.push_back(change);
                        }
                    }
                    if caught_up {
                        feed = Some(within(open(received)).await?);
                        last_item = Instant::now();
                    }
                }
                landed = landed(&mut in_flight) => {
                    in_flight = None;
                    standing.applied = landed?.seq;
                    standing.retrying = None;
                    self.standing(&dest, db, standing, &buffer).await;
                }
                _ = tick.tick() => {
                    let info = within(src.db_info(db)).await?;
                    if info.created_ms != lineage.created_ms {
                        return Err(recreated(db, info.created_ms, lineage.created_ms));
                    }
                    standing.head = standing.head.max(info.last_seq);
                    if feed.is_some() && last_item.elapsed() > FEED_SILENCE {
                        return Err(Failure::Retry(format!(
                            "the source's feed sent nothing for {} s",
                            FEED_SILENCE.as_secs()
                        )));
                    }
                    if in_flight.is_none() {
                        self.standing(&dest, db, standing, &buffer).await;
                    }
                }
            }
        }
    }
}
