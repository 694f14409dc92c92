//! The clients' rustls configuration: trust the CAs of the certificate directories or
//! pin the server's certificate by SHA-256, optionally present a user certificate; TLS
//! 1.3, ALPN `cairn/1`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::dir::{CertDir, Kind};
use crate::error::{CertError, Result};
use crate::load::{all_cas, provider, read_pair};
use crate::pin::{cert_sha256, format_pin};

/// How a client decides to trust the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust a server certificate that chains to any CA in `cas/` of the directories and
    /// names the host connected to.
    Cas,
    /// Trust exactly the server certificate with this SHA-256 (see [`crate::parse_pin`]),
    /// whatever its issuer, names and dates; the server must still prove it holds its key.
    Pin([u8; 32]),
}

/// A client's TLS configuration. `dirs` are searched in order for the CAs (all of them,
/// with [`Trust::Cas`]) and for `users/NAME.{crt,key}` when `client_cert` names a user;
/// that certificate file is presented as it is (leaf first, then any chain it holds).
pub fn client_config(
    dirs: &[CertDir],
    trust: Trust,
    client_cert: Option<&str>,
) -> Result<ClientConfig> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Cas => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(all_cas(dirs)?), provider.clone())
                .build()?
        }
        Trust::Pin(hash) => Arc::new(PinVerifier {
            hash,
            algorithms: provider.signature_verification_algorithms,
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some(user) => {
            let (chain, key) = read_pair(dirs, Kind::User, user)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(config)
}

/// Accepts exactly the server certificate whose SHA-256 is `hash`, and checks the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct PinVerifier {
    hash: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = cert_sha256(end_entity);
        if found == self.hash {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = CertError::PinMismatch {
            expected: format_pin(&self.hash),
            found: format_pin(&found),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
