//! The service's metrics, in the Prometheus text format (`prometheus-client`): HTTP
//! requests by route (the matched route, never the raw path) and status with their
//! latency, calls by method and outcome with theirs (native and HTTP alike), the writer's
//! group commits (duration up to the fsync'd commit, requests per group, failures),
//! connections and live feeds as they change, `scan` pages read ahead by outcome; and,
//! read when scraped, the environment's size and size in use, documents and change-log
//! entries per database, database states, jobs by type and status, the service status
//! and its automatic reasons, and each followed database's sync lag.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use cairn_proto::{ErrorCode, Method};
use cairn_store::{GroupStats, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::health;
use super::shared::Shared;
use crate::wire::IntoWire;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    verb: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    /// `ok`, or the error code.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    db: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbStateLabels {
    db: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    r#type: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What became of a `scan` page read ahead (`crate::methods::ScanAhead`).
#[derive(Clone, Copy, Debug)]
pub enum ReadAheadOutcome {
    /// Asked for, and served.
    Used,
    /// Asked for, but something was committed since it was read (or the read failed,
    /// or the page was larger than a page read ahead may be): read again.
    Stale,
    /// Another page was read ahead on the connection before it was asked for.
    Unused,
}

impl ReadAheadOutcome {
    fn label(self) -> &'static str {
        match self {
            ReadAheadOutcome::Used => "used",
            ReadAheadOutcome::Stale => "stale",
            ReadAheadOutcome::Unused => "unused",
        }
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 50 µs to about 27 minutes... in practice to 1.6 s and beyond.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the gauges read at scrape time are set, then encoded.
    scrape: Mutex<()>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    calls: Family<CallLabels, Counter>,
    call_seconds: Histograms<MethodLabels>,
    commit_seconds: Histogram,
    group_requests: Histogram,
    group_failures: Counter,
    connections: Gauge,
    live_feeds: Gauge,
    scan_read_ahead: Family<OutcomeLabels, Counter>,
    env_file_bytes: Gauge,
    env_used_bytes: Gauge,
    env_map_bytes: Gauge,
    db_documents: Family<DbLabels, Gauge>,
    db_changes: Family<DbLabels, Gauge>,
    db_state: Family<DbStateLabels, Gauge>,
    jobs: Family<JobLabels, Gauge>,
    status: Family<StatusLabels, Gauge>,
    reasons: Family<ReasonLabels, Gauge>,
    sync_lag_changes: Family<DbLabels, Gauge>,
    sync_lag_seconds: Family<DbLabels, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("cairn"),
            scrape: Mutex::new(()),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency),
            commit_seconds: latency(),
            group_requests: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            group_failures: Counter::default(),
            connections: Gauge::default(),
            live_feeds: Gauge::default(),
            scan_read_ahead: Family::default(),
            env_file_bytes: Gauge::default(),
            env_used_bytes: Gauge::default(),
            env_map_bytes: Gauge::default(),
            db_documents: Family::default(),
            db_changes: Family::default(),
            db_state: Family::default(),
            jobs: Family::default(),
            status: Family::default(),
            reasons: Family::default(),
            sync_lag_changes: Family::default(),
            sync_lag_seconds: Family::default(),
        };
        metrics.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            self.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        r.register(
            "calls",
            "Calls of the protocol's methods (native and HTTP) by outcome",
            self.calls.clone(),
        );
        r.register_with_unit(
            "call_duration",
            "Call latency by method",
            Unit::Seconds,
            self.call_seconds.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Group commits, from the transaction's start to its fsync'd commit",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register(
            "commit_group_requests",
            "Write requests per group commit",
            self.group_requests.clone(),
        );
        r.register(
            "commit_failures",
            "Group commits that failed",
            self.group_failures.clone(),
        );
        r.register(
            "connections",
            "Open connections (native and HTTP)",
            self.connections.clone(),
        );
        r.register(
            "live_feeds",
            "Continuous change feeds being served",
            self.live_feeds.clone(),
        );
        r.register(
            "scan_read_ahead",
            "Pages of scan read ahead on a connection, by what became of them",
            self.scan_read_ahead.clone(),
        );
        r.register_with_unit(
            "environment_file",
            "Length of the environment's data file",
            Unit::Bytes,
            self.env_file_bytes.clone(),
        );
        r.register_with_unit(
            "environment_used",
            "Pages of the environment in use",
            Unit::Bytes,
            self.env_used_bytes.clone(),
        );
        r.register_with_unit(
            "environment_map",
            "The environment's map size",
            Unit::Bytes,
            self.env_map_bytes.clone(),
        );
        r.register(
            "database_documents",
            "Documents per database",
            self.db_documents.clone(),
        );
        r.register(
            "database_changes",
            "Change-log entries per database",
            self.db_changes.clone(),
        );
        r.register(
            "database_state",
            "Each database's state (1 for the state it is in)",
            self.db_state.clone(),
        );
        r.register("jobs", "Jobs by type and status", self.jobs.clone());
        r.register(
            "service_status",
            "The service's effective status (1 for the status in force)",
            self.status.clone(),
        );
        r.register(
            "read_only_reason",
            "Automatic READ_ONLY reasons in force",
            self.reasons.clone(),
        );
        r.register(
            "sync_lag_changes",
            "Changes of the source not yet applied, per followed database",
            self.sync_lag_changes.clone(),
        );
        r.register_with_unit(
            "sync_lag",
            "Age of the oldest change not yet applied, per followed database",
            Unit::Seconds,
            self.sync_lag_seconds.clone(),
        );
        self
    }

    /// Counts an HTTP request (`route`: the matched route, `-` for none).
    pub fn observe_request(
        &self,
        verb: &'static str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                verb,
                route,
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { verb, route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a call and its outcome.
    pub fn observe_call(&self, method: Method, error: Option<ErrorCode>, elapsed: Duration) {
        let outcome = error.map_or("ok", ErrorCode::as_str);
        let method = method.name();
        self.calls
            .get_or_create(&CallLabels { method, outcome })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a `scan` page read ahead, by what became of it.
    pub fn scan_read_ahead(&self, outcome: ReadAheadOutcome) {
        self.scan_read_ahead
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Records the writer's groups of `store` from now on.
    pub fn watch_commits(&self, store: &Store) {
        let seconds = self.commit_seconds.clone();
        let sizes = self.group_requests.clone();
        let failures = self.group_failures.clone();
        store.set_group_hook(std::sync::Arc::new(move |group: GroupStats| {
            seconds.observe(group.duration.as_secs_f64());
            sizes.observe(group.requests as f64);
            if !group.committed {
                failures.inc();
            }
        }));
    }

    /// The open connections' gauge (the connection slots keep it).
    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// Counts a live feed until the guard drops.
    pub fn live_feed(&self) -> LiveFeed {
        self.live_feeds.inc();
        LiveFeed(self.live_feeds.clone())
    }

    /// Reads the state-derived gauges, then encodes everything (blocking: reads the
    /// store).
    pub fn render(&self, shared: &Shared) -> String {
        let _one = self.scrape.lock().expect("scrape lock");
        self.read_state(shared);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String never fails");
        text
    }

    fn read_state(&self, shared: &Shared) {
        let status = shared.status();
        let reasons = shared.auto.reasons();
        let mode = health::effective_mode(status.mode, !reasons.is_empty());
        self.status.clear();
        self.status
            .get_or_create(&StatusLabels {
                status: mode.into_wire().as_str(),
            })
            .set(1);
        self.reasons.clear();
        for reason in reasons.iter() {
            self.reasons
                .get_or_create(&ReasonLabels {
                    reason: reason.code.as_str(),
                })
                .set(1);
        }
        for family in [&self.db_documents, &self.db_changes, &self.sync_lag_changes] {
            family.clear();
        }
        self.db_state.clear();
        self.jobs.clear();
        self.sync_lag_seconds.clear();
        let Ok(store) = shared.store() else {
            return;
        };
        if let Ok(usage) = store.usage() {
            self.env_file_bytes.set(gauge(usage.env.file_bytes));
            self.env_used_bytes.set(gauge(usage.env.used_bytes()));
            self.env_map_bytes.set(gauge(usage.env.map_size));
            for db in usage.databases {
                let state = shared.databases.state(&db.name).into_wire();
                self.db_state
                    .get_or_create(&DbStateLabels {
                        db: db.name.clone(),
                        state: state.as_str(),
                    })
                    .set(1);
                let labels = DbLabels { db: db.name };
                self.db_documents
                    .get_or_create(&labels)
                    .set(gauge(db.doc_count));
                self.db_changes
                    .get_or_create(&labels)
                    .set(gauge(db.log_entries));
            }
        }
        let Ok(snapshot) = store.snapshot() else {
            return;
        };
        if let Ok(jobs) = snapshot.jobs() {
            for job in jobs {
                let labels = JobLabels {
                    r#type: job.kind.into_wire().as_str(),
                    status: job.status.into_wire().as_str(),
                };
                self.jobs.get_or_create(&labels).inc();
            }
        }
        if let Ok(positions) = snapshot.sync_positions() {
            for db in shared.follow.status(positions).databases {
                let labels = DbLabels { db: db.db };
                if let Some(lag) = db.lag_changes {
                    self.sync_lag_changes.get_or_create(&labels).set(gauge(lag));
                }
                if let Some(ms) = db.lag_ms {
                    self.sync_lag_seconds
                        .get_or_create(&labels)
                        .set(ms as f64 / 1000.0);
                }
            }
        }
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A live feed, counted until dropped.
pub struct LiveFeed(Gauge);

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.0.dec();
    }
}
