//! `NEWDIR/migration/offsets.json`, as `cairn-migrate` writes it: the source's service
//! id and epoch, and where each database's change log stood when the migration read it
//! (crates/store/FORMAT.md, "Migrations"). The follower starts from it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use cairn_client::methods::SyncStartPosition;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Offsets {
    pub source_service_id: String,
    pub source_epoch: u64,
    pub databases: BTreeMap<String, u64>,
    #[serde(default)]
    pub created_ms: BTreeMap<String, u64>,
}

impl Offsets {
    pub fn read(path: &Path) -> anyhow::Result<Offsets> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the offsets file {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is not an offsets file of cairn-migrate (NEWDIR/migration/offsets.json)",
                path.display()
            )
        })
    }

    /// The starting position of every database it names.
    pub fn positions(&self) -> Vec<SyncStartPosition> {
        self.databases
            .iter()
            .map(|(db, seq)| SyncStartPosition {
                db: db.clone(),
                epoch: self.source_epoch,
                seq: *seq,
                created_ms: self.created_ms.get(db).copied().unwrap_or(0),
            })
            .collect()
    }
}
