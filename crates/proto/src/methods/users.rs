//! The user methods: add, password, grants, list and delete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::values::Access;

/// `user.add`: without a password the user can only use a client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAddArgs {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `user.passwd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPasswdArgs {
    pub name: String,
    pub password: String,
}

/// `user.grant` (write includes read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserGrantArgs {
    pub name: String,
    pub db: String,
    pub access: Access,
}

/// `user.revoke`: removes the user's grant on a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRevokeArgs {
    pub name: String,
    pub db: String,
}

/// `user.delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserNameArgs {
    pub name: String,
}

/// An entry of `user.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub has_password: bool,
    pub grants: BTreeMap<String, Access>,
    pub created_ms: u64,
    /// Failed logins within the throttle's window (since the last success).
    #[serde(default)]
    pub failed_logins: u32,
    /// When the last of them was.
    #[serde(default)]
    pub last_failed_login_ms: Option<u64>,
    /// How long the user's next login attempt will wait (0 below the threshold).
    #[serde(default)]
    pub login_delay_ms: u64,
}
