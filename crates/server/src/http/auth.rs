//! Who an HTTP request is: a session token (`sessionToken: T`, the seeds' header, or
//! `Authorization: Bearer T`), HTTP Basic (a user and password, checked with argon2 on
//! a blocking thread), or else the connection's own identity (a client certificate's
//! CN, or root on `DIR/http.sock`). The headers that carry secrets are marked
//! sensitive, so that no log or debug print shows them.
//!
//! Every request is checked against the store. While a restore has the store closed,
//! credentials verified in the last ten minutes still stand (as a native connection
//! keeps the caller it authenticated), so that an admin can follow the restore.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_proto::{ErrorCode, Method, WireError};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::{Caller, Identity, Via};
use crate::methods::session::{self, ConnectionChange};
use crate::ops::shared::Shared;

/// The seeds' session header.
pub const SESSION_HEADER: &str = "sessiontoken";

/// What a request's headers say about who it is.
pub struct Credentials {
    pub identity: Option<Identity>,
    /// The caller's user record as read when the request was checked.
    pub caller: Option<Arc<Caller>>,
    /// The token the request carried, for `DELETE /v1/auth/session`.
    pub token: Option<String>,
}

/// How long verified credentials stand in for the store while it is closed.
const VERIFIED_FOR: Duration = Duration::from_secs(600);

/// Most credentials remembered; older ones are forgotten first.
const MAX_VERIFIED: usize = 10_000;

/// A caller and when its credentials checked out.
type Checked = (Arc<Caller>, Instant);

/// Callers whose credentials checked out lately, by a hash of the credentials.
#[derive(Default)]
pub struct Verified(Mutex<HashMap<[u8; 32], Checked>>);

impl Verified {
    fn remember(&self, key: [u8; 32], caller: Arc<Caller>) {
        let mut verified = self.0.lock().expect("verified lock");
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(key, (caller, Instant::now()));
    }

    fn recall(&self, key: &[u8; 32]) -> Option<Arc<Caller>> {
        let verified = self.0.lock().expect("verified lock");
        let (caller, at) = verified.get(key)?;
        (at.elapsed() < VERIFIED_FOR).then(|| caller.clone())
    }
}

/// Reads the request's credentials; a token or password that does not check out is an
/// error (`bad_credentials`), not an anonymous request.
pub async fn identify(
    shared: &Shared,
    connection: Option<&Identity>,
    headers: &mut HeaderMap,
    verified: &Verified,
) -> Result<Credentials, WireError> {
    for name in [SESSION_HEADER, AUTHORIZATION.as_str()] {
        if let Some(value) = headers.get_mut(name) {
            value.set_sensitive(true);
        }
    }
    let key = fingerprint(connection, headers);
    let store = match shared.store() {
        Ok(store) => store,
        Err(closed) => {
            // A restore: credentials verified lately stand; others wait for it.
            let caller = key.and_then(|key| verified.recall(&key)).ok_or(closed)?;
            return Ok(Credentials {
                identity: Some(caller.identity.clone()),
                caller: Some(caller),
                token: session_token(headers)?,
            });
        }
    };
    let mut credentials = check(shared, connection, headers).await?;
    if let Some(identity) = &credentials.identity {
        let caller = Caller::load(&store, identity)?.map(Arc::new);
        if let (Some(key), Some(caller)) = (key, &caller) {
            verified.remember(key, caller.clone());
        }
        credentials.caller = caller;
    }
    Ok(credentials)
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
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| malformed()))
        .transpose()?;
    Ok(match (headers.get(SESSION_HEADER), authorization) {
        (Some(value), _) => Some(value.to_str().map_err(|_| malformed())?.trim().to_string()),
        (None, Some(auth)) => scheme(auth, "Bearer").map(str::to_string),
        (None, None) => None,
    })
}

/// Checks the request's credentials against the store.
async fn check(
    shared: &Shared,
    connection: Option<&Identity>,
    headers: &HeaderMap,
) -> Result<Credentials, WireError> {
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| malformed()))
        .transpose()?;
    if let Some(token) = session_token(headers)? {
        let args = rmpv::Value::Map(vec![("token".into(), token.as_str().into())]);
        let (_, change) = session::serve(shared, None, Method::Auth, args).await?;
        let ConnectionChange::Authenticated(identity) = change else {
            return Err(WireError::new(ErrorCode::Internal, "auth changed nothing"));
        };
        return Ok(Credentials {
            identity: Some(identity),
            caller: None,
            token: Some(token),
        });
    }
    if let Some(basic) = authorization.and_then(|a| scheme(a, "Basic")) {
        let decoded = STANDARD
            .decode(basic)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(malformed)?;
        let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
        session::check_password(shared, user, password.to_string()).await?;
        return Ok(Credentials {
            identity: Some(Identity {
                user: user.to_string(),
                via: Via::Password,
                token_hash: None,
            }),
            caller: None,
            token: None,
        });
    }
    Ok(Credentials {
        identity: connection.cloned(),
        caller: None,
        token: None,
    })
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
