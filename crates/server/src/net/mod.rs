//! The network side: binding and accepting (TLS handshakes, ALPN, client certificates,
//! the connection limit), and each native connection's frames in and answers out;
//! connections that speak HTTP are handed to `crate::http`. Calls are handed to
//! `crate::methods`.

mod accept;
mod connection;

pub use accept::{bind_metrics, bind_tls, bind_unix, serve, Listener, Serves, Slot};
pub use connection::peer_ip;
