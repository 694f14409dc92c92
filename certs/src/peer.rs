//! Who is on the other end: the user a client certificate names.

use rustls_pki_types::CertificateDer;

/// The common name (CN) of the end-entity certificate of a verified client chain, as
/// `ServerConnection::peer_certificates` returns it; `None` without a certificate or CN.
pub fn peer_user(certs: &[CertificateDer<'_>]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
