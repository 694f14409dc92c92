//! `cairn-server`: the Cairn service as a library. It owns a working directory (lock,
//! store, certificates, sockets), authenticates users (passwords, session tokens, client
//! certificates, the unix socket), and serves the native protocol of `cairn-proto` over
//! TLS and unix sockets. The `cairn-service` binary wraps `Service`.
//!
//! Rooms, each depending only on those below it:
//! - `service`: starting, serving and stopping a service;
//! - `net`: listeners, TLS, connections — frames in, calls to `methods`, answers out;
//! - `methods`: one file per family of methods, each call decoded into the typed
//!   request of `cairn-proto`'s method table and checked as the table says;
//! - `ops`: database lifecycles, automatic READ_ONLY, change feeds, jobs (backup,
//!   restore, resync), the backup schedule, reloads, webhooks, and `ops::shared`, the
//!   state every call and job shares;
//! - below them all: `config` (the settings and the working directory's layout), `auth`,
//!   `storage` (awaiting the store), `wire` (store types in their wire form) and
//!   `error`. Object storage is `cairn-remote`'s.

mod auth;
mod config;
mod error;
mod http;
mod methods;
mod net;
mod ops;
mod service;
mod storage;
mod wire;

pub use config::ListenUrl;
pub use config::{cairn_environment, Flags, LogFormat, Settings, DEFAULT_LISTEN, SETTINGS_FILE};
pub use config::{BACKUPS_DIR, CERTS_DIR, HTTP_SOCKET_FILE, SOCKET_FILE, TMP_DIR};
pub use error::ServerError;
pub use ops::shared::{LogLevelSetter, ReloadSource};
pub use service::{Reloader, Service};
