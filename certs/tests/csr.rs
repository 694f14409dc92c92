//! Certificate signing requests: the key and CSR written for an external CA, and signing
//! a CSR, which keeps its key and CN and nothing else it asks for.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_certs::{CertDir, CertError, KeyType, Kind, San};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_certificate, FromDer};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The subject alternative names of a certificate file, as text (`DNS:a`, `IP:1.2.3.4`).
fn sans_of(cert: &Path) -> Vec<String> {
    let der = CertificateDer::from_pem_file(cert).unwrap();
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    let Some(ext) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
            }
            other => panic!("unexpected name {other:?}"),
        })
        .collect()
}

/// A CSR for `cn` that asks for everything a leaf must not get.
fn greedy_csr(cn: &str) -> String {
    let mut params = CertificateParams::new(vec!["evil.example.com".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::CodeSigning,
    ];
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn csrs_are_written_with_their_keys_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    let extra: Vec<San> = vec!["IP:10.0.0.1".parse().unwrap()];
    let host = dir
        .gen_host_csr("db2.example.com", &extra, KeyType::Ed25519)
        .unwrap();
    assert_eq!(host.csr, dir.root().join("hosts/db2.example.com.csr"));
    assert_eq!(host.key, dir.root().join("hosts/db2.example.com.key"));
    assert_eq!(mode(&host.key), 0o600);
    assert_eq!(mode(&host.csr), 0o644);
    assert!(!dir
        .cert_path(Kind::Host, "db2.example.com")
        .unwrap()
        .exists());

    let pem = fs::read_to_string(&host.csr).unwrap();
    let der = pem::parse(&pem).unwrap();
    let (_, csr) = X509CertificationRequest::from_der(der.contents()).unwrap();
    csr.verify_signature().unwrap();
    let cn = csr.certification_request_info.subject.to_string();
    assert_eq!(cn, "CN=db2.example.com");
    let asked: Vec<String> = csr
        .requested_extensions()
        .unwrap()
        .filter_map(|ext| match ext {
            x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => {
                Some(format!("{:?}", san.general_names))
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains("db2.example.com"), "{asked:?}");

    let user = dir.gen_user_csr("bob", KeyType::EcdsaP256).unwrap();
    assert_eq!(user.csr, dir.root().join("users/bob.csr"));

    // Neither is written twice, nor next to an existing certificate.
    let err = dir.gen_user_csr("bob", KeyType::EcdsaP256).unwrap_err();
    assert!(
        matches!(err, CertError::FileExists(ref p) if *p == user.key),
        "{err:?}"
    );
    dir.gen_ca("acme", 30).unwrap();
    let alice = dir.gen_user("alice", "acme", 30).unwrap();
    let err = dir.gen_user_csr("alice", KeyType::EcdsaP256).unwrap_err();
    assert!(
        matches!(err, CertError::FileExists(ref p) if *p == alice.cert),
        "{err:?}"
    );
}

#[test]
fn signing_ignores_what_the_csr_asks_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    dir.gen_ca("acme", 365).unwrap();
    let csr = tmp.path().join("db3.example.com.csr");
    fs::write(&csr, greedy_csr("db3.example.com")).unwrap();

    let extra: Vec<San> = vec!["DNS:db3".parse().unwrap(), "IP:10.0.0.3".parse().unwrap()];
    let cert = dir.sign_host_csr(&csr, "acme", &extra, 30).unwrap();
    assert_eq!(cert, dir.root().join("hosts/db3.example.com.crt"));
    assert_eq!(
        sans_of(&cert),
        ["DNS:db3.example.com", "DNS:db3", "IP:10.0.0.3"]
    );
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    let (_, parsed) = parse_x509_certificate(&der).unwrap();
    assert!(!parsed.is_ca());
    let ku = parsed.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth && !eku.code_signing);

    // As a user: CN only, clientAuth only, no names.
    let user_csr = tmp.path().join("carol.csr");
    fs::write(&user_csr, greedy_csr("carol")).unwrap();
    let cert = dir.sign_user_csr(&user_csr, "acme", 30).unwrap();
    assert_eq!(cert, dir.root().join("users/carol.crt"));
    assert!(sans_of(&cert).is_empty());
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    let (_, parsed) = parse_x509_certificate(&der).unwrap();
    assert!(!parsed.is_ca());
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    // Signing the same request again would overwrite.
    let err = dir.sign_user_csr(&user_csr, "acme", 30).unwrap_err();
    assert!(matches!(err, CertError::FileExists(_)), "{err:?}");
}

#[test]
fn bad_csrs_are_refused_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    dir.gen_ca("acme", 365).unwrap();
    let path = tmp.path().join("x.csr");
    let refused = |content: &[u8]| {
        fs::write(&path, content).unwrap();
        let err = dir.sign_user_csr(&path, "acme", 30).unwrap_err();
        assert!(matches!(err, CertError::BadFile { .. }), "{err:?}");
        err.to_string()
    };

    let message = refused(b"hello");
    assert!(
        message.contains("not a certificate signing request"),
        "{message}"
    );

    let message =
        refused(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    assert!(
        message.contains("malformed certificate signing request"),
        "{message}"
    );

    // One byte of the signed part changed: the signature no longer verifies.
    let good = pem::parse(greedy_csr("dave")).unwrap();
    let mut der = good.contents().to_vec();
    let at = der.windows(4).position(|w| w == b"dave").unwrap();
    der[at] = b'e';
    let message = refused(&der);
    assert!(message.contains("signature does not verify"), "{message}");

    let message = refused(greedy_csr("a b").as_bytes());
    assert!(message.contains("cannot name a certificate"), "{message}");

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    let csr = params
        .serialize_request(&KeyPair::generate().unwrap())
        .unwrap();
    let message = refused(csr.pem().unwrap().as_bytes());
    assert!(message.contains("no common name"), "{message}");

    // A DER request is fine; a missing CA is said so.
    fs::write(&path, pem::parse(greedy_csr("erin")).unwrap().contents()).unwrap();
    let err = dir.sign_user_csr(&path, "nope", 30).unwrap_err();
    assert!(
        err.to_string().contains("cairn-easycert --ca nope"),
        "{err}"
    );
    dir.sign_user_csr(&path, "acme", 30).unwrap();
    assert_eq!(dir.names(Kind::User).unwrap(), ["erin"]);
}
