//! PKCS#12 bundles: encrypted, private, holding the user's certificate, key and CA, and
//! opened by openssl with the password only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cairn_certs::{CertDir, CertError, KeyType, Kind};

/// `openssl pkcs12 -in P12 -passin pass:PASSWORD ARGS`: success and output.
fn openssl_pkcs12(p12: &Path, password: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("pkcs12")
        .arg("-in")
        .arg(p12)
        .arg("-passin")
        .arg(format!("pass:{password}"))
        .args(args)
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

#[test]
fn bundle_holds_certificate_key_and_ca_under_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    dir.gen_ca("acme", 365).unwrap();
    dir.gen_ca("other", 365).unwrap();
    dir.gen_user_with("alice", "acme", 30, KeyType::Ed25519)
        .unwrap();

    let p12 = dir.gen_p12("alice", "s3cret pass").unwrap();
    assert_eq!(p12, dir.root().join("users/alice.p12"));
    assert_eq!(
        fs::metadata(&p12).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (ok, text) = openssl_pkcs12(&p12, "s3cret pass", &["-noout"]);
    assert!(ok, "{text}");
    let (ok, text) = openssl_pkcs12(&p12, "s3cret pass", &["-nokeys"]);
    assert!(ok, "{text}");
    assert!(text.contains("subject=CN = alice"), "{text}");
    assert!(text.contains("subject=CN = acme"), "{text}");
    assert!(!text.contains("CN = other"), "{text}");
    let (ok, text) = openssl_pkcs12(&p12, "s3cret pass", &["-nocerts", "-nodes"]);
    assert!(ok && text.contains("PRIVATE KEY"), "{text}");

    let (ok, text) = openssl_pkcs12(&p12, "wrong", &["-noout"]);
    assert!(!ok, "a wrong password opened the bundle: {text}");

    // Never written twice.
    let before = fs::read(&p12).unwrap();
    let err = dir.gen_p12("alice", "another").unwrap_err();
    assert!(matches!(err, CertError::FileExists(_)), "{err:?}");
    assert_eq!(fs::read(&p12).unwrap(), before);
}

#[test]
fn bundle_needs_a_password_a_user_and_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("a"));
    dir.gen_ca("acme", 365).unwrap();
    dir.gen_user("alice", "acme", 30).unwrap();

    assert!(matches!(
        dir.gen_p12("alice", ""),
        Err(CertError::EmptyPassword)
    ));
    let err = dir.gen_p12("bob", "pw").unwrap_err();
    assert!(err.to_string().contains("users/bob.crt"), "{err}");

    // A user whose CA is not in cas/.
    let other = CertDir::new(tmp.path().join("b"));
    other.create().unwrap();
    let pem = |p: std::path::PathBuf| fs::read_to_string(p).unwrap();
    other
        .write_cert(
            Kind::User,
            "alice",
            &pem(dir.cert_path(Kind::User, "alice").unwrap()),
        )
        .unwrap();
    other
        .write_key(
            Kind::User,
            "alice",
            &pem(dir.key_path(Kind::User, "alice").unwrap()),
        )
        .unwrap();
    let err = other.gen_p12("alice", "pw").unwrap_err();
    assert!(err.to_string().contains("--importfile cas"), "{err}");
    assert!(!other.p12_path("alice").unwrap().exists());
}
