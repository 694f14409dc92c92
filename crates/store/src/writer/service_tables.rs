//! Writes to the service's own tables: users (and their sessions when a user goes),
//! sessions, jobs (ids from the `next_job_id` counter of `meta`), the service status
//! and the change-log epoch.

use super::apply::GroupTxn;
use super::requests::Written;
use super::Failure;
use crate::error::StoreError;
use crate::format::{meta_key, table, SessionRecord, UserRecord};
use crate::jobs::{JobRecord, JobStatus};
use crate::journal::TableId;
use crate::status::ServiceStatus;

impl GroupTxn<'_> {
    /// Creates (`create`) or replaces the user `name`.
    pub(super) fn save_user(
        &mut self,
        name: &str,
        record: &UserRecord,
        create: bool,
    ) -> Result<Written, Failure> {
        let exists = self.tables.users.get(&self.wtxn, name)?.is_some();
        if create && exists {
            return Err(Failure::Request(StoreError::UserExists {
                name: name.to_string(),
            }));
        }
        if !create && !exists {
            return Err(Failure::Request(StoreError::UserMissing {
                name: name.to_string(),
            }));
        }
        self.put(TableId::Users, name, record.encode())?;
        Ok(Written::UserSaved)
    }

    /// Removes the user `name` and every session of it.
    pub(super) fn delete_user(&mut self, name: &str) -> Result<Written, Failure> {
        if !self.delete(TableId::Users, name)? {
            return Err(Failure::Request(StoreError::UserMissing {
                name: name.to_string(),
            }));
        }
        self.delete_sessions_where(|session| session.user == name)?;
        Ok(Written::UserDeleted)
    }

    /// Stores a session under the SHA-256 of its token.
    pub(super) fn save_session(
        &mut self,
        token_hash: &[u8; 32],
        record: &SessionRecord,
    ) -> Result<Written, Failure> {
        self.put(TableId::Sessions, token_hash, record.encode())?;
        Ok(Written::SessionSaved)
    }

    /// Removes a session; answers whether it existed.
    pub(super) fn delete_session(&mut self, token_hash: &[u8; 32]) -> Result<Written, Failure> {
        Ok(Written::SessionDeleted(
            self.delete(TableId::Sessions, token_hash)?,
        ))
    }

    /// Deletes the sessions that match; returns how many.
    pub(super) fn delete_sessions_where(
        &mut self,
        matches: impl Fn(&SessionRecord) -> bool,
    ) -> Result<u64, Failure> {
        let mut doomed = Vec::new();
        for entry in self.tables.sessions.iter(&self.wtxn)? {
            let (token_hash, bytes) = entry?;
            if matches(&SessionRecord::decode(bytes)?) {
                doomed.push(token_hash.to_vec());
            }
        }
        for token_hash in &doomed {
            self.delete(TableId::Sessions, token_hash)?;
        }
        Ok(doomed.len() as u64)
    }

    /// Stores a new job under the next job id.
    pub(super) fn create_job(&mut self, record: &JobRecord) -> Result<Written, Failure> {
        let id = match self.tables.meta.get(&self.wtxn, meta_key::NEXT_JOB_ID)? {
            Some(bytes) => {
                u64::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt {
                    table: table::META,
                    reason: "next_job_id is not 8 bytes".to_string(),
                })?)
            }
            None => 1,
        };
        let record = JobRecord {
            id,
            ..record.clone()
        };
        self.put(TableId::Jobs, id.to_be_bytes(), record.encode())?;
        self.put(TableId::Meta, meta_key::NEXT_JOB_ID, (id + 1).to_be_bytes())?;
        Ok(Written::JobCreated(id))
    }

    /// Replaces the record of an existing job.
    pub(super) fn save_job(&mut self, record: &JobRecord) -> Result<Written, Failure> {
        let key = record.id.to_be_bytes();
        if self.tables.jobs.get(&self.wtxn, &key)?.is_none() {
            return Err(Failure::Request(StoreError::NotFound {
                db: table::JOBS.to_string(),
                key: record.id.to_string(),
            }));
        }
        self.put(TableId::Jobs, key, record.encode())?;
        Ok(Written::JobSaved)
    }

    /// Marks every job that is not final as failed ("interrupted").
    pub(super) fn fail_interrupted_jobs(&mut self, now_ms: u64) -> Result<Written, Failure> {
        let mut interrupted = Vec::new();
        for entry in self.tables.jobs.iter(&self.wtxn)? {
            let record = JobRecord::decode(entry?.1)?;
            if !record.status.is_final() {
                interrupted.push(record);
            }
        }
        for mut record in interrupted.iter().cloned() {
            record.error_message =
                Some("interrupted: the service stopped while the job ran".to_string());
            record.finish(JobStatus::Failed, now_ms);
            self.put(TableId::Jobs, record.id.to_be_bytes(), record.encode())?;
        }
        Ok(Written::JobsFailed(interrupted.len() as u64))
    }

    /// Replaces the whole job history; the next job id follows the largest one given
    /// (and never goes back).
    pub(super) fn replace_jobs(&mut self, records: &[JobRecord]) -> Result<Written, Failure> {
        self.clear(TableId::Jobs)?;
        for record in records {
            self.put(TableId::Jobs, record.id.to_be_bytes(), record.encode())?;
        }
        let next = records.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let stored_next = match self.tables.meta.get(&self.wtxn, meta_key::NEXT_JOB_ID)? {
            Some(bytes) if bytes.len() == 8 => {
                u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
            }
            _ => 1,
        };
        self.put(
            TableId::Meta,
            meta_key::NEXT_JOB_ID,
            next.max(stored_next).to_be_bytes(),
        )?;
        Ok(Written::JobsReplaced)
    }

    /// Replaces the service status.
    pub(super) fn set_status(&mut self, status: &ServiceStatus) -> Result<Written, Failure> {
        self.put(TableId::Meta, meta_key::STATUS, status.encode())?;
        Ok(Written::StatusSet)
    }

    /// Writes the probe record.
    pub(super) fn probe(&mut self, now_ms: u64) -> Result<Written, Failure> {
        self.put(TableId::Meta, meta_key::PROBE, now_ms.to_be_bytes())?;
        Ok(Written::Probed)
    }

    /// Draws a new change-log epoch.
    pub(super) fn new_epoch(&mut self) -> Result<Written, Failure> {
        let epoch = crate::store::random_epoch()?;
        self.put(TableId::Meta, meta_key::EPOCH, epoch.to_be_bytes())?;
        Ok(Written::Epoch(epoch))
    }
}
