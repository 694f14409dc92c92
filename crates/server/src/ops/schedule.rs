//! Scheduled backups: `[backup] schedule` (cron, UTC, 5 fields or 6 with seconds first)
//! starts an ordinary backup job named `scheduled-TIMESTAMP` at each match (none when the
//! previous one still runs); when it has written its backup, only the newest
//! `[backup] keep` scheduled backups are kept. A reload that changes the schedule or
//! `keep` stops the running schedule and starts the new one (`restart`).

use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::config::parse_schedule;
use crate::ops::backup;
use crate::ops::shared::Shared;

/// Prefix of the names of scheduled backups (the only ones `keep` deletes).
pub const SCHEDULED_PREFIX: &str = "scheduled-";

/// Starts the schedule of the settings in force (none without `[backup] schedule`),
/// stopping the one that runs first.
pub fn restart(shared: &Arc<Shared>) -> Result<(), String> {
    let settings = shared.settings();
    let cron = settings
        .backup_schedule
        .as_deref()
        .map(parse_schedule)
        .transpose()?;
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
    let tasks = shared.background.clone();
    tasks.spawn(async move {
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
                backup::timestamp_name(u64::try_from(next.timestamp_millis()).unwrap_or(0))
            );
            run_once(&shared, name, keep).await;
        }
    });
}

async fn run_once(shared: &Arc<Shared>, name: String, keep: Option<usize>) {
    if let Err(error) = backup::start_backup(shared, name.clone(), "scheduler", keep).await {
        tracing::warn!(backup = %name, %error, "scheduled backup not started");
    }
}

/// Deletes the oldest scheduled backups beyond the newest `keep`.
pub async fn prune(shared: &Arc<Shared>, keep: usize) {
    let Ok(list) = backup::list_backups(shared).await else {
        return;
    };
    let doomed: Vec<String> = list
        .into_iter()
        .filter(|b| b.name.starts_with(SCHEDULED_PREFIX))
        .skip(keep)
        .map(|b| b.name)
        .collect();
    for name in doomed {
        match backup::delete_backup(shared, &name).await {
            Ok(()) => tracing::info!(backup = %name, keep, "old scheduled backup deleted"),
            Err(error) => tracing::warn!(backup = %name, %error, "old scheduled backup kept"),
        }
    }
}
