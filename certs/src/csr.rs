//! Certificate signing requests: a new key and a CSR for an external CA
//! (`hosts/NAME.{key,csr}`, `users/NAME.{key,csr}`), and the signing of a CSR by a CA of
//! this directory. Signing keeps only the CSR's public key and CN: the extensions it asks
//! for (a CA flag, key usages, extended key usages, names) are ignored and replaced by
//! those of a host or user certificate.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::dir::{read, validate_name, write_new, CertDir, Kind, CERT_MODE};
use crate::error::{CertError, Result};
use crate::generate::{host_params, host_sans, refuse_existing, user_params};
use crate::keytype::KeyType;
use crate::san::San;

/// The files a CSR generator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPaths {
    /// The request (PEM, mode 0644), to send to the CA.
    pub csr: PathBuf,
    /// Its private key (PEM PKCS#8, mode 0600), which stays here.
    pub key: PathBuf,
}

impl CertDir {
    /// Creates a key and a CSR for the host `name`: `hosts/NAME.{key,csr}`, CN=NAME, asking
    /// for serverAuth and the names NAME and `extra_sans`. Refuses if `hosts/NAME.crt`,
    /// `.key` or `.csr` exists.
    pub fn gen_host_csr(
        &self,
        name: &str,
        extra_sans: &[San],
        key_type: KeyType,
    ) -> Result<CsrPaths> {
        let mut params = csr_params(name, ExtendedKeyUsagePurpose::ServerAuth)?;
        params.subject_alt_names = host_sans(name, extra_sans)?
            .iter()
            .map(San::to_rcgen)
            .collect::<Result<_>>()?;
        self.write_csr(Kind::Host, name, &params, key_type)
    }

    /// Creates a key and a CSR for the user `name`: `users/NAME.{key,csr}`, CN=NAME,
    /// asking for clientAuth. Refuses if `users/NAME.crt`, `.key` or `.csr` exists.
    pub fn gen_user_csr(&self, name: &str, key_type: KeyType) -> Result<CsrPaths> {
        let params = csr_params(name, ExtendedKeyUsagePurpose::ClientAuth)?;
        self.write_csr(Kind::User, name, &params, key_type)
    }

    /// Signs the CSR at `csr` with the CA `ca_name` of this directory as a host
    /// certificate and writes it to `hosts/CN.crt`, CN being the CSR's. It names the CN
    /// and `extra_sans` only, whatever the CSR asked for. Returns the certificate's path.
    pub fn sign_host_csr(
        &self,
        csr: &Path,
        ca_name: &str,
        extra_sans: &[San],
        days: u32,
    ) -> Result<PathBuf> {
        let request = read_csr(csr)?;
        let params = host_params(&request.cn, extra_sans, days)?;
        self.write_signed(Kind::Host, &request, params, ca_name)
    }

    /// Signs the CSR at `csr` with the CA `ca_name` of this directory as a user
    /// certificate and writes it to `users/CN.crt`. Returns the certificate's path.
    pub fn sign_user_csr(&self, csr: &Path, ca_name: &str, days: u32) -> Result<PathBuf> {
        let request = read_csr(csr)?;
        let params = user_params(&request.cn, days)?;
        self.write_signed(Kind::User, &request, params, ca_name)
    }

    fn write_csr(
        &self,
        kind: Kind,
        name: &str,
        params: &CertificateParams,
        key_type: KeyType,
    ) -> Result<CsrPaths> {
        let paths = CsrPaths {
            csr: self.csr_path(kind, name)?,
            key: self.key_path(kind, name)?,
        };
        refuse_existing(&[&self.cert_path(kind, name)?, &paths.key, &paths.csr])?;
        self.create()?;
        let key = key_type.generate()?;
        let csr = params.serialize_request(&key)?;
        self.write_key(kind, name, &key.serialize_pem())?;
        write_new(&paths.csr, csr.pem()?.as_bytes(), CERT_MODE)?;
        Ok(paths)
    }

    fn write_signed(
        &self,
        kind: Kind,
        request: &Request,
        params: CertificateParams,
        ca_name: &str,
    ) -> Result<PathBuf> {
        let path = self.cert_path(kind, &request.cn)?;
        refuse_existing(&[&path])?;
        let ca = self.load_ca(ca_name)?;
        let cert = params.signed_by(&request.public_key, &ca.issuer)?;
        self.write_cert(kind, &request.cn, &cert.pem())
    }
}

/// What signing takes from a CSR.
struct Request {
    /// Its subject's common name, checked to name a file.
    cn: String,
    /// Its public key.
    public_key: rcgen::SubjectPublicKeyInfo,
}

/// The subject of a CSR for `name` and the one extended key usage it asks for.
fn csr_params(name: &str, eku: ExtendedKeyUsagePurpose) -> Result<CertificateParams> {
    validate_name(name)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![eku];
    Ok(params)
}

/// Reads a CSR (PEM, or DER if the file holds no PEM block), checks its signature and
/// takes its CN and public key.
fn read_csr(path: &Path) -> Result<Request> {
    let bad = |reason: String| CertError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read(path)?;
    let der = match CertificateSigningRequestDer::from_pem_slice(&bytes) {
        Ok(der) => der.as_ref().to_vec(),
        Err(_) if bytes.first() == Some(&0x30) => bytes,
        Err(_) => {
            return Err(bad(
                "not a certificate signing request (no PEM CERTIFICATE REQUEST block, not DER)"
                    .to_string(),
            ))
        }
    };
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| bad(format!("malformed certificate signing request: {e}")))?;
    csr.verify_signature().map_err(|e| {
        bad(format!(
            "the certificate signing request's signature does not verify ({e}): it was altered or damaged"
        ))
    })?;
    let info = &csr.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(
            || bad("the certificate signing request names no common name (CN)".to_string()),
        )?
        .to_string();
    validate_name(&cn)
        .map_err(|e| bad(format!("its common name cannot name a certificate: {e}")))?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| bad(format!("unsupported public key: {e}")))?;
    Ok(Request { cn, public_key })
}
