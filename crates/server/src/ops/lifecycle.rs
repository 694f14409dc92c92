//! The lifecycle of each database (the Sync Gateway model): `Online`, `Offline`,
//! `Starting`, `Stopping`, `Resyncing`. The store keeps only whether a database is
//! offline (so the state survives restarts); the moving states live here. Every data
//! call on a database passes a gate: it is admitted only while the database is online,
//! and counted while in flight, so that going offline can refuse new calls, let the
//! admitted ones finish (bounded by the shutdown grace), end its live change feeds, and
//! only then mark it offline in the store — which from then on refuses its writes, even
//! ones that outlived the wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_proto::{methods, values};
use cairn_proto::{ErrorCode, WireError};
use cairn_store::{Store, StoreError, Write, Written};
use rmpv::Value;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::error::store_error;
use crate::ops::shared::Shared;
use crate::ops::webhooks::WebhookEvent;
use crate::storage::write;
use crate::wire::IntoWire;

/// The longest wait for calls in flight, whatever the shutdown grace says.
const MAX_DRAIN: Duration = Duration::from_secs(24 * 3600);

/// Where a database is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    Online,
    Offline,
    /// Brought online after a delay; calls are refused until it is over.
    Starting,
    /// Going offline: new calls are refused while the admitted ones finish.
    Stopping,
    /// Offline, with a resync job running (job id).
    Resyncing(u64),
}

impl IntoWire for DbState {
    type Wire = values::DbState;
    fn into_wire(self) -> values::DbState {
        match self {
            DbState::Online => values::DbState::Online,
            DbState::Offline => values::DbState::Offline,
            DbState::Starting => values::DbState::Starting,
            DbState::Stopping => values::DbState::Stopping,
            DbState::Resyncing(_) => values::DbState::Resyncing,
        }
    }
}

impl DbState {
    /// The state a database starts in: what the store keeps.
    fn stored(offline: bool) -> DbState {
        if offline {
            DbState::Offline
        } else {
            DbState::Online
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into_wire().as_str()
    }

    /// The error of a call refused in this state.
    fn refusal(self, db: &str) -> WireError {
        let message = match self {
            DbState::Offline => format!("database {db:?} is offline"),
            DbState::Resyncing(job) => {
                format!("database {db:?} is offline while resync job {job} runs")
            }
            DbState::Starting | DbState::Stopping => {
                format!("database {db:?} is {}: try again later", self.as_str())
            }
            DbState::Online => format!("database {db:?} is online"),
        };
        WireError::new(ErrorCode::DatabaseOffline, message).with_details(Value::Map(vec![(
            Value::from("state"),
            Value::from(self.as_str()),
        )]))
    }
}

/// The gate of one database.
struct Gate {
    /// True exactly while the database is `Online`: the one flag a call reads.
    open: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken when the last admitted call of a closed gate leaves.
    drained: Notify,
    state: watch::Sender<DbState>,
    /// Serialises the transitions asked for this database.
    transition: Arc<tokio::sync::Mutex<()>>,
    /// Cancels a delayed start (`db.online --delay`).
    pending_start: std::sync::Mutex<Option<CancellationToken>>,
}

impl Gate {
    fn new(state: DbState) -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicBool::new(state == DbState::Online),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
            state: watch::Sender::new(state),
            transition: Arc::new(tokio::sync::Mutex::new(())),
            pending_start: std::sync::Mutex::new(None),
        })
    }

    fn state(&self) -> DbState {
        *self.state.borrow()
    }

    /// Cancels a delayed start, if one is pending.
    fn cancel_start(&self) {
        if let Some(start) = self.pending_start.lock().expect("start lock").take() {
            start.cancel();
        }
    }

    fn set_state(&self, state: DbState) {
        self.open.store(state == DbState::Online, Ordering::SeqCst);
        self.state.send_replace(state);
    }

    /// Waits until no admitted call is in flight, at most `bound`; returns how many
    /// still are.
    async fn drain(&self, bound: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + bound.min(MAX_DRAIN);
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.in_flight.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst);
            }
        }
    }
}

/// A call admitted on an online database; it counts as in flight until dropped.
pub struct Admission {
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.gate.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && !self.gate.open.load(Ordering::SeqCst)
        {
            self.gate.drained.notify_waiters();
        }
    }
}

/// The gates of every database of the service.
#[derive(Default)]
pub struct Databases {
    gates: RwLock<HashMap<String, Arc<Gate>>>,
}

/// What a transition did.
pub struct Transition {
    pub previous: DbState,
    pub state: DbState,
    pub changed: bool,
}

