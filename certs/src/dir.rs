//! The certificate directory: `cas/`, `hosts/` and `users/` hold `NAME.crt` and `NAME.key`
//! pairs (and `NAME.csr` requests, `users/NAME.p12` bundles), `crls/CA.crl` revocation
//! lists. Directories are created mode 0700, keys and bundles are written 0600,
//! certificates, requests and lists 0644. Every file is written atomically (a temporary
//! file in the same directory, fsync, linked into place, fsync of the directory) and never
//! replaces an existing one; only a CA's revocation list is replaced, by a rename.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{CertError, Result};

/// Environment variable naming the default certificate directory.
pub const CERT_DIR_ENV: &str = "CAIRN_CERT_DIR";

const SUBDIRS: [&str; 4] = ["cas", "hosts", "users", "crls"];
const DIR_MODE: u32 = 0o700;
/// Mode of private files: keys and PKCS#12 bundles.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of public files: certificates, CSRs, CRLs.
pub(crate) const CERT_MODE: u32 = 0o644;
const MAX_NAME_LEN: usize = 200;

/// What a certificate is for, which decides its subdirectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A certificate authority: `cas/`.
    Ca,
    /// A service's host (server) certificate: `hosts/`.
    Host,
    /// A user's client certificate: `users/`.
    User,
}

impl Kind {
    /// The subdirectory that holds this kind of certificate.
    pub fn subdir(self) -> &'static str {
        match self {
            Kind::Ca => "cas",
            Kind::Host => "hosts",
            Kind::User => "users",
        }
    }

    /// How an error names a certificate of this kind.
    pub(crate) fn describe(self, name: &str) -> String {
        match self {
            Kind::Ca => format!("CA certificate {name}"),
            Kind::Host => format!("host certificate for {name}"),
            Kind::User => format!("user certificate for {name}"),
        }
    }

    /// What to do when a certificate of this kind is missing.
    pub(crate) fn hint(self, name: &str) -> String {
        match self {
            Kind::Ca => format!(
                "create it with cairn-easycert --ca {name}, or copy its certificate into cas/{name}.crt"
            ),
            Kind::Host => format!("create one with cairn-easycert --server {name} --signas CA"),
            Kind::User => format!("create one with cairn-easycert --user {name} --signas CA"),
        }
    }
}

/// Checks that `name` can name a certificate: letters, digits, `.`, `-` and `_`, not
/// starting with `.`, at most 200 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(CertError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// A certificate directory. Making one does no I/O; [`CertDir::create`] lays it out, and
/// the generators do that themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    root: PathBuf,
}

impl CertDir {
    /// The certificate directory at `root` (e.g. `DIR/certs` of a service).
    pub fn new(root: impl Into<PathBuf>) -> CertDir {
        CertDir { root: root.into() }
    }

