//! The session methods, which read or change who a connection is: `login`, `auth`,
//! `logout` and `whoami`. The connection runs them one at a time, in order, and applies
//! the change each returns.

use std::net::IpAddr;

use cairn_proto::methods::{self, call, to_value, AuthArgs, LoginArgs, LogoutArgs};
use cairn_proto::{Call, ErrorCode, Method, Need, Request, WireError};
use cairn_store::{ServiceMode, UserRecord, Write};
use rmpv::Value;

use crate::auth::{self, authorize, Identity, Via};
use crate::error::{bad_request, store_error};
use crate::ops::health;
use crate::ops::mirror::Mirror;
use crate::ops::shared::{Route, Shared};
use crate::storage::{now_ms, write};

use super::down_error;

/// What a call changes about its connection.
pub enum ConnectionChange {
    None,
    Authenticated(Identity),
    LoggedOut,
}

/// Serves a session method for a connection authenticated as `identity`, if at all,
/// from `peer` (an address, for the login throttle).
pub async fn serve(
    shared: &Shared,
    identity: Option<&Identity>,
    method: Method,
    args: Value,
    peer: Option<IpAddr>,
) -> Result<(Value, ConnectionChange), WireError> {
    let check = |need: Need<'_>| match need {
        Need::Anyone => Ok(()),
        need => authorize(&shared.store()?, identity, need).map(drop),
    };
    let plain_need = Need::of(method.permission());
    if let Some(need) = plain_need {
        check(need)?;
    }
    let _change = match shared.route(method)? {
        Route::Leader(mirror) => {
            return forward_session(&mirror, identity, method, args, peer).await
        }
        Route::Here(change) => change,
    };
    let request = Request::decode(method, args)?;
    if plain_need.is_none() {
        check(request.need())?;
    }
    match request {
        Request::Login(args) => login(shared, args, peer).await,
        Request::Auth(args) => token(shared, args),
        Request::Logout(args) => logout(shared, identity, args).await,
        Request::WhoAmI(_) => whoami(shared, identity),
        other => Err(WireError::new(
            ErrorCode::Internal,
            format!("{} is not a session method", other.method()),
        )),
    }
}

/// On a mirror: `login` and `logout` run on the leader (which writes the session),
/// and the connection here changes as they say once the mirror has applied it.
async fn forward_session(
    mirror: &Mirror,
    identity: Option<&Identity>,
    method: Method,
    args: Value,
    peer: Option<IpAddr>,
) -> Result<(Value, ConnectionChange), WireError> {
    let explicit_token = match method {
        Method::Logout => {
            rmpv::ext::from_value::<LogoutArgs>(args.clone())
                .map_err(|e| bad_request(format!("logout: {e}")))?
                .token
        }
        _ => None,
    };
    let value = mirror.forward(identity, method, args, peer).await?;
    let change = match method {
        Method::Login => {
            let login: methods::LoginResult = rmpv::ext::from_value(value.clone())
                .map_err(|e| bad_request(format!("the leader's login answer: {e}")))?;
            ConnectionChange::Authenticated(Identity {
                user: login.user,
                via: Via::Password,
                token_hash: Some(auth::token_hash(&login.token)),
            })
        }
        _ => {
            let revoked = explicit_token
                .as_deref()
                .map(auth::token_hash)
                .or_else(|| identity.and_then(|i| i.token_hash));
            if revoked.is_some() && revoked == identity.and_then(|i| i.token_hash) {
                ConnectionChange::LoggedOut
            } else {
                ConnectionChange::None
            }
        }
    };
    Ok((value, change))
}

fn answer<C: Call>(
    result: &C::Result,
    change: ConnectionChange,
) -> Result<(Value, ConnectionChange), WireError> {
    Ok((to_value(result), change))
}

/// Checks a user's password (argon2, on a blocking thread), after the delay the login
/// throttle owes for `user` and `peer`; a DOWN service lets only admins in. Used by
/// `login` and by HTTP Basic authentication.
pub async fn check_password(
    shared: &Shared,
    user: &str,
    password: String,
    peer: Option<IpAddr>,
) -> Result<(), WireError> {
    let wait = shared.throttle.delay(user, peer);
    if !wait.is_zero() {
        tracing::info!(%user, ?peer, wait_ms = wait.as_millis(), "login slowed down");
        tokio::time::sleep(wait).await;
    }
    let store = shared.store()?;
    let record = store
        .snapshot()
        .and_then(|s| s.user(user))
        .map_err(store_error)?;
    let usable = record.filter(|r| !r.locked);
    let hash = usable.as_ref().and_then(|r| r.password_hash.clone());
    if !auth::verify_password(hash, password).await {
        shared.throttle.failed(user, peer);
        tracing::info!(%user, ?peer, "login refused");
        return Err(WireError::new(
            ErrorCode::BadCredentials,
            "unknown user or wrong password",
        ));
    }
    shared.throttle.succeeded(user, peer);
    tracing::info!(%user, ?peer, "password accepted");
    let status = shared.status();
    let admin = usable.as_ref().is_some_and(|r| r.admin);
    if status.mode == ServiceMode::Down && !admin {
        return Err(down_error(&status));
    }
    Ok(())
}

