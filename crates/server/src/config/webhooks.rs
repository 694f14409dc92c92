//! The `[[webhooks]]` tables of `cairn.toml`: each names an endpoint (an `http://` or
//! `https://` URL), the events it gets, and how long and how often a delivery is tried.
//! Checked when the settings load; delivered by `crate::ops::webhooks`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ServerError;

/// How long one attempt may take unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts after the first unless `retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 5;
/// What happened: the `event` field of the JSON body and the names of `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEventKind {
    /// The service status (READ_WRITE, READ_ONLY, DOWN) changed.
    StatusChanged,
    /// A database changed state (online, offline, …).
    DbStateChanged,
    /// A job (backup, restore, …) ended.
    JobFinished,
    /// A mirror's connection to its leader changed state (following, disconnected, …).
    MirrorStateChanged,
}

impl WebhookEventKind {
    pub const ALL: [WebhookEventKind; 4] = [
        WebhookEventKind::StatusChanged,
        WebhookEventKind::DbStateChanged,
        WebhookEventKind::JobFinished,
        WebhookEventKind::MirrorStateChanged,
    ];

    /// The wire name: `status_changed`, `db_state_changed`, `job_finished`,
    /// `mirror_state_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventKind::StatusChanged => "status_changed",
            WebhookEventKind::DbStateChanged => "db_state_changed",
            WebhookEventKind::JobFinished => "job_finished",
            WebhookEventKind::MirrorStateChanged => "mirror_state_changed",
        }
    }

    /// The kind with the wire name `name`.
    pub fn parse(name: &str) -> Option<WebhookEventKind> {
        WebhookEventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for WebhookEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[webhooks]]` table: an endpoint and the events it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// The events POSTed to it (never empty).
    pub events: Vec<WebhookEventKind>,
    /// How long one attempt may take (`timeout`, seconds).
    pub timeout: Duration,
    /// Attempts after the first (`retries`).
    pub retries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookSection {
    url: String,
    events: Vec<String>,
    /// Seconds; a fraction is fine.
    timeout: Option<f64>,
    retries: Option<u32>,
}

/// The longest `timeout` of a webhook.
const MAX_WEBHOOK_TIMEOUT_SECS: f64 = 3600.0;

/// Checks the `[[webhooks]]` table number `index` (from 0) of the file `path`.
pub(super) fn webhook_settings(
    path: &Path,
    index: usize,
    section: WebhookSection,
) -> Result<WebhookSettings, ServerError> {
    let fail = |reason: String| ServerError::Settings {
        source_name: format!("{} [[webhooks]] #{}", path.display(), index + 1),
        reason,
    };
    let url = section.url.trim().to_string();
    match reqwest::Url::parse(&url) {
        Ok(parsed)
            if matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => {
            return Err(fail(format!(
                "url {url:?}: use an http:// or https:// URL with a host"
            )))
        }
        Err(e) => {
            return Err(fail(format!(
                "url {url:?} is not a URL ({e}); e.g. \"https://hooks.example.net/cairn\""
            )))
        }
    }
    let names = || {
        WebhookEventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if section.events.is_empty() {
        return Err(fail(format!("events is empty: name some of {}", names())));
    }
    let mut events = Vec::new();
    for name in &section.events {
        let kind = WebhookEventKind::parse(name.trim()).ok_or_else(|| {
            fail(format!(
                "unknown event {name:?}; the events are {}",
                names()
            ))
        })?;
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    let timeout = match section.timeout {
        None => DEFAULT_TIMEOUT,
        Some(secs) if secs > 0.0 && secs <= MAX_WEBHOOK_TIMEOUT_SECS => {
            Duration::from_secs_f64(secs)
        }
        Some(secs) => {
            return Err(fail(format!(
                "timeout {secs}: give seconds above 0, at most {MAX_WEBHOOK_TIMEOUT_SECS}"
            )))
        }
    };
    Ok(WebhookSettings {
        url,
        events,
        timeout,
        retries: section.retries.unwrap_or(DEFAULT_RETRIES),
    })
}

/// `url` fit for logs: a password and a query string (where tokens often are) hidden.
pub fn display_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("***"));
    }
    parsed.to_string()
}
