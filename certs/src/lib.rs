//! cairn-certs: Cairn's certificates. A certificate directory ([`CertDir`], laid out as
//! `cas/ hosts/ users/ crls/`), generation of CA, host and user certificates with rcgen
//! (ECDSA P-256), the first-start defaults of a service ([`ensure_embedded_default`]), and
//! the rustls configurations of the service ([`server_config`]) and of its clients
//! ([`client_config`]): TLS 1.3 only, ring as the crypto provider, ALPN [`ALPN`].

mod client;
mod dir;
mod embedded;
mod error;
mod generate;
mod load;
mod peer;
mod pin;
mod san;
mod server;

pub use client::{client_config, Trust};
pub use dir::{validate_name, CertDir, Kind, CERT_DIR_ENV};
pub use embedded::{ensure_embedded_default, machine_hostname, EMBEDDED_HOST};
pub use error::{CertError, Result};
pub use generate::CertPaths;
pub use peer::peer_user;
pub use pin::{cert_sha256, format_pin, parse_pin};
pub use san::San;
pub use server::{server_config, ClientAuth};

/// The ALPN protocol of Cairn's native RPC; both configurations offer only this one.
pub const ALPN: &[u8] = b"cairn/1";

/// Validity, in days, of the certificates that [`ensure_embedded_default`] creates.
pub const DEFAULT_DAYS: u32 = 3650;
