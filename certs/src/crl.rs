//! Revocation: `crls/CA.crl` is the CA's signed list of revoked serial numbers. The list
//! is its own record: revoking re-reads it (checking that the CA signed it), adds the new
//! serial with the time of revocation, and writes it again with the next CRL number,
//! this-update now and next-update at the CA's expiry. The service loads every
//! `crls/*.crl` into its client verifier; [`crl_fingerprint`] tells it when to reload.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::X509Certificate;

use crate::ca::{parse_cert, signed_by, Ca};
use crate::dir::{read, replace, CertDir, Kind, CERT_MODE};
use crate::error::{CertError, Result};
use crate::load::{find, read_certs};

/// What [`CertDir::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate revoked.
    pub cert: PathBuf,
    /// Its serial number, as `openssl x509 -serial` prints it (upper-case hex).
    pub serial: String,
    /// The revocation list written.
    pub crl: PathBuf,
}

/// A revoked serial, as the list keeps it.
struct Revoked {
    serial: Vec<u8>,
    time: OffsetDateTime,
}

impl CertDir {
    /// Revokes the certificate `kind/NAME.crt`, which the CA `ca_name` of this directory
    /// must have signed, and rewrites `crls/CA.crl` with it added to the serials already
    /// listed. Two revocations with the same CA do not interleave (a lock file
    /// `crls/.CA.crl.lock`). A certificate already listed is an error that changes nothing.
    pub fn revoke(&self, ca_name: &str, kind: Kind, name: &str) -> Result<Revocation> {
        let cert_path = find(std::slice::from_ref(self), kind, name)?.cert_path(kind, name)?;
        let crl_path = self.crl_path(ca_name)?;
        let ca = self.load_ca(ca_name)?;
        let ca_cert = ca.parsed()?;
        let der = read_certs(&cert_path)?.swap_remove(0);
        let cert = parse_cert(&der, &cert_path)?;
        if !signed_by(&cert, &ca_cert) {
            return Err(CertError::NotIssuedBy {
                cert: cert_path,
                ca: ca_name.to_string(),
                ca_cert: ca.cert_path,
            });
        }
        let serial = strip_zeros(cert.raw_serial()).to_vec();
        let serial_text = hex::encode_upper(&serial);

        self.create()?;
        let _lock = lock(&self.crls_dir().join(format!(".{ca_name}.crl.lock")))?;
        let (mut revoked, number) = read_list(&crl_path, &ca_cert)?;
        if revoked.iter().any(|r| r.serial == serial) {
            return Err(CertError::AlreadyRevoked {
                cert: cert_path,
                serial: serial_text,
                crl: crl_path,
            });
        }
        let now = OffsetDateTime::now_utc();
        revoked.push(Revoked { serial, time: now });
        let pem = sign_list(&ca, &ca_cert, revoked, number + 1u32, now)?;
        replace(&crl_path, pem.as_bytes(), CERT_MODE)?;
        Ok(Revocation {
            cert: cert_path,
            serial: serial_text,
            crl: crl_path,
        })
    }
}

/// The serials and CRL number of the CA's list at `path`: none and 0 if there is none
/// yet. A list that the CA did not sign is refused.
fn read_list(path: &Path, ca: &X509Certificate<'_>) -> Result<(Vec<Revoked>, BigUint)> {
    let der = match read_crl(path) {
        Ok(der) => der,
        Err(CertError::Io { error, .. }) if error.kind() == ErrorKind::NotFound => {
            return Ok((Vec::new(), BigUint::default()))
        }
        Err(e) => return Err(e),
    };
    let bad = |reason: String| CertError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let (_, crl) = x509_parser::parse_x509_crl(&der)
        .map_err(|e| bad(format!("not a certificate revocation list: {e}")))?;
    if crl.issuer().as_raw() != ca.subject().as_raw()
        || crl.verify_signature(ca.public_key()).is_err()
    {
        return Err(bad(format!(
            "not signed by the CA {}: move it away to start a new list",
            ca.subject()
        )));
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| Revoked {
            serial: strip_zeros(r.raw_serial()).to_vec(),
            time: r.revocation_date.to_datetime(),
        })
        .collect();
    Ok((revoked, crl.crl_number().cloned().unwrap_or_default()))
}

/// The CA's list of `revoked`, numbered `number`, signed.
fn sign_list(
    ca: &Ca,
    ca_cert: &X509Certificate<'_>,
    revoked: Vec<Revoked>,
    number: BigUint,
    now: OffsetDateTime,
) -> Result<String> {
    // The authority key identifier must be the CA's own subject key identifier.
    let key_identifier_method = ca_cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
            }
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256);
    let ca_expiry = ca_cert.validity().not_after.to_datetime();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: ca_expiry.max(now + Duration::days(1)),
        crl_number: SerialNumber::from(number.to_bytes_be()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .into_iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from(r.serial),
                revocation_time: r.time,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method,
    };
    Ok(params.signed_by(&ca.issuer)?.pem()?)
}

/// An integer's bytes without leading zero bytes (DER adds one to keep it positive).
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// An exclusive lock on `path` (created if missing), held until the file is dropped.
fn lock(path: &Path) -> Result<fs::File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(CERT_MODE)
        .open(path)
        .map_err(|e| CertError::io(path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| CertError::io(path, e.into()))?;
    Ok(file)
}

/// A CRL file: PEM (`X509 CRL`), or DER if it holds no PEM block.
fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>> {
    let bytes = read(path)?;
    match CertificateRevocationListDer::from_pem_slice(&bytes) {
        Ok(der) => Ok(der),
        Err(_) => Ok(CertificateRevocationListDer::from(bytes)),
    }
}

/// The `*.crl` files of `crls/` of each of `dirs`, sorted by name within a directory.
fn crl_files(dirs: &[CertDir]) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for dir in dirs {
        let crls = dir.crls_dir();
        let entries = match fs::read_dir(&crls) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(CertError::io(crls, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| CertError::io(&crls, e))?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden && path.extension().is_some_and(|e| e == "crl") {
                files.push(path);
            }
        }
        files.sort();
        all.extend(files);
    }
    Ok(all)
}

/// Every revocation list in `crls/` of `dirs`, each checked to parse.
pub(crate) fn all_crls(dirs: &[CertDir]) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut crls = Vec::new();
    for path in crl_files(dirs)? {
        let der = read_crl(&path)?;
        x509_parser::parse_x509_crl(&der).map_err(|e| CertError::BadFile {
            path: path.clone(),
            reason: format!("not a certificate revocation list: {e}"),
        })?;
        crls.push(der);
    }
    Ok(crls)
}

/// What the revocation lists of some certificate directories look like on disk: the
/// name, size, inode and modification time of each `crls/*.crl`. Two fingerprints differ
/// when a list was added, removed, rewritten or replaced, so a service that compares them
/// now and then knows when to build its configuration again (see [`crl_fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrlFingerprint {
    files: Vec<(PathBuf, u64, u64, Option<SystemTime>)>,
}

/// The [`CrlFingerprint`] of `dirs`: a directory listing and a `stat` per list, no
/// reading of the lists. Missing `crls/` directories have no lists.
pub fn crl_fingerprint(dirs: &[CertDir]) -> Result<CrlFingerprint> {
    let mut files = Vec::new();
    for path in crl_files(dirs)? {
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Removed since it was listed: the next fingerprint sees it gone.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(CertError::io(path, e)),
        };
        let modified = meta.modified().ok();
        files.push((path, meta.len(), meta.ino(), modified));
    }
    Ok(CrlFingerprint { files })
}
