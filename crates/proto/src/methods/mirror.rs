//! The leader's methods for its mirrors: `mirror.bootstrap` (a consistent compacted copy
//! of the leader's environment, in chunks, with its length and SHA-256 at the end),
//! `mirror.follow` (the journal's entries after the mirror's position, as the leader
//! commits them, with heartbeats that carry the leader's head) and `mirror.forward` (a
//! call a mirror was sent that changes the service, run by the leader as its caller);
//! promotion (`mirror.promote` on the mirror, `mirror.handoff` on the leader); and what
//! `status` says on a mirror.

use serde::{Deserialize, Serialize};

use crate::values::{HandoffMode, MirrorState, Via};

/// An item of `mirror.bootstrap`: the next bytes of the copy of `store/data.mdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapChunk {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The end of `mirror.bootstrap`: how many bytes the copy holds and their SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapEnd {
    pub bytes: u64,
    pub sha256: String,
}

/// `mirror.follow`: where the mirror stands, its newest journal entry's seq, checksum
/// and epoch (seq 0 and neither before any entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorFollowArgs {
    pub seq: u64,
    #[serde(default)]
    pub crc: Option<u32>,
    #[serde(default)]
    pub epoch: Option<u64>,
    /// How often an idle stream sends a heartbeat (ms; 1000 by default).
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
    /// The most bytes of entries an item may carry (the mirror's frame limit, less room
    /// for the message); the leader's own limit applies too.
    #[serde(default)]
    pub max_item_bytes: Option<u64>,
}

/// One journal entry as the `journal` table holds it, or a piece of one too large for
/// an item: `more` says that the entry's value goes on in the next item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorEntry {
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// An item of `mirror.follow`: the next entries (none in a heartbeat), the leader's
/// newest seq and its clock when it sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorItem {
    pub entries: Vec<MirrorEntry>,
    pub head: u64,
    pub time_ms: u64,
}

/// The end of `mirror.follow` (the leader stopping, or the mirror's cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorEnd {
    pub head: u64,
}

/// What `status` says on a mirror: its leader, how far it has applied the leader's
/// journal and how far behind it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorStatus {
    /// The leader's URL, without credentials.
    pub leader: String,
    pub state: MirrorState,
    /// The leader's newest journal seq, as last heard.
    pub leader_head: u64,
    /// The newest journal seq applied here.
    pub applied: u64,
    /// `leader_head - applied`.
    pub lag_changes: u64,
    /// How long the oldest entry not yet applied has waited (0 when caught up).
    pub lag_secs: f64,
    /// When the leader was last heard from (ms since the epoch; 0: never).
    pub last_contact_ms: u64,
    /// What happened last (the connection's error, a bootstrap's reason), for people.
    #[serde(default)]
    pub message: String,
    /// Whether writes sent here are forwarded to the leader (else refused with
    /// `mirror_read_only`).
    pub forward_writes: bool,
}

/// `mirror.forward`: a call that changes the service, sent to a mirror by `user` (as
/// the mirror authenticated them: `via`, and the session token's SHA-256 when a token
/// did), run by the leader as that user with every check it would make of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorForwardArgs {
    /// The method's name.
    pub method: String,
    /// The call's arguments.
    pub args: rmpv::Value,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Hex.
    #[serde(default)]
    pub token_hash: Option<String>,
    /// The caller's address (for the login throttle).
    #[serde(default)]
    pub peer: Option<String>,
}

/// The result of a forwarded call, and the leader's journal head once it committed:
/// the mirror answers once it has applied that much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorForwardResult {
    pub result: rmpv::Value,
    pub head: u64,
}

/// `mirror.promote`: makes this mirror the leader. Gracefully (the leader stops taking
/// writes, this mirror applies its final position, becomes the leader, and the old
/// leader follows it at `advertise`, this service's URL as the old leader reaches it);
/// or with `force` when the leader is gone, at what this mirror applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorPromoteArgs {
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub advertise: Option<String>,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorPromoteResult {
    pub forced: bool,
    /// The old leader's URL, without credentials.
    pub old_leader: String,
    /// The journal seq this service had applied when it became the leader.
    pub position: u64,
    /// The old leader's head as last heard (beyond `position` after a forced
    /// promotion: entries this service never applied).
    pub leader_head: u64,
    /// How long the old leader refused writes (graceful; 0 when forced).
    pub refused_ms: u64,
    /// Whether the old leader now follows this service.
    pub old_leader_follows: bool,
    /// The new change-log epoch after a forced promotion.
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// `mirror.handoff`, on the leader: a step of its mirror's graceful promotion. `begin`
/// stops taking writes and answers the final head; `complete` makes this service a
/// mirror of `leader` (trusting the CA `ca_name`, whose certificate is `ca_pem`);
/// `cancel` takes writes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorHandoffArgs {
    pub mode: HandoffMode,
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default)]
    pub ca_name: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// The journal's head when the step was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorHandoffResult {
    pub head: u64,
}
