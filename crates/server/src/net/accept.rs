//! Listening and accepting: each listener (the service's own unix sockets, other unix
//! sockets, TLS ports) accepts connections until shutdown; a TLS handshake runs in the
//! connection's own task (bounded in time), so that a stalled client never blocks the
//! accept loop. The protocol is chosen by the listener and, on a TLS port that serves
//! both, by the ALPN protocol the handshake settled on (`cairn/1`: native; `h2`:
//! HTTP/2; `http/1.1` or none: HTTP/1.1), never by sniffing bytes. A connection over
//! `max_connections` is answered `too_many_connections` and closed; a client
//! certificate names its user (its CN), who must exist and not be locked. The TLS
//! configuration is rebuilt when a revocation list changes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_certs::{CertDir, ClientAuth};
use cairn_proto::{push_frame, ErrorCode, Message, WireError};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::auth::{Identity, Via, ROOT_USER};
use crate::config::ListenUrl;
use crate::error::ServerError;
use crate::http::{self, Version};
use crate::ops::shared::Shared;

/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The native protocol alone (unix sockets).
    Native,
    /// HTTP alone (`https://` ports and `DIR/http.sock`).
    Http,
    /// Both, chosen per connection by ALPN (`ssl://` ports).
    Both,
}

impl Serves {
    /// The ALPN protocols a TLS port offers, in the service's order of preference.
    fn alpn(self) -> Vec<Vec<u8>> {
        let http = [ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        match self {
            Serves::Native => vec![cairn_certs::ALPN.to_vec()],
            Serves::Http => http.to_vec(),
            Serves::Both => [vec![cairn_certs::ALPN.to_vec()], http.to_vec()].concat(),
        }
    }
}

/// The TLS configuration of one listener, built again when the revocation lists in
/// the certificate directories change, so that a revocation takes effect at the next
/// handshake without a restart.
pub struct TlsSource {
    dirs: Vec<CertDir>,
    host_names: Vec<String>,
    client_auth: ClientAuth,
    serves: Serves,
    current: std::sync::Mutex<(cairn_certs::CrlFingerprint, TlsAcceptor)>,
}

impl TlsSource {
    fn new(
        dirs: &[CertDir],
        host_names: Vec<String>,
        client_auth: ClientAuth,
        serves: Serves,
    ) -> Result<TlsSource, ServerError> {
        let fingerprint = cairn_certs::crl_fingerprint(dirs)?;
        let config = tls_config(dirs, &host_names, &client_auth, serves)?;
        Ok(TlsSource {
            dirs: dirs.to_vec(),
            host_names,
            client_auth,
            serves,
            current: std::sync::Mutex::new((fingerprint, TlsAcceptor::from(Arc::new(config)))),
        })
    }

    /// The TLS configuration of the certificate directories as they are now.
    fn config(&self) -> Result<rustls::ServerConfig, cairn_certs::CertError> {
        tls_config(&self.dirs, &self.host_names, &self.client_auth, self.serves)
    }

