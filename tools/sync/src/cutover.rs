//! The cutover: the source goes READ_ONLY (with a message naming the destination),
//! every change it holds is applied on the destination (by pages, beside a follower
//! that may still run: the destination applies each change once), until the source's
//! seqs stay put; databases the source dropped are dropped; then per database the
//! document counts and a digest of every key, rev and value are compared on both
//! sides, again until the source's seqs are the same after the comparison as before
//! it (a write admitted before READ_ONLY may commit late). When they differ the cutover stops there: the source stays READ_ONLY and the
//! destination in migration mode, and it says which database. Otherwise users, grants,
//! configurations and states are brought over, migration mode ends, and the time the
//! source was read-only is reported. A failure up to the end of the comparison sets the
//! source back as it was (nothing was switched) and says so; a later one says that the
//! source stays READ_ONLY.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_client::methods::{
    call, DbConfigSettings, DbInfo, SyncDetachArgs, SyncStatusResult, UserInfo,
};
use cairn_client::values::{DbState, ServiceMode, SyncEnd};
use cairn_client::Client;
use serde::Serialize;

use crate::apply::{catch_up, dest_status, Lineage};
use crate::digest::{content, Content};
use crate::side::Side;

/// What was asked.
pub struct CutoverPlan {
    pub src: Arc<Side>,
    pub dest: Arc<Side>,
    /// How long the changes left may take to be applied.
    pub timeout: Duration,
}

/// One database compared.
#[derive(Debug, Serialize)]
pub struct Compared {
    pub db: String,
    pub last_seq: u64,
    pub source: Content,
    pub destination: Content,
    /// `digest`, or `counts` when the database is not online on a side (a scan would
    /// be refused): then the document counts and last seqs are compared.
    pub by: &'static str,
    pub same: bool,
}

/// What the destination lacks of the source's users, grants, configurations and
/// states: brought over by a cutover, told by `status --src` before it.
#[derive(Debug, Default, Serialize)]
pub struct Carried {
    /// Users created, changed or removed on the destination.
    pub users: Vec<String>,
    /// Users that cannot be carried, each with why.
    pub not_carried: Vec<String>,
    /// Configuration and state changes on the destination.
    pub configs: Vec<String>,
}

/// What a cutover did.
#[derive(Debug, Serialize)]
pub struct CutoverReport {
    pub source: String,
    pub destination: String,
    pub databases: Vec<Compared>,
    /// Databases the source dropped, dropped on the destination.
    pub dropped: Vec<String>,
    /// Users, grants, configurations and states brought over.
    #[serde(flatten)]
    pub carried: Carried,
    /// How long the source has been read-only when migration mode ended.
    pub read_only_ms: u64,
    /// True when every database compared equal and migration mode ended.
    pub done: bool,
}

