//! Real TLS 1.3 handshakes over 127.0.0.1 between `server_config` and `client_config`:
//! trust by CA and by pin, client certificates, SNI, and every way a handshake must fail.

use std::sync::Arc;
use std::time::Duration;

use cairn_certs::{
    cert_sha256, client_config, ensure_embedded_default, peer_user, server_config, CertDir,
    CertError, ClientAuth, KeyType, Kind, Trust, ALPN,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw of a successful handshake.
#[derive(Debug)]
struct ServerSide {
    alpn: Option<Vec<u8>>,
    user: Option<String>,
    version: Option<rustls::ProtocolVersion>,
}

/// What the client saw of a successful exchange.
#[derive(Debug)]
struct ClientSide {
    alpn: Option<Vec<u8>>,
    server_cn: Option<String>,
}

/// One connection over 127.0.0.1: the server completes the handshake and sends "ok", the
/// client connects as `name` and reads to the end. Each side's error is kept as text.
async fn exchange(
    server: ServerConfig,
    client: ClientConfig,
    name: &str,
) -> (Result<ServerSide, String>, Result<ClientSide, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));
    let server_name = ServerName::try_from(name.to_string()).unwrap();

    let server_side = async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let side = ServerSide {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            user: conn.peer_certificates().and_then(peer_user),
            version: conn.protocol_version(),
        };
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(side)
    };
    let client_side = async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        // A client certificate the server refuses shows here, after the client's Finished.
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        if got != b"ok" {
            return Err(format!("server sent {got:?}"));
        }
        let conn = tls.get_ref().1;
        Ok(ClientSide {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_cn: conn.peer_certificates().and_then(peer_user),
        })
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(server_side, client_side)
    })
    .await
    .expect("the exchange hung")
}

/// Two certificate directories: `a` made as a service's first start makes it (CA acme,
/// host localhost also named myhost.test, user root) plus host db1 and user alice;
/// `b` with its own CA "other", user mallory and a host localhost.
struct Setup {
    _tmp: tempfile::TempDir,
    a: CertDir,
    b: CertDir,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let a = CertDir::new(tmp.path().join("a"));
    let b = CertDir::new(tmp.path().join("b"));
    ensure_embedded_default(&a, "acme", &["myhost.test".to_string()], "root").unwrap();
    a.gen_host("db1", "acme", &[], 30).unwrap();
    a.gen_user("alice", "acme", 30).unwrap();
    b.gen_ca("other", 30).unwrap();
    b.gen_user("mallory", "other", 30).unwrap();
    b.gen_host("localhost", "other", &[], 30).unwrap();
    Setup { _tmp: tmp, a, b }
}

fn only(dir: &CertDir) -> &[CertDir] {
    std::slice::from_ref(dir)
}

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn assert_refused<T: std::fmt::Debug, U: std::fmt::Debug>(
    outcome: &(Result<T, String>, Result<U, String>),
    server_says: &str,
    client_says: &str,
) {
    let (server, client) = outcome;
    let server_err = server
        .as_ref()
        .expect_err("the server accepted the connection");
    let client_err = client.as_ref().expect_err("the client got through");
    assert!(server_err.contains(server_says), "server: {server_err}");
    assert!(client_err.contains(client_says), "client: {client_err}");
}

