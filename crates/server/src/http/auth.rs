//! Who an HTTP request is: a session token (`sessionToken: T`, the seeds' header, or
//! `Authorization: Bearer T`), HTTP Basic (a user and password, checked with argon2 on
//! a blocking thread), or else the connection's own identity (a client certificate's
//! CN, or root on `DIR/http.sock`). The headers that carry secrets are marked
//! sensitive, so that no log or debug print shows them.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_proto::{ErrorCode, Method, WireError};

use crate::auth::{Identity, Via};
use crate::methods::session::{self, ConnectionChange};
use crate::ops::shared::Shared;

/// The seeds' session header.
pub const SESSION_HEADER: &str = "sessiontoken";

/// What a request's headers say about who it is.
pub struct Credentials {
    pub identity: Option<Identity>,
    /// The token the request carried, for `DELETE /v1/auth/session`.
    pub token: Option<String>,
}

/// Reads the request's credentials; a token or password that does not check out is an
/// error (`bad_credentials`), not an anonymous request.
pub async fn identify(
    shared: &Shared,
    connection: Option<&Identity>,
    headers: &mut HeaderMap,
) -> Result<Credentials, WireError> {
    for name in [SESSION_HEADER, AUTHORIZATION.as_str()] {
        if let Some(value) = headers.get_mut(name) {
            value.set_sensitive(true);
        }
    }
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| malformed()))
        .transpose()?;
    let token = match (headers.get(SESSION_HEADER), authorization) {
        (Some(value), _) => Some(value.to_str().map_err(|_| malformed())?.trim().to_string()),
        (None, Some(auth)) => scheme(auth, "Bearer").map(str::to_string),
        (None, None) => None,
    };
    if let Some(token) = token {
        let args = rmpv::Value::Map(vec![("token".into(), token.as_str().into())]);
        let (_, change) = session::serve(shared, None, Method::Auth, args).await?;
        let ConnectionChange::Authenticated(identity) = change else {
            return Err(WireError::new(ErrorCode::Internal, "auth changed nothing"));
        };
        return Ok(Credentials {
            identity: Some(identity),
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
            token: None,
        });
    }
    Ok(Credentials {
        identity: connection.cloned(),
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