/// Runs the cutover; the report (with `done: false` when digests differ).
pub async fn cutover(plan: &CutoverPlan) -> anyhow::Result<CutoverReport> {
    let source_id = plan.src.identify().await?;
    plan.dest.identify().await?;
    let (src, dest) = (plan.src.client().await?, plan.dest.client().await?);
    let status = dest_status(&dest).await?;
    match &status.migration {
        Some(mode) if mode.source_service_id == source_id => {}
        Some(mode) => bail!(
            "{} follows {} (service {}), not {}: cut over from that source",
            plan.dest.name(),
            mode.source,
            mode.source_service_id,
            plan.src.name()
        ),
        None => bail!(
            "{} is not in migration mode: there is nothing to cut over (start cairn-sync --src URL --dest URL first)",
            plan.dest.name()
        ),
    }
    if let Some(stopped) = status.databases.iter().find(|d| d.error.is_some()) {
        let error = stopped.error.as_ref().expect("found with an error");
        bail!(
            "the sync of {} is stopped at seq {} ({}: {}): resolve it before the cutover (cairn-sync status)",
            stopped.db,
            error.seq,
            error.code,
            error.message
        );
    }
    let before = src.status().await?;
    let read_only_since = Instant::now();
    src.status_set(
        ServiceMode::ReadOnly,
        Some(&format!(
            "moving to {}: this service takes no more writes",
            plan.dest.name()
        )),
        Some(&before.pending_maintenance_message),
    )
    .await
    .context("setting the source READ_ONLY")?;
    let settled = settle(plan, &src, &dest, &source_id, read_only_since).await;
    let (databases, dropped, compared) = match settled {
        Ok(settled) => settled,
        Err(error) => {
            // Nothing was switched yet: the source goes back to what it was.
            let restored = src
                .status_set(
                    before.admin_status,
                    Some(&before.current_message),
                    Some(&before.pending_maintenance_message),
                )
                .await;
            let state = match restored {
                Ok(_) => format!("the source is {} again", before.admin_status),
                Err(e) => format!("the source stays READ_ONLY (setting it back failed: {e})"),
            };
            return Err(error.context(format!("the cutover did not happen; {state}")));
        }
    };
    let mut report = CutoverReport {
        source: plan.src.name(),
        destination: plan.dest.name(),
        databases: compared,
        dropped,
        carried: Carried::default(),
        read_only_ms: 0,
        done: false,
    };
    if report.databases.iter().any(|c| !c.same) {
        report.read_only_ms = millis(read_only_since.elapsed());
        return Ok(report);
    }
    let stays = "the source stays READ_ONLY and the destination in migration mode: run the cutover again, or abort";
    carry_users(&src, &dest, true, &mut report.carried)
        .await
        .context(stays)?;
    carry_configs(&src, &dest, &databases, true, &mut report.carried)
        .await
        .context(stays)?;
    dest.request::<call::SyncDetach>(&SyncDetachArgs {
        reason: SyncEnd::Cutover,
    })
    .await
    .context("ending migration mode on the destination")
    .context(stays)?;
    report.read_only_ms = millis(read_only_since.elapsed());
    report.done = true;
    Ok(report)
}

/// What a cutover would bring over now, changing nothing.
pub async fn differences(src: &Side, dest: &Client) -> anyhow::Result<Carried> {
    src.identify().await?;
    let src = src.client().await?;
    let here = dest.db_list().await?;
    let databases: Vec<DbInfo> = src
        .db_list()
        .await?
        .into_iter()
        .filter(|d| here.iter().any(|h| h.name == d.name))
        .collect();
    let mut carried = Carried::default();
    carry_users(&src, dest, false, &mut carried).await?;
    carry_configs(&src, dest, &databases, false, &mut carried).await?;
    Ok(carried)
}

/// Most rounds of draining and comparing before the source's seqs must have settled.
const SETTLE_ROUNDS: usize = 5;

/// Drains and compares until the source's seqs are the same after the comparison as
/// before it (a write admitted before READ_ONLY may commit late): the source's
/// databases, those dropped on the destination, and the comparison.
async fn settle(
    plan: &CutoverPlan,
    src: &Client,
    dest: &Client,
    source_id: &str,
    since: Instant,
) -> anyhow::Result<(Vec<DbInfo>, Vec<String>, Vec<Compared>)> {
    for _ in 0..SETTLE_ROUNDS {
        let (databases, dropped) = drain(plan, src, dest, source_id, since).await?;
        let mut compared = Vec::with_capacity(databases.len());
        for info in &databases {
            compared.push(compare(src, dest, info).await?);
        }
        if seqs(&src.db_list().await?) == seqs(&databases) {
            return Ok((databases, dropped, compared));
        }
    }
    bail!("the source's databases still changed after {SETTLE_ROUNDS} rounds of READ_ONLY: stop its admin writers first")
}

