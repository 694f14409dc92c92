//! A mirror: a service that follows its leader's whole state. `Mirror` holds how to
//! reach the leader and where the following stands (state, the leader's head, the
//! applied position, the lag) for `status` and for the reads it gates. `bootstrap`
//! copies the leader's environment into an empty directory before the store opens
//! (checked against the stream's length and SHA-256). `follow` is the background task:
//! it connects (backing off with a cap after failures), streams the leader's journal
//! entries after the store's own position (`mirror.follow`) and applies each batch
//! through the store's writer, which stores the entries and the new position in one
//! transaction; the service's in-memory state (status, database states, migration
//! mode, users) follows what the entries changed. Each state change is logged at WARN
//! and sent to webhooks.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions};
use cairn_proto::methods::{
    call, to_value, BootstrapChunk, BootstrapEnd, MirrorFollowArgs, MirrorForwardArgs, MirrorItem,
    MirrorStatus,
};
use cairn_proto::values::MirrorState;
use cairn_proto::{ErrorCode, Method, WireError};
use cairn_store::backup::HashingFile;
use cairn_store::journal::EntryHeader;
use cairn_store::{JournalEntry, Store, StoreError, Write, Written, STORE_DIR};
use rmpv::Value;
use tokio::sync::watch;

use crate::auth::Identity;
use crate::config::{Settings, TMP_DIR};
use crate::error::ServerError;
use crate::ops::restore;
use crate::ops::shared::Shared;
use crate::ops::webhooks::WebhookEvent;
use crate::storage::{now_ms, write};

/// Where a bootstrap writes its copy before it becomes `DIR/store`.
const BOOTSTRAP_DIR: &str = "store.bootstrap";
/// The leader's heartbeat while idle (ms); silence beyond two counts as lag.
const HEARTBEAT_MS: u64 = 1000;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where the following stands.
struct View {
    state: MirrorState,
    leader_head: u64,
    applied: u64,
    /// When the newest entry applied here was committed on the leader.
    applied_time_ms: u64,
    last_contact_ms: u64,
    message: String,
    /// Set while a running mirror bootstraps again: its reads are refused.
    rebootstrapping: bool,
}

/// A mirror's leader and how far the mirror has followed it.
pub struct Mirror {
    pub leader: ClientUrl,
    options: ConnectOptions,
    view: Mutex<View>,
    /// The applied position, for callers waiting to read their own writes.
    applied: watch::Sender<u64>,
    /// The connection forwarded calls go through (opened again when it was lost).
    forwarder: tokio::sync::Mutex<Option<Client>>,
}

/// How long a forwarded write waits for the mirror to apply it before it is answered
/// anyway (it is committed on the leader).
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// Why the leader could not be used, as the start reports it.
enum Refusal {
    /// Nothing answers there (yet): a mirror with data serves it meanwhile.
    Unreachable(String),
    /// Something answers, but it is no leader this mirror may follow.
    Refused(String),
}

impl Mirror {
    /// The mirror of the settings' leader, if they name one; the certificate
    /// directories are the service's own.
    pub fn from_settings(settings: &Settings, cert_dirs: &[PathBuf]) -> Option<Mirror> {
        let leader = settings.mirror_leader.clone()?;
        let options = ConnectOptions {
            cert_dirs: cert_dirs.to_vec(),
            token: settings.mirror_token.clone(),
            max_frame: settings.max_frame_bytes,
            ..ConnectOptions::default()
        };
        Some(Mirror {
            leader,
            options,
            view: Mutex::new(View {
                state: MirrorState::Connecting,
                leader_head: 0,
                applied: 0,
                applied_time_ms: 0,
                last_contact_ms: 0,
                message: String::new(),
                rebootstrapping: false,
            }),
            applied: watch::Sender::new(0),
            forwarder: tokio::sync::Mutex::new(None),
        })
    }

    fn name(&self) -> String {
        self.leader.redacted()
    }