#[tokio::test]
async fn trusted_client_connects_by_name_and_address_with_alpn_and_user() {
    let s = setup();
    let dirs = [s.a.clone()];
    for name in ["localhost", "127.0.0.1", "::1", "myhost.test"] {
        let server = server_config(&dirs, &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
        let client = client_config(&dirs, Trust::Cas, Some("alice")).unwrap();
        let (server, client) = exchange(server, client, name).await;
        let server = server.unwrap_or_else(|e| panic!("{name}: server: {e}"));
        let client = client.unwrap_or_else(|e| panic!("{name}: client: {e}"));
        assert_eq!(server.alpn.as_deref(), Some(ALPN), "{name}");
        assert_eq!(client.alpn.as_deref(), Some(ALPN), "{name}");
        assert_eq!(server.version, Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(server.user.as_deref(), Some("alice"), "{name}");
        assert_eq!(client.server_cn.as_deref(), Some("localhost"), "{name}");
    }
}

#[tokio::test]
async fn anonymous_client_is_allowed_when_optional() {
    let s = setup();
    let dirs = [s.a.clone()];
    let server = server_config(&dirs, &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&dirs, Trust::Cas, None).unwrap();
    let (server, client) = exchange(server, client, "localhost").await;
    assert_eq!(server.unwrap().user, None);
    client.unwrap();
}

#[tokio::test]
async fn client_certificate_of_an_unknown_ca_is_refused_not_ignored() {
    let s = setup();
    let server = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    // The client trusts the server's CA, but its certificate is from b's CA.
    let client = client_config(&[s.b.clone(), s.a.clone()], Trust::Cas, Some("mallory")).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "UnknownIssuer", "UnknownCA");
}

#[tokio::test]
async fn required_client_auth_takes_only_the_named_ca() {
    let s = setup();
    // The server knows both CAs; Optional takes a certificate from either...
    let both = [s.a.clone(), s.b.clone()];
    let server = server_config(&both, &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&both, Trust::Cas, Some("mallory")).unwrap();
    let (server, _) = exchange(server, client, "localhost").await;
    assert_eq!(server.unwrap().user.as_deref(), Some("mallory"));

    // ...Required { acme } takes only acme's.
    let required = ClientAuth::Required { ca: "acme".into() };
    let server = server_config(&both, &hosts(&["localhost"]), required.clone()).unwrap();
    let client = client_config(&both, Trust::Cas, Some("alice")).unwrap();
    let (server, client) = exchange(server, client, "localhost").await;
    assert_eq!(server.unwrap().user.as_deref(), Some("alice"));
    client.unwrap();

    let server = server_config(&both, &hosts(&["localhost"]), required.clone()).unwrap();
    let client = client_config(&both, Trust::Cas, Some("mallory")).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "UnknownIssuer", "UnknownCA");

    let server = server_config(&both, &hosts(&["localhost"]), required).unwrap();
    let client = client_config(&both, Trust::Cas, None).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "no certificates", "CertificateRequired");
}

#[tokio::test]
async fn pinned_client_accepts_exactly_the_pinned_certificate() {
    let s = setup();
    let host_cert = s.a.cert_path(Kind::Host, "localhost").unwrap();
    let pin = cert_sha256(&CertificateDer::from_pem_file(&host_cert).unwrap());

    // A pin needs no CA, and ignores the name connected to.
    for name in ["localhost", "db9.example"] {
        let server =
            server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
        let client = client_config(&[], Trust::Pin(pin), None).unwrap();
        let (server, client) = exchange(server, client, name).await;
        server.unwrap();
        assert_eq!(client.unwrap().server_cn.as_deref(), Some("localhost"));
    }

    let mut wrong = pin;
    wrong[0] ^= 1;
    let server = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&[], Trust::Pin(wrong), None).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "CertificateUnknown", "PinMismatch");

    // The pin of b's localhost certificate does not match a's.
    let other = cert_sha256(
        &CertificateDer::from_pem_file(s.b.cert_path(Kind::Host, "localhost").unwrap()).unwrap(),
    );
    let server = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&[], Trust::Pin(other), None).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "CertificateUnknown", "PinMismatch");
}

#[tokio::test]
async fn client_that_does_not_trust_the_ca_is_refused() {
    let s = setup();
    let server = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(only(&s.b), Trust::Cas, None).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert_refused(&outcome, "UnknownCA", "UnknownIssuer");
}

#[tokio::test]
async fn name_not_in_the_certificate_is_refused() {
    let s = setup();
    let server = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(only(&s.a), Trust::Cas, None).unwrap();
    let outcome = exchange(server, client, "db9.example").await;
    assert_refused(&outcome, "BadCertificate", "not valid for name");
}

#[tokio::test]
async fn sni_picks_the_host_certificate() {
    let s = setup();
    let dirs = [s.a.clone()];
    let served = hosts(&["db1", "localhost"]);
    for (name, expected) in [
        ("db1", "db1"),
        ("localhost", "localhost"),
        // A DNS name of the localhost certificate that is no host name.
        ("myhost.test", "localhost"),
        // No SNI for an address: the first host name's certificate.
        ("127.0.0.1", "db1"),
    ] {
        let server = server_config(&dirs, &served, ClientAuth::Optional).unwrap();
        let client = client_config(&[], Trust::Pin([0; 32]), None).unwrap();
        let (_, client_err) = exchange(server, client, name).await;
        // The pinned client reports the certificate it was shown.
        let err = client_err.unwrap_err();
        let shown = cert_sha256(
            &CertificateDer::from_pem_file(s.a.cert_path(Kind::Host, expected).unwrap()).unwrap(),
        );
        let shown = cairn_certs::format_pin(&shown);
        assert!(
            err.contains(&shown),
            "{name}: expected {expected}'s certificate: {err}"
        );
    }
}

