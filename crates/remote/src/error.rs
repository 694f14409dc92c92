//! Why a remote backup call failed: `RemoteError`. When the object store answers with
//! an error, its HTTP status and the S3 error code of its XML body (`<Error><Code>
//! NoSuchBucket</Code><Message>…`) are kept as values, so that callers match on them
//! rather than on text.

use cairn_store::StoreError;
use instant_xml::FromXml;

/// The S3 error code of a request on a bucket that does not exist.
pub const NO_SUCH_BUCKET: &str = "NoSuchBucket";

/// Why a remote backup call failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The object store answered with an error.
    #[error("{what}: the object store refused it ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        what: String,
        /// The HTTP status, e.g. 403.
        status: u16,
        /// The S3 error code, e.g. `AccessDenied`.
        code: Option<String>,
        /// The object store's own words, else the status's reason phrase.
        message: String,
    },
    /// The object store could not be reached, or the client could not be set up.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error("backup {name:?} already exists in {location}: choose another name")]
    Exists { name: String, location: String },
    #[error("no backup {name:?} in {location}")]
    Missing { name: String, location: String },
    /// What was read back is not what was written, or an object is not what it says.
    #[error("{what}: {reason}")]
    Mismatch { what: String, reason: String },
    /// A local step (the backup, scratch files, a cancel) failed.
    #[error(transparent)]
    Local(#[from] StoreError),
}

impl RemoteError {
    /// The object store's HTTP status and S3 error code, when it refused.
    pub fn s3_facts(&self) -> Option<(u16, Option<&str>)> {
        match self {
            RemoteError::Refused { status, code, .. } => Some((*status, code.as_deref())),
            _ => None,
        }
    }

    /// True when the object store said the object (not its bucket) does not exist.
    pub fn is_missing_object(&self) -> bool {
        matches!(self.s3_facts(), Some((404, code)) if code != Some(NO_SUCH_BUCKET))
    }

    /// The refusal `status` with the error `body` the object store sent (S3's XML, or
    /// anything else, or nothing), while doing `what`.
    pub(crate) fn refused(what: &str, status: reqwest::StatusCode, body: &str) -> RemoteError {
        let parsed = ErrorBody::parse(body);
        let reason = || status.canonical_reason().unwrap_or("no reason given");
        RemoteError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            code: parsed.as_ref().and_then(|p| p.code.clone()),
            message: parsed
                .and_then(|p| p.message)
                .unwrap_or_else(|| reason().to_string()),
        }
    }
}

/// The body of an S3 error answer: `<Error><Code>…</Code><Message>…</Message>…</Error>`.
#[derive(Debug, PartialEq, Eq, FromXml)]
#[xml(rename = "Error")]
pub(crate) struct ErrorBody {
    #[xml(rename = "Code")]
    code: Option<String>,
    #[xml(rename = "Message")]
    message: Option<String>,
}

impl ErrorBody {
    /// The code and message of an error body, trimmed, empty ones left out; `None` when
    /// `body` is not an S3 error.
    pub(crate) fn parse(body: &str) -> Option<ErrorBody> {
        let parsed: ErrorBody = instant_xml::from_str(body.trim()).ok()?;
        let keep =
            |text: Option<String>| text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Some(ErrorBody {
            code: keep(parsed.code),
            message: keep(parsed.message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn the_code_and_message_are_read_from_the_body() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message><Resource>/b/p</Resource><Region>garage</Region></Error>";
        assert_eq!(
            ErrorBody::parse(body),
            Some(ErrorBody {
                code: Some("AccessDenied".into()),
                message: Some("Forbidden: Invalid signature".into())
            })
        );
        let escaped =
            "<Error><Code>NoSuchKey</Code><Message> a &lt;key&gt; &amp; more </Message></Error>";
        assert_eq!(
            ErrorBody::parse(escaped).unwrap().message.as_deref(),
            Some("a <key> & more")
        );
        let no_message = "<Error><Code>SlowDown</Code><Message></Message></Error>";
        assert_eq!(ErrorBody::parse(no_message).unwrap().message, None);
        for not_s3 in [
            "",
            "Bad Gateway",
            "<html><body>502</body></html>",
            "{\"a\":1}",
        ] {
            assert_eq!(ErrorBody::parse(not_s3), None, "{not_s3:?}");
        }
    }

    #[test]
    fn a_refusal_keeps_status_and_code_as_values() {
        let body = "<Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message></Error>";
        let refused = RemoteError::refused("listing s3://b/p/", StatusCode::FORBIDDEN, body);
        assert_eq!(refused.s3_facts(), Some((403, Some("AccessDenied"))));
        assert_eq!(
            refused.to_string(),
            "listing s3://b/p/: the object store refused it (403 AccessDenied): Forbidden: Invalid signature"
        );
        assert!(!refused.is_missing_object());

        let bucket =
            "<Error><Code>NoSuchBucket</Code><Message>Bucket not found: nope</Message></Error>";
        let bucket = RemoteError::refused("reading s3://nope/b1", StatusCode::NOT_FOUND, bucket);
        assert_eq!(bucket.s3_facts(), Some((404, Some(NO_SUCH_BUCKET))));
        assert!(
            !bucket.is_missing_object(),
            "a missing bucket is not a missing object"
        );
        let key = "<Error><Code>NoSuchKey</Code><Message>Key not found</Message></Error>";
        assert!(RemoteError::refused("r", StatusCode::NOT_FOUND, key).is_missing_object());

        let bare = RemoteError::refused("r", StatusCode::BAD_GATEWAY, "<html>oops</html>");
        assert_eq!(bare.s3_facts(), Some((502, None)));
        assert_eq!(
            bare.to_string(),
            "r: the object store refused it (502): Bad Gateway"
        );
        assert!(RemoteError::refused("r", StatusCode::NOT_FOUND, "").is_missing_object());
        assert_eq!(
            RemoteError::Failed {
                what: "w".into(),
                reason: "r".into()
            }
            .s3_facts(),
            None
        );
    }
}
