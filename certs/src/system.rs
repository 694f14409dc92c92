//! The TLS configuration of HTTPS clients of other services (object storage, webhook
//! endpoints): rustls with the ring provider named explicitly and the system's CA
//! certificates, HTTP/1.1 by ALPN. The service and its tools build it here, once.

use rustls::{ClientConfig, RootCertStore};

use crate::error::Result;
use crate::load::provider;

/// A configuration trusting the system's CAs, with what went wrong reading them (for the
/// caller to log: a CA file that does not parse, or no CA at all).
#[derive(Debug)]
pub struct SystemTrust {
    pub config: ClientConfig,
    pub warnings: Vec<String>,
}

/// TLS for an HTTPS client of another service: the system's CAs, ALPN `http/1.1`.
pub fn system_trust_http_config() -> Result<SystemTrust> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let mut warnings: Vec<String> = found
        .errors
        .iter()
        .map(|error| format!("cannot read some of the system's CA certificates: {error}"))
        .collect();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        warnings
            .push("no CA certificates found on this system: https endpoints will fail".to_string());
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(SystemTrust { config, warnings })
}
