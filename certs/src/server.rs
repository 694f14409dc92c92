//! The service's rustls configuration: host certificates picked by SNI from the
//! certificate directories, optional or required client certificates checked against the
//! revocation lists of `crls/`, TLS 1.3, ALPN `cairn/1`.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::crl::all_crls;
use crate::dir::{CertDir, Kind};
use crate::error::{CertError, Result};
use crate::load::{all_cas, one_ca, provider, read_pair};

/// Which client certificates the service accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client may connect without a certificate; one it presents must chain to a CA in
    /// `cas/` of the directories, or the handshake fails.
    Optional,
    /// Every client must present a certificate that chains to the CA `ca`.
    Required {
        /// Name of the CA (`cas/NAME.crt`, first directory that has it).
        ca: String,
    },
}

/// The service's TLS configuration. `dirs` are searched in order (a service passes its
/// `DIR/certs` first, then the default directory); for each of `host_names` the first
/// directory with `hosts/NAME.crt` provides it and its key. The certificate is chosen by
/// the SNI a client sends, matched against the host names and the DNS names in the
/// certificates; without SNI (a client that connects by IP address) or with an unknown
/// name, the first host name's certificate is served.
///
/// Client certificates are checked against every revocation list in `crls/` of `dirs`
/// (read now: build the configuration again when [`crate::crl_fingerprint`] changes): a
/// client certificate listed by its CA's CRL is refused. Only the client's own
/// certificate is checked, and a CA without a list revokes nothing. A list that does not
/// parse is an error, not a list ignored.
pub fn server_config(
    dirs: &[CertDir],
    host_names: &[String],
    client_auth: ClientAuth,
) -> Result<ServerConfig> {
    let provider = provider();
    let resolver = SniResolver::load(dirs, host_names, &provider)?;
    let roots = match &client_auth {
        ClientAuth::Optional => all_cas(dirs)?,
        ClientAuth::Required { ca } => one_ca(dirs, ca)?,
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(all_crls(dirs)?)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    let verifier = match client_auth {
        ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
        ClientAuth::Required { .. } => verifier.build()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(config)
}

/// Picks a host certificate by SNI.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    fn load(
        dirs: &[CertDir],
        host_names: &[String],
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<SniResolver> {
        let mut by_name = HashMap::new();
        let mut fallback = None;
        for host in host_names {
            let (chain, key) = read_pair(dirs, Kind::Host, host)?;
            let dns_names = dns_sans(&chain[0]);
            let certified = Arc::new(CertifiedKey::from_der(chain, key, provider)?);
            // Host names first, in order, then the names in the certificates.
            by_name
                .entry(host.to_ascii_lowercase())
                .or_insert_with(|| certified.clone());
            for name in dns_names {
                by_name.entry(name).or_insert_with(|| certified.clone());
            }
            fallback.get_or_insert(certified);
        }
        let fallback = fallback.ok_or(CertError::NoHostName)?;
        Ok(SniResolver { by_name, fallback })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = client_hello
            .server_name()
            .and_then(|sni| self.by_name.get(&sni.to_ascii_lowercase()));
        Some(chosen.unwrap_or(&self.fallback).clone())
    }
}

/// The DNS subject alternative names of a certificate, lower-cased (none if it does not
/// parse: rustls then refuses it).
fn dns_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}
