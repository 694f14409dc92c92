//! The S3 requests remote backups make, on one bucket: each request is a URL signed by
//! `rusty-s3` (AWS signature version 4 in the query string, path-style addressing:
//! `ENDPOINT/BUCKET/KEY`, as S3-compatible servers expect) and sent by `http` with
//! retries. Keys are full object keys (`PREFIX/NAME.tar.zst`); `what` arguments say what
//! was being done, for errors.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, ETAG};
use reqwest::Url;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::error::RemoteError;
use crate::http::{self, Repeat};
use crate::reader::ObjectReader;
use crate::settings::S3Settings;

/// How long a signed URL is valid: it is signed just before each try.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The full key, `PREFIX/NAME.tar.zst`.
    pub key: String,
    pub size: u64,
}

/// A client of one bucket.
pub(crate) struct S3 {
    http: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
}

impl S3 {
    /// A client of `bucket` (no request is made yet). Fails without credentials or with
    /// an endpoint that is not an `http(s)://` URL; the error is the reason.
    pub(crate) fn new(settings: &S3Settings, bucket: &str) -> Result<S3, String> {
        let (Some(key_id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key)
        else {
            return Err("no access key: set [backup.s3] access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string());
        };
        let credentials = match &settings.session_token {
            Some(token) => Credentials::new_with_token(key_id, secret, token),
            None => Credentials::new(key_id, secret),
        };
        let region = settings.region().to_string();
        let endpoint = match &settings.endpoint {
            Some(endpoint) if endpoint.ends_with('/') => endpoint.clone(),
            Some(endpoint) => format!("{endpoint}/"),
            None => format!("https://s3.{region}.amazonaws.com/"),
        };
        let endpoint = Url::parse(&endpoint).map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, bucket.to_string(), region)
            .map_err(|e| format!("bucket {bucket:?}: {e}"))?;
        Ok(S3 {
            http: http::build_client()?,
            bucket,
            credentials,
        })
    }

    /// Starts reading the object `key`; see `ObjectReader`.
    pub(crate) async fn get<'s>(
        &'s self,
        key: &str,
        what: &str,
    ) -> Result<ObjectReader<'s>, RemoteError> {
        let response = http::send(what, Repeat::Idempotent, || self.get_request(key)).await?;
        Ok(ObjectReader::new(self, key, what, response))
    }

    /// A signed GET of the object `key`.
    pub(crate) fn get_request(&self, key: &str) -> reqwest::RequestBuilder {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        self.http.get(url)
    }

    /// The whole object `key` (a small one).
    pub(crate) async fn get_bytes(&self, key: &str, what: &str) -> Result<Bytes, RemoteError> {
        http::fetch(what, Repeat::Idempotent, || self.get_request(key)).await
    }

    /// Writes the object `key`.
    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        what: &str,
    ) -> Result<(), RemoteError> {
        http::send(what, Repeat::Idempotent, || {
            let url = self
                .bucket
                .put_object(Some(&self.credentials), key)
                .sign(SIGNED_FOR);
            self.http
                .put(url)
                .header(CONTENT_TYPE, content_type)
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Deletes the object `key` (S3 answers success when there is none).
    pub(crate) async fn delete(&self, key: &str, what: &str) -> Result<(), RemoteError> {
        http::send(what, Repeat::Idempotent, || {
            let url = self
                .bucket
                .delete_object(Some(&self.credentials), key)
                .sign(SIGNED_FOR);
            self.http.delete(url)
        })
        .await
        .map(drop)
    }

    /// Every object whose key starts with `prefix`, in key order (ListObjectsV2, page
    /// by page). With `delimiter`, only those with no delimiter after the prefix.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        what: &str,
    ) -> Result<Vec<StoredObject>, RemoteError> {
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let body = http::fetch(what, Repeat::Idempotent, || {
                let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
                list.with_prefix(prefix.to_string());
                if let Some(delimiter) = delimiter {
                    list.with_delimiter(delimiter.to_string());
                }
                if let Some(token) = &continuation {
                    list.with_continuation_token(token.clone());
                }
                self.http.get(list.sign(SIGNED_FOR))
            })
            .await?;
            let page = std::str::from_utf8(&body)
                .map_err(|e| e.to_string())
                .and_then(|text| ListObjectsV2::parse_response(text).map_err(|e| e.to_string()))
                .map_err(|reason| RemoteError::Failed {
                    what: what.to_string(),
                    reason: format!("the object store's answer is not a listing: {reason}"),
                })?;
            objects.extend(page.contents.into_iter().map(|c| StoredObject {
                key: c.key,
                size: c.size,
            }));
            match page.next_continuation_token {
                Some(token) => continuation = Some(token),
                None => return Ok(objects),
            }
        }
    }

    /// Begins a multipart upload of the object `key`; returns its upload id.
    pub(crate) async fn create_multipart(
        &self,
        key: &str,
        what: &str,
    ) -> Result<String, RemoteError> {
        let body = http::fetch(what, Repeat::OnlyIfUnsent, || {
            let url = self
                .bucket
                .create_multipart_upload(Some(&self.credentials), key)
                .sign(SIGNED_FOR);
            self.http.post(url)
        })
        .await?;
        std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(|text| CreateMultipartUpload::parse_response(text).map_err(|e| e.to_string()))
            .map(|created| created.upload_id().to_string())
            .map_err(|reason| RemoteError::Failed {
                what: what.to_string(),
                reason: format!("the object store's answer has no upload id: {reason}"),
            })
    }

    /// Uploads part `number` (from 1) of a multipart upload; returns the part's ETag.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: Bytes,
        what: &str,
    ) -> Result<String, RemoteError> {
        let response = http::send(what, Repeat::Idempotent, || {
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), key, number, upload_id)
                .sign(SIGNED_FOR);
            self.http.put(url).body(body.clone())
        })
        .await?;
        response
            .headers()
            .get(ETAG)
            .and_then(|etag| etag.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RemoteError::Failed {
                what: what.to_string(),
                reason: format!("the object store gave part {number} no ETag"),
            })
    }

    /// Completes a multipart upload from its parts' ETags, in order.
    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
        what: &str,
    ) -> Result<(), RemoteError> {
        http::fetch(what, Repeat::OnlyIfUnsent, || {
            let complete = CompleteMultipartUpload::new(
                &self.bucket,
                Some(&self.credentials),
                key,
                upload_id,
                etags.iter().map(String::as_str),
            );
            let url = complete.sign(SIGNED_FOR);
            self.http.post(url).body(complete.body())
        })
        .await
        .map(drop)
    }

    /// Aborts a multipart upload: the object store drops its parts.
    pub(crate) async fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
        what: &str,
    ) -> Result<(), RemoteError> {
        http::send(what, Repeat::Idempotent, || {
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.credentials), key, upload_id)
                .sign(SIGNED_FOR);
            self.http.delete(url)
        })
        .await
        .map(drop)
    }
}
