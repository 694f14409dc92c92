//! The HTTPS JSON API: the same methods as the native protocol, over HTTP/1.1 and
//! HTTP/2 (hyper's explicit connection builders, chosen by the ALPN protocol the TLS
//! handshake settled on; axum routes over them). The routes are one table
//! (`routes`), each calling a method of `cairn-proto`'s table through `crate::methods`
//! with the same permission and availability checks and the same error codes. A
//! connection carries the identity its handshake gave (a client certificate, or root on
//! `DIR/http.sock`); each request may bring its own (a session token or Basic).
//!
//! Limits as on the native port: headers must arrive within the unauthenticated idle
//! time and fit in 64 KiB, a connection that begins no request for that time is closed
//! (after what is in flight), a body is at most 64 KiB before authentication and the
//! frame limit after, and the shutdown ends connections gracefully.

mod auth;
mod console;
mod feed;
mod handler;
mod json;
mod openapi;
mod request;
mod routes;
mod shape;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use cairn_proto::{ErrorCode, WireError};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::auth::Identity;
use crate::ops::shared::Shared;

pub use handler::{metrics_router, router};

/// The most header bytes a request may send.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

/// What every request of a connection shares.
pub struct Connection {
    pub shared: Arc<Shared>,
    /// Who the handshake said the connection is.
    pub identity: Option<Identity>,
    /// Set when the connection is refused (a refused client certificate, the connection
    /// limit): every request is answered with it.
    pub refusal: Option<WireError>,
    pub peer: String,
    /// Held until a request of the connection authenticates
    /// (`max_unauthenticated_connections`).
    pub unauthenticated: std::sync::Mutex<Option<crate::net::Slot>>,
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

/// When a connection last began a request: a connection that begins none for the
/// unauthenticated idle time is asked to close (requests in flight, a feed streaming
/// among them, finish first), so that a silent client never holds a connection slot.
struct Activity {
    started: std::time::Instant,
    last_request_ms: AtomicU64,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: std::time::Instant::now(),
            last_request_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_request_ms.store(now, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the connection ever began a request.
    fn used(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// How long since the last request began (or the connection opened).
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// Serves HTTP on one connection until the client leaves, stays idle, or the service
/// shuts down. A refused connection answers with its refusal and lives no longer than
/// the idle time.
pub async fn serve<S>(router: Router, stream: S, connection: Connection, version: Version)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let shared = connection.shared.clone();
    let settings = shared.settings();
    let refused = connection.refusal.is_some();
    let connection = Arc::new(connection);
    let activity = Arc::new(Activity::new());
    let touched = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        touched.touch();
        request.extensions_mut().insert(connection.clone());
        router.clone().oneshot(request.map(Body::new))
    });
    let io = TokioIo::new(stream);
    let idle = settings.unauthenticated_idle;
    match version {
        Version::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(!refused);
            let connection = builder.serve_connection(io, service);
            drive(&shared, &activity, idle, connection, |c| {
                c.graceful_shutdown()
            })
            .await;
        }
        Version::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
                .max_concurrent_streams(
                    u32::try_from(settings.max_calls_per_connection).unwrap_or(u32::MAX),
                );
            let connection = builder.serve_connection(io, service);
            drive(&shared, &activity, idle, connection, |c| {
                c.graceful_shutdown()
            })
            .await;
        }
    }
}

/// Runs a hyper connection; once it has begun no request for `idle`, or at shutdown,
/// asks it to finish gracefully (what is in flight ends first; at shutdown within the
/// grace period).
async fn drive<C, E>(
    shared: &Shared,
    activity: &Activity,
    idle: Duration,
    connection: C,
    shutdown: fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let check = (idle / 4).max(Duration::from_millis(100));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "http connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(check), if !closing => {
                if activity.idle() >= idle {
                    if !activity.used() {
                        // Nothing to finish (an HTTP/2 client that never sent its
                        // preface would not even hear a graceful goodbye): drop it.
                        return;
                    }
                    shutdown(connection.as_mut());
                    closing = true;
                }
            }
            _ = shared.shutdown.cancelled() => break,
        }
    }
    if !closing {
        shutdown(connection.as_mut());
    }
    let grace = shared.settings().shutdown_grace;
    let _ = tokio::time::timeout(grace, connection).await;
}