/// Each database's last seq.
fn seqs(databases: &[DbInfo]) -> BTreeMap<String, u64> {
    databases
        .iter()
        .map(|d| (d.name.clone(), d.last_seq))
        .collect()
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Applies every change the source holds until its seqs stay put; the source's
/// databases as they ended, and the databases dropped on the destination.
async fn drain(
    plan: &CutoverPlan,
    src: &Client,
    dest: &Client,
    source_id: &str,
    since: Instant,
) -> anyhow::Result<(Vec<DbInfo>, Vec<String>)> {
    let mut heads = src.db_list().await?;
    loop {
        let status = dest_status(dest).await?;
        for info in &heads {
            let position = match status.databases.iter().find(|d| d.db == info.name) {
                Some(position) => position.clone(),
                None => bail!(
                    "{} has no sync position on the destination (it was created on the source and the follower has not seen it yet): run cairn-sync until it is followed, then cut over",
                    info.name
                ),
            };
            let lineage = Lineage {
                db: info.name.clone(),
                source_service_id: position.source_service_id.clone(),
                epoch: position.source_epoch,
                created_ms: info.created_ms,
            };
            let left = plan.timeout.saturating_sub(since.elapsed());
            let applied = tokio::time::timeout(
                left,
                catch_up(src, dest, &lineage, position.applied_seq, info.last_seq),
            )
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{}: the changes left were not applied within {} s",
                    info.name,
                    plan.timeout.as_secs()
                )
            })?
            .with_context(|| format!("applying the last changes of {}", info.name))?;
            if applied < info.last_seq {
                bail!(
                    "{}: the source's log ends at seq {applied}, before its last seq {}",
                    info.name,
                    info.last_seq
                );
            }
        }
        // Writes admitted before READ_ONLY may still have committed: go on until the
        // source's seqs stay put.
        let again = src.db_list().await?;
        if seqs(&again) == seqs(&heads) {
            break;
        }
        heads = again;
    }
    let status: SyncStatusResult = dest_status(dest).await?;
    let mut dropped = Vec::new();
    for position in status.databases {
        let gone =
            position.source_service_id == source_id && !heads.iter().any(|d| d.name == position.db);
        if gone {
            dest.db_drop(&position.db)
                .await
                .with_context(|| format!("dropping {} (dropped on the source)", position.db))?;
            dropped.push(position.db);
        }
    }
    Ok((heads, dropped))
}

/// Compares one database on both sides: by digest when it is online on both, else by
/// counts and last seq.
async fn compare(src: &Client, dest: &Client, info: &DbInfo) -> anyhow::Result<Compared> {
    let dest_info = dest.db_info(&info.name).await?;
    let online = info.state == DbState::Online && dest_info.state == DbState::Online;
    let (source, destination, by) = if online {
        // Each side on a task of its own: the two digests use two threads.
        let (source, destination) = tokio::join!(
            tokio::spawn(content(src.clone(), info.name.clone())),
            tokio::spawn(content(dest.clone(), info.name.clone()))
        );
        let joined = |side: Result<_, tokio::task::JoinError>| {
            side.map_err(|e| anyhow::anyhow!("a digest task failed: {e}"))
        };
        let (source, destination) = (joined(source)?, joined(destination)?);
        (
            source.with_context(|| format!("reading {} on the source", info.name))?,
            destination.with_context(|| format!("reading {} on the destination", info.name))?,
            "digest",
        )
    } else {
        let counted = |info: &DbInfo| Content {
            documents: info.doc_count,
            digest: format!("last seq {}", info.last_seq),
        };
        (counted(info), counted(&dest_info), "counts")
    };
    Ok(Compared {
        db: info.name.clone(),
        last_seq: info.last_seq,
        same: source == destination && dest_info.last_seq == info.last_seq,
        source,
        destination,
        by,
    })
}

