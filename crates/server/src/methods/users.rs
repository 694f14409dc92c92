//! The user methods: `user.add`, `user.passwd`, `user.grant`, `user.revoke`,
//! `user.list` and `user.delete`. Passwords are hashed with argon2id on blocking threads.

use cairn_proto::methods::{
    self, UserAddArgs, UserGrantArgs, UserNameArgs, UserPasswdArgs, UserRevokeArgs,
};
use cairn_proto::{ErrorCode, WireError};
use cairn_store::{StoreError, UserRecord, Write};

use crate::auth::{self, ROOT_USER};
use crate::error::{bad_request, store_error};
use crate::storage::{now_ms, write};
use crate::wire::{IntoStore, IntoWire};

use super::CallContext;

/// The longest password, in bytes.
const MAX_PASSWORD_BYTES: usize = 1024;

async fn check_and_hash(password: String) -> Result<String, WireError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(bad_request(format!(
            "a password has 1 to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    auth::hash_password(password).await
}

/// Reads a user, changes it and saves it.
async fn update_user(
    call: &CallContext,
    name: &str,
    change: impl FnOnce(&mut UserRecord),
) -> Result<(), WireError> {
    let store = call.shared.store()?;
    let mut record = store
        .snapshot()
        .and_then(|s| s.user(name))
        .map_err(store_error)?
        .ok_or_else(|| {
            store_error(StoreError::UserMissing {
                name: name.to_string(),
            })
        })?;
    change(&mut record);
    write(
        &store,
        Write::SaveUser {
            name: name.to_string(),
            record,
            create: false,
        },
    )
    .await?;
    Ok(())
}

pub async fn add(call: &CallContext, args: UserAddArgs) -> Result<(), WireError> {
    let password_hash = match args.password {
        Some(password) => Some(check_and_hash(password).await?),
        None => None,
    };
    let record = UserRecord {
        admin: args.admin,
        locked: false,
        created_ms: now_ms(),
        password_hash,
        grants: Default::default(),
    };
    write(
        &call.shared.store()?,
        Write::SaveUser {
            name: args.name.clone(),
            record,
            create: true,
        },
    )
    .await?;
    tracing::warn!(user = %args.name, admin = args.admin, by = %call.user(), "user added");
    Ok(())
}

pub async fn passwd(call: &CallContext, args: UserPasswdArgs) -> Result<(), WireError> {
    let hash = check_and_hash(args.password).await?;
    update_user(call, &args.name, |record| record.password_hash = Some(hash)).await
}

pub async fn grant(call: &CallContext, args: UserGrantArgs) -> Result<(), WireError> {
    cairn_store::validate_database_name(&args.db).map_err(store_error)?;
    update_user(call, &args.name, |record| {
        record
            .grants
            .insert(args.db.clone(), args.access.into_store());
    })
    .await?;
    tracing::warn!(user = %args.name, db = %args.db, access = %args.access, by = %call.user(), "grant given");
    Ok(())
}

pub async fn revoke(call: &CallContext, args: UserRevokeArgs) -> Result<(), WireError> {
    update_user(call, &args.name, |record| {
        record.grants.remove(&args.db);
    })
    .await?;
    tracing::warn!(user = %args.name, db = %args.db, by = %call.user(), "grant revoked");
    Ok(())
}

pub fn list(call: &CallContext) -> Result<Vec<methods::UserInfo>, WireError> {
    let users = call
        .shared
        .store()?
        .snapshot()
        .and_then(|s| s.users())
        .map_err(store_error)?;
    Ok(users
        .into_iter()
        .map(|(name, record)| {
            let failed = call.shared.throttle.of_user(&name);
            methods::UserInfo {
                admin: record.admin,
                has_password: record.password_hash.is_some(),
                grants: record
                    .grants
                    .into_iter()
                    .map(|(db, access)| (db, access.into_wire()))
                    .collect(),
                created_ms: record.created_ms,
                failed_logins: failed.count,
                last_failed_login_ms: failed.last_ms,
                login_delay_ms: u64::try_from(failed.delay.as_millis()).unwrap_or(u64::MAX),
                name,
            }
        })
        .collect())
}

pub async fn delete(call: &CallContext, args: UserNameArgs) -> Result<(), WireError> {
    if args.name == ROOT_USER {
        return Err(WireError::new(
            ErrorCode::Conflict,
            "root cannot be deleted",
        ));
    }
    write(
        &call.shared.store()?,
        Write::DeleteUser {
            name: args.name.clone(),
        },
    )
    .await?;
    tracing::warn!(user = %args.name, by = %call.user(), "user deleted");
    Ok(())
}
