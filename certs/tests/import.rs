//! Importing PEM files made elsewhere: certificates and keys land as NAME.crt and
//! NAME.key with their modes, after checks; nothing is overwritten.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use cairn_certs::{CertDir, CertError, Imported, Kind};

#[test]
fn certificates_and_keys_are_imported_by_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = CertDir::new(tmp.path().join("elsewhere"));
    let ca = elsewhere.gen_ca("partner", 365).unwrap();
    let user = elsewhere.gen_user("alice", "partner", 30).unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));

    // A CA certificate alone.
    let imported = dir.import(Kind::Ca, &ca.cert).unwrap();
    let cert = dir.root().join("cas/partner.crt");
    assert_eq!(
        imported,
        Imported {
            cert: Some(cert.clone()),
            key: None
        }
    );
    assert_eq!(fs::read(&cert).unwrap(), fs::read(&ca.cert).unwrap());

    // A certificate and its key in one file named alice.pem.
    let both = tmp.path().join("alice.pem");
    let text = fs::read_to_string(&user.key).unwrap() + &fs::read_to_string(&user.cert).unwrap();
    fs::write(&both, text).unwrap();
    let imported = dir.import(Kind::User, &both).unwrap();
    let key = dir.root().join("users/alice.key");
    assert_eq!(imported.key.as_ref(), Some(&key));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(&key).unwrap(), fs::read(&user.key).unwrap());
    assert_eq!(
        fs::read(dir.root().join("users/alice.crt")).unwrap(),
        fs::read(&user.cert).unwrap()
    );

    // Again: refused, nothing changed.
    let err = dir.import(Kind::User, &both).unwrap_err();
    assert!(matches!(err, CertError::FileExists(_)), "{err:?}");
    assert!(err.to_string().starts_with("file exists: "), "{err}");
}

#[test]
fn imports_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = CertDir::new(tmp.path().join("elsewhere"));
    elsewhere.gen_ca("partner", 365).unwrap();
    let user = elsewhere.gen_user("alice", "partner", 30).unwrap();
    let bob = elsewhere.gen_user("bob", "partner", 30).unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));

    let err = dir.import(Kind::Ca, &user.cert).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");

    let junk = tmp.path().join("junk.crt");
    fs::write(&junk, "hello").unwrap();
    let err = dir.import(Kind::Host, &junk).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");

    // alice's certificate with bob's key.
    let mixed = tmp.path().join("alice.pem");
    let text = fs::read_to_string(&bob.key).unwrap() + &fs::read_to_string(&user.cert).unwrap();
    fs::write(&mixed, text).unwrap();
    let err = dir.import(Kind::User, &mixed).unwrap_err();
    assert!(err.to_string().contains("not the certificate's"), "{err}");

    // A key alone is checked against the certificate already there.
    dir.import(Kind::User, &user.cert).unwrap();
    let wrong_key = tmp.path().join("alice.key");
    fs::copy(&bob.key, &wrong_key).unwrap();
    let err = dir.import(Kind::User, &wrong_key).unwrap_err();
    assert!(err.to_string().contains("not the certificate's"), "{err}");
    fs::copy(&user.key, &wrong_key).unwrap();
    dir.import(Kind::User, &wrong_key).unwrap();

    let bad_name = tmp.path().join("a b.crt");
    fs::copy(&user.cert, &bad_name).unwrap();
    assert!(matches!(
        dir.import(Kind::User, &bad_name),
        Err(CertError::InvalidName { .. })
    ));
    assert_eq!(dir.names(Kind::User).unwrap(), ["alice"]);
    assert!(dir.names(Kind::Ca).unwrap().is_empty());
}
