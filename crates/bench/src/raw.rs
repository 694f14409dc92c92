//! The baseline: the same workloads straight on heed, one `Database<Bytes, Bytes>` in an
//! environment opened the way cairn-store opens its own (no TLS read transactions, a
//! 1 TiB map, default flags so every commit fsyncs).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};

use crate::data::{add_to_checksum, random_key, Dataset};
use crate::measure::{repeat_for, time_ops, time_reads, Reads, Run};

/// LMDB map size of the baseline environment: 1 TiB of address space.
const MAP_SIZE: usize = 1 << 40;

/// An open baseline environment with its one database.
pub struct RawHeed {
    env: Env<WithoutTls>,
    db: Database<'static, Bytes, Bytes>,
}

impl RawHeed {
    /// Creates the environment and its database `bench` in the empty directory `dir`.
    pub fn create(dir: &Path) -> Result<RawHeed> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(4);
        // SAFETY: `dir` is a fresh directory that only this environment uses, and nothing
        // truncates or rewrites its files behind LMDB's back.
        let env = unsafe { options.open(dir) }
            .with_context(|| format!("opening a heed environment in {}", dir.display()))?;
        let wtxn = env.write_txn()?;
        let db = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let db: Database<Bytes, Bytes> = opener.create_database(wtxn, Some("bench"))?;
                Ok(CommitOrAbort::<_, ()>::Commit(db))
            })?
            .unwrap_commit();
        Ok(RawHeed { env, db })
    }

    /// Puts every key of `data`, `per_commit` puts per write transaction.
    pub fn put_all(&self, data: &Dataset, per_commit: usize) -> Result<Run> {
        time_ops(|| {
            for (chunk_index, chunk) in data.keys.chunks(per_commit).enumerate() {
                let mut wtxn = self.env.write_txn()?;
                for (offset, key) in chunk.iter().enumerate() {
                    let value = data.value(chunk_index * per_commit + offset);
                    self.db.put(&mut wtxn, key.as_bytes(), value)?;
                }
                wtxn.commit()?;
            }
            Ok(data.keys.len() as u64)
        })
    }

    /// Gets the keys in `order`, all in one read transaction.
    pub fn get_in_one_txn(&self, data: &Dataset, order: &[usize]) -> Result<Reads> {
        time_reads(|| {
            let rtxn = self.env.read_txn()?;
            let mut checksum = 0;
            for &index in order {
                checksum = add_to_checksum(checksum, self.get(&rtxn, &data.keys[index])?);
            }
            Ok((order.len() as u64, checksum))
        })
    }

    /// Gets the keys in `order`, each in its own read transaction.
    pub fn get_with_txn_per_get(&self, data: &Dataset, order: &[usize]) -> Result<Reads> {
        time_reads(|| {
            let mut checksum = 0;
            for &index in order {
                let rtxn = self.env.read_txn()?;
                checksum = add_to_checksum(checksum, self.get(&rtxn, &data.keys[index])?);
            }
            Ok((order.len() as u64, checksum))
        })
    }

    fn get<'t>(&self, rtxn: &'t heed::RoTxn<WithoutTls>, key: &str) -> Result<&'t [u8]> {
        self.db
            .get(rtxn, key.as_bytes())?
            .with_context(|| format!("raw heed lost key {key:?}"))
    }

    /// Iterates the whole database in key order in one read transaction.
    pub fn scan_all(&self) -> Result<Reads> {
        time_reads(|| {
            let rtxn = self.env.read_txn()?;
            let mut count = 0;
            let mut checksum = 0;
            for entry in self.db.iter(&rtxn)? {
                let (_key, value) = entry?;
                count += 1;
                checksum = add_to_checksum(checksum, value);
            }
            Ok((count, checksum))
        })
    }

    /// Puts random keys for `duration`, `per_commit` puts per write transaction.
    pub fn put_random_for(
        &self,
        duration: Duration,
        per_commit: usize,
        data: &Dataset,
    ) -> Result<Run> {
        let mut rng = rand::rng();
        repeat_for(duration, || {
            let mut wtxn = self.env.write_txn()?;
            for _ in 0..per_commit {
                let value = data.random_value(&mut rng);
                self.db
                    .put(&mut wtxn, random_key(&mut rng).as_bytes(), value)?;
            }
            wtxn.commit()?;
            Ok(per_commit as u64)
        })
    }
}