/// Users and grants as the source has them: users it lacks are created (only those
/// without a password: a service never hands out password hashes), grants set, users
/// the source no longer has removed (`root` stays). Without `apply`, only says what
/// it would do.
pub async fn carry_users(
    src: &Client,
    dest: &Client,
    apply: bool,
    carried: &mut Carried,
) -> anyhow::Result<()> {
    let source: BTreeMap<String, UserInfo> = src
        .user_list()
        .await?
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    let here: BTreeMap<String, UserInfo> = dest
        .user_list()
        .await?
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    for (name, user) in &source {
        let current = match here.get(name) {
            Some(current) => current.clone(),
            None if user.has_password => {
                carried.not_carried.push(format!(
                    "{name}: its password cannot be read from the source (no service hands out password hashes): add it here with cairn user add {name} --password"
                ));
                continue;
            }
            None => {
                if apply {
                    dest.user_add(name, None, user.admin).await?;
                }
                carried
                    .users
                    .push(format!("{name}: created (certificate only)"));
                UserInfo {
                    grants: BTreeMap::new(),
                    ..user.clone()
                }
            }
        };
        if current.admin != user.admin {
            carried.not_carried.push(format!(
                "{name}: admin is {} on the source and {} here, and no call changes it: delete and add the user here",
                user.admin, current.admin
            ));
        }
        for (db, access) in &user.grants {
            if current.grants.get(db) != Some(access) {
                if apply {
                    dest.user_grant(name, db, *access).await?;
                }
                carried.users.push(format!("{name}: {access} on {db}"));
            }
        }
        for db in current
            .grants
            .keys()
            .filter(|db| !user.grants.contains_key(*db))
        {
            if apply {
                dest.user_revoke(name, db).await?;
            }
            carried.users.push(format!("{name}: no grant on {db}"));
        }
    }
    for name in here
        .keys()
        .filter(|n| !source.contains_key(*n) && *n != "root")
    {
        if apply {
            dest.user_delete(name).await?;
        }
        carried
            .users
            .push(format!("{name}: deleted (not on the source)"));
    }
    Ok(())
}

/// Retention, index definitions and online/offline as the source has them. Changed
/// index definitions start a resync job (the database stays offline until it is done).
/// Without `apply`, only says what it would do.
pub async fn carry_configs(
    src: &Client,
    dest: &Client,
    databases: &[DbInfo],
    apply: bool,
    carried: &mut Carried,
) -> anyhow::Result<()> {
    for info in databases {
        let (wanted, current) = (
            src.db_config(&info.name).await?,
            dest.db_config(&info.name).await?,
        );
        let mut offline_for_resync = false;
        if (&wanted.retention, &wanted.indexes) != (&current.retention, &current.indexes) {
            if !apply {
                carried.configs.push(format!(
                    "{}: retention or indexes differ from the source's",
                    info.name
                ));
                continue;
            }
            if current.state != DbState::Offline {
                dest.db_offline(&info.name, Some("cutover: its configuration changes"))
                    .await?;
            }
            let set = dest
                .db_config_set(
                    &info.name,
                    DbConfigSettings {
                        retention: wanted.retention,
                        indexes: wanted.indexes.clone(),
                    },
                )
                .await?;
            carried
                .configs
                .push(format!("{}: configuration as on the source", info.name));
            if set.indexes_stale {
                let job = dest.db_resync(&info.name).await?;
                offline_for_resync = true;
                carried.configs.push(format!(
                    "{}: indexes rebuilt by job {}: bring it online once it is done (cairn db online {})",
                    info.name, job.id, info.name
                ));
            }
        }
        if offline_for_resync {
            continue;
        }
        let state_now = dest.db_info(&info.name).await?.state;
        match (wanted.state, state_now) {
            (DbState::Offline, DbState::Online) => {
                if apply {
                    dest.db_offline(&info.name, Some("cutover: offline on the source"))
                        .await?;
                }
                carried
                    .configs
                    .push(format!("{}: offline, as on the source", info.name));
            }
            (DbState::Online, DbState::Offline) => {
                if apply {
                    dest.db_online(&info.name, None, Some("cutover: online on the source"))
                        .await?;
                }
                carried
                    .configs
                    .push(format!("{}: online, as on the source", info.name));
            }
            _ => {}
        }
    }
    Ok(())
}
