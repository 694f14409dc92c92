//! Webhooks: the service tells HTTP endpoints named in `[[webhooks]]` (see
//! `crate::config::WebhookSettings`) what happened to it — a status an admin set
//! (`status_changed`), a database going online or offline (`db_state_changed`), a job
//! that ended (`job_finished`) — by POSTing one JSON object per event. Delivery runs
//! apart from the data path: [`Webhooks::emit`] stamps the event and puts it on a bounded
//! queue of each target that wants it, and never blocks or fails; one task per target
//! delivers its queue in order, retrying with exponential backoff, and a delivery that
//! still fails (or an event that finds its queue full) is logged at WARN and dropped.
//! The targets can be replaced while running ([`Webhooks::set_targets`]): the old
//! queues drain and their tasks end. At shutdown queued events get a short grace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{display_url, WebhookEventKind, WebhookSettings};

/// Events waiting per target; when full, new events for that target are dropped.
pub const QUEUE_CAPACITY: usize = 1024;
/// How long queued and in-flight deliveries may go on once the service stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The wait before the first retry; it doubles for each next one, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One event, as its emitter knows it; `emit` adds the service id and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub kind: WebhookEventKind,
    /// The database concerned, if any.
    pub database: Option<String>,
    /// The state before (a status, a database state, a job status), when known.
    pub old_state: Option<String>,
    /// The state after.
    pub new_state: String,
    /// Why: a status message, a job's error message; may be empty.
    pub reason: String,
    /// Who made it happen: a user name, or `service` for what the service did itself.
    pub who: String,
    /// The job, for `job_finished`.
    pub job_id: Option<u64>,
}

impl WebhookEvent {
    /// The service status went from `old_state` to `new_state` (`READ_ONLY`, …).
    pub fn status_changed(
        old_state: Option<String>,
        new_state: impl Into<String>,
        reason: impl Into<String>,
        who: impl Into<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            kind: WebhookEventKind::StatusChanged,
            database: None,
            old_state,
            new_state: new_state.into(),
            reason: reason.into(),
            who: who.into(),
            job_id: None,
        }
    }

    /// The database `database` went from `old_state` to `new_state`.
    pub fn db_state_changed(
        database: impl Into<String>,
        old_state: Option<String>,
        new_state: impl Into<String>,
        reason: impl Into<String>,
        who: impl Into<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            kind: WebhookEventKind::DbStateChanged,
            database: Some(database.into()),
            old_state,
            new_state: new_state.into(),
            reason: reason.into(),
            who: who.into(),
            job_id: None,
        }
    }

    /// The job `job_id` ended in `new_state` (`COMPLETED`, `FAILED`, `CANCELED`).
    pub fn job_finished(
        job_id: u64,
        database: Option<String>,
        old_state: Option<String>,
        new_state: impl Into<String>,
        reason: impl Into<String>,
        who: impl Into<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            kind: WebhookEventKind::JobFinished,
            database,
            old_state,
            new_state: new_state.into(),
            reason: reason.into(),
            who: who.into(),
            job_id: Some(job_id),
        }
    }

    /// A mirror's connection to its leader went from `old_state` to `new_state`
    /// (`connecting`, `bootstrapping`, `following`, `disconnected`).
    pub fn mirror_state_changed(
        old_state: impl Into<String>,
        new_state: impl Into<String>,
        reason: impl Into<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            kind: WebhookEventKind::MirrorStateChanged,
            database: None,
            old_state: Some(old_state.into()),
            new_state: new_state.into(),
            reason: reason.into(),
            who: "service".to_string(),
            job_id: None,
        }
    }

    /// The JSON body POSTed for this event, emitted by `service_id` at `time_ms`.
    pub fn to_json(&self, service_id: &str, time_ms: u64) -> serde_json::Value {
        let time = i64::try_from(time_ms)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut body = serde_json::json!({
            "event": self.kind.as_str(),
            "service_id": service_id,
            "time": time,
            "time_ms": time_ms,
            "database": self.database,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "reason": self.reason,
            "who": self.who,
        });
        if self.kind == WebhookEventKind::JobFinished {
            body["job_id"] = self.job_id.into();
        }
        body
    }
}