impl Transition {
    pub fn result(&self, name: &str) -> methods::DbStateResult {
        methods::DbStateResult {
            name: name.to_string(),
            state: self.state.into_wire(),
            previous: self.previous.into_wire(),
            changed: self.changed,
        }
    }

    fn unchanged(state: DbState) -> Transition {
        Transition {
            previous: state,
            state,
            changed: false,
        }
    }
}

fn conflict(message: String, state: DbState) -> WireError {
    WireError::new(ErrorCode::Conflict, message).with_details(Value::Map(vec![(
        Value::from("state"),
        Value::from(state.as_str()),
    )]))
}

impl Databases {
    /// Gates for every database of `store`, in the state it keeps (offline or online).
    pub fn load(&self, store: &Store) -> Result<(), StoreError> {
        let configs = store.snapshot()?.database_configs()?;
        let gates = configs
            .into_iter()
            .map(|(name, config)| (name, Gate::new(DbState::stored(config.offline))))
            .collect();
        let replaced = std::mem::replace(&mut *self.gates.write().expect("gates lock"), gates);
        replaced.values().for_each(|gate| gate.cancel_start());
        Ok(())
    }

    /// On a mirror: takes the states the leader stored into force, keeping the gates
    /// (and the live feeds that watch them) of the databases that stay.
    pub fn follow_stored(&self, store: &Store) -> Result<(), StoreError> {
        let configs = store.snapshot()?.database_configs()?;
        let mut gates = self.gates.write().expect("gates lock");
        gates.retain(|name, gate| {
            let kept = configs.iter().any(|(n, _)| n == name);
            if !kept {
                gate.set_state(DbState::Offline);
            }
            kept
        });
        for (name, config) in configs {
            let stored = DbState::stored(config.offline);
            match gates.get(&name) {
                Some(gate) if gate.state() != stored => gate.set_state(stored),
                Some(_) => {}
                None => {
                    gates.insert(name, Gate::new(stored));
                }
            }
        }
        Ok(())
    }

    fn gate(&self, db: &str) -> Option<Arc<Gate>> {
        self.gates.read().expect("gates lock").get(db).cloned()
    }

    /// Admits a data call on `db`, or refuses it with `database_offline` and the state.
    /// `None`: no such database here (the store will say so).
    pub fn enter(&self, db: &str) -> Result<Option<Admission>, WireError> {
        let Some(gate) = self.gate(db) else {
            return Ok(None);
        };
        gate.in_flight.fetch_add(1, Ordering::SeqCst);
        let admission = Admission { gate };
        if admission.gate.open.load(Ordering::SeqCst) {
            Ok(Some(admission))
        } else {
            let state = admission.gate.state();
            drop(admission);
            Err(state.refusal(db))
        }
    }

    /// The state of `db`; `Online` for a database this registry does not know.
    pub fn state(&self, db: &str) -> DbState {
        self.gate(db).map_or(DbState::Online, |g| g.state())
    }

    /// A receiver of `db`'s state changes (live feeds end when it leaves `Online`).
    pub fn watch(&self, db: &str) -> Option<watch::Receiver<DbState>> {
        self.gate(db).map(|g| g.state.subscribe())
    }

    /// Records a database just created (in the state it was created in).
    pub fn created(&self, db: &str, offline: bool) {
        self.gates
            .write()
            .expect("gates lock")
            .insert(db.to_string(), Gate::new(DbState::stored(offline)));
    }

    /// Forgets a dropped database (its feeds end as `database_dropped`).
    fn dropped(&self, db: &str) {
        if let Some(gate) = self.gates.write().expect("gates lock").remove(db) {
            gate.cancel_start();
        }
    }

    /// True while `gate` is the one registered for `db` (a drop or a restore replaces
    /// gates; a task holding an old one must not act on the new database).
    fn is_current(&self, db: &str, gate: &Arc<Gate>) -> bool {
        self.gate(db)
            .is_some_and(|current| Arc::ptr_eq(&current, gate))
    }

    /// The gate of an existing database, or `database_missing`.
    fn existing(&self, store: &Store, db: &str) -> Result<Arc<Gate>, WireError> {
        match self.gate(db) {
            Some(gate) => Ok(gate),
            None => {
                // A database this registry has not seen (none should exist): the store
                // decides, and a real one gets its gate.
                let info = store.database_info(db).map_err(store_error)?;
                let gate = Gate::new(DbState::stored(info.offline));
                Ok(self
                    .gates
                    .write()
                    .expect("gates lock")
                    .entry(db.to_string())
                    .or_insert(gate)
                    .clone())
            }
        }
    }
}

