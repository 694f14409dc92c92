//! A service's first-start certificates: what `ensure_embedded_default` creates, and that
//! running it again changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cairn_certs::{ensure_embedded_default, machine_hostname, CertDir, CertError, Kind, San};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Every file under `root` with its bytes and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else {
                files.insert(
                    path.clone(),
                    (fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    files
}

fn sans(path: &Path) -> Vec<San> {
    let der = CertificateDer::from_pem_file(path).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(d) => San::Dns(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                San::Ip(<[u8; 4]>::try_from(*b).unwrap().into())
            }
            x509_parser::extensions::GeneralName::IPAddress(b) => {
                San::Ip(<[u8; 16]>::try_from(*b).unwrap().into())
            }
            other => panic!("unexpected name {other:?}"),
        })
        .collect()
}

#[test]
fn creates_ca_host_and_root_user_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("data").join("certs"));
    let hosts = vec!["myhost".to_string(), "10.1.2.3".to_string()];

    let written = ensure_embedded_default(&dir, "acme", &hosts, "root").unwrap();
    let expected: Vec<PathBuf> = [
        "cas/acme.key",
        "cas/acme.crt",
        "hosts/localhost.key",
        "hosts/localhost.crt",
        "users/root.key",
        "users/root.crt",
    ]
    .iter()
    .map(|p| dir.root().join(p))
    .collect();
    assert_eq!(written, expected);
    assert_eq!(
        sans(&dir.cert_path(Kind::Host, "localhost").unwrap()),
        [
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
            San::Ip("::1".parse().unwrap()),
            San::Dns("myhost".into()),
            San::Ip("10.1.2.3".parse().unwrap()),
        ]
    );
    assert!(dir.root().join("crls").is_dir());

    let before = snapshot(dir.root());
    assert_eq!(before.len(), 6);
    // Let a rewrite show in the modification times too.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let written = ensure_embedded_default(&dir, "acme", &hosts, "root").unwrap();
    assert!(written.is_empty(), "second call wrote {written:?}");
    assert_eq!(snapshot(dir.root()), before);
}

#[test]
fn recreates_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    ensure_embedded_default(&dir, "acme", &[], "root").unwrap();
    let ca_before = fs::read(dir.cert_path(Kind::Ca, "acme").unwrap()).unwrap();
    fs::remove_file(dir.cert_path(Kind::User, "root").unwrap()).unwrap();
    fs::remove_file(dir.key_path(Kind::User, "root").unwrap()).unwrap();

    let written = ensure_embedded_default(&dir, "acme", &[], "root").unwrap();
    assert_eq!(
        written,
        [
            dir.key_path(Kind::User, "root").unwrap(),
            dir.cert_path(Kind::User, "root").unwrap()
        ]
    );
    assert_eq!(
        fs::read(dir.cert_path(Kind::Ca, "acme").unwrap()).unwrap(),
        ca_before
    );
}

#[test]
fn bad_input_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    let err = ensure_embedded_default(&dir, "acme", &[], "../root").unwrap_err();
    assert!(matches!(err, CertError::InvalidName { .. }), "{err:?}");
    let err = ensure_embedded_default(&dir, "acme", &["bad host".into()], "root").unwrap_err();
    assert!(matches!(err, CertError::BadSan(_)), "{err:?}");
    assert!(!dir.root().exists());
}

#[test]
fn machine_hostname_is_the_kernel_host_name() {
    let kernel = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let kernel = kernel.trim();
    match machine_hostname() {
        Some(name) => assert_eq!(name, kernel),
        None => assert!(San::for_host(kernel).is_err(), "{kernel:?} was refused"),
    }
}
