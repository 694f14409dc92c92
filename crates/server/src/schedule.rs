//! Scheduled backups: `[backup] schedule` (cron, UTC, 5 fields or 6 with seconds first)
//! starts an ordinary backup job named `scheduled-TIMESTAMP` at each match (none when the
//! previous one still runs); when it has written its backup, only the newest
//! `[backup] keep` scheduled backups are kept. A reload that changes the schedule or
//! `keep` stops the running schedule and starts the new one (`restart`).

use std::sync::Arc;
use std::time::Duration;

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::jobs;
use crate::shared::Shared;

/// Prefix of the names of scheduled backups (the only ones `keep` deletes).
pub const SCHEDULED_PREFIX: &str = "scheduled-";

/// Parses a schedule: standard 5-field cron, or 6 fields with seconds first.
pub fn parse(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(schedule)
        .map_err(|e| format!("{schedule:?} is not a cron schedule ({e}); e.g. \"0 3 * * *\""))
}

/// Starts the schedule of the settings in force (none without `[backup] schedule`),
/// stopping the one that runs first.
pub fn restart(shared: &Arc<Shared>) -> Result<(), String> {
    let settings = shared.settings();
    let cron = settings.backup_schedule.as_deref().map(parse).transpose()?;
    let mut running = shared.schedule_stop.lock().expect("schedule lock");
    if let Some(stop) = running.take() {
        stop.cancel();
    }
    if let Some(cron) = cron {
        tracing::info!(schedule = %cron.pattern, keep = ?settings.backup_keep, "scheduled backups on");
        let stop = shared.shutdown.child_token();
        spawn(shared.clone(), cron, settings.backup_keep, stop.clone());
        *running = Some(stop);
    }
    Ok(())
}

/// Runs the schedule until `stop` is cancelled (or the service shuts down).
fn spawn(shared: Arc<Shared>, cron: Cron, keep: Option<usize>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now();
            let Ok(next) = cron.find_next_occurrence(&now, false) else {
                tracing::error!(schedule = %cron.pattern, "the backup schedule has no next time");
                return;
            };
            let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shared.shutdown.cancelled() => return,
                _ = stop.cancelled() => return,
            }
            let name = format!(
                "{SCHEDULED_PREFIX}{}",
                jobs::timestamp_name(next.timestamp_millis().max(0) as u64)
            );
            run_once(&shared, name, keep).await;
        }
    });
}

async fn run_once(shared: &Arc<Shared>, name: String, keep: Option<usize>) {
    if let Err(error) = jobs::start_backup(shared, name.clone(), "scheduler", keep).await {
        tracing::warn!(backup = %name, %error, "scheduled backup not started");
    }
}

/// Deletes the oldest scheduled backups beyond the newest `keep`.
pub async fn prune(shared: &Arc<Shared>, keep: usize) {
    let Ok(list) = jobs::list_backups(shared).await else {
        return;
    };
    let doomed: Vec<String> = list
        .into_iter()
        .filter(|b| b.name.starts_with(SCHEDULED_PREFIX))
        .skip(keep)
        .map(|b| b.name)
        .collect();
    for name in doomed {
        match jobs::delete_backup(shared, &name).await {
            Ok(()) => tracing::info!(backup = %name, keep, "old scheduled backup deleted"),
            Err(error) => tracing::warn!(backup = %name, %error, "old scheduled backup kept"),
        }
    }
}

/// Checks a schedule at settings time: it parses and matches some time to come.
pub fn check(schedule: &str) -> Result<(), String> {
    let cron = parse(schedule)?;
    cron.find_next_occurrence(&chrono::Utc::now(), false)
        .map(drop)
        .map_err(|_| format!("{schedule:?} never matches"))
}
