//! PKCS#12 bundles of a user's certificate, key and CA (`users/NAME.p12`, mode 0600), for
//! clients that import one file. A bundle is always encrypted with a password: PBES2 with
//! AES-256-CBC and PBKDF2-HMAC-SHA256, and an HMAC-SHA256 integrity MAC, which OpenSSL 3
//! opens without its legacy provider.

use std::path::PathBuf;

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{parse_cert, signed_by};
use crate::dir::{write_new, CertDir, Kind, KEY_MODE};
use crate::error::{CertError, Result};
use crate::generate::refuse_existing;
use crate::load::{read_certs, read_pair};
use crate::pin::cert_sha256;

impl CertDir {
    /// Writes `users/NAME.p12`: the user's certificate (with any chain its file holds),
    /// its key, and the CA of `cas/` that signed it, encrypted with `password` (not
    /// empty). The key must be PKCS#8, as the generators write it.
    pub fn gen_p12(&self, name: &str, password: &str) -> Result<PathBuf> {
        if password.is_empty() {
            return Err(CertError::EmptyPassword);
        }
        let path = self.p12_path(name)?;
        refuse_existing(&[&path])?;
        let (mut chain, key) = read_pair(std::slice::from_ref(self), Kind::User, name)?;
        let ca = self.ca_of(name, &chain[0])?;
        if !chain.contains(&ca) {
            chain.push(ca);
        }
        let PrivateKeyDer::Pkcs8(key) = key else {
            return Err(CertError::BadFile {
                path: self.key_path(Kind::User, name)?,
                reason: "not a PKCS#8 key: convert it with openssl pkcs8 -topk8".to_string(),
            });
        };
        let p12_error = |e: p12_keystore::error::Error| CertError::P12(e.to_string());
        let key = PrivateKey::from_der(key.secret_pkcs8_der()).map_err(p12_error)?;
        let certs = chain
            .iter()
            .map(|c| Certificate::from_der(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(p12_error)?;
        let key_id = cert_sha256(&chain[0]).to_vec();
        let mut store = KeyStore::new();
        store.add_entry(
            name,
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, certs)),
        );
        let bundle = store.writer(password).write().map_err(p12_error)?;
        write_new(&path, &bundle, KEY_MODE)?;
        Ok(path)
    }

    /// The certificate of the CA in `cas/` that signed the user `name`'s certificate.
    fn ca_of(&self, name: &str, user: &CertificateDer<'_>) -> Result<CertificateDer<'static>> {
        let user_path = self.cert_path(Kind::User, name)?;
        let user = parse_cert(user, &user_path)?;
        for ca_name in self.names(Kind::Ca)? {
            let ca_path = self.cert_path(Kind::Ca, &ca_name)?;
            for ca in read_certs(&ca_path)? {
                if signed_by(&user, &parse_cert(&ca, &ca_path)?) {
                    return Ok(ca);
                }
            }
        }
        Err(CertError::Missing {
            what: format!("CA certificate that signed {}", user_path.display()),
            paths: vec![self.root().join(Kind::Ca.subdir())],
            hint: "copy it in with cairn-easycert --importfile cas PATH".to_string(),
        })
    }
}
