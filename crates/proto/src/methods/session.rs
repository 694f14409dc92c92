//! The session methods, which read or change who a connection is: `login`, `auth`,
//! `logout` and `whoami`.

use serde::{Deserialize, Serialize};

use crate::values::Via;

/// `login`: user and password; the connection is authenticated as the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginArgs {
    pub user: String,
    pub password: String,
}

/// `login`'s result: a session token for later connections (`auth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginResult {
    pub user: String,
    pub token: String,
    pub expires_ms: u64,
}

/// `auth`: authenticates the connection with a session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthArgs {
    pub token: String,
}

/// `logout`: revokes `token`, or the token the connection authenticated with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogoutArgs {
    #[serde(default)]
    pub token: Option<String>,
}

/// `whoami` (and `auth`'s result): who the connection is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub user: String,
    pub admin: bool,
    pub via: Via,
}
