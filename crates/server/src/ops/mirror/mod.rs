//! A mirror: a service that follows its leader's whole state. `Mirror` holds how to
//! reach the leader and where the following stands (state, the leader's head, the
//! applied position, the lag) for `status` and for the reads it gates, and forwards the
//! calls that change the service to the leader. `bootstrap.rs` copies the leader's
//! environment (into an empty directory, or again when the leader's history no longer
//! continues the mirror's); `follow.rs` is the background task that applies the
//! leader's journal; `promote.rs` makes a mirror the leader and keeps the role a
//! promotion gives. Each state change is logged at WARN and sent to webhooks.

mod bootstrap;
mod follow;
pub mod promote;

pub use bootstrap::{bootstrap, needs_bootstrap};
pub use follow::follow;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions};
use cairn_proto::methods::{call, MirrorForwardArgs, MirrorStatus};
use cairn_proto::values::MirrorState;
use cairn_proto::{ErrorCode, Method, WireError};
use rmpv::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use crate::config::Settings;
use crate::error::ServerError;
use crate::ops::shared::Shared;
use crate::ops::webhooks::WebhookEvent;
use crate::storage::now_ms;

/// The leader's heartbeat while idle (ms); silence beyond two counts as lag.
const HEARTBEAT_MS: u64 = 1000;

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
    /// Cancelled when the mirror stops following (a promotion).
    stop: CancellationToken,
    /// Held by the follow task while it runs.
    following: tokio::sync::Mutex<()>,
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
    /// The mirror of `leader`, reached with the certificates of `cert_dirs`.
    pub fn new(leader: ClientUrl, settings: &Settings, cert_dirs: &[PathBuf]) -> Mirror {
        let options = ConnectOptions {
            cert_dirs: cert_dirs.to_vec(),
            token: settings.mirror_token.clone(),
            max_frame: settings.max_frame_bytes,
            ..ConnectOptions::default()
        };
        Mirror {
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
            stop: CancellationToken::new(),
            following: tokio::sync::Mutex::new(()),
        }
    }

    /// Stops the follow task and waits until it has stopped (nothing more is applied).
    pub async fn stop_following(&self) {
        self.stop.cancel();
        let _stopped = self.following.lock().await;
    }

    /// Waits until this mirror has applied `seq`, at most `bound`; answers whether it has.
    pub async fn wait_applied(&self, seq: u64, bound: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(bound, applied.wait_for(|s| *s >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }

    pub(crate) fn name(&self) -> String {
        self.leader.redacted()
    }

    /// Connects, checks that the credentials are an admin's on a Cairn service and
    /// answers its service id.
    async fn identify(&self) -> Result<(Client, String), Refusal> {
        let leader = self.name();
        let credentials = |error: &ClientError| {
            format!(
                "{leader} refuses this mirror's credentials ({error}): give an admin's credentials in the URL, [mirror] token or a client certificate"
            )
        };
        let client =
            Client::connect(&self.leader, &self.options)
                .await
                .map_err(|error| match error {
                    ClientError::Connect { .. } => Refusal::Unreachable(error.to_string()),
                    ClientError::Tls { .. } | ClientError::Protocol(_) => Refusal::Refused(
                        format!("{leader} does not answer as a Cairn service ({error})"),
                    ),
                    ClientError::Service(ref wire)
                        if matches!(
                            wire.code,
                            ErrorCode::BadCredentials | ErrorCode::Unauthenticated
                        ) =>
                    {
                        Refusal::Refused(credentials(&error))
                    }
                    other => Refusal::Refused(format!("{leader}: {other}")),
                })?;
        let whoami = client
            .whoami()
            .await
            .map_err(|error| Refusal::Refused(credentials(&error)))?;
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
        if !self.wait_applied(answer.head, APPLY_WAIT).await {
            tracing::warn!(leader = %self.name(), head = answer.head, "a forwarded {method} is answered before this mirror applied it: it lags");
        }
        Ok(answer.result)
    }

    /// The connection to the leader for forwarded calls.
    pub(crate) async fn forwarder(&self) -> Result<Client, WireError> {
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
