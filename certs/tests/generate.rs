//! Generated certificates: they verify against their CA with openssl, and carry the
//! right constraints, key usages, extended key usages, names and serial numbers.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use cairn_certs::{CertDir, CertError, Kind, San};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

/// `openssl verify -CAfile CA -purpose PURPOSE CERT`: whether it succeeded, and its output.
fn openssl_verify(ca: &Path, cert: &Path, purpose: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .args(["-purpose", purpose])
        .arg(cert)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): these tests need the openssl command-line tool (apt-get install openssl)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The DER of the first certificate of a PEM file.
fn der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    parse_x509_certificate(der).unwrap().1
}

fn cn(cert: &X509Certificate<'_>) -> String {
    let name = cert.subject().iter_common_name().next().unwrap();
    name.as_str().unwrap().to_string()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Some(ext) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => San::Dns(dns.to_string()),
            GeneralName::IPAddress(bytes) => San::Ip(match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
            }),
            other => panic!("unexpected name {other:?}"),
        })
        .collect()
}

#[test]
fn ca_is_a_self_signed_signing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    let ca = dir.gen_ca("acme", 365).unwrap();
    let ca_der = der(&ca.cert);
    let cert = parse(&ca_der);

    assert_eq!(cn(&cert), "acme");
    assert_eq!(cert.subject(), cert.issuer());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical, "basic constraints must be critical");
    assert!(bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature() && !ku.key_encipherment());
    // ECDSA P-256.
    let spki = &cert.tbs_certificate.subject_pki;
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    // Valid from about now for the days asked.
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (365 * 86400..=365 * 86400 + 2 * 3600).contains(&lifetime),
        "{lifetime}"
    );

    let (ok, text) = openssl_verify(&ca.cert, &ca.cert, "any");
    assert!(ok, "{text}");
}

#[test]
fn host_certificate_is_a_server_certificate_for_its_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    let ca = dir.gen_ca("acme", 365).unwrap();
    let extra: Vec<San> = [
        "IP:10.0.0.5",
        "DNS:alias.example.com",
        "DNS:db1.example.com",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let host = dir.gen_host("db1.example.com", "acme", &extra, 90).unwrap();
    assert_eq!(host.cert, dir.root().join("hosts/db1.example.com.crt"));

    let (ok, text) = openssl_verify(&ca.cert, &host.cert, "sslserver");
    assert!(ok, "host certificate does not verify as a server: {text}");
    let (ok, text) = openssl_verify(&ca.cert, &host.cert, "sslclient");
    assert!(!ok, "a host certificate must not pass as a client: {text}");

    let host_der = der(&host.cert);
    let ca_der = der(&ca.cert);
    let cert = parse(&host_der);
    assert_eq!(cn(&cert), "db1.example.com");
    assert_eq!(cert.issuer(), parse(&ca_der).subject());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    assert_eq!(
        sans(&cert),
        [
            San::Dns("db1.example.com".into()),
            San::Ip("10.0.0.5".parse().unwrap()),
            San::Dns("alias.example.com".into()),
        ]
    );

    // A host named by its address gets an IP name.
    let by_ip = dir.gen_host("192.0.2.7", "acme", &[], 90).unwrap();
    let by_ip_der = der(&by_ip.cert);
    assert_eq!(
        sans(&parse(&by_ip_der)),
        [San::Ip("192.0.2.7".parse().unwrap())]
    );
}

#[test]
fn user_certificate_is_a_client_certificate_of_its_ca_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("a"));
    let other = CertDir::new(tmp.path().join("b"));
    let ca = dir.gen_ca("acme", 365).unwrap();
    let other_ca = other.gen_ca("acme", 365).unwrap();
    let user = dir.gen_user("alice", "acme", 365).unwrap();

    let (ok, text) = openssl_verify(&ca.cert, &user.cert, "sslclient");
    assert!(ok, "user certificate does not verify as a client: {text}");
    let (ok, text) = openssl_verify(&ca.cert, &user.cert, "sslserver");
    assert!(!ok, "a user certificate must not pass as a server: {text}");
    let (ok, text) = openssl_verify(&other_ca.cert, &user.cert, "sslclient");
    assert!(
        !ok,
        "verified against a CA of the same name that did not sign it: {text}"
    );

    let user_der = der(&user.cert);
    let cert = parse(&user_der);
    assert_eq!(cn(&cert), "alice");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}

#[test]
fn serial_numbers_are_random_and_long() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    dir.gen_ca("acme", 30).unwrap();
    let mut serials = Vec::new();
    for name in ["u1", "u2", "u3"] {
        let paths = dir.gen_user(name, "acme", 30).unwrap();
        let d = der(&paths.cert);
        let serial = parse(&d).raw_serial().to_vec();
        assert!(
            serial.len() >= 8,
            "serial {serial:?} is shorter than 64 bits"
        );
        serials.push(serial);
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 3);
}

#[test]
fn signing_needs_the_ca_and_its_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("a"));

    let err = dir.gen_host("db1", "acme", &[], 30).unwrap_err();
    assert!(matches!(err, CertError::Missing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("cas/acme.crt"), "{message}");
    assert!(message.contains("cairn-easycert --ca acme"), "{message}");
    assert!(!dir.cert_path(Kind::Host, "db1").unwrap().exists());

    // A CA certificate with another CA's key is refused, and nothing is signed.
    let a = CertDir::new(tmp.path().join("one"));
    let b = CertDir::new(tmp.path().join("two"));
    let a_ca = a.gen_ca("ca", 30).unwrap();
    let b_ca = b.gen_ca("ca", 30).unwrap();
    let mixed = CertDir::new(tmp.path().join("mixed"));
    mixed.create().unwrap();
    mixed
        .write_cert(Kind::Ca, "ca", &fs::read_to_string(&a_ca.cert).unwrap())
        .unwrap();
    mixed
        .write_key(Kind::Ca, "ca", &fs::read_to_string(&b_ca.key).unwrap())
        .unwrap();
    let err = mixed.gen_user("alice", "ca", 30).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
    assert!(mixed.names(Kind::User).unwrap().is_empty());
}
