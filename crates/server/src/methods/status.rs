//! The service's own methods: `status` (answered to anyone, even while a restore has the
//! store closed), `status.set`, `usage` and `config.reload`.

use cairn_proto::methods::{self, StatusSetArgs};
use cairn_proto::{ErrorCode, WireError};
use cairn_store::{ServiceStatus, StoreError, Write};

use crate::ops::shared::{Shared, RESTORE_MESSAGE};
use crate::ops::webhooks::WebhookEvent;
use crate::ops::{health, reload};
use crate::storage::{blocking, now_ms, write};
use crate::wire::{IntoStore, IntoWire};

use super::CallContext;

/// The `status` result: the stricter of the status an admin set and the automatic
/// READ_ONLY (see `crate::ops::health`), or `DOWN` while a restore runs.
pub fn status(shared: &Shared) -> methods::StatusResult {
    let set = shared.status();
    let reasons = shared.auto.reasons();
    let (mode, message) = if shared.is_restoring() {
        (cairn_store::ServiceMode::Down, RESTORE_MESSAGE.to_string())
    } else {
        (
            health::effective_mode(set.mode, !reasons.is_empty()),
            set.current_message.clone(),
        )
    };
    methods::StatusResult {
        status: mode.into_wire(),
        current_message: message,
        pending_maintenance_message: set.pending_maintenance_message.clone(),
        service_id: shared.service_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        admin_status: set.mode.into_wire(),
        reasons: reasons
            .iter()
            .map(|r| methods::StatusReason {
                code: r.code,
                message: r.message.clone(),
                since_ms: r.since_ms,
            })
            .collect(),
        migration: shared.follow.mode(),
        mirror: shared
            .mirror()
            .map(|m| m.status(shared.settings().mirror_forward_writes)),
    }
}

/// The error of a DOWN service, with the admin's message.
pub fn down_error(status: &ServiceStatus) -> WireError {
    let message = if status.current_message.is_empty() {
        "the service is down for maintenance".to_string()
    } else {
        status.current_message.clone()
    };
    WireError::new(ErrorCode::Unavailable, message)
}

/// `status.set`: stores the new status, logs it and tells webhooks the mode in force.
pub async fn set(
    call: &CallContext,
    args: StatusSetArgs,
) -> Result<methods::StatusResult, WireError> {
    let shared = &call.shared;
    let mode = args.status.into_store();
    let new = ServiceStatus {
        mode,
        current_message: args.current_message.unwrap_or_default(),
        pending_maintenance_message: args.pending_maintenance_message.unwrap_or_default(),
        set_by: call.user().to_string(),
        set_ms: now_ms(),
    };
    let old_mode = shared.status().mode;
    write(
        &shared.store()?,
        Write::SetStatus {
            status: new.clone(),
        },
    )
    .await?;
    tracing::warn!(
        status = mode.as_str(),
        message = %new.current_message,
        pending = %new.pending_maintenance_message,
        by = %call.user(),
        "service status changed"
    );
    let reason = new.current_message.clone();
    shared.set_status(new);
    // Webhooks hear the mode in force, which an automatic READ_ONLY may keep.
    let automatic = !shared.auto.reasons().is_empty();
    let in_force = |mode| health::effective_mode(mode, automatic).as_str();
    shared.webhooks.emit(WebhookEvent::status_changed(
        Some(in_force(old_mode).to_string()),
        in_force(mode),
        reason,
        call.user(),
    ));
    Ok(status(shared))
}

/// `config.reload`: reads the settings file again (see `crate::ops::reload`).
pub async fn reload_config(call: &CallContext) -> Result<methods::ConfigReloadResult, WireError> {
    reload::reload(&call.shared, call.user()).await
}

/// `usage`, on a blocking thread: the environment's pages and databases, then the
/// working and backup directories walked on disk (the store let go first).
pub async fn usage(call: &CallContext) -> Result<methods::UsageResult, WireError> {
    let store = call.shared.store()?;
    let (dir, backup_dir) = (call.shared.dir.clone(), call.shared.backup_dir.clone());
    blocking(move || {
        let usage = store.usage()?;
        drop(store);
        let env = usage.env;
        Ok(methods::UsageResult {
            dir: dir_usage(&dir)?,
            backups: dir_usage(&backup_dir)?,
            env: methods::EnvUsage {
                file_bytes: env.file_bytes,
                map_size: env.map_size,
                page_size: env.page_size,
                total_pages: env.total_pages,
                used_pages: env.used_pages,
                free_pages: env.free_pages,
                used_bytes: env.used_bytes(),
                free_bytes: env.free_bytes(),
            },
            journal: methods::JournalUsage {
                first_seq: usage.journal.first_seq,
                last_seq: usage.journal.last_seq,
                bytes: usage.journal.bytes,
            },
            databases: usage
                .databases
                .into_iter()
                .map(|db| methods::DbUsage {
                    name: db.name,
                    doc_count: db.doc_count,
                    doc_bytes: db.doc_bytes,
                    log_bytes: db.log_bytes,
                    log_entries: db.log_entries,
                })
                .collect(),
        })
    })
    .await
}

/// A directory's bytes on disk and the room of its file system (statvfs).
fn dir_usage(path: &std::path::Path) -> Result<methods::DirUsage, StoreError> {
    let disk = cairn_store::disk_usage(path)?;
    let space = cairn_store::file_system_space(path)?;
    Ok(methods::DirUsage {
        path: path.display().to_string(),
        bytes: disk.bytes,
        files: disk.files,
        fs_total_bytes: space.total_bytes,
        fs_available_bytes: space.available_bytes,
    })
}
