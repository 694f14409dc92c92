//! Reaching a service: a unix socket, or TCP with TLS 1.3 (tokio-rustls, the rustls
//! configuration of `cairn-certs`, ALPN `cairn/1`). Trust is the CAs of the certificate
//! directories or the URL's `certhash=` pin; the client certificate presented is the one
//! asked for (`ConnectOptions::client_cert` or `certname=`) or else the URL user's, when a
//! directory holds `users/USER.crt`. TLS failures are told in terms of what to do next.

use std::future::Future;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use cairn_certs::{CertDir, Kind, Trust};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use crate::client::ConnectOptions;
use crate::connection::Connection;
use crate::error::{ClientError, Closure};
use crate::url::{ClientUrl, TlsUrl};

/// Opens a connection to `url` and starts serving it.
pub(crate) async fn open(
    url: &ClientUrl,
    options: &ConnectOptions,
) -> Result<Connection, ClientError> {
    let shown = url.redacted();
    match url {
        ClientUrl::Unix { path } => {
            let stream = within(options.connect_timeout, UnixStream::connect(path))
                .await
                .map_err(|source| ClientError::Connect {
                    url: shown.clone(),
                    source,
                })?;
            Ok(Connection::start(
                stream,
                shown,
                options.max_frame,
                options.max_calls_in_flight,
            ))
        }
        ClientUrl::Tls(tls) => {
            let dirs = cert_dirs(options)?;
            let trust = match tls.certhash {
                Some(hash) => Trust::Pin(hash),
                None => Trust::Cas,
            };
            let client_cert = client_cert(tls, options, &dirs, &shown)?;
            let config = cairn_certs::client_config(&dirs, trust, client_cert.as_deref())?;
            let server_name = ServerName::try_from(tls.server_name().to_string())
                .map_err(|e| ClientError::Url(format!("{shown:?}: {e}")))?;
            let tcp = within(
                options.connect_timeout,
                TcpStream::connect((tls.host.as_str(), tls.port)),
            )
            .await
            .map_err(|source| ClientError::Connect {
                url: shown.clone(),
                source,
            })?;
            let _ = tcp.set_nodelay(true);
            let connector = TlsConnector::from(Arc::new(config));
            let stream = within(options.connect_timeout, connector.connect(server_name, tcp))
                .await
                .map_err(|error| ClientError::Tls {
                    url: shown.clone(),
                    reason: handshake_failure(&error, tls, &dirs),
                })?;
            if stream.get_ref().1.alpn_protocol() != Some(cairn_certs::ALPN) {
                return Err(ClientError::Tls {
                    url: shown,
                    reason:
                        "the server does not speak the protocol cairn/1: is it a Cairn service?"
                            .to_string(),
                });
            }
            Ok(Connection::start(
                stream,
                shown,
                options.max_frame,
                options.max_calls_in_flight,
            ))
        }
    }
}

/// Runs `io` for at most `limit`.
async fn within<T>(
    limit: Duration,
    io: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, io).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer within {} s", limit.as_secs_f64()),
        ))
    })
}

/// The certificate directories of `options`, or the default one.
fn cert_dirs(options: &ConnectOptions) -> Result<Vec<CertDir>, ClientError> {
    if options.cert_dirs.is_empty() {
        return Ok(vec![CertDir::new(CertDir::default_path()?)]);
    }
    Ok(options
        .cert_dirs
        .iter()
        .cloned()
        .map(CertDir::new)
        .collect())
}

/// The user certificate to present: the one asked for, else the URL user's if one exists.
fn client_cert(
    url: &TlsUrl,
    options: &ConnectOptions,
    dirs: &[CertDir],
    shown: &str,
) -> Result<Option<String>, ClientError> {
    match (&options.client_cert, &url.certname) {
        (Some(asked), Some(named)) if asked != named => Err(ClientError::Url(format!(
            "{shown:?}: certname={named} differs from the client certificate {asked} asked for: give only one"
        ))),
        (Some(name), _) | (None, Some(name)) => Ok(Some(name.clone())),
        (None, None) => Ok(url.user.clone().filter(|user| {
            dirs.iter()
                .any(|dir| dir.cert_path(Kind::User, user).is_ok_and(|p| p.is_file()))
        })),
    }
}

/// What a failed handshake means, and what to do about it.
fn handshake_failure(error: &std::io::Error, url: &TlsUrl, dirs: &[CertDir]) -> String {
    let Some(tls) = rustls_error(error) else {
        return format!(
            "the connection failed during the handshake ({error}): is this a Cairn TLS port?"
        );
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            let cas: Vec<String> = dirs
                .iter()
                .map(|d| d.root().join(Kind::Ca.subdir()).display().to_string())
                .collect();
            format!(
                "the server's certificate is not signed by a CA in {}: copy the service's CA certificate (DIR/certs/cas/NAME.crt of the service) there, or pin the server's certificate with ?certhash=sha256:HEX",
                cas.join(", ")
            )
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate does not name {:?}: connect with a name it holds, or set ?hostname=NAME to one",
            url.server_name()
        ),
        other => explain(other),
    }
}

/// The rustls error inside an I/O error, if there is one.
fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What a TLS error means, whenever it happens.
fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired: renew it (cairn-easycert) or check this machine's clock"
            .to_string(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet: check the clocks of both machines".to_string(),
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
            "the server's certificate is revoked: the service needs a new one".to_string()
        }
        // A pin mismatch: cairn-certs says which certificate was found.
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.to_string(),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the service requires a client certificate: present one with ?certname=NAME (users/NAME.crt)"
                .to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate),
        ) => format!(
            "the service refused the client certificate ({alert:?}): present one signed by a CA it trusts"
        ),
        rustls::Error::NoApplicationProtocol => {
            "the server does not speak the protocol cairn/1: is it a Cairn service?".to_string()
        }
        other => other.to_string(),
    }
}

/// Why a connection ended after an I/O error on it.
pub(crate) fn io_closure(url: &str, error: std::io::Error) -> Closure {
    if let Some(tls) = rustls_error(&error) {
        return Closure::Tls {
            url: url.to_string(),
            reason: explain(tls),
        };
    }
    match error.kind() {
        ErrorKind::UnexpectedEof => Closure::Closed,
        kind => Closure::Io(kind, error.to_string()),
    }
}
