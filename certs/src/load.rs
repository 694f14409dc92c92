//! Loading certificates and keys for TLS: the ring crypto provider, PEM files, lookups of
//! `kind/NAME` across an ordered list of certificate directories, and root stores made of
//! the CAs in `cas/`.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::dir::{read, CertDir, Kind};
use crate::error::{CertError, Result};

/// The crypto provider of every configuration: ring, named explicitly so that rustls never
/// has to guess (it panics when both ring and aws-lc-rs are linked).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; at least one.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(CertError::BadFile {
            path: path.to_path_buf(),
            reason: "holds no PEM certificate".to_string(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| bad_pem(path, "private key", e))
}

fn bad_pem(path: &Path, what: &str, e: rustls_pki_types::pem::Error) -> CertError {
    CertError::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a PEM {what}: {e}"),
    }
}

/// The first directory of `dirs` that holds the certificate `kind/NAME.crt`.
pub(crate) fn find<'a>(dirs: &'a [CertDir], kind: Kind, name: &str) -> Result<&'a CertDir> {
    let mut looked = Vec::new();
    for dir in dirs {
        let path = dir.cert_path(kind, name)?;
        if path.exists() {
            return Ok(dir);
        }
        looked.push(path);
    }
    Err(CertError::Missing {
        what: kind.describe(name),
        paths: looked,
        hint: kind.hint(name),
    })
}

/// The certificate chain and key of `kind/NAME`, from the first directory that has the
/// certificate; the key must be next to it.
pub(crate) fn read_pair(
    dirs: &[CertDir],
    kind: Kind,
    name: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let dir = find(dirs, kind, name)?;
    let key_path = dir.key_path(kind, name)?;
    if !key_path.exists() {
        return Err(CertError::Missing {
            what: format!("private key of the {}", kind.describe(name)),
            paths: vec![key_path],
            hint: "put the key next to its certificate".to_string(),
        });
    }
    Ok((
        read_certs(&dir.cert_path(kind, name)?)?,
        read_key(&key_path)?,
    ))
}

/// A root store of every CA certificate in `cas/` of `dirs`; at least one.
pub(crate) fn all_cas(dirs: &[CertDir]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for dir in dirs {
        for name in dir.names(Kind::Ca)? {
            add_roots(&mut roots, &dir.cert_path(Kind::Ca, &name)?)?;
        }
    }
    if roots.is_empty() {
        return Err(CertError::NoCas {
            dirs: dirs
                .iter()
                .map(|d| d.root().join(Kind::Ca.subdir()))
                .collect(),
        });
    }
    Ok(roots)
}

/// A root store of the one CA `cas/NAME.crt`, from the first directory of `dirs` that has it.
pub(crate) fn one_ca(dirs: &[CertDir], name: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    add_roots(
        &mut roots,
        &find(dirs, Kind::Ca, name)?.cert_path(Kind::Ca, name)?,
    )?;
    Ok(roots)
}

fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<()> {
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| CertError::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(())
}
