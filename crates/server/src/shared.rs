//! What every call of a service shares: the store (in a slot, so that a restore can
//! close it and put another in its place), change-feed wake-ups, settings, the shutdown
//! signal, the job registry, where backups go, and whether a restore has taken the
//! service down.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use cairn_proto::{ErrorCode, WireError};
use cairn_store::{ServiceStatus, Store};
use tokio_util::sync::CancellationToken;

use crate::feeds::Feeds;
use crate::jobs::JobRegistry;
use crate::remote::Remote;
use crate::Settings;

/// The message non-admin callers get while a restore runs.
pub const RESTORE_MESSAGE: &str = "restore in progress";

/// The state shared by every connection and job of a service.
pub struct Shared {
    store: RwLock<Option<Store>>,
    pub feeds: Feeds,
    pub settings: Settings,
    /// Cancelled when the service starts to shut down.
    pub shutdown: CancellationToken,
    /// The working directory.
    pub dir: PathBuf,
    /// Where backups are written (without `[backup] url`).
    pub backup_dir: PathBuf,
    /// Where backups go with `[backup] url`.
    pub remote: Option<Remote>,
    pub jobs: JobRegistry,
    /// Fixed for the life of the process (a restore of another service's backup keeps
    /// the id the service started with until the next start).
    pub service_id: String,
    /// Cancelled (and replaced) to end every live change feed.
    feeds_end: Mutex<CancellationToken>,
    /// Set while a restore runs.
    restoring: RwLock<bool>,
    /// The status an admin set (a copy of the stored one).
    status: RwLock<Arc<ServiceStatus>>,
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
        let status = store
            .snapshot()
            .and_then(|s| s.status())
            .unwrap_or_default();
        Shared {
            status: RwLock::new(Arc::new(status)),
            service_id: store.meta().service_id.clone(),
            store: RwLock::new(Some(store)),
            feeds,
            settings,
            shutdown: CancellationToken::new(),
            dir,
            backup_dir,
            remote,
            jobs: JobRegistry::default(),
            feeds_end: Mutex::new(CancellationToken::new()),
            restoring: RwLock::new(false),
        }
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
        *self.store.write().expect("store slot lock") = Some(store);
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
