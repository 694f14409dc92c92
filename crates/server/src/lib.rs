//! `cairn-server`: the Cairn service as a library. It owns a working directory (lock,
//! store, certificates, sockets), authenticates users (passwords, session tokens, client
//! certificates, the unix socket), and serves the native protocol of `cairn-proto` over
//! TLS and unix sockets. The `cairn-service` binary wraps `Service`.

mod auth;
mod config;
mod connection;
mod error;
mod feeds;
mod handlers;
mod health;
mod jobs;
mod lifecycle;
mod listen;
mod reload;
mod restore;
mod resync;
mod schedule;
mod service;
mod shared;
pub mod webhooks;

pub use config::{
    cairn_environment, Flags, Settings, DEFAULT_LISTEN, ENVIRONMENT_VARIABLES, SETTINGS_FILE,
};
pub use error::ServerError;
pub use listen::ListenUrl;
pub use service::{Reloader, Service, BACKUPS_DIR, CERTS_DIR, SOCKET_FILE, TMP_DIR};
pub use shared::{LogLevelSetter, ReloadSource};