/// A configured target as [`Webhooks::targets`] reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookTarget {
    /// The URL, with any password and query string hidden.
    pub url: String,
    pub events: Vec<&'static str>,
    pub timeout_secs: f64,
    pub retries: u32,
    /// Events waiting in its queue.
    pub queued: usize,
    /// Events delivered (answered 2xx) since the target was set.
    pub delivered: u64,
    /// Events given up on after every attempt failed.
    pub failed: u64,
    /// Events dropped without an attempt: the queue was full, or the service stopped.
    pub dropped: u64,
    /// Why the last failed event failed.
    pub last_error: Option<String>,
}

/// The webhooks of a service: cheap to clone, shared by everything that emits events.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    service_id: String,
    options: Options,
    targets: Mutex<Vec<Target>>,
    /// Built at the first delivery (the TLS roots are read then).
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    /// Cancelled when the shutdown grace is over: deliveries stop at once.
    stop: CancellationToken,
    /// Set at shutdown: no more targets.
    closed: AtomicBool,
    tasks: TaskTracker,
}

/// Delivery timings (shorter in tests).
#[derive(Debug, Clone, Copy)]
struct Options {
    queue: usize,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            queue: QUEUE_CAPACITY,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }
}

struct Target {
    settings: Arc<WebhookSettings>,
    queue: mpsc::Sender<Arc<Prepared>>,
    stats: Arc<Stats>,
}

/// An event ready to send: its body is built once for every target.
struct Prepared {
    kind: WebhookEventKind,
    body: Bytes,
}

#[derive(Default)]
struct Stats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Webhooks {
    /// Webhooks of the service `service_id` delivering to `targets`. With targets, it
    /// must be called within a tokio runtime (each target gets a task).
    pub fn new(service_id: impl Into<String>, targets: Vec<WebhookSettings>) -> Webhooks {
        Webhooks::with_options(service_id, targets, Options::default())
    }

    fn with_options(
        service_id: impl Into<String>,
        targets: Vec<WebhookSettings>,
        options: Options,
    ) -> Webhooks {
        let webhooks = Webhooks {
            inner: Arc::new(Inner {
                service_id: service_id.into(),
                options,
                targets: Mutex::new(Vec::new()),
                client: Arc::new(OnceLock::new()),
                stop: CancellationToken::new(),
                closed: AtomicBool::new(false),
                tasks: TaskTracker::new(),
            }),
        };
        webhooks.set_targets(targets);
        webhooks
    }

    /// Replaces the targets (a settings reload): new events go to the new ones; the old
    /// ones deliver what they have queued, then their tasks end. Call it within a tokio
    /// runtime. Ignored once the service is shutting down.
    pub fn set_targets(&self, targets: Vec<WebhookSettings>) {
        if self.inner.closed.load(Ordering::SeqCst) {
            tracing::debug!("webhook targets not replaced: the service is stopping");
            return;
        }
        let mut current = self.inner.targets.lock().expect("webhooks lock");
        let mut old = std::mem::take(&mut *current);
        for settings in targets {
            // A target whose settings did not change keeps its queue, order and counts.
            match old.iter().position(|t| *t.settings == settings) {
                Some(index) => current.push(old.remove(index)),
                None => {
                    tracing::info!(
                        url = %display_url(&settings.url),
                        events = %event_names(&settings.events),
                        "webhook target set"
                    );
                    current.push(self.spawn_target(settings));
                }
            }
        }
        // Dropping the senders closes the old queues: their tasks drain them and end.
        drop(old);
    }

    /// The configured targets, with their delivery counts.
    pub fn targets(&self) -> Vec<WebhookTarget> {
        let targets = self.inner.targets.lock().expect("webhooks lock");
        targets
            .iter()
            .map(|target| {
                let settings = &target.settings;
                WebhookTarget {
                    url: display_url(&settings.url),
                    events: settings.events.iter().map(|k| k.as_str()).collect(),
                    timeout_secs: settings.timeout.as_secs_f64(),
                    retries: settings.retries,
                    queued: target.queue.max_capacity() - target.queue.capacity(),
                    delivered: target.stats.delivered.load(Ordering::Relaxed),
                    failed: target.stats.failed.load(Ordering::Relaxed),
                    dropped: target.stats.dropped.load(Ordering::Relaxed),
                    last_error: target
                        .stats
                        .last_error
                        .lock()
                        .expect("webhook stats lock")
                        .clone(),
                }
            })
            .collect()
    }