#[test]
fn missing_certificates_are_named_with_what_to_do() {
    let s = setup();
    let err = server_config(
        &[s.a.clone(), s.b.clone()],
        &hosts(&["db7"]),
        ClientAuth::Optional,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::Missing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("a/hosts/db7.crt") && message.contains("b/hosts/db7.crt"),
        "{message}"
    );
    assert!(
        message.contains("cairn-easycert --server db7 --signas"),
        "{message}"
    );

    let err = server_config(only(&s.a), &[], ClientAuth::Optional).unwrap_err();
    assert!(matches!(err, CertError::NoHostName), "{err:?}");
    let err = server_config(
        only(&s.a),
        &hosts(&["localhost"]),
        ClientAuth::Required { ca: "nope".into() },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cairn-easycert --ca nope"),
        "{err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let empty = CertDir::new(tmp.path());
    let err = client_config(only(&empty), Trust::Cas, None).unwrap_err();
    assert!(matches!(err, CertError::NoCas { .. }), "{err:?}");
    let err = client_config(only(&s.a), Trust::Cas, Some("bob")).unwrap_err();
    assert!(err.to_string().contains("users/bob.crt"), "{err}");
}

#[tokio::test]
async fn revoked_client_certificate_is_refused_and_others_of_its_ca_accepted() {
    let s = setup();
    s.a.revoke("acme", Kind::User, "alice").unwrap();
    let both = [s.a.clone(), s.b.clone()];
    for client_auth in [
        ClientAuth::Optional,
        ClientAuth::Required { ca: "acme".into() },
    ] {
        let config = || server_config(&both, &hosts(&["localhost"]), client_auth.clone()).unwrap();

        let client = client_config(&both, Trust::Cas, Some("alice")).unwrap();
        let outcome = exchange(config(), client, "localhost").await;
        assert_refused(&outcome, "Revoked", "CertificateRevoked");

        // root is from the same CA and not revoked.
        let client = client_config(&both, Trust::Cas, Some("root")).unwrap();
        let (server, client) = exchange(config(), client, "localhost").await;
        assert_eq!(server.unwrap().user.as_deref(), Some("root"));
        client.unwrap();
    }

    // A CA without a list revokes nothing: b's mallory still gets in.
    let server = server_config(&both, &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&both, Trust::Cas, Some("mallory")).unwrap();
    let (server, _) = exchange(server, client, "localhost").await;
    assert_eq!(server.unwrap().user.as_deref(), Some("mallory"));
}

#[test]
fn a_damaged_revocation_list_stops_the_configuration() {
    let s = setup();
    std::fs::write(s.a.root().join("crls/broken.crl"), "not a CRL").unwrap();
    let err = server_config(only(&s.a), &hosts(&["localhost"]), ClientAuth::Optional).unwrap_err();
    assert!(matches!(err, CertError::BadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("crls/broken.crl"), "{err}");
}

#[tokio::test]
async fn ed25519_certificates_work_in_handshakes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    dir.gen_ca_with("ed", 30, KeyType::Ed25519).unwrap();
    dir.gen_host_with("localhost", "ed", &[], 30, KeyType::Ed25519)
        .unwrap();
    dir.gen_user_with("alice", "ed", 30, KeyType::Ed25519)
        .unwrap();
    let dirs = [dir.clone()];
    let server = server_config(&dirs, &hosts(&["localhost"]), ClientAuth::Optional).unwrap();
    let client = client_config(&dirs, Trust::Cas, Some("alice")).unwrap();
    let (server, client) = exchange(server, client, "localhost").await;
    assert_eq!(server.unwrap().user.as_deref(), Some("alice"));
    assert_eq!(client.unwrap().server_cn.as_deref(), Some("localhost"));
}
