//! Importing a PEM file made elsewhere into `cas/`, `hosts/` or `users/`: its
//! certificates become `NAME.crt`, its private key `NAME.key` (mode 0600), NAME being the
//! file's name without its extension. What is imported is checked first: certificates
//! parse, a CA is a CA, a key is the certificate's.

use std::path::{Path, PathBuf};

use pem::{EncodeConfig, LineEnding, Pem};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::parse_cert;
use crate::dir::{read, validate_name, CertDir, Kind};
use crate::error::{CertError, Result};
use crate::generate::refuse_existing;
use crate::load::{provider, read_certs};

const KEY_TAGS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// The files [`CertDir::import`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Imported {
    /// `kind/NAME.crt`, if the file held certificates.
    pub cert: Option<PathBuf>,
    /// `kind/NAME.key`, if the file held a private key.
    pub key: Option<PathBuf>,
}

impl CertDir {
    /// Copies the PEM certificates and private key of the file at `path` into `kind/` as
    /// `NAME.crt` and `NAME.key`, NAME being the file's name without its extension (e.g.
    /// `acme` for `/tmp/acme.pem`). Other PEM blocks are left out. A certificate imported
    /// into `cas/` must be a CA; a key must belong to the certificate imported with it or
    /// already there. Nothing is written if either file exists.
    pub fn import(&self, kind: Kind, path: &Path) -> Result<Imported> {
        let bad = |reason: String| CertError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad("not a file name".to_string()))?;
        validate_name(name)?;
        let blocks =
            pem::parse_many(read(path)?).map_err(|e| bad(format!("not a PEM file: {e}")))?;
        let (certs, keys): (Vec<Pem>, Vec<Pem>) = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE" || KEY_TAGS.contains(&b.tag()))
            .partition(|b| b.tag() == "CERTIFICATE");
        if keys.len() > 1 {
            return Err(bad("holds more than one private key".to_string()));
        }
        if certs.is_empty() && keys.is_empty() {
            return Err(bad(
                "holds no PEM certificate and no unencrypted PEM private key".to_string(),
            ));
        }
        for cert in &certs {
            let parsed = parse_cert(cert.contents(), path)?;
            if kind == Kind::Ca && !parsed.is_ca() {
                return Err(bad(
                    "not a CA certificate (no basic constraints CA:TRUE): import it into hosts or users"
                        .to_string(),
                ));
            }
        }
        let imported = Imported {
            cert: (!certs.is_empty())
                .then(|| self.cert_path(kind, name))
                .transpose()?,
            key: (!keys.is_empty())
                .then(|| self.key_path(kind, name))
                .transpose()?,
        };
        let targets: Vec<&PathBuf> = imported.cert.iter().chain(&imported.key).collect();
        refuse_existing(&targets)?;
        if let Some(key) = keys.first() {
            let chain = if certs.is_empty() {
                self.existing_chain(kind, name)?
            } else {
                certs.iter().map(|c| c.contents().to_vec().into()).collect()
            };
            check_key(chain, key, path)?;
            self.create()?;
            self.write_key(kind, name, &encode(&keys))?;
        }
        if !certs.is_empty() {
            self.create()?;
            self.write_cert(kind, name, &encode(&certs))?;
        }
        Ok(imported)
    }

    /// The certificates of `kind/NAME.crt`, none if it is not there.
    fn existing_chain(&self, kind: Kind, name: &str) -> Result<Vec<CertificateDer<'static>>> {
        let path = self.cert_path(kind, name)?;
        if path.exists() {
            read_certs(&path)
        } else {
            Ok(Vec::new())
        }
    }
}

/// Checks that `key` parses as a private key ring can sign with and, if `chain` has a
/// certificate, that it is that certificate's key.
fn check_key(chain: Vec<CertificateDer<'static>>, key: &Pem, path: &Path) -> Result<()> {
    let bad = |reason: String| CertError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let der = PrivateKeyDer::try_from(key.contents().to_vec())
        .map_err(|e| bad(format!("not a usable private key: {e}")))?;
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| bad(format!("not a usable private key: {e}")))?;
    if !chain.is_empty() {
        CertifiedKey::new(chain, signer)
            .keys_match()
            .map_err(|e| bad(format!("its private key is not the certificate's: {e}")))?;
    }
    Ok(())
}

/// PEM text of `blocks`, with LF line ends.
fn encode(blocks: &[Pem]) -> String {
    pem::encode_many_config(blocks, EncodeConfig::new().set_line_ending(LineEnding::LF))
}
