//! Authentication and authorisation: argon2id password hashes (computed on blocking
//! threads, never on the async ones), session tokens (256 random bits, stored only as
//! their SHA-256), who a connection is, and what it may do.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
pub use cairn_proto::values::Via;
pub use cairn_proto::Need;
use cairn_proto::{ErrorCode, WireError};
use cairn_store::{Access, Store, UserRecord};
use sha2::{Digest, Sha256};

use crate::error::internal;

/// The administrator every service has.
pub const ROOT_USER: &str = "root";

/// The user a connection is authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub via: Via,
    /// The session token's hash when the connection logged in or used a token.
    pub token_hash: Option<[u8; 32]>,
}

/// Hashes a password with argon2id on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, WireError> {
    tokio::task::spawn_blocking(move || hash_password_now(&password))
        .await
        .map_err(internal)?
}

fn hash_password_now(password: &str) -> Result<String, WireError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(internal)
}

/// Checks a password against a stored hash on a blocking thread. A user without a hash
/// (or an unknown user, `None`) is checked against a fixed hash, so that the time taken
/// does not tell which users exist.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let decoy = decoy_hash();
        let (hash, real) = match &hash {
            Some(hash) => (hash.as_str(), true),
            None => (decoy, false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        real && matches
    })
    .await
    .unwrap_or(false)
}

fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password_now("decoy password").unwrap_or_default())
}

/// A new session token and the hash it is stored under.
pub fn new_token() -> Result<(String, [u8; 32]), WireError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(internal)?;
    let token = format!("cairn_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The SHA-256 a token is stored under.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An authenticated caller with its user record, as read at `generation` of the store's
/// users (see `Store::users_generation`): a connection keeps one and reads the record
/// again only when a user changed.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub record: UserRecord,
    pub generation: u64,
}

impl Caller {
    /// The caller `identity` as the store has it now; `None` if the user no longer
    /// exists or is locked.
    pub fn load(store: &Store, identity: &Identity) -> Result<Option<Caller>, WireError> {
        let generation = store.users_generation();
        let record = store
            .snapshot()
            .and_then(|s| s.user(&identity.user))
            .map_err(|e| internal(&e))?;
        Ok(record.filter(|r| !r.locked).map(|record| Caller {
            identity: identity.clone(),
            record,
            generation,
        }))
    }
}

/// Checks that `identity` may do what a call needs; returns the caller's user record
/// when there is one. Reads the record afresh, so that a revoked grant, a locked or a
/// deleted user takes effect at the next call.
pub fn authorize(
    store: &Store,
    identity: Option<&Identity>,
    need: Need<'_>,
) -> Result<Option<UserRecord>, WireError> {
    if need == Need::Anyone {
        return Ok(None);
    }
    let Some(identity) = identity else {
        return Err(unauthenticated());
    };
    let caller = Caller::load(store, identity)?.ok_or_else(|| gone(identity))?;
    permit(&caller, need)?;
    Ok(Some(caller.record))
}

fn unauthenticated() -> WireError {
    WireError::new(
        ErrorCode::Unauthenticated,
        "log in first (login, auth, or a client certificate)",
    )
}

/// The error for an identity whose user was deleted or locked since it authenticated.
pub fn gone(identity: &Identity) -> WireError {
    WireError::new(
        ErrorCode::Unauthenticated,
        format!("user {:?} no longer exists or is locked", identity.user),
    )
}

/// Checks a known caller's rights, without reading the store.
pub fn permit(caller: &Caller, need: Need<'_>) -> Result<(), WireError> {
    let record = &caller.record;
    let allowed = record.admin
        || match need {
            Need::Anyone | Need::User => true,
            Need::Read(db) => record.grants.contains_key(db),
            Need::Write(db) => record.grants.get(db) == Some(&Access::Write),
            Need::Admin => false,
            Need::SelfOrAdmin(name) => name == caller.identity.user,
        };
    if allowed {
        return Ok(());
    }
    let what = match need {
        Need::Read(db) => format!("read access to database {db:?}"),
        Need::Write(db) => format!("write access to database {db:?}"),
        _ => "an admin".to_string(),
    };
    Err(WireError::new(
        ErrorCode::Forbidden,
        format!(
            "user {:?} needs {what}: ask an admin for a grant",
            caller.identity.user
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_with_the_right_hash() {
        let hash = hash_password("s3cret".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Some(hash.clone()), "s3cret".into()).await);
        assert!(!verify_password(Some(hash), "wrong".into()).await);
        assert!(!verify_password(None, "decoy password".into()).await);
        assert!(!verify_password(Some("not a hash".into()), "x".into()).await);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), "cairn_".len() + 64);
        assert_eq!(token_hash(&a), hash_a);
    }
}
