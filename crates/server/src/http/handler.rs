//! The router made from the route table, and the one handler every route shares: the
//! request's credentials, its body (at most 64 KiB before authentication, the frame
//! limit after), the method's arguments read as the route says, the call made through
//! `crate::methods` with the same checks as a native call, and the result shaped as
//! JSON; an error is `{"error": CODE, "reason": MESSAGE, "details": …}` with the status
//! of the error table (or the route's own), `Retry-After` on a 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::{Extension, Router};
use cairn_proto::{ErrorCode, Message, Method, MethodKind, WireError, MAX_UNAUTHENTICATED_FRAME};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rmpv::Value;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Verified;
use super::console;
use super::feed::{self, error_json, FeedFormat};
use super::json::{from_json, to_json};
use super::request::Input;
use super::routes::{Action, Precondition, Route, Verb, ROUTES};
use super::{auth, bad, openapi, shape, Connection};
use std::net::IpAddr;

use crate::auth::{Caller, Identity};
use crate::methods::{self, session};
use crate::net::peer_ip;
use crate::ops::shared::Shared;

/// How long a client is asked to wait before trying again after a 503.
const RETRY_AFTER_SECS: &str = "5";

/// The router of the plain-HTTP metrics listener (`[metrics] listen`): `GET /metrics`
/// alone, without authentication (bind it to an address only the scraper reaches).
pub fn metrics_router() -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |Extension(connection): Extension<Arc<Connection>>| async move {
                    metrics_response(&connection.shared).await
                },
            ),
        )
        .fallback(|| async {
            error_response(
                None,
                &WireError::new(
                    ErrorCode::NotFound,
                    "this listener serves GET /metrics alone",
                ),
            )
        })
}

/// The router of every route of the table.
pub fn router() -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let filter = match route.verb {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        };
        let handler =
            move |Extension(connection): Extension<Arc<Connection>>,
                  Extension(verified): Extension<Arc<Verified>>,
                  request: Request| { handle(route, connection, verified, request) };
        router = router.route(route.path, on(filter, handler));
    }
    router
        .fallback(|Extension(connection): Extension<Arc<Connection>>| async move {
            let error = WireError::new(
                ErrorCode::NotFound,
                "no such route: databases are /{db}/ (with the slash), the service is under /v1/; see README.md",
            );
            unmatched(&connection, error_response(None, &error))
        })
        .method_not_allowed_fallback(
            |Extension(connection): Extension<Arc<Connection>>| async move {
                let body = json!({
                    "error": ErrorCode::BadRequest.as_str(),
                    "reason": "this route does not take this HTTP method",
                });
                unmatched(
                    &connection,
                    json_response(StatusCode::METHOD_NOT_ALLOWED, &body),
                )
            },
        )
        .layer(Extension(Arc::new(Verified::default())))
}

/// A request no route matched, counted under the route `-`.
fn unmatched(connection: &Connection, response: Response) -> Response {
    let status = response.status().as_u16();
    connection
        .shared
        .metrics
        .observe_request("-", "-", status, std::time::Duration::ZERO);
    response
}