    /// Queues `event` for every target that wants its kind, stamped with the service id
    /// and the current time. Never blocks and never fails: a full queue drops the event
    /// for that target with a WARN log.
    pub fn emit(&self, event: WebhookEvent) {
        let targets = self.inner.targets.lock().expect("webhooks lock");
        let wanted = |target: &&Target| target.settings.events.contains(&event.kind);
        if !targets.iter().any(|t| wanted(&t)) {
            return;
        }
        let body = event.to_json(&self.inner.service_id, cairn_store::now_ms());
        let prepared = Arc::new(Prepared {
            kind: event.kind,
            body: Bytes::from(body.to_string()),
        });
        for target in targets.iter().filter(wanted) {
            match target.queue.try_send(prepared.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    target.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        url = %display_url(&target.settings.url),
                        event = event.kind.as_str(),
                        queued = self.inner.options.queue,
                        "webhook queue full: event dropped"
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    target.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// At service shutdown: no new events; what is queued or in flight gets at most
    /// `grace`, then every delivery stops (what is left is logged and dropped).
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let old = std::mem::take(&mut *self.inner.targets.lock().expect("webhooks lock"));
        drop(old);
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            self.inner.stop.cancel();
            // Every task stops at its next await: this wait is short.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.inner.tasks.wait()).await;
        }
        self.inner.stop.cancel();
    }

    fn spawn_target(&self, settings: WebhookSettings) -> Target {
        let (queue, receiver) = mpsc::channel(self.inner.options.queue);
        let target = Target {
            settings: Arc::new(settings),
            queue,
            stats: Arc::new(Stats::default()),
        };
        let delivery = Delivery {
            settings: target.settings.clone(),
            stats: target.stats.clone(),
            client: self.inner.client.clone(),
            stop: self.inner.stop.clone(),
            options: self.inner.options,
        };
        // The task holds no reference to `Inner`: dropping every `Webhooks` closes the
        // queues and ends it.
        self.inner.tasks.spawn(delivery.run(receiver));
        target
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("service_id", &self.inner.service_id)
            .field("targets", &self.targets())
            .finish()
    }
}

/// One target's delivery task.
struct Delivery {
    settings: Arc<WebhookSettings>,
    stats: Arc<Stats>,
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    stop: CancellationToken,
    options: Options,
}

impl Delivery {
    async fn run(self, mut queue: mpsc::Receiver<Arc<Prepared>>) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.stop.cancelled() => None,
                next = queue.recv() => next,
            };
            let Some(event) = next else { break };
            self.deliver(&event).await;
        }
        queue.close();
        let mut left = 0u64;
        while queue.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.stats.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                url = %display_url(&self.settings.url),
                events = left,
                "the service stopped before these webhook events were delivered: dropped"
            );
        }
    }

    /// Delivers one event: the first attempt and up to `retries` more.
    async fn deliver(&self, event: &Prepared) {
        let url = display_url(&self.settings.url);
        let client = match self.client.get_or_init(build_client) {
            Ok(client) => client,
            Err(error) => {
                self.give_up(event, &url, 0, error.clone());
                return;
            }
        };
        let mut last_error = String::new();
        for attempt in 0..=self.settings.retries {
            if attempt > 0 {
                let wait = backoff(&self.options, attempt);
                tokio::select! {
                    _ = self.stop.cancelled() => return self.stopped(event, &url, &last_error),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let sent = client
                .post(&self.settings.url)
                .timeout(self.settings.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(event.body.clone())
                .send();
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => return self.stopped(event, &url, &last_error),
                outcome = sent => outcome,
            };
            match outcome {
                Ok(response) if response.status().is_success() => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%url, event = event.kind.as_str(), attempt, "webhook delivered");
                    return;
                }
                Ok(response) => last_error = format!("answered HTTP {}", response.status()),
                Err(error) => last_error = describe_error(error, self.settings.timeout),
            }
            tracing::debug!(%url, event = event.kind.as_str(), attempt, error = %last_error, "webhook attempt failed");
        }
        self.give_up(event, &url, self.settings.retries + 1, last_error);
    }

    fn give_up(&self, event: &Prepared, url: &str, attempts: u32, error: String) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            url,
            event = event.kind.as_str(),
            attempts,
            error = %error,
            "webhook delivery failed: event dropped"
        );
        *self.stats.last_error.lock().expect("webhook stats lock") = Some(error);
    }

    fn stopped(&self, event: &Prepared, url: &str, last_error: &str) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            url,
            event = event.kind.as_str(),
            last_error,
            "the service stopped during a webhook delivery: event dropped"
        );
    }
}

