//! The crate's one error type, [`ClientError`]: the service's own errors (with their stable
//! code), and everything that can go wrong before or around them — a bad URL, missing
//! certificates, a refused connection, a failed TLS handshake, a broken or closed
//! connection. Each message says what to do next.

use cairn_certs::CertError;
use cairn_proto::{ErrorCode, WireError};

/// Why a connection or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error: its code, status, message and details.
    #[error("{0}")]
    Service(WireError),

    /// The service could not be reached.
    #[error(
        "cannot connect to {url}: {source}: check that the service is running and listens there"
    )]
    Connect { url: String, source: std::io::Error },

    /// The TLS handshake failed or the service refused the client's certificate.
    #[error("TLS with {url} failed: {reason}")]
    Tls { url: String, reason: String },

    /// The peer broke the protocol, or answered in a way this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The connection is closed; calls that were in flight may or may not have been applied.
    #[error("the connection to the service is closed: connect again (calls that were in flight may or may not have taken effect)")]
    Closed,

    /// A client URL that does not parse.
    #[error("invalid URL {0}")]
    Url(String),

    /// The certificate directory could not give a TLS configuration.
    #[error(transparent)]
    Certs(#[from] CertError),

    /// Reading or writing the connection failed.
    #[error("connection failed: {0}: connect again (calls that were in flight may or may not have taken effect)")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The service's error, when the service sent one.
    pub fn wire(&self) -> Option<&WireError> {
        match self {
            ClientError::Service(error) => Some(error),
            _ => None,
        }
    }

    /// The service's error code, when the service sent an error.
    pub fn code(&self) -> Option<ErrorCode> {
        self.wire().map(|error| error.code)
    }
}

/// Why a connection ended, kept to fail every later call the same way.
#[derive(Debug, Clone)]
pub(crate) enum Closure {
    /// The service closed the connection with an error for all calls (id 0).
    Service(WireError),
    /// The TLS layer failed after the handshake (e.g. the service refused the certificate).
    Tls { url: String, reason: String },
    /// The service broke the protocol.
    Protocol(String),
    /// Reading or writing failed.
    Io(std::io::ErrorKind, String),
    /// The connection ended without an error.
    Closed,
}

impl Closure {
    pub(crate) fn to_error(&self) -> ClientError {
        match self {
            Closure::Service(error) => ClientError::Service(error.clone()),
            Closure::Tls { url, reason } => ClientError::Tls {
                url: url.clone(),
                reason: reason.clone(),
            },
            Closure::Protocol(reason) => ClientError::Protocol(reason.clone()),
            Closure::Io(kind, message) => {
                ClientError::Io(std::io::Error::new(*kind, message.clone()))
            }
            Closure::Closed => ClientError::Closed,
        }
    }
}
