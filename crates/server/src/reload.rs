//! Reloading the settings while the service runs (`config.reload`, SIGHUP): reads
//! `DIR/cairn.toml` again with the start's rules (the file, then the `CAIRN_*`
//! variables and the flags the process started with), checks all of it, then applies
//! what can change at run time and reports what needs a restart. An invalid file is
//! refused and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::methods::{ConfigReloadResult, SettingChange};
use cairn_proto::{ErrorCode, WireError};

use crate::config::{Settings, SETTINGS_FILE};
use crate::shared::Shared;
use crate::webhooks::{display_url, WebhookSettings};

/// Shown instead of a secret's value.
const HIDDEN: &str = "(hidden)";

/// One setting that differs between the settings in force and the file's.
struct Difference {
    setting: &'static str,
    old: String,
    new: String,
    /// Applied at run time (else: needs a restart).
    runtime: bool,
}

/// The webhook targets for people: URLs (secrets hidden) with their events.
fn webhooks(targets: &[WebhookSettings]) -> String {
    if targets.is_empty() {
        return "none".to_string();
    }
    targets
        .iter()
        .map(|t| {
            let events: Vec<&str> = t.events.iter().map(|k| k.as_str()).collect();
            format!(
                "{} ({}; timeout {} s, {} retries)",
                display_url(&t.url),
                events.join(","),
                t.timeout.as_secs_f64(),
                t.retries
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(duration: Duration) -> String {
    duration.as_secs().to_string()
}

fn optional<T: ToString>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_string(), ToString::to_string)
}

/// Every setting that differs between `old` and `new`.
fn differences(old: &Settings, new: &Settings) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut compare = |setting: &'static str, old: String, new: String, runtime: bool| {
        if old != new {
            out.push(Difference {
                setting,
                old,
                new,
                runtime,
            });
        }
    };
    // Applied at run time.
    compare(
        "log.level",
        old.log_level.clone(),
        new.log_level.clone(),
        true,
    );
    compare(
        "limits.max_connections",
        old.max_connections.to_string(),
        new.max_connections.to_string(),
        true,
    );
    compare(
        "limits.max_calls_per_connection",
        old.max_calls_per_connection.to_string(),
        new.max_calls_per_connection.to_string(),
        true,
    );
    compare(
        "limits.max_frame_bytes",
        old.max_frame_bytes.to_string(),
        new.max_frame_bytes.to_string(),
        true,
    );
    compare(
        "limits.shutdown_grace_secs",
        secs(old.shutdown_grace),
        secs(new.shutdown_grace),
        true,
    );
    compare(
        "limits.unauthenticated_idle_secs",
        secs(old.unauthenticated_idle),
        secs(new.unauthenticated_idle),
        true,
    );
    compare(
        "auth.session_ttl_secs",
        secs(old.session_ttl),
        secs(new.session_ttl),
        true,
    );
    compare(
        "status.min_free_bytes",
        old.min_free_bytes.to_string(),
        new.min_free_bytes.to_string(),
        true,
    );
    compare(
        "status.min_free_percent",
        old.min_free_percent.to_string(),
        new.min_free_percent.to_string(),
        true,
    );
    compare(
        "status.free_space_check_secs",
        secs(old.free_space_check),
        secs(new.free_space_check),
        true,
    );
    compare(
        "backup.schedule",
        optional(&old.backup_schedule),
        optional(&new.backup_schedule),
        true,
    );
    compare(
        "backup.keep",
        optional(&old.backup_keep),
        optional(&new.backup_keep),
        true,
    );
    // Taking a restart.
    let listen = |s: &Settings| {
        s.listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    compare("listen", listen(old), listen(new), false);
    compare(
        "store.map_size",
        old.map_size.to_string(),
        new.map_size.to_string(),
        false,
    );
    compare(
        "limits.max_value_bytes",
        old.max_value_bytes.to_string(),
        new.max_value_bytes.to_string(),
        false,
    );
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string())
    };
    compare(
        "backup.dir",
        path(&old.backup_dir),
        path(&new.backup_dir),
        false,
    );
    compare(
        "backup.url",
        optional(&old.backup_url),
        optional(&new.backup_url),
        false,
    );
    compare("cert_dir", path(&old.cert_dir), path(&new.cert_dir), false);
    // Compared as they are: a changed secret in a URL shows the same text.
    if old.webhooks != new.webhooks {
        out.push(Difference {
            setting: "webhooks",
            old: webhooks(&old.webhooks),
            new: webhooks(&new.webhooks),
            runtime: true,
        });
    }
    if old.s3 != new.s3 {
        out.push(Difference {
            setting: "backup.s3",
            old: HIDDEN.to_string(),
            new: HIDDEN.to_string(),
            runtime: false,
        });
    }
    out
}

