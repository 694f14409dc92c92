//! Pages of documents kept as the frame they came in. `Client::scan` decodes every
//! document of a page into a `String` and a `Value` tree; `Client::scan_page` reads the
//! page once in place (`cairn_proto::doc_spans`) and lends each document's key and the
//! msgpack of its value, decoded only when asked for: what a reader that copies,
//! digests or forwards documents needs, at a fraction of the cost. `ScanPages` reads a
//! whole range page after page, asking for the next page as soon as one arrives, so
//! that the service reads it while the caller works through the one before.

use bytes::Bytes;
use rmpv::Value;
use tokio::sync::mpsc;
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
        let key = &self.bytes[span.key.clone()];
        debug_assert!(std::str::from_utf8(key).is_ok());
        DocRef {
            // SAFETY: `read_docs_result` checked that the bytes of every span's key are
            // UTF-8 when the page was read, and a page's bytes never change.
            key: unsafe { std::str::from_utf8_unchecked(key) },
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

    /// The key the next page starts after, when the range goes on after this page.
    fn next_after(&self) -> Option<&str> {
        self.more.then(|| self.last_key()).flatten()
    }
}

/// Every page of a scan's range, the next one asked for as soon as a page arrives.
pub struct ScanPages {
    start: Option<(Client, ScanArgs)>,
    /// The pages the reader task (`read_pages`) hands over, and the task.
    reading: Option<(mpsc::Receiver<PageOrError>, JoinHandle<()>)>,
    /// The last page or an error was handed over: the range is done.
    ended: bool,
}

/// What the reader task hands over: a page, or why the range ended early.
type PageOrError = Result<DocsPage, ClientError>;

/// Pages read but not yet taken by `next_page`, beyond the one being read: the pages a
/// slow caller lets pile up.
const PAGES_WAITING: usize = 1;

impl ScanPages {
    pub(crate) fn new(client: Client, args: ScanArgs) -> ScanPages {
        ScanPages {
            start: Some((client, args)),
            reading: None,
            ended: false,
        }
    }

    /// The next page, or `None` after the last one (and after an error, which is
    /// returned once).
    pub async fn next_page(&mut self) -> Result<Option<DocsPage>, ClientError> {
        if let Some((client, args)) = self.start.take() {
            let (sender, pages) = mpsc::channel(PAGES_WAITING);
            let reader = tokio::spawn(read_pages(client, args, sender));
            self.reading = Some((pages, reader));
        }
        let (Some((pages, _)), false) = (self.reading.as_mut(), self.ended) else {
            return Ok(None);
        };
        let next = pages.recv().await;
        self.ended = !matches!(&next, Some(Ok(page)) if page.next_after().is_some());
        match next {
            Some(page) => page.map(Some),
            // The reader stopped before the range ended: it panicked, or its runtime
            // shut down. A shortened range must not pass for a whole one.
            None => Err(ClientError::Protocol(
                "the task reading the scan's pages stopped before the range ended".to_string(),
            )),
        }
    }
}

/// Reads the pages of `args` one after the other into `pages`, asking for each next
/// page as soon as the one before is read and handed over, so that the service sends it
/// while the caller works through the one before, until the range ends, a call fails or
/// the caller stops taking pages.
async fn read_pages(client: Client, mut args: ScanArgs, pages: mpsc::Sender<PageOrError>) {
    loop {
        let page = client.scan_page(&args).await;
        let after = page
            .as_ref()
            .ok()
            .and_then(DocsPage::next_after)
            .map(str::to_string);
        if pages.send(page).await.is_err() {
            return;
        }
        match after {
            Some(after) => args.after = Some(after),
            None => return,
        }
    }
}

impl Drop for ScanPages {
    fn drop(&mut self) {
        if let Some((_, reader)) = &self.reading {
            reader.abort();
        }
    }
}
