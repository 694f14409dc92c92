//! Pages of documents kept as the frame they came in. `Client::scan` decodes every
//! document of a page into a `String` and a `Value` tree; `Client::scan_page` reads the
//! page once in place (`cairn_proto::doc_spans`) and lends each document's key and the
//! msgpack of its value, decoded only when asked for: what a reader that copies,
//! digests or forwards documents needs, at a fraction of the cost. `ScanPages` reads a
//! whole range page after page, asking for the next page as soon as one arrives, so
//! that the service reads it while the caller works through the one before.

use bytes::Bytes;
use rmpv::Value;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::connection::Answer;
use crate::error::ClientError;
use cairn_proto::doc_spans::{read_docs_result, DocSpan};
use cairn_proto::message::MAX_MESSAGE_DEPTH;
use cairn_proto::methods::{Doc, ScanArgs};

/// A page of `scan` (or `find`) results, held as the bytes it came in.
#[derive(Debug, Clone)]
pub struct DocsPage {
    bytes: Bytes,
    spans: Vec<DocSpan>,
    more: bool,
}

/// One document of a `DocsPage`, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub key: &'a str,
    pub rev: u64,
    /// The msgpack of the value, exactly as the service sent it.
    pub value_msgpack: &'a [u8],
}

impl DocRef<'_> {
    /// The value, decoded.
    pub fn value(&self) -> Result<Value, ClientError> {
        let mut rest = self.value_msgpack;
        rmpv::decode::read_value_with_max_depth(&mut rest, MAX_MESSAGE_DEPTH)
            .map_err(|e| ClientError::Protocol(format!("a document's value does not parse: {e}")))
    }

    /// The document, owned and decoded (what `Client::scan` returns).
    pub fn to_doc(&self) -> Result<Doc, ClientError> {
        Ok(Doc {
            key: self.key.to_string(),
            rev: self.rev,
            value: self.value()?,
        })
    }
}

impl DocsPage {
    /// The page of the answer to `method`.
    pub(crate) fn from_answer(method: &str, answer: Answer) -> Result<DocsPage, ClientError> {
        let bytes = answer.into_msgpack();
        let (spans, more) = read_docs_result(&bytes).map_err(|reason| {
            ClientError::Protocol(format!(
                "the answer to `{method}` is not a page of documents ({reason}): is the service of another version?"
            ))
        })?;
        Ok(DocsPage { bytes, spans, more })
    }

    /// The documents, in the page's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = DocRef<'_>> + '_ {
        self.spans.iter().map(|span| self.doc(span))
    }

    fn doc(&self, span: &DocSpan) -> DocRef<'_> {
        DocRef {
            key: std::str::from_utf8(&self.bytes[span.key.clone()])
                .expect("checked UTF-8 when the page was read"),
            rev: span.rev,
            value_msgpack: &self.bytes[span.value.clone()],
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether more documents lie in the range after this page.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The last document's key: where the next page starts (`ScanArgs::after`).
    pub fn last_key(&self) -> Option<&str> {
        self.spans.last().map(|span| self.doc(span).key)
    }
}

/// Every page of a scan's range, the next one asked for as soon as a page arrives.
pub struct ScanPages {
    client: Client,
    args: ScanArgs,
    next: Next,
}

/// Where the next page comes from.
enum Next {
    /// Nothing was asked for yet: the first `next_page` asks.
    First,
    /// Asked for when the page before it arrived.
    Asked(JoinHandle<Result<DocsPage, ClientError>>),
    /// The range ended (or failed).
    Done,
}

impl ScanPages {
    pub(crate) fn new(client: Client, args: ScanArgs) -> ScanPages {
        ScanPages {
            client,
            args,
            next: Next::First,
        }
    }

    /// The next page, or `None` after the last one (and after an error, which is
    /// returned once).
    pub async fn next_page(&mut self) -> Result<Option<DocsPage>, ClientError> {
        let page = match std::mem::replace(&mut self.next, Next::Done) {
            Next::First => self.client.scan_page(&self.args).await?,
            Next::Asked(asked) => asked
                .await
                .map_err(|e| ClientError::Protocol(format!("reading a page: {e}")))??,
            Next::Done => return Ok(None),
        };
        if let (true, Some(last)) = (page.more(), page.last_key()) {
            self.args.after = Some(last.to_string());
            let (client, args) = (self.client.clone(), self.args.clone());
            self.next = Next::Asked(tokio::spawn(async move { client.scan_page(&args).await }));
        }
        Ok(Some(page))
    }
}

impl Drop for ScanPages {
    fn drop(&mut self) {
        if let Next::Asked(asked) = &self.next {
            asked.abort();
        }
    }
}
