//! The client against a scripted peer on a unix socket, for what a well-behaved service
//! rarely does: answer out of order, end the connection with an error (id 0) or without
//! answering, send a frame over the client's limit, or stream the answer to a plain call.

use std::future::Future;
use std::time::Duration;

use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions, ErrorCode, WireError};
use cairn_proto::{FrameCodec, Message};
use futures_util::StreamExt;
use rmpv::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

const STEP: Duration = Duration::from_secs(10);

/// The service's side of one connection.
struct Peer {
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: OwnedWriteHalf,
}

impl Peer {
    async fn recv(&mut self) -> Message {
        let body = self
            .frames
            .next()
            .await
            .expect("a frame")
            .expect("a whole frame");
        Message::decode(&body).expect("a message")
    }

    /// The id of the next message, which must be a call of `method`.
    async fn recv_call(&mut self, method: &str) -> u64 {
        match self.recv().await {
            Message::Call {
                id, method: called, ..
            } if called == method => id,
            other => panic!("expected a call of {method}, got {other:?}"),
        }
    }

    async fn send(&mut self, message: Message) {
        self.send_body(&message.encode()).await;
    }

    async fn send_body(&mut self, body: &[u8]) {
        let mut frame = Vec::new();
        cairn_proto::push_frame(&mut frame, body).unwrap();
        self.writer.write_all(&frame).await.unwrap();
    }
}

/// A peer that runs `script` on the first connection, and a client connected to it.
async fn scripted<F, Fut>(
    options: ConnectOptions,
    script: F,
) -> (Client, JoinHandle<()>, tempfile::TempDir)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let peer = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (reader, writer) = stream.into_split();
        let frames = FramedRead::new(reader, FrameCodec::new(cairn_proto::DEFAULT_MAX_FRAME));
        script(Peer { frames, writer }).await;
    });
    let url = ClientUrl::Unix { path };
    let client = Client::connect(&url, &options).await.unwrap();
    (client, peer, dir)
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("step took too long")
}

