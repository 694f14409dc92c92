//! Reloading the settings while the service runs (`config.reload`, SIGHUP): reads
//! `DIR/cairn.toml` again with the start's rules (the file, then the `CAIRN_*`
//! variables and the flags the process started with), checks all of it, then applies
//! what can change at run time and reports what needs a restart. An invalid file is
//! refused and changes nothing.

use std::sync::Arc;

use cairn_proto::methods::{ConfigReloadResult, SettingChange};
use cairn_proto::{ErrorCode, WireError};

use crate::config::{applied, differences, Settings, SETTINGS_FILE};
use crate::ops::shared::Shared;

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
        if let Err(reason) = crate::ops::schedule::restart(shared) {
            tracing::error!(%reason, "the new backup schedule did not start");
        }
    }
    if changed.iter().any(|c| c.setting.starts_with("status.")) {
        crate::ops::health::check(shared).await;
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
