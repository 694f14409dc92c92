//! Reading a large object chunk by chunk. When the connection breaks part way, the
//! rest is asked for again (`Range: bytes=N-`, `If-Match` the object's ETag, so that a
//! replaced object is never spliced onto the old one), within a retry budget (see
//! `retry`) counted from the last bytes that arrived: a long download may resume more
//! than once, a dead one gives up.

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_MATCH, RANGE};
use reqwest::{Response, StatusCode};

use crate::error::RemoteError;
use crate::http::{self, Repeat};
use crate::retry::Retries;
use crate::s3::S3;

/// An object being read.
pub(crate) struct ObjectReader<'s> {
    s3: &'s S3,
    key: String,
    what: String,
    response: Response,
    /// The object's ETag, as its first answer gave it; without one a read cannot resume.
    etag: Option<String>,
    /// Bytes read so far.
    offset: u64,
    retries: Retries,
}

impl<'s> ObjectReader<'s> {
    pub(crate) fn new(s3: &'s S3, key: &str, what: &str, response: Response) -> ObjectReader<'s> {
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|etag| etag.to_str().ok())
            .map(str::to_string);
        ObjectReader {
            s3,
            key: key.to_string(),
            what: what.to_string(),
            response,
            etag,
            offset: 0,
            retries: Retries::new(),
        }
    }

    /// The next bytes of the object; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, RemoteError> {
        loop {
            let broken = match self.response.chunk().await {
                Ok(chunk) => {
                    self.offset += chunk.as_ref().map_or(0, |c| c.len() as u64);
                    self.retries = Retries::new();
                    return Ok(chunk);
                }
                Err(error) => http::failure(&self.what, error),
            };
            let Some(etag) = self.etag.clone() else {
                return Err(broken);
            };
            http::wait_to_retry(&mut self.retries, broken).await?;
            self.response = self.resume(&etag).await?;
        }
    }

    /// Asks for the rest of the object from `offset` on, as long as it is still `etag`.
    async fn resume(&self, etag: &str) -> Result<Response, RemoteError> {
        let range = format!("bytes={}-", self.offset);
        let response = http::send(&self.what, Repeat::Idempotent, || {
            self.s3
                .get_request(&self.key)
                .header(RANGE, &range)
                .header(IF_MATCH, etag)
        })
        .await
        .map_err(|error| match error.s3_facts() {
            Some((412, _)) => self.changed(),
            _ => error,
        })?;
        let starts_here = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|range| range.to_str().ok())
            .and_then(|range| range.strip_prefix("bytes "))
            .and_then(|range| range.split('-').next())
            .and_then(|start| start.parse::<u64>().ok())
            == Some(self.offset);
        if response.status() != StatusCode::PARTIAL_CONTENT || !starts_here {
            return Err(RemoteError::Failed {
                what: self.what.clone(),
                reason: format!(
                    "the connection broke after {} bytes, and the object store did not send the rest",
                    self.offset
                ),
            });
        }
        Ok(response)
    }

    fn changed(&self) -> RemoteError {
        RemoteError::Mismatch {
            what: self.what.clone(),
            reason: format!(
                "the object was replaced while it was read (after {} bytes)",
                self.offset
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{answer, serve};

    async fn read_all(reader: &mut ObjectReader<'_>) -> Result<Vec<u8>, RemoteError> {
        let mut all = Vec::new();
        while let Some(chunk) = reader.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn a_broken_read_resumes_where_it_stopped() {
        let (settings, server) = serve(vec![
            answer("200 OK", &["etag: \"e1\""], b"01234", Some(10)),
            answer(
                "206 Partial Content",
                &["etag: \"e1\"", "content-range: bytes 5-9/10"],
                b"56789",
                None,
            ),
        ])
        .await;
        let s3 = S3::new(&settings, "bucket").unwrap();
        let mut reader = s3.get("p/b1.tar.zst", "reading b1").await.unwrap();
        assert_eq!(read_all(&mut reader).await.unwrap(), b"0123456789");
        let heads = server.await.unwrap();
        assert!(
            heads[0].starts_with("get /bucket/p/b1.tar.zst?"),
            "{}",
            heads[0]
        );
        assert!(
            heads[1].contains("range: bytes=5-") && heads[1].contains("if-match: \"e1\""),
            "{}",
            heads[1]
        );
    }

    #[tokio::test]
    async fn an_object_replaced_while_read_is_refused() {
        let (settings, _server) = serve(vec![
            answer("200 OK", &["etag: \"e1\""], b"01234", Some(10)),
            answer("412 Precondition Failed", &[], b"", None),
        ])
        .await;
        let s3 = S3::new(&settings, "bucket").unwrap();
        let mut reader = s3.get("b1.tar.zst", "reading b1").await.unwrap();
        let error = read_all(&mut reader).await.unwrap_err();
        assert!(
            matches!(error, RemoteError::Mismatch { .. }) && error.to_string().contains("replaced"),
            "{error}"
        );
    }
}