async fn handle(
    route: &'static Route,
    connection: Arc<Connection>,
    verified: Arc<Verified>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let response = match answer(route, &connection, &verified, request).await {
        Ok(response) => response,
        Err(error) => error_response(Some(route), &error),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    connection
        .shared
        .metrics
        .observe_request(route.verb.as_str(), route.path, status, elapsed);
    tracing::debug!(
        peer = %connection.peer,
        verb = route.verb.as_str(),
        route = route.path,
        status,
        micros = elapsed.as_micros(),
        "http request"
    );
    response
}

async fn answer(
    route: &'static Route,
    connection: &Connection,
    verified: &Verified,
    request: Request,
) -> Result<Response, WireError> {
    if let Some(refusal) = &connection.refusal {
        return Err(refusal.clone());
    }
    let shared = &connection.shared;
    let peer = peer_ip(&connection.peer);
    let (mut parts, body) = request.into_parts();
    let credentials = auth::identify(
        shared,
        connection.identity.as_ref(),
        &mut parts.headers,
        verified,
        peer,
    )
    .await?;
    if credentials.identity.is_some() {
        // The connection has authenticated: it no longer counts as unauthenticated.
        connection
            .unauthenticated
            .lock()
            .expect("unauthenticated slot lock")
            .take();
    }
    let limit = if credentials.identity.is_some() {
        shared.settings().max_frame_bytes
    } else {
        MAX_UNAUTHENTICATED_FRAME
    };
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                WireError::new(
                    ErrorCode::FrameTooLarge,
                    format!("a body over {limit} bytes is over this request's limit (64 KiB before authentication)"),
                )
            } else {
                bad(format!("the body could not be read: {error}"))
            }
        })?
        .to_bytes();
    let no_body = bytes.iter().all(u8::is_ascii_whitespace);
    let body = if no_body {
        Json::Null
    } else {
        super::json::parse_body(&bytes).map_err(bad)?
    };
    let (method, args, shape) = match route.action {
        Action::Call {
            method,
            args,
            shape,
        } => (method, args, shape),
        Action::Up => return up(shared).await,
        Action::Console(asset) => return Ok(console::serve(asset)),
        Action::ConsoleRedirect => return Ok(console::redirect()),
        Action::OpenApi => return Ok(json_response(StatusCode::OK, openapi::document())),
        Action::Metrics => {
            return metrics(shared, &credentials.caller, &credentials.identity).await
        }
    };
    use axum::extract::FromRequestParts;
    let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| bad(format!("the path does not decode: {e}")))?
        .0;
    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map_err(|e| bad(format!("the query does not decode: {e}")))?
        .0;
    let input = Input {
        params,
        query,
        body,
        headers: parts.headers,
        token: credentials.token,
        any_key: route.path.contains("/_doc/"),
        declared: route.query,
        no_body,
    };
    input.check_query()?;
    let who = Who {
        identity: credentials.identity,
        caller: credentials.caller,
        peer,
    };
    let args = from_json(args(&input)?);
    if route.precondition == Some(Precondition::ConfigEtag) {
        check_config_etag(shared, who.clone(), &input).await?;
    }
    if method == Method::Changes {
        if let Some(format) = continuous_format(&input) {
            check_feed(shared, who.clone(), &args).await?;
            return streamed(shared, who, method, args, format);
        }
    } else if method.kind() == MethodKind::Stream {
        return streamed(shared, who, method, args, FeedFormat::Lines);
    }
    let value = call(shared, who, method, args).await?;
    let reply = shape(to_json(value), &input)?;
    let status = StatusCode::from_u16(route.ok).unwrap_or(StatusCode::OK);
    let mut response = json_response(status, &reply.body);
    if let Some(etag) = reply.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Who a request is, the user record read for it, and where it comes from.
#[derive(Clone)]
struct Who {
    identity: Option<Identity>,
    caller: Option<Arc<Caller>>,
    peer: Option<IpAddr>,
}

/// Calls a method as `who` and returns its result.
async fn call(
    shared: &Arc<Shared>,
    who: Who,
    method: Method,
    args: Value,
) -> Result<Value, WireError> {
    if method.kind() == MethodKind::Session {
        return session::serve(shared, who.identity.as_ref(), method, args, who.peer)
            .await
            .map(|(value, _)| value);
    }
    // Only streams use the outbox, and they are called through `continuous`.
    let (outbox, _) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let who = (who.identity, who.caller);
    let body = methods::answer_one(shared.clone(), who, method, args, outbox, cancel).await;
    match body.as_deref().map(Message::decode) {
        Some(Ok(Message::Result { value, .. })) => Ok(value),
        Some(Ok(Message::Error { error, .. })) => Err(error),
        _ => Err(WireError::new(
            ErrorCode::Internal,
            format!("{method} answered no result"),
        )),
    }
}