/// The wait before retry number `attempt` (1 for the first retry).
fn backoff(options: &Options, attempt: u32) -> Duration {
    let factor = 1u32 << (attempt - 1).min(16);
    options
        .first_backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}

/// The HTTP client of every target: HTTP/1.1, no redirects, TLS trusting the system's
/// CAs (see `cairn_certs::system_trust_http_config`).
fn build_client() -> Result<reqwest::Client, String> {
    let trust = cairn_certs::system_trust_http_config()
        .map_err(|e| format!("webhooks: TLS configuration: {e}"))?;
    for warning in &trust.warnings {
        tracing::warn!("webhooks: {warning}");
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(trust.config)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cairn-service/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("webhooks: cannot build the HTTP client: {e}"))
}

/// A failed attempt in one line, without the URL (logged apart, secrets hidden).
fn describe_error(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {:.1} s", timeout.as_secs_f64());
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn event_names(events: &[WebhookEventKind]) -> String {
    events
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_tests::webhook::WebhookListener;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(10);

    fn target(url: String, retries: u32, timeout: Duration) -> WebhookSettings {
        WebhookSettings {
            url,
            events: WebhookEventKind::ALL.to_vec(),
            timeout,
            retries,
        }
    }

    /// Short backoff: 20 ms doubling, at most 100 ms.
    fn quick(targets: Vec<WebhookSettings>) -> Webhooks {
        Webhooks::with_options(
            "svc-1",
            targets,
            Options {
                queue: QUEUE_CAPACITY,
                first_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
            },
        )
    }

    fn status(new: &str, reason: &str) -> WebhookEvent {
        WebhookEvent::status_changed(Some("READ_WRITE".into()), new, reason, "root")
    }

    /// Waits (bounded) until `done` holds for the reported targets.
    async fn until(webhooks: &Webhooks, done: impl Fn(&[WebhookTarget]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&webhooks.targets()) {
            assert!(
                Instant::now() < deadline,
                "targets: {:?}",
                webhooks.targets()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until `done` holds for the bodies `listener` received, without
    /// blocking the runtime's thread (the deliveries run on it).
    async fn received(
        listener: &WebhookListener,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = listener.events();
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "received: {events:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn kinds_and_bodies() {
        for kind in WebhookEventKind::ALL {
            assert_eq!(WebhookEventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(WebhookEventKind::parse("status"), None);
        let body = status("READ_ONLY", "moving disks").to_json("svc", 1_795_000_000_123);
        assert_eq!(body["event"], "status_changed");
        assert_eq!(body["service_id"], "svc");
        assert_eq!(body["time"], "2026-11-18T11:06:40.123Z");
        assert_eq!(body["time_ms"], 1_795_000_000_123u64);
        assert_eq!(body["database"], serde_json::Value::Null);
        assert_eq!(body["old_state"], "READ_WRITE");
        assert_eq!(body["new_state"], "READ_ONLY");
        assert_eq!(body["reason"], "moving disks");
        assert_eq!(body["who"], "root");
        assert!(body.get("job_id").is_none(), "{body}");
        let job = WebhookEvent::job_finished(
            7,
            Some("notes".into()),
            Some("IN_PROGRESS".into()),
            "COMPLETED",
            "",
            "alice",
        )
        .to_json("svc", 0);
        assert_eq!(job["job_id"], 7);
        assert_eq!(job["database"], "notes");
        assert_eq!(
            display_url("https://u:secret@hooks.example/x/y?token=abc"),
            "https://u:***@hooks.example/x/y?***"
        );
    }

    #[tokio::test]
    async fn delivers_each_event_as_json_in_order() {
        let listener = WebhookListener::start().unwrap();
        let webhooks = quick(vec![target(listener.url(), 0, Duration::from_secs(5))]);
        for i in 0..20 {
            webhooks.emit(status("READ_ONLY", &format!("m{i}")));
        }
        let job_only = WebhookListener::start().unwrap();
        let mut only_jobs = target(job_only.url(), 0, Duration::from_secs(5));
        only_jobs.events = vec![WebhookEventKind::JobFinished];
        webhooks.set_targets(vec![
            target(listener.url(), 0, Duration::from_secs(5)),
            only_jobs,
        ]);
        webhooks.emit(status("DOWN", "last"));
        webhooks.emit(WebhookEvent::job_finished(
            3,
            None,
            Some("STARTED".into()),
            "FAILED",
            "disk full",
            "root",
        ));
        let events = received(&listener, |events| events.len() == 22).await;
        let reasons: Vec<&str> = events[..20]
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(reasons, expected, "in order");
        assert_eq!(events[20]["reason"], "last");
        assert_eq!(events[21]["event"], "job_finished");
        let jobs = received(&job_only, |events| !events.is_empty()).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["job_id"], 3);
        assert_eq!(jobs[0]["reason"], "disk full");

        let request = &listener.requests()[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("user-agent").map(str::to_string),
            Some(format!("cairn-service/{}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(request.body["service_id"], "svc-1");
        // The unchanged target kept its queue and counts across set_targets.
        until(&webhooks, |t| t[0].delivered == 22 && t[1].delivered == 1).await;

        // A target taken out delivers what it had queued, then gets nothing more.
        for i in 0..5 {
            webhooks.emit(status("READ_ONLY", &format!("n{i}")));
        }
        let job_only_again = webhooks.targets()[1].clone();
        let mut only_jobs = target(job_only.url(), 0, Duration::from_secs(5));
        only_jobs.events = vec![WebhookEventKind::JobFinished];
        webhooks.set_targets(vec![only_jobs]);
        assert_eq!(webhooks.targets(), [job_only_again]);
        webhooks.emit(status("DOWN", "unheard"));
        let events = received(&listener, |events| events.len() == 27).await;
        assert_eq!(events[26]["reason"], "n4");
        webhooks.shutdown(SHUTDOWN_GRACE).await;
        assert_eq!(listener.events().len(), 27);
    }

    #[tokio::test]
    async fn retries_after_failures_then_succeeds() {
        let listener = WebhookListener::start().unwrap();
        listener.fail_first(3);
        let webhooks = quick(vec![target(listener.url(), 5, Duration::from_secs(5))]);
        webhooks.emit(status("READ_ONLY", "first"));
        webhooks.emit(status("DOWN", "second"));
        let bodies = received(&listener, |events| events.len() == 5).await;
        let reasons: Vec<&str> = bodies
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["first", "first", "first", "first", "second"]);
        let statuses: Vec<u16> = listener.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [500, 500, 500, 200, 200]);
        until(&webhooks, |t| t[0].delivered == 2).await;
        assert_eq!(webhooks.targets()[0].failed, 0);
    }

    #[tokio::test]
    async fn gives_up_after_the_retries_logs_and_goes_on() {
        let logs = LogCapture::default();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_ansi(false)
                .finish(),
        );
        let failing = WebhookListener::start().unwrap();
        failing.set_status(503);
        let good = WebhookListener::start().unwrap();
        let webhooks = quick(vec![
            target(
                format!("{}?token=secret", failing.url()),
                2,
                Duration::from_secs(5),
            ),
            target(good.url(), 2, Duration::from_secs(5)),
        ]);
        webhooks.emit(status("READ_ONLY", "one"));
        webhooks.emit(status("DOWN", "two"));
        until(&webhooks, |t| t[0].failed == 2 && t[1].delivered == 2).await;
        assert_eq!(failing.requests().len(), 6, "1 attempt + 2 retries each");
        assert_eq!(good.requests().len(), 2);
        let report = &webhooks.targets()[0];
        assert_eq!(
            report.last_error.as_deref(),
            Some("answered HTTP 503 Service Unavailable")
        );
        assert!(report.url.ends_with("/hook?***"), "{}", report.url);
        let text = logs.text();
        assert!(
            text.contains("webhook delivery failed: event dropped"),
            "{text}"
        );
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("attempts=3"), "{text}");
        assert!(
            text.contains("event=\"status_changed\"") || text.contains("event=status_changed"),
            "{text}"
        );
        assert!(
            !text.contains("secret"),
            "the query string is hidden: {text}"
        );

        // Once the endpoint answers again, the next event goes through.
        failing.set_status(204);
        webhooks.emit(status("READ_WRITE", "three"));
        let delivered = received(&failing, |events| events.len() == 7).await;
        assert_eq!(delivered[6]["reason"], "three");
        until(&webhooks, |t| t[0].delivered == 1).await;
    }

    #[tokio::test]
    async fn a_silent_endpoint_costs_the_timeout_per_attempt() {
        let silent = WebhookListener::start().unwrap();
        silent.set_hang(true);
        let webhooks = quick(vec![target(silent.url(), 1, Duration::from_millis(300))]);
        let started = Instant::now();
        webhooks.emit(status("READ_ONLY", "x"));
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "emit never waits"
        );
        until(&webhooks, |t| t[0].failed == 1).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(4),
            "two attempts of 300 ms: {took:?}"
        );
        assert_eq!(silent.requests().len(), 2);
        assert_eq!(
            webhooks.targets()[0].last_error.as_deref(),
            Some("no answer within 0.3 s")
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_shutdown_is_bounded() {
        let silent = WebhookListener::start().unwrap();
        silent.set_hang(true);
        let webhooks = Webhooks::with_options(
            "svc",
            vec![target(silent.url(), 0, Duration::from_secs(60))],
            Options {
                queue: 4,
                ..Options::default()
            },
        );
        for i in 0..10 {
            webhooks.emit(status("READ_ONLY", &format!("{i}")));
        }
        received(&silent, |events| events.len() == 1).await;
        let report = &webhooks.targets()[0];
        assert!(report.dropped >= 5, "{report:?}");
        assert!(report.queued <= 4, "{report:?}");

        let started = Instant::now();
        webhooks.shutdown(Duration::from_millis(300)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // After shutdown, events go nowhere and nothing fails.
        webhooks.emit(status("DOWN", "late"));
        assert!(webhooks.targets().is_empty());
    }

    #[tokio::test]
    async fn https_targets_do_not_panic() {
        // A TCP endpoint that reads the client's first bytes and hangs up: the TLS
        // client (ring, the system's roots) starts a handshake, which then fails like
        // any other attempt.
        let endpoint = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/hook", endpoint.local_addr().unwrap());
        let first_bytes = std::thread::spawn(move || {
            use std::io::Read;
            let (mut stream, _) = endpoint.accept().unwrap();
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).unwrap();
            hello
        });
        let webhooks = quick(vec![target(url, 0, Duration::from_secs(5))]);
        webhooks.emit(status("READ_ONLY", "x"));
        until(&webhooks, |t| t[0].failed == 1).await;
        let hello = first_bytes.join().unwrap();
        assert_eq!(hello[0], 0x16, "a TLS handshake record: {hello:?}");
        let error = webhooks.targets()[0].last_error.clone().unwrap();
        assert!(!error.is_empty());
    }

    /// A tracing writer into memory.
    #[derive(Clone, Default)]
    struct LogCapture(Arc<Mutex<Vec<u8>>>);

    impl LogCapture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for LogCapture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
        type Writer = LogCapture;
        fn make_writer(&'a self) -> LogCapture {
            self.clone()
        }
    }
}
