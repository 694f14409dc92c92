//! Copying the leader's environment: into an empty directory before the store opens
//! (`bootstrap`), or into the scratch directory of a running mirror whose history the
//! leader no longer continues, swapped in as a restore swaps a backup in
//! (`rebootstrap`). The copy is checked against the stream's length and SHA-256 before
//! it is used.

use std::path::Path;
use std::sync::Arc;

use cairn_proto::methods::{BootstrapChunk, BootstrapEnd};
use cairn_proto::values::MirrorState;
use cairn_proto::Method;
use cairn_store::backup::{Checksum, HashingFile};
use cairn_store::STORE_DIR;
use rmpv::Value;

use super::follow::note_position;
use super::{refused, Mirror, Refusal};
use crate::config::TMP_DIR;
use crate::error::ServerError;
use crate::ops::restore;
use crate::ops::shared::Shared;

/// Where a bootstrap writes its copy before it becomes `DIR/store`.
const BOOTSTRAP_DIR: &str = "store.bootstrap";

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
    let mut file =
        Some(HashingFile::create(&target, 0o600, Checksum::Sha256).map_err(|e| e.to_string())?);
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
pub(super) async fn rebootstrap(
    shared: &Arc<Shared>,
    mirror: &Mirror,
    reason: &str,
) -> Result<(), String> {
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