/// `/metrics` on the API: for admins and the users of `[metrics] users`.
async fn metrics(
    shared: &Arc<Shared>,
    caller: &Option<Arc<Caller>>,
    identity: &Option<Identity>,
) -> Result<Response, WireError> {
    let caller = match (caller, identity) {
        (Some(caller), _) => caller,
        (None, Some(identity)) => return Err(crate::auth::gone(identity)),
        (None, None) => {
            return Err(WireError::new(
                ErrorCode::Unauthenticated,
                "log in first: a token, Basic, or a client certificate",
            ))
        }
    };
    let user = &caller.identity.user;
    let allowed = caller.record.admin || shared.settings().metrics_users.contains(user);
    if !allowed {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!("user {user:?} may not read the metrics: admins may, and the users of [metrics] users"),
        ));
    }
    Ok(metrics_response(shared).await)
}

/// The content type of `/metrics` (the OpenMetrics text format, which Prometheus reads).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, read on a blocking thread (they read the store).
pub(super) async fn metrics_response(shared: &Arc<Shared>) -> Response {
    let reader = shared.clone();
    let text = tokio::task::spawn_blocking(move || reader.metrics.render(&reader))
        .await
        .unwrap_or_default();
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

/// `/_up`: the effective status, 503 while DOWN.
async fn up(shared: &Arc<Shared>) -> Result<Response, WireError> {
    let anyone = Who {
        identity: None,
        caller: None,
        peer: None,
    };
    let status = to_json(call(shared, anyone, Method::Status, Value::Nil).await?);
    let down = status["status"] == "DOWN";
    let code = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut response = json_response(
        code,
        &json!({"status": status["status"], "currentMessage": status["currentMessage"]}),
    );
    if down {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    Ok(response)
}

/// `If-Match` on `PUT /{db}/_config` must name the configuration's current `ETag`.
async fn check_config_etag(shared: &Arc<Shared>, who: Who, input: &Input) -> Result<(), WireError> {
    let Some(wanted) = input.headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let args = from_json(json!({"name": input.param("db")?}));
    let current = to_json(call(shared, who, Method::DbConfig, args).await?);
    let etag = shape::config_etag(&current);
    let wanted = wanted.to_str().unwrap_or_default().trim();
    if wanted == "*" || wanted == etag {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::RevConflict,
        format!("the configuration's ETag is {etag}, not {wanted}: read it again"),
    ))
}

/// The format of a `_changes` request that streams, if it does.
fn continuous_format(input: &Input) -> Option<FeedFormat> {
    match input.query("feed") {
        Some("continuous") => Some(FeedFormat::Lines),
        Some("eventsource") => Some(FeedFormat::EventSource),
        _ => None,
    }
}

/// A continuous feed is checked first as a one-change page, so that a missing
/// database, a missing grant or a stale cursor is an error status, not a stream.
async fn check_feed(shared: &Arc<Shared>, who: Who, args: &Value) -> Result<(), WireError> {
    let mut check = to_json(args.clone());
    check["feed"] = json!("normal");
    check["limit"] = json!(1);
    call(shared, who, Method::Changes, from_json(check)).await?;
    Ok(())
}

/// A streaming call's items written as they come (a continuous feed, a mirror's
/// streams), ended by its end or error.
fn streamed(
    shared: &Arc<Shared>,
    who: Who,
    method: Method,
    args: Value,
    format: FeedFormat,
) -> Result<Response, WireError> {
    let (outbox, messages) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let feed_cancel = cancel.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let last_outbox = outbox.clone();
        let last = methods::answer_one(
            shared,
            (who.identity, who.caller),
            method,
            args,
            outbox,
            feed_cancel,
        )
        .await;
        if let Some(last) = last {
            let _ = last_outbox.send(last).await;
        }
    });
    let mut response = Response::new(feed::body(format, messages, cancel));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error as JSON, with the route's status for its code or the table's.
pub(super) fn error_response(route: Option<&Route>, error: &WireError) -> Response {
    let status = route
        .and_then(|r| r.statuses.iter().find(|(code, _)| *code == error.code))
        .map_or(error.code.status(), |(_, status)| *status);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &error_json(error));
    let headers = response.headers_mut();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cairn\""),
        );
    }
    response
}