    /// The default certificate directory: `$CAIRN_CERT_DIR`, else `~/.cairn/certs`.
    pub fn default_path() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os(CERT_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(Path::new(&home).join(".cairn").join("certs")),
            None => Err(CertError::NoHome),
        }
    }

    /// The directory's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory and its subdirectories (mode 0700) where missing. Existing
    /// directories are left as they are.
    pub fn create(&self) -> Result<()> {
        create_dir(&self.root, true)?;
        for sub in SUBDIRS {
            create_dir(&self.root.join(sub), false)?;
        }
        Ok(())
    }

    /// Path of the certificate `kind/NAME.crt`.
    pub fn cert_path(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.root.join(kind.subdir()).join(format!("{name}.crt")))
    }

    /// Path of the private key `kind/NAME.key`.
    pub fn key_path(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.root.join(kind.subdir()).join(format!("{name}.key")))
    }

    /// Path of the certificate signing request `kind/NAME.csr`.
    pub fn csr_path(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.root.join(kind.subdir()).join(format!("{name}.csr")))
    }

    /// Path of the PKCS#12 bundle `users/NAME.p12`.
    pub fn p12_path(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self
            .root
            .join(Kind::User.subdir())
            .join(format!("{name}.p12")))
    }

    /// Path of the revocation list `crls/CA.crl` of the CA `ca_name`.
    pub fn crl_path(&self, ca_name: &str) -> Result<PathBuf> {
        validate_name(ca_name)?;
        Ok(self.crls_dir().join(format!("{ca_name}.crl")))
    }

    /// The directory of revocation lists, `crls/`.
    pub(crate) fn crls_dir(&self) -> PathBuf {
        self.root.join("crls")
    }

    /// The names of the certificates of `kind` (the `NAME` of each `NAME.crt`), sorted.
    /// A missing subdirectory has none.
    pub fn names(&self, kind: Kind) -> Result<Vec<String>> {
        let dir = self.root.join(kind.subdir());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CertError::io(dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CertError::io(&dir, e))?;
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".crt")) else {
                continue;
            };
            if validate_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Writes the certificate `kind/NAME.crt` (mode 0644); refuses to replace one.
    pub fn write_cert(&self, kind: Kind, name: &str, pem: &str) -> Result<PathBuf> {
        let path = self.cert_path(kind, name)?;
        write_new(&path, pem.as_bytes(), CERT_MODE)?;
        Ok(path)
    }

    /// Writes the private key `kind/NAME.key` (mode 0600); refuses to replace one.
    pub fn write_key(&self, kind: Kind, name: &str, pem: &str) -> Result<PathBuf> {
        let path = self.key_path(kind, name)?;
        write_new(&path, pem.as_bytes(), KEY_MODE)?;
        Ok(path)
    }
}

/// Creates `path` with mode 0700 unless it is already a directory.
fn create_dir(path: &Path, recursive: bool) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(recursive)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| CertError::io(path, e))?;
    // The mode given to mkdir is narrowed by the umask; set it exactly.
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE)).map_err(|e| CertError::io(path, e))
}

/// Writes `bytes` to `path` atomically with `mode`, failing with `FileExists` if `path` is
/// there. The data goes to a temporary file in the same directory, is fsynced, then
/// hard-linked to `path` (a rename that never replaces), and the directory is fsynced.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(CertError::FileExists(path.to_path_buf()));
    }
    let (dir, tmp) = write_tmp(path, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let removed = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(CertError::FileExists(path.to_path_buf()))
        }
        Err(e) => return Err(CertError::io(path, e)),
    }
    removed.map_err(|e| CertError::io(&tmp, e))?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` atomically with `mode`, replacing what is there: a temporary
/// file in the same directory, fsynced, renamed over `path`, then the directory fsynced.
pub(crate) fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (dir, tmp) = write_tmp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        // Best effort: the rename's error is the one worth telling.
        let _ = fs::remove_file(&tmp);
        return Err(CertError::io(path, e));
    }
    sync_dir(dir)
}

/// Writes `bytes` with `mode` to a new temporary file next to `path`, fsynced; returns
/// the directory and the temporary file (removed again if writing failed).
fn write_tmp<'a>(path: &'a Path, bytes: &[u8], mode: u32) -> Result<(&'a Path, PathBuf)> {
    let (Some(dir), Some(file_name)) = (path.parent(), path.file_name()) else {
        return Err(CertError::BadFile {
            path: path.to_path_buf(),
            reason: "not a file path".to_string(),
        });
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        file_name.to_string_lossy(),
        getrandom::u64()?
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| CertError::io(&tmp, e))?;
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        // Best effort: the write's error is the one worth telling.
        let _ = fs::remove_file(&tmp);
        return Err(CertError::io(path, e));
    }
    Ok((dir, tmp))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CertError::io(dir, e))
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| CertError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["acme", "db1.example.com", "alice_b-2", "127.0.0.1", "A"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "../x",
            "a b",
            "é",
            "a:b",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_name(bad), Err(CertError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
