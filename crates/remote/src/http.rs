//! HTTP for the object store: the client (rustls with the ring provider named outright,
//! as everywhere in Cairn, never a process-wide default, and the system's CA
//! certificates), and sending a request with retries (see `retry`): a
//! request is sent again after an answer of 5xx, 429 or 408, and after a failure to
//! connect; an idempotent one also after a timeout or a connection cut part way. Any
//! other error answer becomes `RemoteError::Refused` with the object store's status and
//! S3 error code.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::{ErrorBody, RemoteError};
use crate::retry::Retries;

/// The longest wait for a connection to the object store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for the next bytes of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether sending a request twice does no harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// GET, PUT, DELETE: the same request again leaves the same state.
    Idempotent,
    /// POST (begin or complete a multipart upload): sent again only when the object
    /// store said it did nothing, or it was never reached.
    OnlyIfUnsent,
}

/// The HTTP client of the object store: HTTP/1.1, no redirects, TLS with ring and the
/// system's roots, bounded waits for a connection and for each read (a large body may
/// take as long as it needs).
pub(crate) fn build_client() -> Result<reqwest::Client, String> {
    let trust =
        cairn_certs::system_trust_http_config().map_err(|e| format!("TLS configuration: {e}"))?;
    for warning in &trust.warnings {
        tracing::warn!("object storage: {warning}");
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(trust.config)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cairn-remote/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))
}

/// A transport failure in one line, without the URL (a signed URL is a credential).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True for an answer that may well be different next time.
fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// True for a transport failure worth another try.
fn may_resend(error: &reqwest::Error, repeat: Repeat) -> bool {
    error.is_connect()
        || (repeat == Repeat::Idempotent
            && (error.is_timeout() || error.is_request() || error.is_body()))
}

/// Sends the request `build` makes (once per try, so that each try is signed anew) until
/// it succeeds or the retries are spent; returns the successful answer, its body unread.
/// `what` says what was being done, for errors.
pub(crate) async fn send(
    what: &str,
    repeat: Repeat,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, RemoteError> {
    send_within(&mut Retries::new(), what, repeat, &build).await
}

async fn send_within(
    retries: &mut Retries,
    what: &str,
    repeat: Repeat,
    build: &impl Fn() -> RequestBuilder,
) -> Result<Response, RemoteError> {
    loop {
        let failure = match build().send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let refused = RemoteError::refused(what, status, &body);
                if !is_transient(status) {
                    return Err(refused);
                }
                refused
            }
            Err(error) => {
                let resend = may_resend(&error, repeat);
                let failed = failure(what, error);
                if !resend {
                    return Err(failed);
                }
                failed
            }
        };
        wait_to_retry(retries, failure).await?;
    }
}

/// `send`, then the whole body (for small answers: listings, manifests, upload ids).
/// Reading the body is part of the try: an idempotent request whose body is cut short is
/// sent again. A success whose body is an S3 error (S3 answers a failed
/// CompleteMultipartUpload that way) is taken as a server error.
pub(crate) async fn fetch(
    what: &str,
    repeat: Repeat,
    build: impl Fn() -> RequestBuilder,
) -> Result<Bytes, RemoteError> {
    let mut retries = Retries::new();
    loop {
        let response = send_within(&mut retries, what, repeat, &build).await?;
        let status = response.status();
        let failure = match response.bytes().await {
            Ok(body) => {
                let text = std::str::from_utf8(&body).unwrap_or_default();
                if ErrorBody::parse(text).is_none() {
                    return Ok(body);
                }
                RemoteError::refused(what, status, text)
            }
            Err(error) => {
                let failed = failure(what, error);
                if repeat != Repeat::Idempotent {
                    return Err(failed);
                }
                failed
            }
        };
        wait_to_retry(&mut retries, failure).await?;
    }
}

/// A transport failure while doing `what`.
pub(crate) fn failure(what: &str, error: reqwest::Error) -> RemoteError {
    RemoteError::Failed {
        what: what.to_string(),
        reason: describe(error),
    }
}

/// Waits before the next try, or gives up with `failure` once the retries are spent.
pub(crate) async fn wait_to_retry(
    retries: &mut Retries,
    failure: RemoteError,
) -> Result<(), RemoteError> {
    let Some(wait) = retries.next_wait() else {
        return Err(failure);
    };
    tracing::info!(
        error = %failure,
        retry = retries.done(),
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "object storage: trying again"
    );
    tokio::time::sleep(wait).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3;
    use crate::test_server::{answer, serve};

    #[tokio::test]
    async fn a_server_error_is_tried_again_and_a_refusal_is_not() {
        let (settings, server) = serve(vec![
            answer(
                "503 Service Unavailable",
                &[],
                b"<Error><Code>SlowDown</Code></Error>",
                None,
            ),
            answer("200 OK", &[], b"{}", None),
            answer(
                "403 Forbidden",
                &[],
                b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
                None,
            ),
        ])
        .await;
        let s3 = S3::new(&settings, "bucket").unwrap();
        let got = s3
            .get_bytes("b1.manifest.json", "reading b1")
            .await
            .unwrap();
        assert_eq!(&got[..], b"{}");
        let refused = s3
            .get_bytes("b2.manifest.json", "reading b2")
            .await
            .unwrap_err();
        assert_eq!(refused.s3_facts(), Some((403, Some("AccessDenied"))));
        assert_eq!(server.await.unwrap().len(), 3, "the 403 was not sent again");
    }

    #[test]
    fn only_answers_that_may_change_are_retried() {
        for transient in [500, 502, 503, 504, 429, 408] {
            assert!(
                is_transient(StatusCode::from_u16(transient).unwrap()),
                "{transient}"
            );
        }
        for final_answer in [400, 403, 404, 409, 412] {
            assert!(
                !is_transient(StatusCode::from_u16(final_answer).unwrap()),
                "{final_answer}"
            );
        }
    }
}
