//! Promotion: a mirror becomes the leader. Gracefully (`promote`): the leader stops
//! taking writes (`handoff` with `begin`: calls that change the service are refused and
//! those in flight finish), answers its final head, the mirror applies it, becomes the
//! leader, and the old leader turns into its mirror (`handoff` with `complete`, given
//! the new leader's URL and CA certificate). By force (`promote` with `force`), when the
//! leader is gone: at what the mirror applied, with a new change-log epoch, since the
//! old leader may hold changes the mirror never saw. The role a promotion gives a
//! service is kept in `DIR/role.json`, which wins over the settings at the next start.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::ClientUrl;
use cairn_proto::methods::{
    call, MirrorHandoffArgs, MirrorHandoffResult, MirrorPromoteArgs, MirrorPromoteResult,
};
use cairn_proto::values::HandoffMode;
use cairn_proto::{ErrorCode, WireError};
use cairn_store::Write;
use serde::{Deserialize, Serialize};

use super::{follow, Mirror};
use crate::config::{parse_leader, CERTS_DIR};
use crate::error::{bad_request, conflict, ServerError};
use crate::ops::schedule;
use crate::ops::shared::Shared;
use crate::storage::{blocking, now_ms, write};

/// Where a promotion keeps the role it gave the service.
pub const ROLE_FILE: &str = "role.json";

/// How long a graceful promotion waits for the leader's writes in flight, then for
/// this mirror to apply the leader's final head.
const HANDOFF_WAIT: Duration = Duration::from_secs(30);

/// The role a promotion gave a service, over what its settings say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// Promoted: a leader, whatever `[mirror] leader` or `--mirror` say.
    Leader {
        since_ms: u64,
        promoted_from: String,
    },
    /// Handed over: a mirror of `leader`.
    Mirror { leader: String, since_ms: u64 },
}

/// The role kept in `dir`, if a promotion left one.
pub fn load_role(dir: &Path) -> Result<Option<Role>, ServerError> {
    let path = dir.join(ROLE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ServerError::Settings {
                source_name: path.display().to_string(),
                reason: format!("{e}: remove it to take the role the settings give"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(format!("reading {}", path.display()), e)),
    }
}

/// Keeps `role` in `dir` (written whole, 0600: a leader's URL may hold a password;
/// fsync'd, then renamed into place).
fn save_role(dir: &Path, role: &Role) -> Result<(), WireError> {
    let text = serde_json::to_string_pretty(role).expect("a role serialises");
    let (path, partial) = (dir.join(ROLE_FILE), dir.join("role.json.partial"));
    let written = (|| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        WireError::new(
            ErrorCode::IoError,
            format!("cannot keep the new role in {}: {e}", path.display()),
        )
    })
}

/// `mirror.promote`, on a mirror.
pub async fn promote(
    shared: &Arc<Shared>,
    args: MirrorPromoteArgs,
) -> Result<MirrorPromoteResult, WireError> {
    let mirror = shared
        .mirror()
        .ok_or_else(|| conflict("this service is a leader already: promote one of its mirrors"))?;
    if args.force {
        return force(shared, &mirror).await;
    }
    let advertise = match args.advertise {
        Some(url) => url,
        None => own_url(shared)?,
    };
    parse_leader(&advertise).map_err(bad_request)?;
    let leader = mirror.forwarder().await?;
    let started = Instant::now();
    let begin: MirrorHandoffResult = leader
        .request::<call::MirrorHandoff>(&MirrorHandoffArgs {
            mode: HandoffMode::Begin,
            leader: Some(advertise.clone()),
            ca_name: None,
            ca_pem: None,
        })
        .await
        .map_err(|e| leader_error(&mirror, "stop taking writes", &e))?;
    if !mirror.wait_applied(begin.head, HANDOFF_WAIT).await {
        let _ = leader
            .request::<call::MirrorHandoff>(&MirrorHandoffArgs {
                mode: HandoffMode::Cancel,
                leader: None,
                ca_name: None,
                ca_pem: None,
            })
            .await;
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "this mirror did not apply the leader's final position {} within {} s: the promotion is called off and the leader takes writes again",
                begin.head,
                HANDOFF_WAIT.as_secs()
            ),
        ));
    }
    become_leader(shared, &mirror, false).await?;
    let ca_path = shared
        .dir
        .join(CERTS_DIR)
        .join("cas")
        .join(format!("{}.crt", shared.ca_name));
    let ca_pem = std::fs::read_to_string(&ca_path).ok();
    let completed = leader
        .request::<call::MirrorHandoff>(&MirrorHandoffArgs {
            mode: HandoffMode::Complete,
            leader: Some(advertise),
            ca_name: Some(shared.ca_name.clone()),
            ca_pem,
        })
        .await;
    let refused_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(error) = &completed {
        tracing::error!(%error, old_leader = %mirror.leader.redacted(), "promoted, but the old leader did not turn into a mirror: it refuses writes until it is restarted as one");
    }
    tracing::warn!(old_leader = %mirror.leader.redacted(), position = begin.head, refused_ms, "promoted to leader");
    Ok(MirrorPromoteResult {
        forced: false,
        old_leader: mirror.leader.redacted(),
        position: begin.head,
        leader_head: begin.head,
        refused_ms,
        old_leader_follows: completed.is_ok(),
        epoch: None,
    })
}