/// An existing database's gate, held for one transition: no other transition of the
/// database runs until this is dropped.
struct Held {
    store: Store,
    gate: Arc<Gate>,
    _serial: tokio::sync::OwnedMutexGuard<()>,
}

async fn hold(shared: &Shared, db: &str) -> Result<Held, WireError> {
    let store = shared.store()?;
    let gate = shared.databases.existing(&store, db)?;
    let serial = gate.transition.clone().lock_owned().await;
    Ok(Held {
        store,
        gate,
        _serial: serial,
    })
}

/// Logs a state change at WARN and tells the webhooks.
fn announce(shared: &Shared, db: &str, previous: DbState, state: DbState, who: &str, why: &str) {
    tracing::warn!(
        %db,
        from = %previous.as_str(),
        to = %state.as_str(),
        by = %who,
        reason = %why,
        "database state changed"
    );
    shared.webhooks.emit(WebhookEvent::db_state_changed(
        db,
        Some(previous.as_str().to_string()),
        state.as_str(),
        why,
        who,
    ));
}

/// Stores the offline flag of `db`.
async fn store_offline(store: &Store, db: &str, offline: bool) -> Result<(), WireError> {
    match write(
        store,
        Write::SetOffline {
            name: db.to_string(),
            offline,
        },
    )
    .await?
    {
        Written::OfflineSet { .. } => Ok(()),
        other => Err(WireError::new(
            ErrorCode::Internal,
            format!("setting a database offline answered {other:?}"),
        )),
    }
}

/// `db.offline`: refuses new calls, lets the admitted ones finish (at most the
/// shutdown grace), ends live feeds, then marks the database offline in the store.
pub async fn take_offline(
    shared: &Shared,
    db: &str,
    who: &str,
    why: &str,
) -> Result<Transition, WireError> {
    let Held { store, gate, .. } = &hold(shared, db).await?;
    let previous = gate.state();
    match previous {
        DbState::Offline | DbState::Resyncing(_) => return Ok(Transition::unchanged(previous)),
        DbState::Starting => {
            // Still offline in the store: cancelling the start is all there is to do.
            gate.cancel_start();
            gate.set_state(DbState::Offline);
            announce(shared, db, previous, DbState::Offline, who, why);
            return Ok(Transition {
                previous,
                state: DbState::Offline,
                changed: true,
            });
        }
        DbState::Online | DbState::Stopping => {}
    }
    gate.set_state(DbState::Stopping);
    announce(shared, db, previous, DbState::Stopping, who, why);
    let left = gate.drain(shared.settings().shutdown_grace).await;
    if left > 0 {
        tracing::warn!(
            db,
            calls = left,
            "calls still in flight after the grace period: the database goes offline anyway, their writes will be refused"
        );
    }
    if let Err(error) = store_offline(store, db, true).await {
        if error.code == ErrorCode::DatabaseMissing {
            // Dropped meanwhile: there is nothing left to take offline.
            shared.databases.dropped(db);
        } else {
            gate.set_state(DbState::Online);
            announce(
                shared,
                db,
                DbState::Stopping,
                DbState::Online,
                who,
                &error.message,
            );
        }
        return Err(error);
    }
    gate.set_state(DbState::Offline);
    announce(shared, db, DbState::Stopping, DbState::Offline, who, why);
    Ok(Transition {
        previous,
        state: DbState::Offline,
        changed: true,
    })
}

