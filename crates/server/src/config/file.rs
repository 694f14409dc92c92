//! `cairn.toml`: the shape of the file (unknown keys are errors) and how it applies over
//! the defaults, every value checked as it is read; and the `[backup.s3]` fallback to
//! the standard `AWS_*` variables, which fill in what the file leaves out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::webhooks::{webhook_settings, WebhookSection};
use super::{check_schedule, ListenUrl, Settings};
use crate::error::ServerError;
use cairn_remote::S3Settings;

/// The shape of `cairn.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    listen: Option<Vec<String>>,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    backup: BackupSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    status: StatusSection,
    #[serde(default)]
    webhooks: Vec<WebhookSection>,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    mirror: MirrorSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorSection {
    leader: Option<String>,
    token: Option<String>,
    forward_writes: Option<bool>,
    max_lag_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    users: Option<Vec<String>>,
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusSection {
    min_free_bytes: Option<u64>,
    min_free_percent: Option<f64>,
    free_space_check_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupSection {
    dir: Option<PathBuf>,
    schedule: Option<String>,
    keep: Option<usize>,
    url: Option<String>,
    s3: Option<S3Section>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<usize>,
    max_unauthenticated_connections: Option<usize>,
    max_calls_per_connection: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    unauthenticated_idle_secs: Option<u64>,
    frame_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    session_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    map_size: Option<usize>,
    journal_retain_mib: Option<u64>,
}

impl Settings {
    /// Applies the file `path`, whose text is `text`, over the settings.
    pub(super) fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ServerError> {
        let file: SettingsFile = toml::from_str(text).map_err(|e| {
            // One line: the line of the file, then what is wrong there.
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            let message = e.message().trim().replace('\n', " ");
            ServerError::Settings {
                source_name: path.display().to_string(),
                reason: match line {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                },
            }
        })?;
        if let Some(listen) = file.listen {
            self.listen = parse_listen(&listen)?;
        }
        let limits = file.limits;
        set(&mut self.max_connections, limits.max_connections);
        set(
            &mut self.max_unauthenticated_connections,
            limits.max_unauthenticated_connections,
        );
        set(
            &mut self.max_calls_per_connection,
            limits.max_calls_per_connection,
        );
        set(&mut self.max_frame_bytes, limits.max_frame_bytes);
        set(&mut self.max_value_bytes, limits.max_value_bytes);
        set(
            &mut self.shutdown_grace,
            limits.shutdown_grace_secs.map(Duration::from_secs),
        );
        set(
            &mut self.unauthenticated_idle,
            limits.unauthenticated_idle_secs.map(Duration::from_secs),
        );
        set(
            &mut self.frame_timeout,
            limits.frame_timeout_secs.map(Duration::from_secs),
        );
        set(
            &mut self.session_ttl,
            file.auth.session_ttl_secs.map(Duration::from_secs),
        );
        set(&mut self.map_size, file.store.map_size);
        set(&mut self.journal_retain_mib, file.store.journal_retain_mib);
        if let Some(url) = file.mirror.leader {
            self.mirror_leader =
                Some(
                    super::parse_leader(&url).map_err(|reason| ServerError::Settings {
                        source_name: format!("{} [mirror] leader", path.display()),
                        reason,
                    })?,
                );
        }
        if let Some(token) = file.mirror.token {
            self.mirror_token = Some(token);
        }
        set(&mut self.mirror_forward_writes, file.mirror.forward_writes);
        if let Some(secs) = file.mirror.max_lag_secs {
            self.mirror_max_lag = Some(Duration::from_secs(secs));
        }
        if let Some(level) = file.log.level {
            tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
                ServerError::Settings {
                    source_name: format!("{} [log] level", path.display()),
                    reason: format!("{level:?} is not a log filter ({e}); e.g. \"info\" or \"warn,cairn_server=debug\""),
                }
            })?;
            self.log_level = level;
        }
        set(&mut self.min_free_bytes, file.status.min_free_bytes);
        set(&mut self.min_free_percent, file.status.min_free_percent);
        set(
            &mut self.free_space_check,
            file.status.free_space_check_secs.map(Duration::from_secs),
        );
        set(&mut self.metrics_users, file.metrics.users);
        if let Some(url) = file.metrics.listen {
            self.metrics_listen =
                Some(
                    metrics_address(&url).map_err(|reason| ServerError::Settings {
                        source_name: format!("{} [metrics] listen", path.display()),
                        reason,
                    })?,
                );
        }
        self.webhooks = file
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(index, section)| webhook_settings(path, index, section))
            .collect::<Result<_, _>>()?;
        if let Some(dir) = file.backup.dir {
            self.backup_dir = Some(dir);
        }
        if let Some(schedule) = file.backup.schedule {
            check_schedule(&schedule).map_err(|reason| ServerError::Settings {
                source_name: format!("{} [backup] schedule", path.display()),
                reason,
            })?;
            self.backup_schedule = Some(schedule);
        }
        set(&mut self.backup_keep, file.backup.keep.map(Some));
        if let Some(url) = file.backup.url {
            let location = url.parse().map_err(|reason| ServerError::Settings {
                source_name: format!("{} [backup] url", path.display()),
                reason,
            })?;
            self.backup_url = Some(location);
        }
        if let Some(s3) = file.backup.s3 {
            if self.backup_url.is_none() {
                return Err(ServerError::Settings {
                    source_name: format!("{} [backup.s3]", path.display()),
                    reason:
                        "set [backup] url = \"s3://BUCKET/PREFIX\" too, or leave [backup.s3] out"
                            .to_string(),
                });
            }
            if let Some(endpoint) = &s3.endpoint {
                check_endpoint(
                    endpoint,
                    &format!("{} [backup.s3] endpoint", path.display()),
                )?;
            }
            self.s3 = S3Settings {
                endpoint: s3.endpoint,
                region: s3.region,
                access_key_id: s3.access_key_id,
                secret_access_key: s3.secret_access_key,
                session_token: s3.session_token,
            };
        }
        Ok(())
    }

    /// Fills in what `[backup.s3]` leaves out from the `AWS_*` variables (see
    /// `S3Settings::fill_from_env`); an endpoint from them is checked only with a url.
    pub(super) fn apply_aws_env(
        &mut self,
        env: &BTreeMap<String, String>,
    ) -> Result<(), ServerError> {
        let endpoint_from = self.s3.fill_from_env(|name| env.get(name).cloned());
        if let (Some(name), Some(endpoint), Some(_)) =
            (endpoint_from, &self.s3.endpoint, &self.backup_url)
        {
            check_endpoint(endpoint, name)?;
        }
        Ok(())
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// An object store endpoint: an `http://` or `https://` URL with a host.
fn check_endpoint(endpoint: &str, source_name: &str) -> Result<(), ServerError> {
    cairn_remote::check_endpoint(endpoint).map_err(|reason| ServerError::Settings {
        source_name: source_name.to_string(),
        reason,
    })
}

pub(super) fn parse_listen(urls: &[String]) -> Result<Vec<ListenUrl>, ServerError> {
    urls.iter()
        .map(|url| url.parse::<ListenUrl>())
        .collect::<Result<_, _>>()
}

/// `HOST:PORT` of a metrics listen URL, `http://HOST:PORT`.
fn metrics_address(url: &str) -> Result<String, String> {
    let address = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: use http://HOST:PORT (plain HTTP, /metrics alone)"))?
        .trim_end_matches('/');
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("{url:?}: the address must be HOST:PORT"));
    }
    Ok(address.to_string())
}