#[tokio::test]
async fn answers_in_any_order_reach_their_calls() {
    let (client, peer, _dir) = scripted(ConnectOptions::default(), |mut peer| async move {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(peer.recv_call("echo").await);
        }
        for id in ids.into_iter().rev() {
            peer.send(Message::Result {
                id,
                value: Value::from(id),
            })
            .await;
        }
    })
    .await;
    let (a, b, c) = within(async {
        tokio::join!(
            client.call("echo", Value::Nil),
            client.call("echo", Value::Nil),
            client.call("echo", Value::Nil)
        )
    })
    .await;
    let mut ids: Vec<u64> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap().as_u64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each call got its own answer: {ids:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn an_error_for_the_connection_fails_every_call() {
    let (client, peer, _dir) = scripted(ConnectOptions::default(), |mut peer| async move {
        peer.recv_call("slow").await;
        peer.recv_call("slow").await;
        let error = WireError::new(
            ErrorCode::FrameTooLarge,
            "a frame of 70000 bytes is over the limit",
        );
        peer.send(Message::Error { id: 0, error }).await;
        // The connection stays open: the error alone ends it.
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let (a, b) = within(async {
        tokio::join!(
            client.call("slow", Value::Nil),
            client.call("slow", Value::Nil)
        )
    })
    .await;
    for result in [a, b] {
        let error = result.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::FrameTooLarge), "{error}");
    }
    let later = within(client.call("status", Value::Nil)).await.unwrap_err();
    assert_eq!(
        later.code(),
        Some(ErrorCode::FrameTooLarge),
        "later calls fail the same way: {later}"
    );
    assert!(client.is_closed());
    peer.abort();
}

#[tokio::test]
async fn a_closed_connection_fails_pending_calls_and_streams() {
    let (client, peer, _dir) = scripted(ConnectOptions::default(), |mut peer| async move {
        let feed = peer.recv_call("feed").await;
        peer.recv_call("never").await;
        peer.send(Message::Item {
            id: feed,
            value: Value::from(1),
        })
        .await;
    })
    .await;
    let mut stream = client.stream("feed", Value::Nil).await.unwrap();
    let (call, stream) = within(async {
        let call = client.call("never", Value::Nil);
        let stream = async { (stream.next().await, stream.next().await) };
        tokio::join!(call, stream)
    })
    .await;
    assert!(matches!(call, Err(ClientError::Closed)), "{call:?}");
    let (first, second) = stream;
    assert_eq!(first.unwrap().unwrap(), Value::from(1));
    assert!(
        matches!(second, Some(Err(ClientError::Closed))),
        "{second:?}"
    );
    assert!(ClientError::Closed.to_string().contains("connect again"));
    peer.await.unwrap();
}

#[tokio::test]
async fn a_frame_over_the_client_limit_ends_the_connection() {
    let options = ConnectOptions {
        max_frame: 1024,
        ..ConnectOptions::default()
    };
    let (client, peer, _dir) = scripted(options, |mut peer| async move {
        let id = peer.recv_call("big").await;
        peer.send(Message::Result {
            id,
            value: Value::from("x".repeat(2000)),
        })
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    // A call over the limit is refused before it is sent; the connection goes on.
    let too_big = client
        .call("put", Value::from("y".repeat(2000)))
        .await
        .unwrap_err();
    assert!(
        too_big
            .to_string()
            .contains("over the frame limit of 1024 bytes"),
        "{too_big}"
    );
    assert!(!client.is_closed());
    let error = within(client.call("big", Value::Nil)).await.unwrap_err();
    assert!(matches!(error, ClientError::Protocol(_)), "{error}");
    assert!(error.to_string().contains("limit of 1024 bytes"), "{error}");
    assert!(client.is_closed());
    peer.abort();
}

#[tokio::test]
async fn a_plain_call_answered_with_a_stream_fails_and_is_canceled() {
    let (client, peer, _dir) = scripted(ConnectOptions::default(), |mut peer| async move {
        let id = peer.recv_call("changes").await;
        peer.send(Message::Item {
            id,
            value: Value::from(1),
        })
        .await;
        assert_eq!(peer.recv().await, Message::Cancel { id });
        peer.send(Message::End {
            id,
            value: Value::Nil,
        })
        .await;
        let next = peer.recv_call("status").await;
        peer.send(Message::Result {
            id: next,
            value: Value::from("fine"),
        })
        .await;
    })
    .await;
    let error = within(client.call("changes", Value::Nil))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("call it as a stream"), "{error}");
    let after = within(client.call("status", Value::Nil)).await.unwrap();
    assert_eq!(after, Value::from("fine"));
    within(peer).await.unwrap();
}

#[tokio::test]
async fn a_stream_ends_with_its_end_value() {
    let (client, peer, _dir) = scripted(ConnectOptions::default(), |mut peer| async move {
        let id = peer.recv_call("changes").await;
        for i in 0..3 {
            peer.send(Message::Item {
                id,
                value: Value::from(i),
            })
            .await;
        }
        peer.send(Message::End {
            id,
            value: Value::from("done"),
        })
        .await;
        // Nothing more: a finished stream sends no cancel when dropped.
        let next = peer.recv_call("status").await;
        peer.send(Message::Result {
            id: next,
            value: Value::Nil,
        })
        .await;
    })
    .await;
    let mut stream = client.stream("changes", Value::Nil).await.unwrap();
    let items: Vec<Value> = within(async {
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item.unwrap());
        }
        items
    })
    .await;
    assert_eq!(items, [Value::from(0), Value::from(1), Value::from(2)]);
    assert_eq!(stream.end_value(), Some(&Value::from("done")));
    drop(stream);
    within(client.call("status", Value::Nil)).await.unwrap();
    within(peer).await.unwrap();
}

#[tokio::test]
async fn a_refused_connection_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let gone = ClientUrl::Unix {
        path: dir.path().join("no-sock"),
    };
    let error = Client::connect(&gone, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("no-sock") && message.contains("running"),
        "{message}"
    );
}
