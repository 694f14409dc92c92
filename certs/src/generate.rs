//! Certificate generation with rcgen: a self-signed CA, and host (serverAuth) and user
//! (clientAuth) certificates signed by a CA of the same directory. Keys are ECDSA P-256,
//! serial numbers random (126 bits), validity starts an hour back to absorb clock skew.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::dir::{CertDir, Kind};
use crate::error::{CertError, Result};
use crate::load::read_pair;
use crate::san::San;

/// The files a generator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The certificate (PEM, mode 0644).
    pub cert: PathBuf,
    /// Its private key (PEM PKCS#8, mode 0600).
    pub key: PathBuf,
}

impl CertDir {
    /// Creates the self-signed CA `cas/NAME.{crt,key}`: CN=NAME, basic constraints CA
    /// (critical), key usages keyCertSign and cRLSign, valid for `days`.
    pub fn gen_ca(&self, name: &str, days: u32) -> Result<CertPaths> {
        let mut params = base_params(name, days)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        self.write_generated(Kind::Ca, name, params, None)
    }

    /// Creates the host certificate `hosts/NAME.{crt,key}` signed by the CA `ca_name` of
    /// this directory: CN=NAME, extended key usage serverAuth, subject alternative names
    /// NAME (as an IP address if it parses as one, else as a DNS name) then `extra_sans`.
    pub fn gen_host(
        &self,
        name: &str,
        ca_name: &str,
        extra_sans: &[San],
        days: u32,
    ) -> Result<CertPaths> {
        let mut sans = vec![San::for_host(name)?];
        for san in extra_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        let mut params = leaf_params(name, days, ExtendedKeyUsagePurpose::ServerAuth)?;
        params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        self.write_generated(Kind::Host, name, params, Some(ca_name))
    }

    /// Creates the user certificate `users/NAME.{crt,key}` signed by the CA `ca_name` of
    /// this directory: CN=NAME (the user name a service sees), extended key usage
    /// clientAuth.
    pub fn gen_user(&self, name: &str, ca_name: &str, days: u32) -> Result<CertPaths> {
        let params = leaf_params(name, days, ExtendedKeyUsagePurpose::ClientAuth)?;
        self.write_generated(Kind::User, name, params, Some(ca_name))
    }

    /// Signs `params` (self-signed when `ca_name` is `None`) with a new key and writes
    /// the key then the certificate. Nothing is written if either file exists.
    fn write_generated(
        &self,
        kind: Kind,
        name: &str,
        params: CertificateParams,
        ca_name: Option<&str>,
    ) -> Result<CertPaths> {
        let paths = CertPaths {
            cert: self.cert_path(kind, name)?,
            key: self.key_path(kind, name)?,
        };
        for path in [&paths.key, &paths.cert] {
            if path.symlink_metadata().is_ok() {
                return Err(CertError::FileExists(path.clone()));
            }
        }
        let issuer = ca_name.map(|ca| self.load_issuer(ca)).transpose()?;
        self.create()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = match &issuer {
            Some(issuer) => params.signed_by(&key, issuer)?,
            None => params.self_signed(&key)?,
        };
        self.write_key(kind, name, &key.serialize_pem())?;
        self.write_cert(kind, name, &cert.pem())?;
        Ok(paths)
    }

    /// The CA `cas/NAME.{crt,key}` as an rcgen issuer, after checking the key is the
    /// certificate's.
    fn load_issuer(&self, ca_name: &str) -> Result<Issuer<'static, KeyPair>> {
        let (certs, key_der) = read_pair(std::slice::from_ref(self), Kind::Ca, ca_name)?;
        let cert_path = self.cert_path(Kind::Ca, ca_name)?;
        let key_path = self.key_path(Kind::Ca, ca_name)?;
        let key = KeyPair::try_from(&key_der).map_err(|e| CertError::BadFile {
            path: key_path.clone(),
            reason: format!("not a usable private key: {e}"),
        })?;
        let bad_cert = |e: &dyn std::fmt::Display| CertError::BadFile {
            path: cert_path.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        };
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&certs[0]).map_err(|e| bad_cert(&e))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        Issuer::from_ca_cert_der(&certs[0], key).map_err(|e| bad_cert(&e))
    }
}

/// Parameters common to every certificate: CN, validity, random serial.
fn base_params(name: &str, days: u32) -> Result<CertificateParams> {
    crate::dir::validate_name(name)?;
    if days == 0 {
        return Err(CertError::BadDays(days));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Parameters of an end-entity certificate with one extended key usage.
fn leaf_params(name: &str, days: u32, eku: ExtendedKeyUsagePurpose) -> Result<CertificateParams> {
    let mut params = base_params(name, days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// 16 random bytes, positive and with a fixed length (top bits 01).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