    /// The acceptor to use now: rebuilt first if a revocation list changed. A list that
    /// fails to load keeps the previous configuration in force, with an error logged.
    fn acceptor(&self) -> TlsAcceptor {
        let mut current = self.current.lock().expect("tls source lock");
        match cairn_certs::crl_fingerprint(&self.dirs) {
            Ok(fingerprint) if fingerprint != current.0 => match self.config() {
                Ok(config) => {
                    tracing::warn!("revocation lists changed: TLS configuration reloaded");
                    *current = (fingerprint, TlsAcceptor::from(Arc::new(config)));
                }
                Err(error) => {
                    tracing::error!(%error, "revocation lists changed but do not load; keeping the previous ones")
                }
            },
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot read the revocation lists"),
        }
        current.1.clone()
    }
}

/// The TLS configuration of `cairn-certs` offering the protocols the listener serves.
fn tls_config(
    dirs: &[CertDir],
    host_names: &[String],
    client_auth: &ClientAuth,
    serves: Serves,
) -> Result<rustls::ServerConfig, cairn_certs::CertError> {
    let mut config = cairn_certs::server_config(dirs, host_names, client_auth.clone())?;
    config.alpn_protocols = serves.alpn();
    Ok(config)
}

/// A bound listener, not yet accepting.
pub enum Listener {
    Tls {
        listener: TcpListener,
        tls: Arc<TlsSource>,
        url: String,
    },
    /// `[metrics] listen`: plain HTTP, `/metrics` alone.
    Metrics { listener: TcpListener, url: String },
    Unix {
        listener: UnixListener,
        url: String,
        /// Connections on the service's own socket are root.
        as_root: bool,
        /// `Native` or `Http`.
        serves: Serves,
    },
}

impl Listener {
    /// The listener's URL, with the real port.
    pub fn url(&self) -> &str {
        match self {
            Listener::Tls { url, .. }
            | Listener::Metrics { url, .. }
            | Listener::Unix { url, .. } => url,
        }
    }
}

/// A counted place, freed when dropped: an open connection (against `max_connections`,
/// and in the connections' gauge), or an unauthenticated one (against
/// `max_unauthenticated_connections`, given up when the connection authenticates).
pub struct Slot(Arc<AtomicUsize>, Option<Gauge>);

impl Slot {
    /// A slot, unless `max` are taken already.
    fn take(taken: &Arc<AtomicUsize>, max: usize, gauge: Option<&Gauge>) -> Option<Slot> {
        taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                if let Some(gauge) = gauge {
                    gauge.inc();
                }
                Slot(taken.clone(), gauge.cloned())
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.1 {
            gauge.dec();
        }
    }
}

/// The connections open and those not authenticated yet.
#[derive(Clone, Default)]
struct Counts {
    open: Arc<AtomicUsize>,
    unauthenticated: Arc<AtomicUsize>,
}

impl Counts {
    /// The slot of a new connection (the limit in force now: a reload changes it for
    /// the next connections), or why it is refused. The service's own sockets are
    /// root's and never count: an admin always gets in.
    fn admit(&self, shared: &Shared, exempt: bool) -> Result<Option<Slot>, WireError> {
        if exempt {
            return Ok(None);
        }
        let max = shared.settings().max_connections;
        Slot::take(&self.open, max, Some(shared.metrics.connections()))
            .map(Some)
            .ok_or_else(|| full_error(max, "connections"))
    }

    /// The slot of a connection that is not authenticated once its handshake is over
    /// (no client certificate), or why it is refused.
    fn unauthenticated(&self, shared: &Shared) -> Result<Slot, WireError> {
        let settings = shared.settings();
        let max = settings
            .max_unauthenticated_connections
            .min(settings.max_connections);
        Slot::take(&self.unauthenticated, max, None)
            .ok_or_else(|| full_error(max, "unauthenticated connections"))
    }
}

/// Binds a unix socket (mode 0600) serving the native protocol or HTTP; `as_root`: the
/// service's own, whose connections are root's.
pub fn bind_unix(path: &Path, as_root: bool, serves: Serves) -> Result<Listener, ServerError> {
    let url = format!("unix://{}", path.display());
    // A socket file left by a service that died; the directory lock says none runs now.
    if as_root && path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        url: url.clone(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ServerError::io(format!("securing {}", path.display()), e))?;
    Ok(Listener::Unix {
        listener,
        url,
        as_root,
        serves,
    })
}

/// Binds a TLS port serving the host names' certificates (the embedded default's when
/// none is named), requiring client certificates of `required_ca` when given.
pub async fn bind_tls(
    address: &str,
    host_names: &[String],
    required_ca: &Option<String>,
    serves: Serves,
    cert_dirs: &[CertDir],
) -> Result<Listener, ServerError> {
    let names = if host_names.is_empty() {
        vec![cairn_certs::EMBEDDED_HOST.to_string()]
    } else {
        host_names.to_vec()
    };
    let client_auth = match required_ca {
        Some(ca) => ClientAuth::Required { ca: ca.clone() },
        None => ClientAuth::Optional,
    };
    let tls = Arc::new(TlsSource::new(cert_dirs, names, client_auth, serves)?);
    let http_only = serves == Serves::Http;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            url: ListenUrl::Tls {
                address: address.to_string(),
                host_names: Vec::new(),
                required_ca: None,
                http_only,
            }
            .to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the bound address", e))?;
    let url = ListenUrl::Tls {
        address: local.to_string(),
        host_names: host_names.to_vec(),
        required_ca: required_ca.clone(),
        http_only,
    }
    .to_string();
    Ok(Listener::Tls { listener, tls, url })
}

/// Binds the plain-HTTP metrics listener (`[metrics] listen`) on `address`.
pub async fn bind_metrics(address: &str) -> Result<Listener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        url: format!("http://{address}"),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok(Listener::Metrics {
        listener,
        url: format!("http://{local}/metrics"),
    })
}