    /// Connects, checks that the credentials are an admin's on a Cairn service and
    /// answers its service id.
    async fn identify(&self) -> Result<(Client, String), Refusal> {
        let leader = self.name();
        let client =
            Client::connect(&self.leader, &self.options)
                .await
                .map_err(|error| match error {
                    ClientError::Connect { .. } => Refusal::Unreachable(error.to_string()),
                    ClientError::Tls { .. } | ClientError::Protocol(_) => Refusal::Refused(
                        format!("{leader} does not answer as a Cairn service ({error})"),
                    ),
                    other => Refusal::Refused(format!("{leader}: {other}")),
                })?;
        let whoami = client.whoami().await.map_err(|error| {
            Refusal::Refused(format!(
                "{leader} does not know this mirror ({error}): give an admin's credentials in the URL, [mirror] token or a client certificate"
            ))
        })?;
        if !whoami.admin {
            return Err(Refusal::Refused(format!(
                "{} is not an admin on {leader}: a mirror needs an admin's credentials",
                whoami.user
            )));
        }
        let status = client
            .status()
            .await
            .map_err(|error| Refusal::Refused(format!("{leader}: {error}")))?;
        Ok((client, status.service_id))
    }

    /// At start, with a store: checks that the leader is this store's service (a
    /// leader that cannot be reached now is followed once it can).
    pub async fn check_leader(&self, service_id: &str) -> Result<(), ServerError> {
        match self.identify().await {
            Ok((_, leader_id)) if leader_id == service_id => Ok(()),
            Ok((_, leader_id)) => Err(refused(format!(
                "this directory holds service {service_id}'s data, and {} is service {leader_id}: start the mirror on an empty directory, or on a backup of that leader",
                self.name()
            ))),
            Err(Refusal::Unreachable(reason)) => {
                tracing::warn!(leader = %self.name(), %reason, "the leader cannot be reached: serving what this mirror holds until it can");
                self.set_state(None, MirrorState::Disconnected, reason);
                Ok(())
            }
            Err(Refusal::Refused(reason)) => Err(refused(reason)),
        }
    }

    /// What `status` reports of this mirror.
    pub fn status(&self, forward_writes: bool) -> MirrorStatus {
        let view = self.view.lock().expect("mirror view lock");
        MirrorStatus {
            leader: self.name(),
            state: view.state,
            leader_head: view.leader_head,
            applied: view.applied,
            lag_changes: view.leader_head.saturating_sub(view.applied),
            lag_secs: lag(&view, now_ms()).as_secs_f64(),
            last_contact_ms: view.last_contact_ms,
            message: view.message.clone(),
            forward_writes,
        }
    }

