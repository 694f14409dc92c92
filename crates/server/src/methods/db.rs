//! The database methods: `db.create`, `db.drop`, `db.list`, `db.info`, `db.offline`,
//! `db.online`, `db.config`, `db.config.set` and `db.resync`. State changes go through
//! the databases' lifecycle (`crate::ops::lifecycle`); a resync is a job
//! (`crate::ops::resync`).

use std::time::Duration;

use cairn_proto::methods::{
    self, DbConfigSetArgs, DbCreateArgs, DbNameArgs, DbOfflineArgs, DbOnlineArgs,
};
use cairn_proto::{Need, WireError};
use cairn_store::{Store, Write, Written};

use crate::error::{internal, store_error};
use crate::ops::{lifecycle, resync};
use crate::storage::write;
use crate::wire::{IntoStore, IntoWire};

use super::CallContext;

/// Why a state change was asked, when the caller gave no reason.
const NO_REASON: &str = "asked by an admin";

/// A database's counters with its lifecycle state.
fn db_info(call: &CallContext, info: cairn_store::DatabaseInfo) -> methods::DbInfo {
    methods::DbInfo {
        state: call.shared.databases.state(&info.name).into_wire(),
        name: info.name,
        created_ms: info.created_ms,
        doc_count: info.doc_count,
        last_seq: info.last_seq,
        oldest_seq: info.oldest_seq,
        doc_bytes: info.doc_bytes,
        log_bytes: info.log_bytes,
        retention: info.retention.into_wire(),
    }
}

pub async fn create(call: &CallContext, args: DbCreateArgs) -> Result<methods::DbInfo, WireError> {
    let store = call.shared.store()?;
    write(
        &store,
        Write::CreateDatabase {
            name: args.name.clone(),
            retention: args.retention.into_store(),
            offline: args.offline,
        },
    )
    .await?;
    call.shared.databases.created(&args.name, args.offline);
    tracing::warn!(db = %args.name, offline = args.offline, by = %call.user(), "database created");
    Ok(db_info(
        call,
        store.database_info(&args.name).map_err(store_error)?,
    ))
}

pub async fn drop(call: &CallContext, args: DbNameArgs) -> Result<(), WireError> {
    lifecycle::drop_database(&call.shared, &args.name).await?;
    tracing::warn!(db = %args.name, by = %call.user(), "database dropped");
    Ok(())
}

/// Every database for an admin; those it has a grant on for anyone else.
pub fn list(call: &CallContext) -> Result<Vec<methods::DbInfo>, WireError> {
    let record = call
        .need(Need::User)?
        .ok_or_else(|| internal("a user without a record"))?;
    let all = call.shared.store()?.list_databases().map_err(store_error)?;
    Ok(all
        .into_iter()
        .filter(|db| record.admin || record.grants.contains_key(&db.name))
        .map(|info| db_info(call, info))
        .collect())
}

pub fn info(call: &CallContext, args: DbNameArgs) -> Result<methods::DbInfo, WireError> {
    let info = call
        .shared
        .store()?
        .database_info(&args.name)
        .map_err(store_error)?;
    Ok(db_info(call, info))
}

pub async fn offline(
    call: &CallContext,
    args: DbOfflineArgs,
) -> Result<methods::DbStateResult, WireError> {
    let why = args.reason.unwrap_or_else(|| NO_REASON.to_string());
    let done = lifecycle::take_offline(&call.shared, &args.name, call.user(), &why).await?;
    Ok(done.result(&args.name))
}

pub async fn online(
    call: &CallContext,
    args: DbOnlineArgs,
) -> Result<methods::DbStateResult, WireError> {
    let delay = Duration::from_secs(args.delay_secs.unwrap_or(0));
    let why = args.reason.unwrap_or_else(|| NO_REASON.to_string());
    let done = lifecycle::bring_online(&call.shared, &args.name, delay, call.user(), &why).await?;
    Ok(done.result(&args.name))
}

/// `db.config`'s answer: the stored configuration and the lifecycle state.
pub fn config(call: &CallContext, db: &str) -> Result<methods::DbConfig, WireError> {
    config_of(call, &call.shared.store()?, db)
}

fn config_of(call: &CallContext, store: &Store, db: &str) -> Result<methods::DbConfig, WireError> {
    let snapshot = store.snapshot().map_err(store_error)?;
    let info = snapshot
        .database(db)
        .and_then(|view| view.info())
        .map_err(store_error)?;
    let config = snapshot.database_config(db).map_err(store_error)?;
    Ok(methods::DbConfig {
        name: db.to_string(),
        offline: config.offline,
        state: call.shared.databases.state(db).into_wire(),
        retention: info.retention.into_wire(),
        indexes: config
            .indexes
            .into_iter()
            .map(|index| methods::IndexDefArgs {
                name: index.name,
                field: index.field,
                unique: index.unique,
            })
            .collect(),
        indexes_stale: config.indexes_stale,
    })
}

/// `db.config.set`: only while the database is offline.
pub async fn set_config(
    call: &CallContext,
    args: DbConfigSetArgs,
) -> Result<methods::DbConfig, WireError> {
    let store = call.shared.store()?;
    let indexes = args
        .config
        .indexes
        .iter()
        .map(|index| cairn_store::IndexDef {
            name: index.name.clone(),
            field: index.field.clone(),
            unique: index.unique,
        })
        .collect();
    let set = write(
        &store,
        Write::SetDatabaseConfig {
            name: args.name.clone(),
            indexes,
            retention: args.config.retention.into_store(),
        },
    );
    let written = lifecycle::while_offline(&call.shared, &args.name, set).await?;
    if let Written::DatabaseConfigSet {
        indexes_changed,
        indexes_stale,
    } = written
    {
        tracing::warn!(
            db = %args.name,
            indexes_changed,
            indexes_stale,
            by = %call.user(),
            "database configuration replaced"
        );
    }
    config_of(call, &store, &args.name)
}

pub async fn resync(call: &CallContext, args: DbNameArgs) -> Result<methods::Job, WireError> {
    let job = resync::start(&call.shared, &args.name, call.user()).await?;
    Ok((&job).into_wire())
}
