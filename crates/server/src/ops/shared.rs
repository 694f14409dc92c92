//! What every call of a service shares: the store (in a slot, so that a restore can
//! close it and put another in its place), change-feed wake-ups, settings, the shutdown
//! signal, the job registry, where backups go, whether a restore has taken the
//! service down, the reasons the service is read-only by itself, and the leader of a
//! mirror. The settings can
//! be reloaded while the service runs (`config.reload`, SIGHUP): read them through
//! [`Shared::settings`], once per use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use cairn_proto::{Effect, ErrorCode, Method, WireError};
use cairn_remote::Remote;
use cairn_store::{ServiceStatus, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Flags, Settings};
use crate::ops::feeds::Feeds;
use crate::ops::follow::Follow;
use crate::ops::health::AutoStatus;
use crate::ops::jobs::JobRegistry;
use crate::ops::lifecycle::Databases;
use crate::ops::metrics::Metrics;
use crate::ops::mirror::Mirror;
use crate::ops::throttle::LoginThrottle;
use crate::ops::webhooks::Webhooks;

/// Sets the log filter of the process (an `EnvFilter` directive) at run time.
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload reads the settings again with: the `CAIRN_*` and `AWS_*` variables
/// and the flags the process started with, and how to change the log filter. A service
/// started without one reloads from the file alone (no variables, no flags), and
/// leaves the log filter alone.
#[derive(Clone, Default)]
pub struct ReloadSource {
    pub env: BTreeMap<String, String>,
    pub flags: Flags,
    pub log_level: Option<LogLevelSetter>,
}

/// The message non-admin callers get while a restore runs.
pub const RESTORE_MESSAGE: &str = "restore in progress";

/// The state shared by every connection and job of a service.
pub struct Shared {
    store: RwLock<Option<Store>>,
    pub feeds: Feeds,
    pub metrics: Metrics,
    /// Failed logins, which slow the next attempts down.
    pub throttle: LoginThrottle,
    /// The settings in force (replaced by a reload).
    settings: RwLock<Arc<Settings>>,
    /// What a reload reads again.
    pub reload_source: ReloadSource,
    /// Held while a reload runs: one at a time.
    pub reloading: tokio::sync::Mutex<()>,
    /// Stops the running backup schedule.
    pub schedule_stop: Mutex<Option<CancellationToken>>,
    /// The reasons of an automatic READ_ONLY.
    pub auto: AutoStatus,
    /// The lifecycle gate of every database.
    pub databases: Databases,
    /// Migration mode: the source followed, the databases that follow it.
    pub follow: Follow,
    /// Cancelled when the service starts to shut down.
    pub shutdown: CancellationToken,
    /// The service's background tasks (free-space checks, delayed starts, the backup
    /// schedule): each ends with `shutdown`, and the service waits for them.
    pub background: TaskTracker,
    /// The working directory.
    pub dir: PathBuf,
    /// Where backups are written (without `[backup] url`).
    pub backup_dir: PathBuf,
    /// Where backups go with `[backup] url`.
    pub remote: Option<Remote>,
    pub jobs: JobRegistry,
    /// Where events are POSTed (`[[webhooks]]`); replace the targets with
    /// `webhooks.set_targets` when the settings change.
    pub webhooks: Webhooks,
    /// Fixed for the life of the process (a restore of another service's backup keeps
    /// the id the service started with until the next start).
    pub service_id: String,
    /// Cancelled (and replaced) to end every live change feed.
    feeds_end: Mutex<CancellationToken>,
    /// Set while a restore runs.
    restoring: RwLock<bool>,
    /// The status an admin set (a copy of the stored one).
    status: RwLock<Arc<ServiceStatus>>,
    /// The leader this service mirrors, if it is a mirror (a promotion changes it).
    mirror: RwLock<Option<Arc<Mirror>>>,
    /// While a mirror's graceful promotion runs here: the mirror taking over. Calls
    /// that change the service are refused meanwhile.
    handoff: RwLock<Option<String>>,
    /// Calls that change the service, in flight (a handoff waits for them).
    changes_in_flight: Arc<ChangesInFlight>,
    /// The certificate directories a mirror reaches its leader with (the extra
    /// directory first, then `DIR/certs`).
    pub leader_cert_dirs: Vec<PathBuf>,
    /// The name of this service's own CA (in `DIR/certs/cas`).
    pub ca_name: String,
    /// The URLs the service listens on.
    pub endpoints: Vec<String>,
    /// One permit per byte of the `scan` pages that connections hold read ahead, or are
    /// reading ahead.
    pub scan_read_ahead: Arc<tokio::sync::Semaphore>,
}

