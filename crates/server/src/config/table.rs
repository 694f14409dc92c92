//! The settings table: one row per setting, saying how the file spells it, which
//! `CAIRN_*` variable sets it (and how the variable's text is read), how it reads for
//! people, and whether a reload applies it at run time or it takes a restart. The
//! variables the service accepts, a reload's report of what changed and what a reload
//! applies are all derived from this table; README's settings table is checked against
//! it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::file::parse_listen;
use super::webhooks::display_url;
use super::{LogFormat, Settings, WebhookSettings};
use crate::error::ServerError;

/// Shown instead of a secret's value.
pub const HIDDEN: &str = "(hidden)";

/// How a variable's text sets its setting (a one-line reason when it cannot).
type ReadVariable = fn(&mut Settings, &str) -> Result<(), String>;

/// One setting.
pub struct Setting {
    /// As `cairn.toml` spells it, `section.key` (`limits.max_connections`); a setting
    /// that only a variable sets is named for what it is (`cert_dir`).
    pub name: &'static str,
    /// The `CAIRN_*` variable that sets it, and how its text is read.
    pub variable: Option<(&'static str, ReadVariable)>,
    /// Its value as text, compared by a reload (`None`: a reload never reports it: only
    /// the start reads it, from variables and flags that a reload reads unchanged).
    pub value: Option<fn(&Settings) -> String>,
    /// How a reload shows it, when not as `value` (a secret, hidden).
    pub shown: Option<fn(&Settings) -> String>,
    /// How a reload puts the file's value in force: `Some` for a setting applied at run
    /// time, `None` for one that takes a restart.
    pub apply: Option<fn(&mut Settings, &Settings)>,
}

fn whole_number(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

fn size(text: &str) -> Result<usize, String> {
    usize::try_from(whole_number(text)?).map_err(|_| format!("{text:?} is too large"))
}

fn secs(duration: Duration) -> String {
    duration.as_secs().to_string()
}

fn optional<T: ToString>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_string(), ToString::to_string)
}

fn path(value: &Option<PathBuf>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_string(), |p| p.display().to_string())
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