/// A forced promotion: a leader at what this mirror applied, under a new epoch.
async fn force(
    shared: &Arc<Shared>,
    mirror: &Arc<Mirror>,
) -> Result<MirrorPromoteResult, WireError> {
    become_leader(shared, mirror, true).await?;
    let store = shared.store()?;
    let epoch = match write(&store, Write::NewEpoch).await? {
        cairn_store::Written::Epoch(epoch) => Some(epoch),
        _ => None,
    };
    let status = mirror.status(false);
    tracing::warn!(old_leader = %mirror.leader.redacted(), position = status.applied, last_seen_head = status.leader_head, "promoted to leader by force");
    Ok(MirrorPromoteResult {
        forced: true,
        old_leader: mirror.leader.redacted(),
        position: status.applied,
        leader_head: status.leader_head,
        refused_ms: 0,
        old_leader_follows: false,
        epoch,
    })
}

/// Stops following, takes writes, keeps the role, and starts what a leader runs.
async fn become_leader(
    shared: &Arc<Shared>,
    mirror: &Arc<Mirror>,
    forced: bool,
) -> Result<(), WireError> {
    mirror.stop_following().await;
    save_role(
        &shared.dir,
        &Role::Leader {
            since_ms: now_ms(),
            promoted_from: mirror.leader.redacted(),
        },
    )?;
    let store = shared.store()?;
    store.set_mirror(false);
    shared.set_mirror(None);
    if let Err(reason) = schedule::restart(shared) {
        tracing::error!(%reason, forced, "the backup schedule does not start");
    }
    Ok(())
}

/// This service's URL as its old leader reaches it: the first TLS listener, as root,
/// checked against the embedded host certificate's name.
fn own_url(shared: &Shared) -> Result<String, WireError> {
    let endpoint = shared
        .endpoints
        .iter()
        .find_map(|e| e.strip_prefix("ssl://"))
        .ok_or_else(|| {
            bad_request("this service has no ssl:// listener: give the URL the old leader reaches it at (--advertise)")
        })?;
    let address = endpoint.split('/').next().unwrap_or(endpoint);
    let unspecified = address.starts_with("0.0.0.0:") || address.starts_with("[::]:");
    if unspecified {
        return Err(bad_request(format!(
            "this service listens on {address}, every address: give the URL the old leader reaches it at (--advertise)"
        )));
    }
    Ok(format!(
        "ssl://{}@{address}/?hostname={}",
        crate::auth::ROOT_USER,
        cairn_certs::EMBEDDED_HOST
    ))
}

fn leader_error(mirror: &Mirror, what: &str, error: &cairn_client::ClientError) -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!(
            "the leader {} did not {what} ({error}): nothing changed; promote with --force if it is gone",
            mirror.leader.redacted()
        ),
    )
}

/// `mirror.handoff`, on the leader.
pub async fn handoff(
    shared: &Arc<Shared>,
    args: MirrorHandoffArgs,
) -> Result<MirrorHandoffResult, WireError> {
    if shared.mirror().is_some() {
        return Err(conflict(
            "this service is a mirror: only a leader hands over",
        ));
    }
    match args.mode {
        HandoffMode::Begin => {
            let to = args.leader.unwrap_or_else(|| "a mirror".to_string());
            tracing::warn!(to = %to, "handing over to a mirror: writes are refused");
            shared.set_handoff(Some(to));
            if !shared.changes_drained(HANDOFF_WAIT).await {
                shared.set_handoff(None);
                return Err(WireError::new(
                    ErrorCode::Unavailable,
                    "writes still in flight after 30 s: the handover is called off",
                ));
            }
        }
        HandoffMode::Cancel => {
            tracing::warn!("the handover was called off: writes are taken again");
            shared.set_handoff(None);
        }
        HandoffMode::Complete => {
            let leader = args
                .leader
                .ok_or_else(|| bad_request("complete needs the new leader's URL"))?;
            let url = parse_leader(&leader).map_err(bad_request)?;
            if let (Some(name), Some(pem)) = (args.ca_name, args.ca_pem) {
                trust_ca(shared, &name, &pem)?;
            }
            become_mirror(shared, url)?;
        }
    }
    let store = shared.store()?;
    let head = blocking(move || Ok(store.snapshot()?.journal_position()?.seq)).await?;
    Ok(MirrorHandoffResult { head })
}

/// Keeps the new leader's CA certificate among this service's CAs (it then trusts the
/// new leader's host certificate).
fn trust_ca(shared: &Shared, name: &str, pem: &str) -> Result<(), WireError> {
    let certs = cairn_certs::CertDir::new(shared.dir.join(CERTS_DIR));
    let path = certs
        .cert_path(cairn_certs::Kind::Ca, name)
        .map_err(|e| bad_request(e.to_string()))?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(bad_request("ca_pem is not a PEM certificate"));
    }
    if !path.exists() {
        std::fs::write(&path, pem).map_err(|e| {
            WireError::new(
                ErrorCode::IoError,
                format!("cannot keep the new leader's CA in {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

/// Turns this leader into a mirror of `leader`, which took over.
fn become_mirror(shared: &Arc<Shared>, leader: ClientUrl) -> Result<(), WireError> {
    save_role(
        &shared.dir,
        &Role::Mirror {
            leader: leader.to_string(),
            since_ms: now_ms(),
        },
    )?;
    let settings = shared.settings();
    let mirror = Arc::new(Mirror::new(leader, &settings, &shared.leader_cert_dirs));
    shared.store()?.set_mirror(true);
    shared.set_mirror(Some(mirror.clone()));
    shared.set_handoff(None);
    if let Some(stop) = shared.schedule_stop.lock().expect("schedule lock").take() {
        stop.cancel();
    }
    shared
        .background
        .spawn(follow::follow(shared.clone(), mirror.clone()));
    tracing::warn!(leader = %mirror.leader.redacted(), "handed over: this service is now a mirror");
    Ok(())
}