/// The routers of the HTTP connections: the API's and the metrics listener's.
#[derive(Clone)]
struct Routers {
    api: axum::Router,
    metrics: axum::Router,
}

/// Accepts connections on every listener until the service shuts down, then waits for
/// the open connections to finish (bounded by the shutdown grace).
pub async fn serve(listeners: Vec<Listener>, shared: Arc<Shared>) {
    let connections = TaskTracker::new();
    let counts = Counts::default();
    let accepting = TaskTracker::new();
    let routers = Routers {
        api: http::router(),
        metrics: http::metrics_router(),
    };
    for listener in listeners {
        accepting.spawn(accept_loop(
            listener,
            shared.clone(),
            routers.clone(),
            connections.clone(),
            counts.clone(),
        ));
    }
    accepting.close();
    accepting.wait().await;
    tracing::warn!("shutting down: no new connections; waiting for calls in flight");
    connections.close();
    let grace = shared
        .settings()
        .shutdown_grace
        .saturating_add(Duration::from_secs(2));
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period");
    }
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    routers: Routers,
    connections: TaskTracker,
    counts: Counts,
) {
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, listener = listener.url(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let as_root = matches!(listener, Listener::Unix { as_root: true, .. });
        let admitted = counts.admit(&shared, as_root);
        let shared = shared.clone();
        let routers = routers.clone();
        let (tls, serves) = match &listener {
            Listener::Tls { tls, .. } => (Some(tls.acceptor()), tls.serves),
            Listener::Metrics { .. } => (None, Serves::Http),
            Listener::Unix { serves, .. } => (None, *serves),
        };
        let counts = counts.clone();
        connections.spawn(async move {
            let (full, slot) = match admitted {
                Ok(slot) => (None, slot),
                Err(error) => (Some(error), None),
            };
            let mut unauthenticated = None;
            match (stream, tls) {
                (Accepted::Tcp(tcp), Some(acceptor)) => {
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        tracing::info!(%peer, "TLS handshake failed");
                        return;
                    };
                    let session = tls_stream.get_ref().1;
                    let speaks = match session.alpn_protocol() {
                        Some(cairn_certs::ALPN) => None,
                        Some(ALPN_H2) => Some(Version::Http2),
                        _ => Some(Version::Http1),
                    };
                    let identity = match full {
                        Some(error) => Err(error),
                        None => certificate_identity(&shared, session, &peer),
                    };
                    // Without a client certificate, it counts as unauthenticated until
                    // it authenticates.
                    let identity = match identity {
                        Ok(None) => counts.unauthenticated(&shared).map(|slot| {
                            unauthenticated = Some(slot);
                            None
                        }),
                        other => other,
                    };
                    match speaks {
                        Some(version) => {
                            let connection =
                                http_connection(shared, identity, peer, unauthenticated);
                            http::serve(routers.api, tls_stream, connection, version).await
                        }
                        None => match identity {
                            Ok(identity) => {
                                let connection = crate::net::connection::NewConnection::new(
                                    identity,
                                    peer,
                                    unauthenticated,
                                );
                                crate::net::connection::serve(shared, tls_stream, connection).await
                            }
                            Err(error) => refuse(tls_stream, error).await,
                        },
                    }
                }
                (Accepted::Unix(unix), _) => {
                    let identity = as_root.then(|| Identity {
                        user: ROOT_USER.to_string(),
                        via: Via::Socket,
                        token_hash: None,
                    });
                    let identity = match (full, identity) {
                        (Some(error), _) => Err(error),
                        (None, Some(root)) => Ok(Some(root)),
                        (None, None) => counts.unauthenticated(&shared).map(|slot| {
                            unauthenticated = Some(slot);
                            None
                        }),
                    };
                    match (serves, identity) {
                        (Serves::Http, identity) => {
                            let connection =
                                http_connection(shared, identity, peer, unauthenticated);
                            http::serve(routers.api, unix, connection, Version::Http1).await
                        }
                        (_, Ok(identity)) => {
                            let connection = crate::net::connection::NewConnection::new(
                                identity,
                                peer,
                                unauthenticated,
                            );
                            crate::net::connection::serve(shared, unix, connection).await
                        }
                        (_, Err(error)) => refuse(unix, error).await,
                    }
                }
                (Accepted::Tcp(tcp), None) => {
                    // The metrics listener: no identity, /metrics alone.
                    let identity = full.map_or(Ok(None), Err);
                    let connection = http_connection(shared, identity, peer, unauthenticated);
                    http::serve(routers.metrics, tcp, connection, Version::Http1).await
                }
            }
            drop(slot);
        });
    }
}

