//! A CA of a certificate directory, loaded to sign: its certificate, and its key checked
//! against the certificate. Also how to tell whether a CA signed a certificate.

use std::path::PathBuf;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

use crate::dir::{CertDir, Kind};
use crate::error::{CertError, Result};
use crate::load::read_pair;

/// The CA `cas/NAME.{crt,key}` of one directory, ready to sign.
pub(crate) struct Ca {
    /// Its certificate file.
    pub(crate) cert_path: PathBuf,
    /// Its certificate (the first of the file).
    pub(crate) der: CertificateDer<'static>,
    /// rcgen's signer: the CA's name, key identifier method, key usages and key.
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// The CA's certificate, parsed.
    pub(crate) fn parsed(&self) -> Result<X509Certificate<'_>> {
        parse_cert(&self.der, &self.cert_path)
    }
}

impl CertDir {
    /// The CA `cas/NAME.{crt,key}` of this directory, after checking the key is the
    /// certificate's.
    pub(crate) fn load_ca(&self, ca_name: &str) -> Result<Ca> {
        let (mut certs, key_der) = read_pair(std::slice::from_ref(self), Kind::Ca, ca_name)?;
        let cert_path = self.cert_path(Kind::Ca, ca_name)?;
        let key_path = self.key_path(Kind::Ca, ca_name)?;
        let key = KeyPair::try_from(&key_der).map_err(|e| CertError::BadFile {
            path: key_path.clone(),
            reason: format!("not a usable private key: {e}"),
        })?;
        let der = certs.swap_remove(0);
        let parsed = parse_cert(&der, &cert_path)?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| CertError::BadFile {
            path: cert_path.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
        Ok(Ca {
            cert_path,
            der,
            issuer,
        })
    }
}

/// Parses a certificate, naming its file in the error.
pub(crate) fn parse_cert<'a>(der: &'a [u8], path: &std::path::Path) -> Result<X509Certificate<'a>> {
    let (_, cert) = parse_x509_certificate(der).map_err(|e| CertError::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a usable certificate: {e}"),
    })?;
    Ok(cert)
}

/// Whether `ca` signed `cert`: the issuer name is the CA's subject and the signature
/// verifies with the CA's public key.
pub(crate) fn signed_by(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}