/// The settings in force with the run-time settings of `new` applied.
fn applied(old: &Settings, new: &Settings) -> Settings {
    Settings {
        log_level: new.log_level.clone(),
        max_connections: new.max_connections,
        max_calls_per_connection: new.max_calls_per_connection,
        max_frame_bytes: new.max_frame_bytes,
        shutdown_grace: new.shutdown_grace,
        unauthenticated_idle: new.unauthenticated_idle,
        session_ttl: new.session_ttl,
        min_free_bytes: new.min_free_bytes,
        min_free_percent: new.min_free_percent,
        free_space_check: new.free_space_check,
        backup_schedule: new.backup_schedule.clone(),
        backup_keep: new.backup_keep,
        webhooks: new.webhooks.clone(),
        ..old.clone()
    }
}

/// A refused reload: one line naming the file and the problem.
fn refused(file: &str, error: impl std::fmt::Display) -> WireError {
    let message = error.to_string().replace('\n', " ");
    let message = if message.starts_with(file) {
        message
    } else {
        format!("{file}: {message}")
    };
    WireError::new(
        ErrorCode::InvalidSettings,
        format!("{message} (nothing changed: the running settings stay in force)"),
    )
}

/// Reloads the settings on behalf of `who` (a user, or `SIGHUP`).
pub async fn reload(shared: &Arc<Shared>, who: &str) -> Result<ConfigReloadResult, WireError> {
    let _one_at_a_time = shared.reloading.lock().await;
    let file = shared.dir.join(SETTINGS_FILE).display().to_string();
    let source = &shared.reload_source;
    let new =
        Settings::load(&shared.dir, &source.env, &source.flags).map_err(|e| refused(&file, e))?;
    let old = shared.settings();
    let next = applied(&old, &new);
    // What is applied must fit with what stays (say max_frame_bytes with max_value_bytes).
    next.check().map_err(|e| {
        refused(
            &file,
            format!("{e}, with the settings that need a restart as they are now"),
        )
    })?;
    let mut changed = Vec::new();
    let mut needs_restart = Vec::new();
    for difference in differences(&old, &new) {
        let change = SettingChange {
            setting: difference.setting.to_string(),
            old: difference.old,
            new: difference.new,
        };
        if difference.runtime {
            changed.push(change);
        } else {
            needs_restart.push(change);
        }
    }
    let is_changed = |name: &str| changed.iter().any(|c| c.setting == name);
    if is_changed("log.level") {
        match &source.log_level {
            Some(set_level) => set_level(&next.log_level)
                .map_err(|e| refused(&file, format!("[log] level {:?}: {e}", next.log_level)))?,
            None => tracing::warn!("this service cannot change its log filter at run time"),
        }
    }
    let new_webhooks = is_changed("webhooks").then(|| next.webhooks.clone());
    shared.set_settings(next);
    if let Some(targets) = new_webhooks {
        shared.webhooks.set_targets(targets);
    }
    if is_changed("backup.schedule") || is_changed("backup.keep") {
        if let Err(reason) = crate::schedule::restart(shared) {
            tracing::error!(%reason, "the new backup schedule did not start");
        }
    }
    if changed.iter().any(|c| c.setting.starts_with("status.")) {
        crate::health::check(shared).await;
        shared.auto.recheck.notify_one();
    }
    for change in &changed {
        tracing::warn!(setting = %change.setting, old = %change.old, new = %change.new, by = %who, "setting changed by a reload");
    }
    for change in &needs_restart {
        tracing::warn!(setting = %change.setting, old = %change.old, new = %change.new, by = %who, "setting changed in the file; it takes a restart");
    }
    tracing::warn!(
        %file,
        changed = changed.len(),
        needs_restart = needs_restart.len(),
        by = %who,
        "settings reloaded"
    );
    Ok(ConfigReloadResult {
        file,
        changed,
        needs_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_settings_apply_and_the_others_wait_for_a_restart() {
        let old = Settings::default();
        let new = Settings {
            max_connections: 5,
            min_free_percent: 1.5,
            map_size: 1 << 30,
            listen: vec!["unix:///tmp/x.sock".parse().unwrap()],
            ..Settings::default()
        };
        let found = differences(&old, &new);
        let names: Vec<(&str, bool)> = found.iter().map(|d| (d.setting, d.runtime)).collect();
        assert_eq!(
            names,
            [
                ("limits.max_connections", true),
                ("status.min_free_percent", true),
                ("listen", false),
                ("store.map_size", false),
            ]
        );
        let next = applied(&old, &new);
        assert_eq!(next.max_connections, 5);
        assert_eq!(next.min_free_percent, 1.5);
        assert_eq!(next.map_size, old.map_size);
        assert_eq!(next.listen[0].to_string(), old.listen[0].to_string());
        // What stays for a restart is still reported at the next reload.
        let again: Vec<&str> = differences(&next, &new).iter().map(|d| d.setting).collect();
        assert_eq!(again, ["listen", "store.map_size"]);
    }

    #[test]
    fn a_refusal_names_the_file_once() {
        let error = refused("/d/cairn.toml", "/d/cairn.toml: bad\nthing");
        assert_eq!(error.code, ErrorCode::InvalidSettings);
        assert!(error
            .message
            .starts_with("/d/cairn.toml: bad thing (nothing changed"));
        let error = refused(
            "/d/cairn.toml",
            "settings: max_connections must be at least 1",
        );
        assert!(error
            .message
            .starts_with("/d/cairn.toml: settings: max_connections"));
    }
}
