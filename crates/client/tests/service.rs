//! The client against a real service started in-process (`cairn_server::Service`) on a
//! temporary directory: the unix socket, TLS with a password, a client certificate and a
//! token, pipelined calls, continuous and longpoll change feeds, cancel, and every way
//! the trust of the server's certificate must succeed or fail.

use std::path::PathBuf;
use std::time::Duration;

use cairn_client::methods::{BatchOp, ChangesArgs, FeedItem, RetentionArgs, ScanArgs};
use cairn_client::values::{Access, FeedKind, Op};
use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions, ErrorCode};
use cairn_server::{ServerError, Service, Settings};
use rmpv::Value;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ROOT_PASSWORD: &str = "root-secret";
/// The longest any single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// A service serving a temporary directory, TLS on 127.0.0.1 and its unix socket.
struct TestService {
    dir: tempfile::TempDir,
    port: u16,
    shutdown: CancellationToken,
    run: JoinHandle<Result<(), ServerError>>,
}

impl TestService {
    async fn start() -> TestService {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            listen: vec!["ssl://127.0.0.1:0".parse().unwrap()],
            root_password: Some(ROOT_PASSWORD.to_string()),
            ..Settings::default()
        };
        let service = Service::start(dir.path(), settings).await.unwrap();
        let tls = service
            .endpoints()
            .into_iter()
            .find(|url| url.starts_with("ssl://"))
            .expect("a TLS endpoint");
        let port = tls
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let shutdown = service.shutdown_token();
        let run = tokio::spawn(service.run());
        TestService {
            dir,
            port,
            shutdown,
            run,
        }
    }

    /// `ssl://{userinfo}127.0.0.1:PORT/{query}`.
    fn tls_url(&self, userinfo: &str, query: &str) -> ClientUrl {
        format!("ssl://{userinfo}127.0.0.1:{}/{query}", self.port)
            .parse()
            .unwrap()
    }

    /// Options that trust the service's own certificate directory.
    fn options(&self) -> ConnectOptions {
        ConnectOptions::for_working_dir(self.dir.path())
    }

    /// A connection over the service's unix socket: root, without a password.
    async fn root(&self) -> Client {
        let url = ClientUrl::Unix {
            path: self.dir.path().join("sock"),
        };
        Client::connect(&url, &ConnectOptions::default())
            .await
            .unwrap()
    }

    /// A TLS connection logged in as root with the password.
    async fn root_over_tls(&self) -> Client {
        let url = self.tls_url(&format!("root:{ROOT_PASSWORD}@"), "");
        Client::connect(&url, &self.options()).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(STEP, self.run)
            .await
            .expect("the service stops")
            .unwrap()
            .unwrap();
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("step took too long")
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Service(error)) => error.code,
        other => panic!("expected an error from the service, got {other:?}"),
    }
}

/// The error of a connection that must fail, as text.
fn connect_error(result: Result<Client, ClientError>) -> ClientError {
    match result {
        Ok(client) => panic!("{} connected but should not have", client.url()),
        Err(error) => error,
    }
}