    /// Refuses a read with `mirror_lagging` when the mirror is further behind than
    /// `max_lag`.
    pub fn check_lag(&self, max_lag: Duration) -> Result<(), WireError> {
        let view = self.view.lock().expect("mirror view lock");
        let lag = lag(&view, now_ms());
        if lag <= max_lag {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::MirrorLagging,
            format!(
                "this mirror is {:.1} s behind {} ({}; max_lag_secs is {}): read from the leader, or wait",
                lag.as_secs_f64(),
                self.name(),
                view.state.as_str(),
                max_lag.as_secs()
            ),
        )
        .with_details(Value::Map(vec![
            (Value::from("lag_secs"), Value::from(lag.as_secs_f64())),
            (
                Value::from("lag_changes"),
                Value::from(view.leader_head.saturating_sub(view.applied)),
            ),
            (Value::from("leader"), Value::from(self.name())),
        ])))
    }

    /// The error of a write sent to a mirror that does not forward writes.
    pub fn read_only_error(&self) -> WireError {
        WireError::new(
            ErrorCode::MirrorReadOnly,
            format!(
                "this service is a mirror of {}: send writes to the leader",
                self.name()
            ),
        )
        .with_details(Value::Map(vec![(
            Value::from("leader"),
            Value::from(self.name()),
        )]))
    }

    /// Sends a call that changes the service to the leader, as `identity` (from
    /// `peer`), and answers its result once this mirror has applied what it wrote, so
    /// that the caller reads its own write here.
    pub async fn forward(
        &self,
        identity: Option<&Identity>,
        method: Method,
        args: Value,
        peer: Option<IpAddr>,
    ) -> Result<Value, WireError> {
        let forward = MirrorForwardArgs {
            method: method.name().to_string(),
            args,
            user: identity.map(|i| i.user.clone()),
            via: identity.map(|i| i.via),
            token_hash: identity.and_then(|i| i.token_hash).map(hex::encode),
            peer: peer.map(|p| p.to_string()),
        };
        let client = self.forwarder().await?;
        let answer = client
            .request::<call::MirrorForward>(&forward)
            .await
            .map_err(|error| match error {
                ClientError::Service(error) => error,
                other => self.unreachable(&other),
            })?;
        let mut applied = self.applied.subscribe();
        let waited =
            tokio::time::timeout(APPLY_WAIT, applied.wait_for(|seq| *seq >= answer.head)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(leader = %self.name(), head = answer.head, "a forwarded {method} is answered before this mirror applied it: it lags");
        }
        Ok(answer.result)
    }

    /// The connection to the leader for forwarded calls.
    async fn forwarder(&self) -> Result<Client, WireError> {
        let mut slot = self.forwarder.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.leader, &self.options)
            .await
            .map_err(|e| self.unreachable(&e))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    fn unreachable(&self, error: &ClientError) -> WireError {
        WireError::new(
            ErrorCode::Unavailable,
            format!(
                "this mirror cannot reach its leader {} ({error}): the call may or may not have taken effect there",
                self.name()
            ),
        )
    }

    /// Records a new state; a change is logged at WARN and sent to webhooks.
    fn set_state(&self, shared: Option<&Shared>, state: MirrorState, message: String) {
        let old = {
            let mut view = self.view.lock().expect("mirror view lock");
            let old = view.state;
            view.state = state;
            view.message = message.clone();
            old
        };
        if old == state {
            return;
        }
        tracing::warn!(leader = %self.name(), from = old.as_str(), to = state.as_str(), %message, "mirror state changed");
        if let Some(shared) = shared {
            shared.webhooks.emit(WebhookEvent::mirror_state_changed(
                old.as_str(),
                state.as_str(),
                message,
            ));
        }
    }

    fn set_rebootstrapping(&self, on: bool) {
        self.view.lock().expect("mirror view lock").rebootstrapping = on;
    }

    /// Refuses a read while the mirror bootstraps again (its old data is not the
    /// leader's history).
    pub fn check_serving(&self) -> Result<(), WireError> {
        if !self.view.lock().expect("mirror view lock").rebootstrapping {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::MirrorLagging,
            format!(
                "this mirror is bootstrapping again from {}: its data no longer follows the leader's history; read from the leader, or wait",
                self.name()
            ),
        ))
    }

    /// Notes what the leader said in an item.
    fn heard(&self, head: u64) {
        let mut view = self.view.lock().expect("mirror view lock");
        // As the leader says: after a restore there, its head may be lower.
        view.leader_head = head;
        view.last_contact_ms = now_ms();
    }

    /// Notes the applied position (at start, and after each batch).
    fn applied(&self, seq: u64, time_ms: u64) {
        {
            let mut view = self.view.lock().expect("mirror view lock");
            view.applied = seq;
            view.applied_time_ms = time_ms;
            view.leader_head = view.leader_head.max(seq);
        }
        self.applied.send_replace(seq);
    }
}

/// How far behind the leader the mirror is: when the leader has entries not applied
/// here, since the newest applied one was committed; and the leader's silence beyond
/// its heartbeat.
fn lag(view: &View, now_ms: u64) -> Duration {
    let behind = if view.leader_head > view.applied {
        now_ms.saturating_sub(view.applied_time_ms)
    } else {
        0
    };
    let silence = now_ms
        .saturating_sub(view.last_contact_ms)
        .saturating_sub(HEARTBEAT_MS * 2);
    Duration::from_millis(behind.max(silence))
}

fn refused(reason: String) -> ServerError {
    ServerError::Settings {
        source_name: "[mirror] leader".to_string(),
        reason,
    }
}

/// True when `dir` holds no store: a mirror starting there bootstraps.
pub fn needs_bootstrap(dir: &Path) -> bool {
    !dir.join(STORE_DIR).join("data.mdb").exists()
}

