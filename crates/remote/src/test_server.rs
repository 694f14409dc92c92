//! For unit tests: an HTTP server on 127.0.0.1 that answers each connection with the next
//! of a list of canned answers (raw HTTP/1.1, sent as they are, then the connection is
//! closed), and returns the request heads it read.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::settings::S3Settings;

/// Serves `answers`, one connection each; returns settings that reach it and the task
/// that yields the request heads, lower-cased.
pub(crate) async fn serve(answers: Vec<Vec<u8>>) -> (S3Settings, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.expect("reading the request") == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            heads.push(String::from_utf8_lossy(&head).to_lowercase());
            stream.write_all(&answer).await.expect("answering");
        }
        heads
    });
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some("GKTEST".into()),
        secret_access_key: Some("secret".into()),
        ..S3Settings::default()
    };
    (settings, task)
}

/// A canned answer: the status line's `status`, `headers`, and `body`, closing the
/// connection; `length` is the Content-Length it claims (the body's own when `None`).
pub(crate) fn answer(
    status: &str,
    headers: &[&str],
    body: &[u8],
    length: Option<usize>,
) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        length.unwrap_or(body.len())
    );
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