/// How many bytes of `scan` pages all connections together may hold read ahead.
const SCAN_READ_AHEAD_BYTES: usize = 64 << 20;

/// Where a call is served (see [`Shared::route`]).
pub enum Route {
    /// Here; a call that changes the service holds its guard while it runs.
    Here(Option<ChangeGuard>),
    /// On this mirror's leader.
    Leader(Arc<Mirror>),
}

/// A count of calls in flight, and a wake-up when it falls to zero.
#[derive(Default)]
struct ChangesInFlight {
    count: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

/// A call that changes the service, counted while it runs.
pub struct ChangeGuard {
    in_flight: Arc<ChangesInFlight>,
}

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.in_flight.drained.notify_waiters();
        }
    }
}

impl Shared {
    pub fn new(
        store: Store,
        settings: Settings,
        dir: PathBuf,
        backup_dir: PathBuf,
        remote: Option<Remote>,
    ) -> Shared {
        let feeds = Feeds::default();
        feeds.attach(&store);
        let metrics = Metrics::new();
        metrics.watch_commits(&store);
        let status = store
            .snapshot()
            .and_then(|s| s.status())
            .unwrap_or_default();
        let webhooks = Webhooks::new(store.meta().service_id.clone(), settings.webhooks.clone());
        let follow = Follow::default();
        if let Err(error) = follow.load(&store) {
            tracing::error!(%error, "cannot read migration mode: it is taken as off");
        }
        Shared {
            status: RwLock::new(Arc::new(status)),
            service_id: store.meta().service_id.clone(),
            store: RwLock::new(Some(store)),
            feeds,
            metrics,
            throttle: LoginThrottle::default(),
            settings: RwLock::new(Arc::new(settings)),
            reload_source: ReloadSource::default(),
            reloading: tokio::sync::Mutex::new(()),
            schedule_stop: Mutex::new(None),
            auto: AutoStatus::default(),
            databases: Databases::default(),
            follow,
            shutdown: CancellationToken::new(),
            background: TaskTracker::new(),
            dir,
            backup_dir,
            remote,
            jobs: JobRegistry::default(),
            webhooks,
            feeds_end: Mutex::new(CancellationToken::new()),
            restoring: RwLock::new(false),
            mirror: RwLock::new(None),
            handoff: RwLock::new(None),
            changes_in_flight: Arc::default(),
            leader_cert_dirs: Vec::new(),
            ca_name: String::new(),
            endpoints: Vec::new(),
            scan_read_ahead: Arc::new(tokio::sync::Semaphore::new(SCAN_READ_AHEAD_BYTES)),
        }
    }

    /// The leader this service mirrors, if it is a mirror.
    pub fn mirror(&self) -> Option<Arc<Mirror>> {
        self.mirror.read().expect("mirror lock").clone()
    }

    /// Makes this service a mirror of `mirror`'s leader, or (`None`) a leader.
    pub fn set_mirror(&self, mirror: Option<Arc<Mirror>>) {
        *self.mirror.write().expect("mirror lock") = mirror;
    }

    /// Where a call of `method` is served, the same for every transport. On a mirror,
    /// a call that changes the service goes to its leader (or is refused with
    /// `[mirror] forward_writes = false`). Here, such a call is counted while it runs
    /// (a handoff to a mirror waits for it) and refused while a handoff runs.
    pub fn route(&self, method: Method) -> Result<Route, WireError> {
        if method.effect() != Effect::Changes {
            return Ok(Route::Here(None));
        }
        match self.mirror() {
            Some(mirror) if self.settings().mirror_forward_writes => Ok(Route::Leader(mirror)),
            Some(mirror) => Err(mirror.read_only_error()),
            None => self.enter_change().map(|guard| Route::Here(Some(guard))),
        }
    }