/// Copies the leader's environment into `dir/store` (which must not exist): streamed
/// into `dir/store.bootstrap/store`, fsync'd, checked against the stream's length and
/// SHA-256, then renamed into place. Any failure leaves no store behind.
pub async fn bootstrap(dir: &Path, mirror: &Mirror) -> Result<u64, ServerError> {
    mirror.set_state(
        None,
        MirrorState::Bootstrapping,
        "copying the leader's environment".to_string(),
    );
    let staging = dir.join(BOOTSTRAP_DIR);
    let bytes = fetch_copy(mirror, &staging)
        .await
        .map_err(|reason| refused(format!("cannot bootstrap: {reason}")))?;
    let store_dir = dir.join(STORE_DIR);
    std::fs::rename(staging.join(STORE_DIR), &store_dir)
        .map_err(|e| ServerError::io(format!("moving the copy to {}", store_dir.display()), e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServerError::io(format!("syncing {}", dir.display()), e))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(bytes)
}

/// Streams the leader's environment into `staging/store/data.mdb` (`staging` is made
/// anew), fsync'd and checked against the stream's length and SHA-256; answers its size.
async fn fetch_copy(mirror: &Mirror, staging: &Path) -> Result<u64, String> {
    let (client, leader_id) = mirror.identify().await.map_err(|refusal| match refusal {
        Refusal::Unreachable(reason) | Refusal::Refused(reason) => reason,
    })?;
    let io = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| io("removing an earlier copy", &e))?;
    }
    std::fs::create_dir_all(staging.join(STORE_DIR))
        .map_err(|e| io("making room for the copy", &e))?;
    let target = staging.join(STORE_DIR).join("data.mdb");
    let mut file = Some(HashingFile::create(&target, 0o600).map_err(|e| e.to_string())?);
    let mut stream = client
        .stream(Method::MirrorBootstrap.name(), Value::Nil)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| format!("the copy from {} failed: {e}", mirror.name()))?;
        let chunk: BootstrapChunk = rmpv::ext::from_value(item)
            .map_err(|e| format!("{} sent a chunk that does not parse: {e}", mirror.name()))?;
        let mut writing = file.take().expect("the file is put back after each chunk");
        writing = tokio::task::spawn_blocking(move || writing.write(&chunk.data).map(|()| writing))
            .await
            .map_err(|e| io("writing the copy", &e))?
            .map_err(|e| e.to_string())?;
        file = Some(writing);
    }
    let end: BootstrapEnd = stream
        .end_value()
        .cloned()
        .map(rmpv::ext::from_value)
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| format!("the copy from {} ended without its checksum", mirror.name()))?;
    let writing = file.take().expect("the file is there until the end");
    let (bytes, sha256) = tokio::task::spawn_blocking(move || writing.finish())
        .await
        .map_err(|e| io("finishing the copy", &e))?
        .map_err(|e| e.to_string())?;
    if (bytes, &sha256) != (end.bytes, &end.sha256) {
        let _ = std::fs::remove_dir_all(staging);
        return Err(format!(
            "the copy from {} does not match its checksum ({bytes} bytes, sha256 {sha256}; the leader sent {} bytes, sha256 {}): start again",
            mirror.name(),
            end.bytes,
            end.sha256
        ));
    }
    tracing::warn!(leader = %mirror.name(), service = %leader_id, bytes, "copied the leader's environment");
    Ok(bytes)
}

