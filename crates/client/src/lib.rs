//! `cairn-client`: the async (tokio) client of a Cairn service. A [`ClientUrl`] says where
//! the service is (`ssl://[user[:password]@]host[:port]/` or `unix://PATH`);
//! [`Client::connect`] reaches it over TLS (trusting the CAs of a certificate directory,
//! or a pinned certificate) or a unix socket, authenticates, and gives a [`Client`] that
//! many tasks may use at once: calls are pipelined on one connection, streams yield
//! items until their end, and a stream can be canceled. Pages of documents can also be
//! read in place ([`Client::scan_page`], [`Client::scan_pages`]): keys and values lent
//! from the frame, for readers that copy or digest whole ranges.
//!
//! ```no_run
//! # async fn example() -> Result<(), cairn_client::ClientError> {
//! use cairn_client::{Client, ClientUrl, ConnectOptions};
//!
//! let url: ClientUrl = "ssl://alice:secret@db1.example.com/".parse()?;
//! let client = Client::connect(&url, &ConnectOptions::default()).await?;
//! client.put("notes", "first", rmpv::Value::from("hello"), None).await?;
//! let doc = client.get("notes", "first").await?;
//! assert_eq!(doc.value.as_str(), Some("hello"));
//! # Ok(())
//! # }
//! ```

mod client;
mod connection;
mod docs_page;
mod error;
mod stream;
mod transport;
mod url;

pub use client::{Client, ConnectOptions};
pub use docs_page::{DocRef, DocsPage, ScanPages};
pub use error::ClientError;
pub use stream::{CallStream, FeedStream};
pub use url::{ClientUrl, TlsUrl, DEFAULT_PORT};

/// The protocol's types, re-exported: the arguments and results of the typed calls, and
/// the fixed sets of values they carry.
pub use cairn_proto::{json, methods, values, Call, ErrorCode, Method, WireError};
