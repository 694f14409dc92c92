//! The native protocol's network side: binding and accepting (TLS
//! handshakes, client certificates, the connection limit), and each connection's frames
//! in and answers out. Calls are handed to `crate::methods`.

mod accept;
mod connection;

pub use accept::{bind_tls, bind_unix, serve, Listener};
