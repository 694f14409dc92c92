//! Revocation lists: `CertDir::revoke` writes a CRL signed by the CA that keeps every
//! serial revoked so far with an increasing CRL number, refuses what it cannot or need
//! not do, and `crl_fingerprint` changes exactly when a list does.

use std::fs;
use std::path::Path;

use cairn_certs::{crl_fingerprint, CertDir, CertError, Kind};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::parse_x509_certificate;

/// The serials (upper-case hex) and CRL number of a CRL file, after checking that the CA
/// certificate at `ca` signed it.
fn read_crl(path: &Path, ca: &Path) -> (Vec<String>, u64) {
    let der = CertificateRevocationListDer::from_pem_file(path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let ca_der = CertificateDer::from_pem_file(ca).unwrap();
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    crl.verify_signature(ca.public_key())
        .expect("the CRL is signed by its CA");
    assert_eq!(crl.issuer(), ca.subject());
    assert!(crl.next_update().unwrap() > crl.last_update());
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode_upper(r.raw_serial()))
        .collect();
    let number = crl.crl_number().unwrap().to_u64_digits();
    (serials, number.first().copied().unwrap_or(0))
}

fn serial(cert: &Path) -> String {
    let der = CertificateDer::from_pem_file(cert).unwrap();
    hex::encode_upper(parse_x509_certificate(&der).unwrap().1.raw_serial())
}

#[test]
fn revocations_accumulate_in_a_signed_numbered_list() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    let ca = dir.gen_ca("acme", 365).unwrap();
    let alice = dir.gen_user("alice", "acme", 30).unwrap();
    let db1 = dir.gen_host("db1", "acme", &[], 30).unwrap();
    dir.gen_user("bob", "acme", 30).unwrap();

    let first = dir.revoke("acme", Kind::User, "alice").unwrap();
    assert_eq!(first.crl, dir.root().join("crls/acme.crl"));
    assert_eq!(first.cert, alice.cert);
    assert_eq!(first.serial, serial(&alice.cert));
    assert_eq!(
        read_crl(&first.crl, &ca.cert),
        (vec![serial(&alice.cert)], 1)
    );

    let second = dir.revoke("acme", Kind::Host, "db1").unwrap();
    // Rewritten in place, no temporary file left behind.
    let mut files: Vec<String> = fs::read_dir(dir.root().join("crls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, [".acme.crl.lock", "acme.crl"]);
    assert_eq!(
        read_crl(&second.crl, &ca.cert),
        (vec![serial(&alice.cert), serial(&db1.cert)], 2)
    );

    // Revoking again changes nothing.
    let before = fs::read(&second.crl).unwrap();
    let err = dir.revoke("acme", Kind::User, "alice").unwrap_err();
    assert!(matches!(err, CertError::AlreadyRevoked { .. }), "{err:?}");
    assert!(err.to_string().contains("already revoked"), "{err}");
    assert_eq!(fs::read(&second.crl).unwrap(), before);
}

#[test]
fn revocation_needs_the_signing_ca_and_an_existing_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    dir.gen_ca("acme", 365).unwrap();
    dir.gen_ca("other", 365).unwrap();
    dir.gen_user("alice", "acme", 30).unwrap();

    let err = dir.revoke("other", Kind::User, "alice").unwrap_err();
    assert!(matches!(err, CertError::NotIssuedBy { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not signed by the CA other"),
        "{err}"
    );

    let err = dir.revoke("nope", Kind::User, "alice").unwrap_err();
    assert!(
        err.to_string().contains("cairn-easycert --ca nope"),
        "{err}"
    );

    let err = dir.revoke("acme", Kind::User, "carol").unwrap_err();
    assert!(matches!(err, CertError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("users/carol.crt"), "{err}");
    assert!(!dir.crl_path("acme").unwrap().exists());
    assert!(!dir.crl_path("other").unwrap().exists());
}

#[test]
fn a_list_the_ca_did_not_sign_is_not_extended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    dir.gen_ca("acme", 365).unwrap();
    dir.gen_ca("other", 365).unwrap();
    dir.gen_user("alice", "acme", 30).unwrap();
    dir.gen_user("bob", "other", 30).unwrap();
    let other_crl = dir.revoke("other", Kind::User, "bob").unwrap().crl;
    fs::copy(&other_crl, dir.crl_path("acme").unwrap()).unwrap();

    let err = dir.revoke("acme", Kind::User, "alice").unwrap_err();
    assert!(matches!(err, CertError::BadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("not signed by the CA"), "{err}");

    fs::write(dir.crl_path("acme").unwrap(), "not a CRL").unwrap();
    let err = dir.revoke("acme", Kind::User, "alice").unwrap_err();
    assert!(
        err.to_string()
            .contains("not a certificate revocation list"),
        "{err}"
    );
}

#[test]
fn fingerprint_changes_when_a_list_does() {
    let tmp = tempfile::tempdir().unwrap();
    let a = CertDir::new(tmp.path().join("a"));
    let b = CertDir::new(tmp.path().join("missing"));
    let dirs = [a.clone(), b];
    let empty = crl_fingerprint(&dirs).unwrap();
    assert_eq!(empty, crl_fingerprint(&[]).unwrap());

    a.gen_ca("acme", 365).unwrap();
    a.gen_user("alice", "acme", 30).unwrap();
    a.gen_user("bob", "acme", 30).unwrap();
    // Certificates are not lists.
    assert_eq!(crl_fingerprint(&dirs).unwrap(), empty);

    a.revoke("acme", Kind::User, "alice").unwrap();
    let one = crl_fingerprint(&dirs).unwrap();
    assert_ne!(one, empty);
    assert_eq!(crl_fingerprint(&dirs).unwrap(), one, "nothing changed");

    a.revoke("acme", Kind::User, "bob").unwrap();
    let two = crl_fingerprint(&dirs).unwrap();
    assert_ne!(two, one);

    // Other files in crls/ do not count; removing a list does.
    fs::write(a.root().join("crls/notes.txt"), "x").unwrap();
    assert_eq!(crl_fingerprint(&dirs).unwrap(), two);
    fs::remove_file(a.crl_path("acme").unwrap()).unwrap();
    assert_eq!(crl_fingerprint(&dirs).unwrap(), empty);
}