/// Bootstraps a running mirror again: its history is not the leader's any more. Reads
/// are refused meanwhile (`mirror_lagging`); the copy is made beside the store, then
/// swapped in as a restore swaps a backup in.
async fn rebootstrap(shared: &Arc<Shared>, mirror: &Mirror, reason: &str) -> Result<(), String> {
    mirror.set_rebootstrapping(true);
    mirror.set_state(
        Some(shared),
        MirrorState::Bootstrapping,
        format!("{reason}: bootstrapping again"),
    );
    let staging = shared.dir.join(TMP_DIR).join("mirror-bootstrap");
    let outcome = async {
        fetch_copy(mirror, &staging).await?;
        shared.end_feeds();
        let (store, replaced) = restore::replace_environment(shared, &staging)
            .await
            .map_err(|e| e.to_string())?;
        store.set_mirror(true);
        note_position(mirror, &store).map_err(|e| e.to_string())?;
        shared.put_store(store.clone());
        shared.follow_mirrored(&store);
        let _ = std::fs::remove_dir_all(&replaced);
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    mirror.set_rebootstrapping(false);
    outcome
}

/// The position of `store`, noted as the mirror's applied position.
fn note_position(mirror: &Mirror, store: &Store) -> Result<(), StoreError> {
    let snapshot = store.snapshot()?;
    let position = snapshot.journal_position()?;
    let time_ms = match position.seq {
        0 => 0,
        seq => snapshot
            .journal_entries(seq - 1, 1, usize::MAX)?
            .first()
            .map(|e| EntryHeader::decode(&e.value).map(|h| h.time_ms))
            .transpose()?
            .unwrap_or(0),
    };
    mirror.applied(position.seq, time_ms);
    Ok(())
}

/// Follows the leader until the service stops.
pub async fn follow(shared: Arc<Shared>, mirror: Arc<Mirror>) {
    if let Ok(store) = shared.store() {
        if let Err(error) = note_position(&mirror, &store) {
            tracing::error!(%error, "cannot read this mirror's journal position");
        }
    }
    let mut backoff = FIRST_BACKOFF;
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&shared, &mirror) => outcome,
            _ = shared.shutdown.cancelled() => return,
        };
        let reason = match outcome {
            Ok(()) => "the leader ended the stream".to_string(),
            Err(FollowError::Progressed(reason)) => {
                backoff = FIRST_BACKOFF;
                reason
            }
            Err(FollowError::Failed(reason)) => reason,
            Err(FollowError::Diverged(reason)) => {
                let outcome = tokio::select! {
                    outcome = rebootstrap(&shared, &mirror, &reason) => outcome,
                    _ = shared.shutdown.cancelled() => return,
                };
                match outcome {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    Err(error) => format!("{reason}; bootstrapping again failed: {error}"),
                }
            }
        };
        mirror.set_state(Some(&shared), MirrorState::Disconnected, reason);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why following stopped: after having applied something (the next attempt starts
/// afresh) or before, or because the leader's history no longer continues this
/// mirror's (it bootstraps again).
enum FollowError {
    Progressed(String),
    Failed(String),
    Diverged(String),
}

/// One connection's worth of following.
async fn follow_once(shared: &Arc<Shared>, mirror: &Mirror) -> Result<(), FollowError> {
    mirror.set_state(Some(shared), MirrorState::Connecting, String::new());
    let (client, _) = mirror.identify().await.map_err(|refusal| match refusal {
        Refusal::Unreachable(reason) | Refusal::Refused(reason) => FollowError::Failed(reason),
    })?;
    let store = shared.store().map_err(|e| FollowError::Failed(e.message))?;
    let position = store
        .snapshot()
        .and_then(|s| s.journal_position())
        .map_err(|e| FollowError::Failed(e.to_string()))?;
    let args = MirrorFollowArgs {
        seq: position.seq,
        crc: position.fingerprint.map(|(crc, _)| crc),
        epoch: position.fingerprint.map(|(_, epoch)| epoch),
        heartbeat_ms: Some(HEARTBEAT_MS),
    };
    let mut stream = client
        .stream(Method::MirrorFollow.name(), to_value(&args))
        .await
        .map_err(|e| FollowError::Failed(e.to_string()))?;
    mirror.set_state(Some(shared), MirrorState::Following, String::new());
    let mut progressed = false;
    let fail = |progressed: bool, reason: String| {
        if progressed {
            FollowError::Progressed(reason)
        } else {
            FollowError::Failed(reason)
        }
    };
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| classify(progressed, &e))?;
        let item: MirrorItem = rmpv::ext::from_value(item).map_err(|e| {
            fail(
                progressed,
                format!("the leader sent an item that does not parse: {e}"),
            )
        })?;
        mirror.heard(item.head);
        let Some(last) = item.entries.last() else {
            continue;
        };
        let (seq, time_ms) = (
            last.seq,
            EntryHeader::decode(&last.value).map_or(0, |h| h.time_ms),
        );
        let entries = item
            .entries
            .into_iter()
            .map(|e| JournalEntry {
                seq: e.seq,
                value: e.value,
            })
            .collect();
        let store = shared.store().map_err(|e| fail(progressed, e.message))?;
        let service_changed = match write(&store, Write::MirrorApply { entries }).await {
            Ok(Written::MirrorApplied {
                service_changed, ..
            }) => service_changed,
            Ok(other) => {
                return Err(fail(
                    progressed,
                    format!("the store answered {other:?} to the leader's entries"),
                ))
            }
            Err(error) => return Err(fail(progressed, error.message)),
        };
        progressed = true;
        mirror.applied(seq, time_ms);
        if service_changed {
            shared.follow_mirrored(&store);
        }
    }
    Ok(())
}

/// Why a follow stream failed: the leader's history no longer continuing this
/// mirror's (it bootstraps again), or anything else (it connects again).
fn classify(progressed: bool, error: &ClientError) -> FollowError {
    match error.code() {
        Some(ErrorCode::ChangesCompacted | ErrorCode::ResyncRequired) => FollowError::Diverged(
            format!("the leader's journal no longer continues this mirror's ({error})"),
        ),
        _ if progressed => FollowError::Progressed(error.to_string()),
        _ => FollowError::Failed(error.to_string()),
    }
}