/// Every setting, in the order of README's table.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "listen",
        variable: Some(("CAIRN_LISTEN", |s, v| {
            let urls: Vec<String> = v.split(',').map(|u| u.trim().to_string()).collect();
            s.listen = parse_listen(&urls).map_err(|e| e.to_string())?;
            Ok(())
        })),
        value: Some(|s| {
            s.listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }),
        shown: None,
        apply: None,
    },
    Setting {
        name: "limits.max_connections",
        variable: Some(("CAIRN_MAX_CONNECTIONS", |s, v| {
            s.max_connections = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.max_connections.to_string()),
        shown: None,
        apply: Some(|next, new| next.max_connections = new.max_connections),
    },
    Setting {
        name: "limits.max_unauthenticated_connections",
        variable: Some(("CAIRN_MAX_UNAUTHENTICATED_CONNECTIONS", |s, v| {
            s.max_unauthenticated_connections = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.max_unauthenticated_connections.to_string()),
        shown: None,
        apply: Some(|next, new| {
            next.max_unauthenticated_connections = new.max_unauthenticated_connections
        }),
    },
    Setting {
        name: "limits.max_calls_per_connection",
        variable: Some(("CAIRN_MAX_CALLS_PER_CONNECTION", |s, v| {
            s.max_calls_per_connection = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.max_calls_per_connection.to_string()),
        shown: None,
        apply: Some(|next, new| next.max_calls_per_connection = new.max_calls_per_connection),
    },
    Setting {
        name: "limits.max_frame_bytes",
        variable: Some(("CAIRN_MAX_FRAME_BYTES", |s, v| {
            s.max_frame_bytes = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.max_frame_bytes.to_string()),
        shown: None,
        apply: Some(|next, new| next.max_frame_bytes = new.max_frame_bytes),
    },
    Setting {
        name: "limits.max_value_bytes",
        variable: Some(("CAIRN_MAX_VALUE_BYTES", |s, v| {
            s.max_value_bytes = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.max_value_bytes.to_string()),
        shown: None,
        apply: None,
    },
    Setting {
        name: "limits.shutdown_grace_secs",
        variable: Some(("CAIRN_SHUTDOWN_GRACE_SECS", |s, v| {
            s.shutdown_grace = Duration::from_secs(whole_number(v)?);
            Ok(())
        })),
        value: Some(|s| secs(s.shutdown_grace)),
        shown: None,
        apply: Some(|next, new| next.shutdown_grace = new.shutdown_grace),
    },
    Setting {
        name: "auth.session_ttl_secs",
        variable: Some(("CAIRN_SESSION_TTL_SECS", |s, v| {
            s.session_ttl = Duration::from_secs(whole_number(v)?);
            Ok(())
        })),
        value: Some(|s| secs(s.session_ttl)),
        shown: None,
        apply: Some(|next, new| next.session_ttl = new.session_ttl),
    },
    Setting {
        name: "limits.unauthenticated_idle_secs",
        variable: None,
        value: Some(|s| secs(s.unauthenticated_idle)),
        shown: None,
        apply: Some(|next, new| next.unauthenticated_idle = new.unauthenticated_idle),
    },
    Setting {
        name: "limits.frame_timeout_secs",
        variable: None,
        value: Some(|s| secs(s.frame_timeout)),
        shown: None,
        apply: Some(|next, new| next.frame_timeout = new.frame_timeout),
    },
    Setting {
        name: "store.map_size",
        variable: Some(("CAIRN_MAP_SIZE", |s, v| {
            s.map_size = size(v)?;
            Ok(())
        })),
        value: Some(|s| s.map_size.to_string()),
        shown: None,
        apply: None,
    },
    Setting {
        name: "store.journal_retain_mib",
        variable: None,
        value: Some(|s| s.journal_retain_mib.to_string()),
        shown: None,
        apply: None,
    },
    Setting {
        name: "mirror.leader",
        variable: Some(("CAIRN_MIRROR_LEADER", |s, v| {
            s.mirror_leader = Some(super::parse_leader(v)?);
            Ok(())
        })),
        value: Some(|s| {
            s.mirror_leader
                .as_ref()
                .map_or_else(|| "none".to_string(), |url| url.redacted())
        }),
        shown: None,
        apply: None,
    },
    Setting {
        name: "mirror.token",
        variable: Some(("CAIRN_MIRROR_TOKEN", |s, v| {
            s.mirror_token = Some(v.to_string());
            Ok(())
        })),
        value: Some(|s| format!("{:?}", s.mirror_token)),
        shown: Some(|_| HIDDEN.to_string()),
        apply: None,
    },
    Setting {
        name: "mirror.forward_writes",
        variable: None,
        value: Some(|s| s.mirror_forward_writes.to_string()),
        shown: None,
        apply: Some(|next, new| next.mirror_forward_writes = new.mirror_forward_writes),
    },
    Setting {
        name: "mirror.max_lag_secs",
        variable: None,
        value: Some(|s| optional(&s.mirror_max_lag.map(|lag| lag.as_secs()))),
        shown: None,
        apply: Some(|next, new| next.mirror_max_lag = new.mirror_max_lag),
    },
    Setting {
        name: "status.min_free_bytes",
        variable: None,
        value: Some(|s| s.min_free_bytes.to_string()),
        shown: None,
        apply: Some(|next, new| next.min_free_bytes = new.min_free_bytes),
    },
    Setting {
        name: "status.min_free_percent",
        variable: None,
        value: Some(|s| s.min_free_percent.to_string()),
        shown: None,
        apply: Some(|next, new| next.min_free_percent = new.min_free_percent),
    },
    Setting {
        name: "status.free_space_check_secs",
        variable: None,
        value: Some(|s| secs(s.free_space_check)),
        shown: None,
        apply: Some(|next, new| next.free_space_check = new.free_space_check),
    },
    Setting {
        name: "log.level",
        variable: None,
        value: Some(|s| s.log_level.clone()),
        shown: None,
        apply: Some(|next, new| next.log_level = new.log_level.clone()),
    },
    Setting {
        name: "metrics.users",
        variable: None,
        value: Some(|s| s.metrics_users.join(", ")),
        shown: None,
        apply: Some(|next, new| next.metrics_users = new.metrics_users.clone()),
    },
    Setting {
        name: "metrics.listen",
        variable: None,
        value: Some(|s| optional(&s.metrics_listen)),
        shown: None,
        apply: None,
    },
    Setting {
        name: "backup.dir",
        variable: None,
        value: Some(|s| path(&s.backup_dir)),
        shown: None,
        apply: None,
    },
    Setting {
        name: "backup.schedule",
        variable: None,
        value: Some(|s| optional(&s.backup_schedule)),
        shown: None,
        apply: Some(|next, new| next.backup_schedule = new.backup_schedule.clone()),
    },
    Setting {
        name: "backup.keep",
        variable: None,
        value: Some(|s| optional(&s.backup_keep)),
        shown: None,
        apply: Some(|next, new| next.backup_keep = new.backup_keep),
    },
    Setting {
        name: "backup.url",
        variable: None,
        value: Some(|s| optional(&s.backup_url)),
        shown: None,
        apply: None,
    },
    Setting {
        name: "backup.s3",
        variable: None,
        value: Some(|s| format!("{:?}", s.s3)),
        shown: Some(|_| HIDDEN.to_string()),
        apply: None,
    },
    Setting {
        name: "webhooks",
        variable: None,
        // Compared as they are: a changed secret in a URL shows the same text.
        value: Some(|s| format!("{:?}", s.webhooks)),
        shown: Some(|s| webhooks(&s.webhooks)),
        apply: Some(|next, new| next.webhooks = new.webhooks.clone()),
    },
    Setting {
        name: "root_password",
        variable: Some(("CAIRN_AUTH_PASSWD", |s, v| {
            s.root_password = Some(v.to_string());
            Ok(())
        })),
        value: None,
        shown: None,
        apply: None,
    },
    Setting {
        name: "cert_dir",
        variable: Some(("CAIRN_CERT_DIR", |s, v| {
            s.cert_dir = Some(PathBuf::from(v));
            Ok(())
        })),
        value: Some(|s| path(&s.cert_dir)),
        shown: None,
        apply: None,
    },
    Setting {
        name: "log_format",
        variable: Some(("CAIRN_LOG_FORMAT", |s, v| {
            s.log_format = v.parse()?;
            Ok(())
        })),
        value: None,
        shown: None,
        apply: None,
    },
];

/// The `CAIRN_*` variables the service reads.
pub fn variables() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter_map(|s| s.variable.map(|(name, _)| name))
}

impl Settings {
    /// Applies the `CAIRN_*` variables of `env` (the `AWS_*` ones are `[backup.s3]`'s).
    pub(super) fn apply_variables(
        &mut self,
        env: &BTreeMap<String, String>,
    ) -> Result<(), ServerError> {
        for (name, value) in env {
            if name.starts_with("AWS_") {
                continue;
            }
            let row = SETTINGS
                .iter()
                .find_map(|s| s.variable.filter(|(variable, _)| variable == name));
            let Some((_, read)) = row else {
                return Err(ServerError::Settings {
                    source_name: name.clone(),
                    reason: format!(
                        "unknown variable; the service reads {}",
                        variables().collect::<Vec<_>>().join(", ")
                    ),
                });
            };
            read(self, value).map_err(|reason| ServerError::Settings {
                source_name: name.clone(),
                reason,
            })?;
        }
        Ok(())
    }
}

/// One setting that differs between the settings in force and the file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub setting: &'static str,
    pub old: String,
    pub new: String,
    /// Applied at run time (else: needs a restart).
    pub runtime: bool,
}

/// Every setting that differs between `old` and `new`: those a reload applies first,
/// then those that take a restart, each in table order.
pub fn differences(old: &Settings, new: &Settings) -> Vec<Difference> {
    let mut found: Vec<Difference> = SETTINGS
        .iter()
        .filter_map(|setting| {
            let value = setting.value?;
            if value(old) == value(new) {
                return None;
            }
            let shown = setting.shown.unwrap_or(value);
            Some(Difference {
                setting: setting.name,
                old: shown(old),
                new: shown(new),
                runtime: setting.apply.is_some(),
            })
        })
        .collect();
    found.sort_by_key(|d| !d.runtime);
    found
}

/// The settings in force with the run-time settings of `new` applied.
pub fn applied(old: &Settings, new: &Settings) -> Settings {
    let mut next = old.clone();
    for apply in SETTINGS.iter().filter_map(|s| s.apply) {
        apply(&mut next, new);
    }
    next
}

/// Keeps `LogFormat` readable from a variable's text.
impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: use text or json")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_setting_and_variable() {
        let readme = include_str!("../../../../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("## Settings"))
            .take_while(|l| !l.starts_with("### "))
            .filter(|l| l.starts_with('|'))
            .collect();
        for setting in SETTINGS {
            if let Some((variable, _)) = setting.variable {
                assert!(
                    table
                        .iter()
                        .any(|row| row.contains(&format!("`{variable}`"))),
                    "README's settings table lacks {variable}"
                );
            }
            let spelled = match setting.name {
                "listen" => "`listen".to_string(),
                "webhooks" => "`[[webhooks]]`".to_string(),
                "backup.s3" => "`[backup.s3]".to_string(),
                name => match name.split_once('.') {
                    Some((section, key)) => format!("`[{section}] {key}"),
                    // Set by its variable alone, checked above.
                    None => continue,
                },
            };
            assert!(
                readme.contains(&spelled),
                "README lacks the setting {spelled}"
            );
        }
    }
}