async fn login(
    shared: &Shared,
    args: LoginArgs,
    peer: Option<IpAddr>,
) -> Result<(Value, ConnectionChange), WireError> {
    check_password(shared, &args.user, args.password, peer).await?;
    let store = shared.store()?;
    let (token, token_hash) = auth::new_token()?;
    let now = now_ms();
    let ttl_ms = u64::try_from(shared.settings().session_ttl.as_millis()).unwrap_or(u64::MAX);
    let expires_ms = now.saturating_add(ttl_ms);
    write(
        &store,
        Write::SaveSession {
            token_hash,
            record: cairn_store::SessionRecord {
                user: args.user.clone(),
                created_ms: now,
                expires_ms,
            },
        },
    )
    .await
    .inspect_err(|e| health::note_write_error(shared, e))?;
    let identity = Identity {
        user: args.user.clone(),
        via: Via::Password,
        token_hash: Some(token_hash),
    };
    let result = methods::LoginResult {
        user: args.user,
        token,
        expires_ms,
    };
    answer::<call::Login>(&result, ConnectionChange::Authenticated(identity))
}

/// The identity of a live session token, its user's record and when the session
/// expires (ms since the epoch).
pub fn check_token(shared: &Shared, token: &str) -> Result<(Identity, UserRecord, u64), WireError> {
    let token_hash = auth::token_hash(token);
    let snapshot = shared.store()?.snapshot().map_err(store_error)?;
    let session = snapshot.session(&token_hash).map_err(store_error)?;
    let refused = || {
        WireError::new(
            ErrorCode::BadCredentials,
            "unknown, expired or revoked token: log in again",
        )
    };
    let session = session
        .filter(|s| s.expires_ms > now_ms())
        .ok_or_else(refused)?;
    let record = snapshot
        .user(&session.user)
        .map_err(store_error)?
        .filter(|r| !r.locked)
        .ok_or_else(refused)?;
    let identity = Identity {
        user: session.user,
        via: Via::Token,
        token_hash: Some(token_hash),
    };
    Ok((identity, record, session.expires_ms))
}

fn token(shared: &Shared, args: AuthArgs) -> Result<(Value, ConnectionChange), WireError> {
    let (identity, record, _) = check_token(shared, &args.token)?;
    let status = shared.status();
    if status.mode == ServiceMode::Down && !record.admin {
        return Err(down_error(&status));
    }
    let result = methods::WhoAmI {
        user: identity.user.clone(),
        admin: record.admin,
        via: Via::Token,
    };
    answer::<call::Auth>(&result, ConnectionChange::Authenticated(identity))
}

async fn logout(
    shared: &Shared,
    identity: Option<&Identity>,
    args: LogoutArgs,
) -> Result<(Value, ConnectionChange), WireError> {
    let token_hash = match (&args.token, identity.and_then(|i| i.token_hash)) {
        (Some(token), _) => auth::token_hash(token),
        (None, Some(hash)) => hash,
        (None, None) => {
            return Err(bad_request(
                "this connection has no token: pass the token to revoke",
            ))
        }
    };
    write(&shared.store()?, Write::DeleteSession { token_hash }).await?;
    let ends_this_session = identity.and_then(|i| i.token_hash) == Some(token_hash);
    let change = if ends_this_session {
        ConnectionChange::LoggedOut
    } else {
        ConnectionChange::None
    };
    answer::<call::Logout>(&(), change)
}

fn whoami(
    shared: &Shared,
    identity: Option<&Identity>,
) -> Result<(Value, ConnectionChange), WireError> {
    let record = authorize(&shared.store()?, identity, Need::User)?.expect("a user");
    let identity = identity.expect("authorized");
    let result = methods::WhoAmI {
        user: identity.user.clone(),
        admin: record.admin,
        via: identity.via,
    };
    answer::<call::WhoAmI>(&result, ConnectionChange::None)
}