/// An HTTP connection with the identity its handshake gave, or the refusal every request
/// is answered with.
fn http_connection(
    shared: Arc<Shared>,
    identity: Result<Option<Identity>, WireError>,
    peer: String,
    unauthenticated: Option<Slot>,
) -> http::Connection {
    let (identity, refusal) = match identity {
        Ok(identity) => (identity, None),
        Err(error) => (None, Some(error)),
    };
    http::Connection {
        shared,
        identity,
        refusal,
        peer,
        unauthenticated: std::sync::Mutex::new(unauthenticated),
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Accepted, String)> {
    match listener {
        Listener::Tls { listener, .. } | Listener::Metrics { listener, .. } => {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Accepted::Tcp(stream), peer.to_string()))
        }
        Listener::Unix { listener, url, .. } => {
            let (stream, _) = listener.accept().await?;
            Ok((Accepted::Unix(stream), url.clone()))
        }
    }
}

/// The user a verified client certificate names, if the connection presented one.
fn certificate_identity(
    shared: &Shared,
    session: &rustls::ServerConnection,
    peer: &str,
) -> Result<Option<Identity>, WireError> {
    let Some(chain) = session.peer_certificates() else {
        return Ok(None);
    };
    let refused = |why: String| {
        tracing::info!(%peer, reason = %why, "client certificate refused");
        WireError::new(ErrorCode::BadCredentials, why)
    };
    let user = cairn_certs::peer_user(chain)
        .ok_or_else(|| refused("the client certificate has no CN naming a user".to_string()))?;
    let record = shared
        .store()
        .map_err(|e| refused(e.message))?
        .snapshot()
        .and_then(|s| s.user(&user))
        .map_err(|e| refused(e.to_string()))?;
    match record {
        Some(record) if !record.locked => Ok(Some(Identity {
            user,
            via: Via::Certificate,
            token_hash: None,
        })),
        _ => Err(refused(format!(
            "the client certificate names {user:?}, who is no user here or is locked"
        ))),
    }
}

async fn refuse<S: tokio::io::AsyncWrite + Unpin>(mut stream: S, error: WireError) {
    use tokio::io::AsyncWriteExt;
    let mut frame = Vec::new();
    if push_frame(&mut frame, &Message::Error { id: 0, error }.encode()).is_ok() {
        let _ = stream.write_all(&frame).await;
    }
    let _ = stream.shutdown().await;
}

fn full_error(max: usize, what: &str) -> WireError {
    tracing::warn!(
        max,
        what,
        "connection refused: a connection limit is reached"
    );
    WireError::new(
        ErrorCode::TooManyConnections,
        format!("the service serves at most {max} {what}: try again later"),
    )
}
