//! cairn-certs: Cairn's certificates. A certificate directory ([`CertDir`], laid out as
//! `cas/ hosts/ users/ crls/`), generation of CA, host and user certificates with rcgen
//! (ECDSA P-256, Ed25519 or RSA 4096: [`KeyType`]), CSRs and their signing, encrypted
//! PKCS#12 bundles, revocation lists ([`CertDir::revoke`], [`crl_fingerprint`]), the
//! first-start defaults of a service ([`ensure_embedded_default`]), and the rustls
//! configurations of the service ([`server_config`]) and of its clients
//! ([`client_config`]): TLS 1.3 only, ring as the crypto provider, ALPN [`ALPN`]; and
//! the configuration of HTTPS clients of other services, trusting the system's CAs
//! ([`system_trust_http_config`]).

mod ca;
mod client;
mod crl;
mod csr;
mod dir;
mod embedded;
mod error;
mod generate;
mod import;
mod keytype;
mod load;
mod p12;
mod peer;
mod pin;
mod san;
mod server;
mod system;

pub use client::{client_config, Trust};
pub use crl::{crl_fingerprint, CrlFingerprint, Revocation};
pub use csr::CsrPaths;
pub use dir::{validate_name, CertDir, Kind, CERT_DIR_ENV};
pub use embedded::{ensure_embedded_default, machine_hostname, EMBEDDED_HOST};
pub use error::{CertError, Result};
pub use generate::CertPaths;
pub use import::Imported;
pub use keytype::KeyType;
pub use peer::peer_user;
pub use pin::{cert_sha256, format_pin, parse_pin};
pub use san::San;
pub use server::{server_config, ClientAuth};
pub use system::{system_trust_http_config, SystemTrust};

/// The ALPN protocol of Cairn's native RPC; both configurations offer only this one.
pub const ALPN: &[u8] = b"cairn/1";

/// Validity, in days, of the certificates that [`ensure_embedded_default`] creates.
pub const DEFAULT_DAYS: u32 = 3650;