/// `db.online`: at once, or `Starting` for `delay` first. Refused while a resync runs.
pub async fn bring_online(
    shared: &Arc<Shared>,
    db: &str,
    delay: Duration,
    who: &str,
    why: &str,
) -> Result<Transition, WireError> {
    let Held { store, gate, .. } = &hold(shared, db).await?;
    let previous = gate.state();
    match previous {
        DbState::Online | DbState::Starting => return Ok(Transition::unchanged(previous)),
        DbState::Resyncing(job) => {
            return Err(conflict(
                format!(
                    "database {db:?} is Resyncing (job {job}): wait for the job or cancel it (cairn jobs cancel {job})"
                ),
                previous,
            ))
        }
        DbState::Offline | DbState::Stopping => {}
    }
    if delay.is_zero() {
        store_offline(store, db, false).await?;
        gate.set_state(DbState::Online);
        announce(shared, db, previous, DbState::Online, who, why);
        return Ok(Transition {
            previous,
            state: DbState::Online,
            changed: true,
        });
    }
    let cancel = CancellationToken::new();
    *gate.pending_start.lock().expect("start lock") = Some(cancel.clone());
    gate.set_state(DbState::Starting);
    announce(shared, db, previous, DbState::Starting, who, why);
    let (shared, db, who, why) = (
        shared.clone(),
        db.to_string(),
        who.to_string(),
        why.to_string(),
    );
    let task_gate = gate.clone();
    let tasks = shared.background.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
            _ = shared.shutdown.cancelled() => return,
        }
        let gate = task_gate;
        let _serial = gate.transition.lock().await;
        let current = shared.databases.is_current(&db, &gate);
        if cancel.is_cancelled() || !current || gate.state() != DbState::Starting {
            return;
        }
        gate.pending_start.lock().expect("start lock").take();
        let outcome = match shared.store() {
            Ok(store) => store_offline(&store, &db, false).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                gate.set_state(DbState::Online);
                announce(&shared, &db, DbState::Starting, DbState::Online, &who, &why);
            }
            Err(error) => {
                tracing::warn!(db, %error, "bringing the database online failed: it stays offline");
                gate.set_state(DbState::Offline);
                announce(
                    &shared,
                    &db,
                    DbState::Starting,
                    DbState::Offline,
                    &who,
                    &error.message,
                );
            }
        }
    });
    Ok(Transition {
        previous,
        state: DbState::Starting,
        changed: true,
    })
}

/// Marks `db` as resyncing: only from `Offline` (409 otherwise, with the state).
/// Returns a guard that names the job (`attach`) and puts the database back to
/// `Offline` when dropped.
pub async fn begin_resync(
    shared: &Arc<Shared>,
    db: &str,
    who: &str,
) -> Result<ResyncGuard, WireError> {
    let held = hold(shared, db).await?;
    let gate = held.gate.clone();
    let state = gate.state();
    if state != DbState::Offline {
        return Err(conflict(
            format!(
                "database {db:?} is {}: a resync runs only while it is Offline (cairn db offline {db})",
                state.as_str()
            ),
            state,
        ));
    }
    gate.set_state(DbState::Resyncing(0));
    drop(held);
    Ok(ResyncGuard {
        gate,
        shared: shared.clone(),
        db: db.to_string(),
        who: who.to_string(),
        job: 0,
    })
}

/// Runs `work` (a configuration change) while `db` is `Offline`, holding its
/// transitions off meanwhile: 409 with the state when it is not offline.
pub async fn while_offline<T>(
    shared: &Shared,
    db: &str,
    work: impl std::future::Future<Output = Result<T, WireError>>,
) -> Result<T, WireError> {
    let Held { gate, .. } = &hold(shared, db).await?;
    let state = gate.state();
    if state != DbState::Offline {
        return Err(conflict(
            format!(
                "database {db:?} is {}: its configuration changes only while it is Offline (cairn db offline {db})",
                state.as_str()
            ),
            state,
        ));
    }
    work.await
}

/// `db.drop`: refused while the database is `Stopping` or `Resyncing` (409 with the
/// state); a pending delayed start is cancelled.
pub async fn drop_database(shared: &Shared, db: &str) -> Result<(), WireError> {
    let Held { store, gate, .. } = &hold(shared, db).await?;
    let state = gate.state();
    if let DbState::Stopping | DbState::Resyncing(_) = state {
        return Err(conflict(
            format!(
                "database {db:?} is {}: drop it once that is over (a resync job can be canceled: cairn jobs cancel ID)",
                state.as_str()
            ),
            state,
        ));
    }
    write(
        store,
        Write::DropDatabase {
            name: db.to_string(),
        },
    )
    .await?;
    shared.databases.dropped(db);
    Ok(())
}

/// Held while a resync runs; the database is `Offline` again once it is dropped.
pub struct ResyncGuard {
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    db: String,
    who: String,
    job: u64,
}

impl ResyncGuard {
    /// Names the resync job in the database's state, and announces it.
    pub fn attach(&mut self, job: u64) {
        self.job = job;
        self.gate.set_state(DbState::Resyncing(job));
        let why = format!("resync job {job}");
        announce(
            &self.shared,
            &self.db,
            DbState::Offline,
            DbState::Resyncing(job),
            &self.who,
            &why,
        );
    }
}

impl Drop for ResyncGuard {
    fn drop(&mut self) {
        if let DbState::Resyncing(job) = self.gate.state() {
            self.gate.set_state(DbState::Offline);
            if self.job != 0 {
                let why = format!("resync job {job} ended");
                announce(
                    &self.shared,
                    &self.db,
                    DbState::Resyncing(job),
                    DbState::Offline,
                    &self.who,
                    &why,
                );
            }
        }
    }
}