    /// Admits a call that changes the service, counted until the guard drops; refused
    /// while a handoff to a mirror runs.
    fn enter_change(&self) -> Result<ChangeGuard, WireError> {
        use std::sync::atomic::Ordering;
        self.changes_in_flight.count.fetch_add(1, Ordering::SeqCst);
        let guard = ChangeGuard {
            in_flight: self.changes_in_flight.clone(),
        };
        match self.handoff.read().expect("handoff lock").as_deref() {
            None => Ok(guard),
            Some(to) => Err(WireError::new(
                ErrorCode::ReadOnly,
                format!("this service is handing over to its mirror {to}: write there"),
            )),
        }
    }

    /// Starts (`Some`, the mirror taking over) or ends a handoff.
    pub fn set_handoff(&self, to: Option<String>) {
        *self.handoff.write().expect("handoff lock") = to;
    }

    /// Waits until no call that changes the service is in flight, at most `bound`;
    /// answers whether none is.
    pub async fn changes_drained(&self, bound: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.changes_in_flight.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.changes_in_flight.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.changes_in_flight.count.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().expect("settings lock").clone()
    }

    /// Puts reloaded settings in force.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().expect("settings lock") = Arc::new(settings);
    }

    /// The store, or `unavailable` while a restore has it closed.
    pub fn store(&self) -> Result<Store, WireError> {
        self.store
            .read()
            .expect("store slot lock")
            .clone()
            .ok_or_else(|| WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE))
    }

    /// Takes the store out of its slot: new calls get `unavailable` until `put_store`.
    pub fn take_store(&self) -> Option<Store> {
        self.store.write().expect("store slot lock").take()
    }

    /// Puts a store (back) in the slot and feeds change feeds from it.
    pub fn put_store(&self, store: Store) {
        self.feeds.attach(&store);
        self.metrics.watch_commits(&store);
        if let Err(error) = self.databases.load(&store) {
            tracing::error!(%error, "cannot read the databases' states: every database is served as online");
        }
        if let Err(error) = self.follow.load(&store) {
            tracing::error!(%error, "cannot read migration mode: it is taken as off");
        }
        *self.store.write().expect("store slot lock") = Some(store);
    }

    /// On a mirror, after its leader's entries changed the service's own state: takes
    /// the stored status, database states and migration mode into force.
    pub fn follow_mirrored(&self, store: &Store) {
        match store.snapshot().and_then(|s| s.status()) {
            Ok(status) => self.set_status(status),
            Err(error) => tracing::error!(%error, "cannot read the status the leader set"),
        }
        if let Err(error) = self.databases.follow_stored(store) {
            tracing::error!(%error, "cannot read the databases' states the leader set");
        }
        if let Err(error) = self.follow.load(store) {
            tracing::error!(%error, "cannot read migration mode");
        }
    }

    /// A token cancelled when live change feeds must end.
    pub fn feeds_end(&self) -> CancellationToken {
        self.feeds_end.lock().expect("feeds end lock").clone()
    }

    /// Ends every live change feed; feeds started later are not affected.
    pub fn end_feeds(&self) {
        let mut current = self.feeds_end.lock().expect("feeds end lock");
        current.cancel();
        *current = CancellationToken::new();
    }

    /// The status an admin set (shared: every call reads it).
    pub fn status(&self) -> Arc<ServiceStatus> {
        self.status.read().expect("status lock").clone()
    }

    /// Records a status just stored.
    pub fn set_status(&self, status: ServiceStatus) {
        *self.status.write().expect("status lock") = Arc::new(status);
    }

    pub fn is_restoring(&self) -> bool {
        *self.restoring.read().expect("restoring lock")
    }

    pub fn set_restoring(&self, restoring: bool) {
        *self.restoring.write().expect("restoring lock") = restoring;
    }
}
