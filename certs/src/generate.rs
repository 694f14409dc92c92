//! Certificate generation with rcgen: a self-signed CA, and host (serverAuth) and user
//! (clientAuth) certificates signed by a CA of the same directory. Keys are ECDSA P-256
//! unless a [`KeyType`] says otherwise, serial numbers random (126 bits), validity starts
//! an hour back to absorb clock skew.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::dir::{CertDir, Kind};
use crate::error::{CertError, Result};
use crate::keytype::KeyType;
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
        self.gen_ca_with(name, days, KeyType::default())
    }

    /// [`CertDir::gen_ca`] with a key of `key_type`.
    pub fn gen_ca_with(&self, name: &str, days: u32, key_type: KeyType) -> Result<CertPaths> {
        let mut params = base_params(name, days)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        self.write_generated(Kind::Ca, name, params, None, key_type)
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
        self.gen_host_with(name, ca_name, extra_sans, days, KeyType::default())
    }

    /// [`CertDir::gen_host`] with a key of `key_type`.
    pub fn gen_host_with(
        &self,
        name: &str,
        ca_name: &str,
        extra_sans: &[San],
        days: u32,
        key_type: KeyType,
    ) -> Result<CertPaths> {
        let params = host_params(name, extra_sans, days)?;
        self.write_generated(Kind::Host, name, params, Some(ca_name), key_type)
    }

    /// Creates the user certificate `users/NAME.{crt,key}` signed by the CA `ca_name` of
    /// this directory: CN=NAME (the user name a service sees), extended key usage
    /// clientAuth.
    pub fn gen_user(&self, name: &str, ca_name: &str, days: u32) -> Result<CertPaths> {
        self.gen_user_with(name, ca_name, days, KeyType::default())
    }

    /// [`CertDir::gen_user`] with a key of `key_type`.
    pub fn gen_user_with(
        &self,
        name: &str,
        ca_name: &str,
        days: u32,
        key_type: KeyType,
    ) -> Result<CertPaths> {
        let params = user_params(name, days)?;
        self.write_generated(Kind::User, name, params, Some(ca_name), key_type)
    }

    /// Signs `params` (self-signed when `ca_name` is `None`) with a new key of `key_type`
    /// and writes the key then the certificate. Nothing is written if either file exists.
    fn write_generated(
        &self,
        kind: Kind,
        name: &str,
        params: CertificateParams,
        ca_name: Option<&str>,
        key_type: KeyType,
    ) -> Result<CertPaths> {
        let paths = CertPaths {
            cert: self.cert_path(kind, name)?,
            key: self.key_path(kind, name)?,
        };
        refuse_existing(&[&paths.key, &paths.cert])?;
        let ca = ca_name.map(|ca| self.load_ca(ca)).transpose()?;
        self.create()?;
        let key = key_type.generate()?;
        let cert = match &ca {
            Some(ca) => params.signed_by(&key, &ca.issuer)?,
            None => params.self_signed(&key)?,
        };
        self.write_key(kind, name, &key.serialize_pem())?;
        self.write_cert(kind, name, &cert.pem())?;
        Ok(paths)
    }
}

/// Fails with `FileExists` on the first of `paths` that is there.
pub(crate) fn refuse_existing(paths: &[&PathBuf]) -> Result<()> {
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(path) => Err(CertError::FileExists(path.to_path_buf())),
        None => Ok(()),
    }
}

/// The subject alternative names of the host `name`: `name` itself (an IP address if it
/// parses as one, else a DNS name), then each of `extra` not already there.
pub(crate) fn host_sans(name: &str, extra: &[San]) -> Result<Vec<San>> {
    let mut sans = vec![San::for_host(name)?];
    for san in extra {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    Ok(sans)
}

/// Parameters of the host certificate `name`: serverAuth, the names of [`host_sans`].
pub(crate) fn host_params(name: &str, extra_sans: &[San], days: u32) -> Result<CertificateParams> {
    let mut params = leaf_params(name, days, ExtendedKeyUsagePurpose::ServerAuth)?;
    params.subject_alt_names = host_sans(name, extra_sans)?
        .iter()
        .map(San::to_rcgen)
        .collect::<Result<_>>()?;
    Ok(params)
}

/// Parameters of the user certificate `name`: clientAuth, no alternative names.
pub(crate) fn user_params(name: &str, days: u32) -> Result<CertificateParams> {
    leaf_params(name, days, ExtendedKeyUsagePurpose::ClientAuth)
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
    params.not_after = now
        .checked_add(Duration::days(i64::from(days)))
        .ok_or(CertError::BadDays(days))?;
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
