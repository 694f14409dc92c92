//! Who an HTTP request is: a session token (`sessionToken: T`, the seeds' header, or
//! `Authorization: Bearer T`), HTTP Basic (a user and password, checked with argon2 on
//! a blocking thread), or else the connection's own identity (a client certificate's
//! CN, or root on `DIR/http.sock`). The headers that carry secrets are marked
//! sensitive, so that no log or debug print shows them.
//!
//! Credentials that checked out are remembered by a hash of them, with the store's
//! users generation of the time (it changes whenever a user is saved or deleted or
//! sessions are deleted) and the session's expiry: while neither moved, the next request
//! with the same credentials skips the store (and Basic skips argon2), as a native
//! connection keeps its caller. While a restore has the store closed, credentials
//! checked in the last ten minutes still stand, so that an admin can follow the restore.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_proto::{ErrorCode, WireError};
use sha2::{Digest, Sha256};

use crate::auth::{Caller, Identity, Via};
use crate::methods::session;
use crate::ops::shared::Shared;
use crate::storage::now_ms;

/// The seeds' session header.
pub const SESSION_HEADER: &str = "sessiontoken";

/// How long checked credentials stand in for the store while it is closed.
const CLOSED_STORE_GRACE: Duration = Duration::from_secs(600);

/// Most credentials remembered; the stale ones are forgotten first.
const MAX_REMEMBERED: usize = 10_000;

/// What a request's headers say about who it is.
pub struct Credentials {
    pub identity: Option<Identity>,
    /// The caller's user record as read when the credentials were checked.
    pub caller: Option<Arc<Caller>>,
    /// The token the request carried, for `DELETE /v1/auth/session`.
    pub token: Option<String>,
}

/// Credentials that checked out.
struct Checked {
    caller: Arc<Caller>,
    /// When they were checked.
    at: Instant,
    /// A session's expiry (ms since the epoch), for a token.
    expires_ms: Option<u64>,
}

/// Credentials that checked out lately, by a hash of the credentials.
#[derive(Default)]
pub struct Verified(Mutex<HashMap<[u8; 32], Checked>>);

impl Verified {
    fn remember(&self, key: [u8; 32], checked: Checked) {
        let mut remembered = self.0.lock().expect("verified lock");
        if remembered.len() >= MAX_REMEMBERED {
            remembered.retain(|_, c| c.at.elapsed() < CLOSED_STORE_GRACE);
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(key, checked);
    }

    /// The caller of credentials checked at the users generation `generation` (still
    /// the store's) and not expired since.
    fn current(&self, key: &[u8; 32], generation: u64) -> Option<Arc<Caller>> {
        let remembered = self.0.lock().expect("verified lock");
        let checked = remembered.get(key)?;
        let live = checked.expires_ms.is_none_or(|expires| expires > now_ms());
        (checked.caller.generation == generation && live).then(|| checked.caller.clone())
    }

    /// The caller of credentials checked lately, whatever changed since (the store is
    /// closed: nothing can be read again).
    fn recent(&self, key: &[u8; 32]) -> Option<Arc<Caller>> {
        let remembered = self.0.lock().expect("verified lock");
        let checked = remembered.get(key)?;
        (checked.at.elapsed() < CLOSED_STORE_GRACE).then(|| checked.caller.clone())
    }
}

/// Reads the request's credentials; a token or password that does not check out is an
/// error (`bad_credentials`), not an anonymous request.
pub async fn identify(
    shared: &Shared,
    connection: Option<&Identity>,
    headers: &mut HeaderMap,
    verified: &Verified,
    peer: Option<IpAddr>,
) -> Result<Credentials, WireError> {
    for name in [SESSION_HEADER, AUTHORIZATION.as_str()] {
        if let Some(value) = headers.get_mut(name) {
            value.set_sensitive(true);
        }
    }
    let token = session_token(headers)?;
    let Some(key) = fingerprint(connection, headers) else {
        return Ok(Credentials {
            identity: None,
            caller: None,
            token,
        });
    };
    let known = |caller: Arc<Caller>, token| Credentials {
        identity: Some(caller.identity.clone()),
        caller: Some(caller),
        token,
    };
    let store = match shared.store() {
        Ok(store) => store,
        Err(closed) => {
            // A restore: credentials checked lately stand; others wait for it.
            let caller = verified.recent(&key).ok_or(closed)?;
            return Ok(known(caller, token));
        }
    };
    if let Some(caller) = verified.current(&key, store.users_generation()) {
        return Ok(known(caller, token));
    }
    let (identity, expires_ms) = check(shared, connection, headers, token.as_deref(), peer).await?;
    let Some(caller) = Caller::load(&store, &identity)?.map(Arc::new) else {
        return Err(crate::auth::gone(&identity));
    };
    verified.remember(
        key,
        Checked {
            caller: caller.clone(),
            at: Instant::now(),
            expires_ms,
        },
    );
    Ok(known(caller, token))
}

/// A hash of the request's credentials (or of the connection's identity), if any.
fn fingerprint(connection: Option<&Identity>, headers: &HeaderMap) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    match (
        headers.get(SESSION_HEADER),
        headers.get(AUTHORIZATION),
        connection,
    ) {
        (Some(token), _, _) => {
            hasher.update(b"token ");
            hasher.update(token.as_bytes());
        }
        (None, Some(authorization), _) => {
            hasher.update(b"authorization ");
            hasher.update(authorization.as_bytes());
        }
        (None, None, Some(identity)) => {
            hasher.update(b"connection ");
            hasher.update(identity.via.as_str().as_bytes());
            hasher.update(b" ");
            hasher.update(identity.user.as_bytes());
        }
        (None, None, None) => return None,
    }
    Some(hasher.finalize().into())
}

/// The session token of `sessionToken` or `Authorization: Bearer`, if any.
fn session_token(headers: &HeaderMap) -> Result<Option<String>, WireError> {
    let authorization = authorization(headers)?;
    Ok(match (headers.get(SESSION_HEADER), authorization) {
        (Some(value), _) => Some(value.to_str().map_err(|_| malformed())?.trim().to_string()),
        (None, Some(auth)) => scheme(auth, "Bearer").map(str::to_string),
        (None, None) => None,
    })
}

fn authorization(headers: &HeaderMap) -> Result<Option<&str>, WireError> {
    headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| malformed()))
        .transpose()
}

/// Checks the request's credentials against the store: who they name, and when a
/// token's session expires.
async fn check(
    shared: &Shared,
    connection: Option<&Identity>,
    headers: &HeaderMap,
    token: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(Identity, Option<u64>), WireError> {
    if let Some(token) = token {
        let (identity, _, expires_ms) = session::check_token(shared, token)?;
        return Ok((identity, Some(expires_ms)));
    }
    if let Some(basic) = authorization(headers)?.and_then(|a| scheme(a, "Basic")) {
        let decoded = STANDARD
            .decode(basic)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(malformed)?;
        let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
        session::check_password(shared, user, password.to_string(), peer).await?;
        let identity = Identity {
            user: user.to_string(),
            via: Via::Password,
            token_hash: None,
        };
        return Ok((identity, None));
    }
    match connection {
        Some(identity) => Ok((identity.clone(), None)),
        None => Err(malformed()),
    }
}

/// The credentials of `Authorization: SCHEME CREDENTIALS`, when the scheme is `scheme`.
fn scheme<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = authorization.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn malformed() -> WireError {
    WireError::new(
        ErrorCode::BadCredentials,
        "malformed credentials: send sessionToken: TOKEN, Authorization: Bearer TOKEN, or Basic",
    )
}
