//! The crate's one error type. Every message says what went wrong and, where there is
//! one, what to do next (which `cairn-easycert` command creates a missing certificate).

use std::path::PathBuf;

/// Everything that can go wrong with certificates, their directory and TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file that would be written is already there: nothing is ever overwritten.
    #[error("file exists: {} (certificates and keys are never overwritten: remove it first to replace it)", .0.display())]
    FileExists(PathBuf),

    /// A certificate or key that is needed is in none of the places looked at.
    #[error("no {what} (looked for {}): {hint}", list(.paths))]
    Missing {
        what: String,
        paths: Vec<PathBuf>,
        hint: String,
    },

    /// There is no CA certificate at all to trust.
    #[error("no CA certificate in {}: create one with cairn-easycert --ca NAME, or copy a CA certificate into cas/NAME.crt", list(.dirs))]
    NoCas { dirs: Vec<PathBuf> },

    /// `server_config` was given no host name.
    #[error("no host name to serve: name at least one host certificate (hosts/NAME.crt)")]
    NoHostName,

    /// A CA, host or user name outside the safe character set.
    #[error("invalid name {name:?}: use letters, digits, '.', '-' and '_', not starting with '.' (at most 200 characters)")]
    InvalidName { name: String },

    /// A subject alternative name that does not parse.
    #[error("invalid subject alternative name {0:?}: write DNS:NAME (e.g. DNS:db1.example.com) or IP:ADDRESS (e.g. IP:10.0.0.1)")]
    BadSan(String),

    /// A certificate pin that does not parse.
    #[error("invalid certificate pin {0:?}: write sha256: followed by 64 hex digits")]
    BadPin(String),

    /// A key type that is not one of [`crate::KeyType::ALL`].
    #[error("unknown key type {0:?}: use ecdsa-p256, ed25519 or rsa-4096")]
    BadKeyType(String),

    /// Making a new private key failed.
    #[error("key generation failed: {0}")]
    KeyGeneration(String),

    /// A PKCS#12 bundle asked for with no password: it would not be encrypted.
    #[error("empty password: a PKCS#12 bundle is always encrypted, give a password")]
    EmptyPassword,

    /// Writing a PKCS#12 bundle failed.
    #[error("PKCS#12 bundle: {0}")]
    P12(String),

    /// A certificate that the named CA did not sign.
    #[error("{} was not signed by the CA {ca} ({}): revoke it with the CA that signed it", .cert.display(), .ca_cert.display())]
    NotIssuedBy {
        cert: PathBuf,
        ca: String,
        ca_cert: PathBuf,
    },

    /// A certificate that is already in its CA's revocation list.
    #[error("{} (serial {serial}) is already revoked in {}: nothing changed", .cert.display(), .crl.display())]
    AlreadyRevoked {
        cert: PathBuf,
        serial: String,
        crl: PathBuf,
    },

    /// A validity of zero days, or one that would end after the year 9999.
    #[error("invalid validity of {0} days: give at least 1 day, ending before the year 10000")]
    BadDays(u32),

    /// The home directory is unknown, so the default certificate directory is too.
    #[error("cannot find the default certificate directory: set HOME or CAIRN_CERT_DIR")]
    NoHome,

    /// A file that is there but does not hold what it should.
    #[error("{}: {reason}", .path.display())]
    BadFile { path: PathBuf, reason: String },

    /// A CA key that does not belong to the CA certificate next to it.
    #[error("{} does not belong to {}: restore the CA's own key", .key.display(), .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// A pinned server presented another certificate.
    #[error("the server's certificate is {found}, not the pinned {expected}: check the pin, or trust the server's CA instead")]
    PinMismatch { expected: String, found: String },

    /// An operating-system error on a file or directory.
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The system's random number generator failed.
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),

    /// rcgen refused to build a certificate.
    #[error("certificate generation failed: {0}")]
    Rcgen(rcgen::Error),

    /// rustls refused a configuration, key or certificate.
    #[error("TLS configuration failed: {0}")]
    Tls(rustls::Error),

    /// rustls refused to build a certificate verifier.
    #[error("TLS certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
}

/// Short alias used throughout the crate.
pub type Result<T, E = CertError> = std::result::Result<T, E>;

impl CertError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> CertError {
        CertError::Io {
            path: path.into(),
            error,
        }
    }
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Rcgen(e)
    }
}

impl From<rustls::Error> for CertError {
    fn from(e: rustls::Error) -> Self {
        CertError::Tls(e)
    }
}

impl From<rustls::server::VerifierBuilderError> for CertError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        CertError::Verifier(e)
    }
}

impl From<getrandom::Error> for CertError {
    fn from(e: getrandom::Error) -> Self {
        CertError::Random(e)
    }
}

fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if shown.is_empty() {
        "no directory given".to_string()
    } else {
        shown.join(", ")
    }
}