/// `count` puts of the keys `{prefix}000`, `{prefix}001`, … with their numbers as values.
fn numbered_puts(prefix: &str, count: usize) -> Vec<BatchOp> {
    (0..count)
        .map(|i| BatchOp {
            op: Op::Put,
            key: Value::from(format!("{prefix}{i:03}")),
            value: Some(Value::from(i)),
            rev: None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_calls_as_root() {
    let service = TestService::start().await;
    let root = service.root().await;
    let me = root.whoami().await.unwrap();
    assert_eq!(
        (me.user.as_str(), me.admin, me.via.as_str()),
        ("root", true, "socket")
    );
    assert_eq!(root.status().await.unwrap().status, "READ_WRITE");

    let info = root
        .db_create("notes", RetentionArgs::default())
        .await
        .unwrap();
    assert_eq!((info.name.as_str(), info.doc_count), ("notes", 0));
    assert_eq!(
        code(root.db_create("notes", RetentionArgs::default()).await),
        ErrorCode::DatabaseExists
    );
    let first = root
        .put("notes", "a", Value::from("one"), Some(0))
        .await
        .unwrap();
    assert_eq!(
        code(root.put("notes", "a", Value::from("two"), Some(0)).await),
        ErrorCode::RevConflict
    );
    let doc = root.get("notes", "a").await.unwrap();
    assert_eq!(
        (doc.key.as_str(), doc.rev, doc.value),
        ("a", first.rev, Value::from("one"))
    );
    let ops = vec![
        BatchOp {
            op: Op::Put,
            key: Value::from("b"),
            value: Some(Value::from(2)),
            rev: None,
        },
        BatchOp {
            op: Op::Del,
            key: Value::from("a"),
            value: None,
            rev: Some(first.rev),
        },
    ];
    let revs = root.batch("notes", ops).await.unwrap().revs;
    assert_eq!(revs.len(), 2);
    assert_eq!(code(root.get("notes", "a").await), ErrorCode::NotFound);
    let page = root
        .scan(&ScanArgs {
            db: "notes".into(),
            ..ScanArgs::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.docs.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let deleted = root.delete("notes", "b", None).await.unwrap();
    assert!(deleted.rev > revs[1]);
    let changes = root
        .changes(&ChangesArgs {
            db: "notes".into(),
            ..ChangesArgs::default()
        })
        .await
        .unwrap();
    assert_eq!(changes.changes.len(), 4);
    assert_eq!(changes.last_seq, deleted.rev);
    assert_eq!(root.db_info("notes").await.unwrap().last_seq, deleted.rev);
    assert_eq!(root.db_list().await.unwrap().len(), 1);

    root.user_add("alice", Some("alice-pw"), false)
        .await
        .unwrap();
    root.user_grant("alice", "notes", Access::Read)
        .await
        .unwrap();
    root.user_passwd("alice", "alice-pw2").await.unwrap();
    let users = root.user_list().await.unwrap();
    let alice = users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.grants.get("notes"), Some(&Access::Read));
    root.user_revoke("alice", "notes").await.unwrap();
    root.user_delete("alice").await.unwrap();
    assert!(root
        .user_list()
        .await
        .unwrap()
        .iter()
        .all(|u| u.name != "alice"));
    root.db_drop("notes").await.unwrap();
    assert_eq!(
        code(root.db_info("notes").await),
        ErrorCode::DatabaseMissing
    );

    // A raw call of a method the service does not know.
    assert_eq!(
        code(root.call("no.such", Value::Nil).await),
        ErrorCode::UnknownMethod
    );

    service.stop().await;
    let after = within(root.status()).await;
    assert!(matches!(after, Err(ClientError::Closed)), "{after:?}");
    assert!(root.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_password_login_good_and_bad() {
    let service = TestService::start().await;
    let root = service.root_over_tls().await;
    let me = root.whoami().await.unwrap();
    assert_eq!((me.user.as_str(), me.via.as_str()), ("root", "password"));
    let login = root.login_result().expect("connect logged in");
    assert_eq!(login.user, "root");
    assert!(login.token.len() >= 16);

    let wrong = service.tls_url("root:not-the-password@", "");
    let error = connect_error(Client::connect(&wrong, &service.options()).await);
    assert_eq!(error.code(), Some(ErrorCode::BadCredentials), "{error}");
    let status = error.wire().unwrap().code.status();
    assert_eq!(status, 401);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_authenticates_without_password() {
    let service = TestService::start().await;
    // users/root.crt exists in DIR/certs: the URL's user is enough.
    let by_cert = Client::connect(&service.tls_url("root@", ""), &service.options())
        .await
        .unwrap();
    let me = by_cert.whoami().await.unwrap();
    assert_eq!(
        (me.user.as_str(), me.admin, me.via.as_str()),
        ("root", true, "certificate")
    );
    // Asked for by name, without a user in the URL.
    let by_name = Client::connect(&service.tls_url("", "?certname=root"), &service.options())
        .await
        .unwrap();
    assert_eq!(by_name.whoami().await.unwrap().via, "certificate");
    // Without a user nor certname, no certificate is presented: not authenticated.
    let anonymous = Client::connect(&service.tls_url("", ""), &service.options())
        .await
        .unwrap();
    assert_eq!(code(anonymous.whoami().await), ErrorCode::Unauthenticated);
    // A certificate asked for that the directory lacks.
    let missing = ConnectOptions {
        client_cert: Some("nobody".into()),
        ..service.options()
    };
    let error = connect_error(Client::connect(&service.tls_url("", ""), &missing).await);
    assert!(matches!(error, ClientError::Certs(_)), "{error}");
    assert!(error.to_string().contains("nobody"), "{error}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authenticates_another_connection_until_logout() {
    let service = TestService::start().await;
    let first = service.root_over_tls().await;
    let token = first.login_result().unwrap().token.clone();
    let with_token = ConnectOptions {
        token: Some(token.clone()),
        ..service.options()
    };
    let second = Client::connect(&service.tls_url("", ""), &with_token)
        .await
        .unwrap();
    let me = second.whoami().await.unwrap();
    assert_eq!((me.user.as_str(), me.via.as_str()), ("root", "token"));

    second.logout(None).await.unwrap();
    assert_eq!(code(second.whoami().await), ErrorCode::Unauthenticated);
    let error = connect_error(Client::connect(&service.tls_url("", ""), &with_token).await);
    assert_eq!(error.code(), Some(ErrorCode::BadCredentials), "{error}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_pipelined_gets_on_one_connection() {
    let service = TestService::start().await;
    let client = service.root_over_tls().await;
    client
        .db_create("many", RetentionArgs::default())
        .await
        .unwrap();
    client.batch("many", numbered_puts("k", 500)).await.unwrap();
    let since = client.db_info("many").await.unwrap().last_seq;

    // A longpoll holds a call open on the connection: the gets must pass it.
    let waiting = client.clone();
    let longpoll = tokio::spawn(async move {
        let args = ChangesArgs {
            db: "many".into(),
            since,
            feed: Some(FeedKind::Longpoll),
            timeout_ms: Some(20_000),
            ..ChangesArgs::default()
        };
        waiting.changes(&args).await
    });
    let gets = (0..500).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { (i, client.get("many", &format!("k{i:03}")).await) })
    });
    let answers = within(futures_util::future::join_all(gets)).await;
    for answer in answers {
        let (i, doc) = answer.unwrap();
        let doc = doc.unwrap();
        assert_eq!((doc.key, doc.value), (format!("k{i:03}"), Value::from(i)));
    }
    assert!(!longpoll.is_finished(), "the longpoll still waits");
    client.put("many", "wake", Value::Nil, None).await.unwrap();
    let woken = within(longpoll).await.unwrap().unwrap();
    assert_eq!(woken.changes[0].key, "wake");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_feed_receives_puts_in_order_until_canceled() {
    let service = TestService::start().await;
    let root = service.root().await;
    root.db_create("feed", RetentionArgs::default())
        .await
        .unwrap();
    // Changes written before the feed starts come in batches, handed out one by one.
    root.batch("feed", numbered_puts("early-", 300))
        .await
        .unwrap();
    let follower = service.root_over_tls().await;
    let args = ChangesArgs {
        db: "feed".into(),
        limit: Some(128),
        heartbeat_ms: Some(60_000),
        ..ChangesArgs::default()
    };
    let mut feed = follower.changes_feed(&args).await.unwrap();
    for i in 0..300u64 {
        match within(feed.next()).await {
            Some(Ok(FeedItem::Change(change))) => {
                assert_eq!((change.seq, change.key), (i + 1, format!("early-{i:03}")))
            }
            other => panic!("expected early change {i}, got {other:?}"),
        }
    }
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            root.put("feed", &format!("k{i}"), Value::from(i), None)
                .await
                .unwrap()
                .rev,
        );
    }
    for (i, rev) in revs.iter().enumerate() {
        match within(feed.next()).await {
            Some(Ok(FeedItem::Change(change))) => {
                assert_eq!(
                    (change.seq, change.key.as_str()),
                    (*rev, format!("k{i}").as_str())
                );
                assert_eq!(change.value, Some(Value::from(i)));
            }
            other => panic!("expected change {i}, got {other:?}"),
        }
    }
    feed.cancel();
    let last = within(feed.next()).await;
    assert!(last.is_none(), "the feed ends after cancel: {last:?}");
    let end = feed.end().expect("an end value");
    assert_eq!((end.reason.as_str(), end.last_seq), ("canceled", revs[4]));
    // The connection still serves calls.
    assert_eq!(follower.whoami().await.unwrap().user, "root");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_cancels_it() {
    let service = TestService::start().await;
    let root = service.root().await;
    root.db_create("feed", RetentionArgs::default())
        .await
        .unwrap();
    // One call in flight at a time: the get below waits until the service has ended the
    // dropped feed, which it only does when told to cancel it.
    let one_at_a_time = ConnectOptions {
        max_calls_in_flight: 1,
        ..service.options()
    };
    let url = service.tls_url(&format!("root:{ROOT_PASSWORD}@"), "");
    let client = Client::connect(&url, &one_at_a_time).await.unwrap();
    let args = ChangesArgs {
        db: "feed".into(),
        heartbeat_ms: Some(60_000),
        ..ChangesArgs::default()
    };
    let feed = client.changes_feed(&args).await.unwrap();
    drop(feed);
    root.put("feed", "k", Value::from(1), None).await.unwrap();
    let doc = within(client.get("feed", "k")).await.unwrap();
    assert_eq!(doc.value, Value::from(1));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_is_woken_by_a_put_from_another_connection() {
    let service = TestService::start().await;
    let root = service.root().await;
    root.db_create("poll", RetentionArgs::default())
        .await
        .unwrap();
    let since = root
        .put("poll", "before", Value::Nil, None)
        .await
        .unwrap()
        .rev;
    let poller = service.root_over_tls().await;
    let started = std::time::Instant::now();
    let longpoll = tokio::spawn(async move {
        let args = ChangesArgs {
            db: "poll".into(),
            since,
            feed: Some(FeedKind::Longpoll),
            timeout_ms: Some(30_000),
            ..ChangesArgs::default()
        };
        poller.changes(&args).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!longpoll.is_finished(), "the longpoll waits for a change");
    let rev = root
        .put("poll", "after", Value::from(7), None)
        .await
        .unwrap()
        .rev;
    let result = within(longpoll).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken, not timed out"
    );
    assert_eq!(result.changes.len(), 1);
    assert_eq!(
        (result.changes[0].key.as_str(), result.last_seq),
        ("after", rev)
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_no_ca_of_the_service_fails_clearly() {
    let service = TestService::start().await;
    let url = service.tls_url(&format!("root:{ROOT_PASSWORD}@"), "");

    let empty = tempfile::tempdir().unwrap();
    let no_cas = ConnectOptions {
        cert_dirs: vec![empty.path().to_path_buf()],
        ..ConnectOptions::default()
    };
    let error = connect_error(Client::connect(&url, &no_cas).await);
    assert!(matches!(error, ClientError::Certs(_)), "{error}");
    assert!(error.to_string().contains("no CA certificate"), "{error}");

    let other = tempfile::tempdir().unwrap();
    cairn_certs::CertDir::new(other.path())
        .gen_ca("elsewhere", 1)
        .unwrap();
    let other_ca = ConnectOptions {
        cert_dirs: vec![other.path().to_path_buf()],
        ..ConnectOptions::default()
    };
    let error = connect_error(Client::connect(&url, &other_ca).await);
    let message = error.to_string();
    assert!(matches!(error, ClientError::Tls { .. }), "{message}");
    assert!(message.contains("not signed by a CA in"), "{message}");
    assert!(
        message.contains(&other.path().join("cas").display().to_string()),
        "{message}"
    );
    assert!(message.contains("certhash"), "{message}");
    assert!(!message.contains(ROOT_PASSWORD), "{message}");
    service.stop().await;
}

/// The `sha256:HEX` pin of the service's host certificate.
fn host_pin(service: &TestService) -> String {
    let path: PathBuf = service.dir.path().join("certs/hosts/localhost.crt");
    let der = CertificateDer::pem_file_iter(&path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    cairn_certs::format_pin(&cairn_certs::cert_sha256(&der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certhash_pin_replaces_the_cas() {
    let service = TestService::start().await;
    let empty = tempfile::tempdir().unwrap();
    // No CA at all: only the pin can make the server trusted.
    let no_cas = ConnectOptions {
        cert_dirs: vec![empty.path().to_path_buf()],
        ..ConnectOptions::default()
    };
    let pinned = service.tls_url(
        &format!("root:{ROOT_PASSWORD}@"),
        &format!("?certhash={}", host_pin(&service)),
    );
    let client = Client::connect(&pinned, &no_cas).await.unwrap();
    assert_eq!(client.whoami().await.unwrap().via, "password");

    let wrong = service.tls_url("", &format!("?certhash=sha256:{}", "00".repeat(32)));
    let error = connect_error(Client::connect(&wrong, &no_cas).await);
    let message = error.to_string();
    assert!(matches!(error, ClientError::Tls { .. }), "{message}");
    assert!(message.contains("not the pinned"), "{message}");
    assert!(
        message.contains(&host_pin(&service)),
        "names the certificate found: {message}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_must_name_the_hostname() {
    let service = TestService::start().await;
    let named = service.tls_url("", "?hostname=localhost");
    let client = Client::connect(&named, &service.options()).await.unwrap();
    assert_eq!(client.status().await.unwrap().status, "READ_WRITE");

    let unnamed = service.tls_url("", "?hostname=db.example.com");
    let error = connect_error(Client::connect(&unnamed, &service.options()).await);
    let message = error.to_string();
    assert!(matches!(error, ClientError::Tls { .. }), "{message}");
    assert!(
        message.contains("does not name \"db.example.com\""),
        "{message}"
    );
    assert!(message.contains("?hostname="), "{message}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    let service = TestService::start().await;
    let other = tempfile::tempdir().unwrap();
    let foreign = cairn_certs::CertDir::new(other.path());
    foreign.gen_ca("elsewhere", 1).unwrap();
    foreign.gen_user("root", "elsewhere", 1).unwrap();
    // The foreign directory comes first: its users/root.crt is the one presented.
    let options = ConnectOptions {
        cert_dirs: vec![other.path().to_path_buf(), service.dir.path().join("certs")],
        ..ConnectOptions::default()
    };
    let outcome = match Client::connect(&service.tls_url("root@", ""), &options).await {
        // TLS 1.3: the service may refuse the certificate after the client's handshake.
        Ok(client) => within(client.whoami()).await.map(drop),
        Err(error) => Err(error),
    };
    let error = outcome.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ClientError::Tls { .. }), "{message}");
    assert!(
        message.contains("refused the client certificate"),
        "{message}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_an_unknown_user_fails_every_call() {
    let service = TestService::start().await;
    let certs = cairn_certs::CertDir::new(service.dir.path().join("certs"));
    let ca = certs.names(cairn_certs::Kind::Ca).unwrap().remove(0);
    certs.gen_user("ghost", &ca, 1).unwrap();
    // The handshake succeeds; the service then closes the connection with an error
    // for the whole connection (id 0), which every call gets.
    let client = Client::connect(&service.tls_url("ghost@", ""), &service.options())
        .await
        .unwrap();
    for _ in 0..2 {
        let error = within(client.status()).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::BadCredentials), "{error}");
        assert!(error.to_string().contains("ghost"), "{error}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_in_place_hold_what_scan_decodes() {
    let service = TestService::start().await;
    let client = service.root_over_tls().await;
    client
        .db_create("paged", RetentionArgs::default())
        .await
        .unwrap();
    let values = [
        Value::from(false),
        Value::from(-3),
        Value::from("ünïcode"),
        Value::Binary(vec![7; 200]),
        Value::Array(vec![
            Value::from(1.5),
            Value::Map(vec![(Value::from("k"), Value::from(true))]),
        ]),
    ];
    let ops = (0..250)
        .map(|i| BatchOp {
            op: Op::Put,
            key: Value::from(format!("doc-{i:04}")),
            value: Some(values[i % values.len()].clone()),
            rev: None,
        })
        .collect();
    client.batch("paged", ops).await.unwrap();
    let args = ScanArgs {
        db: "paged".into(),
        start: Some("doc-0010".into()),
        limit: Some(40),
        ..ScanArgs::default()
    };

    // Page by page, each page read in place equals the page `scan` decodes.
    let (mut pages, mut decoded_args, mut read) = (client.scan_pages(args.clone()), args, 0);
    while let Some(page) = within(pages.next_page()).await.unwrap() {
        let decoded = client.scan(&decoded_args).await.unwrap();
        let lent: Vec<_> = page.iter().map(|doc| doc.to_doc().unwrap()).collect();
        assert_eq!(lent, decoded.docs);
        assert_eq!(
            (page.len(), page.more()),
            (decoded.docs.len(), decoded.more)
        );
        for doc in page.iter() {
            let mut encoded = Vec::new();
            rmpv::encode::write_value(&mut encoded, &doc.value().unwrap()).unwrap();
            assert_eq!(doc.value_msgpack, encoded.as_slice());
        }
        read += page.len();
        decoded_args.after = page.last_key().map(str::to_string);
    }
    assert_eq!(read, 240, "doc-0010 to doc-0249");

    // A range that holds nothing is one empty page.
    let mut empty = client.scan_pages(ScanArgs {
        db: "paged".into(),
        prefix: Some("none-".into()),
        ..ScanArgs::default()
    });
    let page = within(empty.next_page()).await.unwrap().unwrap();
    assert!(page.is_empty() && !page.more() && page.last_key().is_none());
    assert!(within(empty.next_page()).await.unwrap().is_none());
    // Errors come through as they are.
    let mut missing = client.scan_pages(ScanArgs {
        db: "missing".into(),
        ..ScanArgs::default()
    });
    assert_eq!(
        code(within(missing.next_page()).await),
        ErrorCode::DatabaseMissing
    );
    assert!(
        within(missing.next_page()).await.unwrap().is_none(),
        "an error ends the range"
    );
    service.stop().await;
}
