//! `cairn-easycert --csr` and `--sign-csr`: a key and CSR for an external CA, and signing
//! a CSR made by openssl that asks for more than it gets.

mod common;

use std::fs;
use std::path::Path;

use common::{mode, openssl, saved, verify, x509_text, Env};

/// An openssl CSR for `subject` (e.g. `/CN=x`) asking to be a CA with extra names.
fn greedy_openssl_csr(env: &Env, name: &str, subject: &str) -> std::path::PathBuf {
    let csr = env.tmp.path().join(format!("{name}.csr"));
    let key = env.tmp.path().join(format!("{name}.key"));
    let (ok, text) = openssl(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        csr.as_os_str(),
        "-subj".as_ref(),
        subject.as_ref(),
        "-addext".as_ref(),
        "basicConstraints=critical,CA:TRUE".as_ref(),
        "-addext".as_ref(),
        "keyUsage=critical,keyCertSign,cRLSign".as_ref(),
        "-addext".as_ref(),
        "subjectAltName=DNS:www.example.org,IP:192.0.2.99".as_ref(),
        "-addext".as_ref(),
        "extendedKeyUsage=codeSigning".as_ref(),
    ]);
    assert!(ok, "{text}");
    csr
}

fn csr_text(csr: &Path) -> String {
    let (ok, text) = openssl(&[
        "req".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-verify".as_ref(),
        "-in".as_ref(),
        csr.as_os_str(),
    ]);
    assert!(ok, "{text}");
    text
}

#[test]
fn csrs_for_a_host_and_a_user_leave_the_key_here() {
    let env = Env::new();
    let out = env.ok(&[
        "--csr",
        "--server",
        "db2.example.com",
        "--server-sans",
        "IP:10.0.0.2",
        "--key-type",
        "ed25519",
    ]);
    let (key, csr) = (
        env.path("hosts/db2.example.com.key"),
        env.path("hosts/db2.example.com.csr"),
    );
    assert_eq!(
        saved(&out),
        [
            ("key".to_string(), key.clone()),
            ("csr".to_string(), csr.clone())
        ]
    );
    assert_eq!(mode(&key), 0o600);
    assert!(!env.path("hosts/db2.example.com.crt").exists());
    let text = csr_text(&csr);
    assert!(text.contains("Subject: CN = db2.example.com"), "{text}");
    assert!(
        text.contains("DNS:db2.example.com, IP Address:10.0.0.2"),
        "{text}"
    );

    let out = env.ok(&["--csr", "bob"]);
    assert_eq!(
        saved(&out),
        [
            ("key".to_string(), env.path("users/bob.key")),
            ("csr".to_string(), env.path("users/bob.csr"))
        ]
    );
    let text = csr_text(&env.path("users/bob.csr"));
    assert!(text.contains("Subject: CN = bob"), "{text}");

    // The CSR signed by a CA of this directory completes the pair.
    env.ok(&["--ca", "acme"]);
    let out = env.ok(&[
        "--sign-csr",
        env.path("hosts/db2.example.com.csr").to_str().unwrap(),
        "--signas",
        "acme",
        "--server",
        "--server-sans",
        "IP:10.0.0.2",
    ]);
    let cert = env.path("hosts/db2.example.com.crt");
    assert_eq!(saved(&out), [("cert".to_string(), cert.clone())]);
    let (ok, text) = verify(&env.path("cas/acme.crt"), &cert, "sslserver");
    assert!(ok, "{text}");
}

#[test]
fn signing_a_csr_ignores_the_extensions_it_asks_for() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    let csr = greedy_openssl_csr(&env, "db3", "/CN=db3.example.com/O=Greedy");
    let text = csr_text(&csr);
    assert!(
        text.contains("CA:TRUE") && text.contains("www.example.org"),
        "{text}"
    );

    let out = env.ok(&[
        "--sign-csr",
        csr.to_str().unwrap(),
        "--signas",
        "acme",
        "--server",
        "--server-sans",
        "DNS:db3,IP:10.0.0.3",
    ]);
    let cert = env.path("hosts/db3.example.com.crt");
    assert_eq!(saved(&out), [("cert".to_string(), cert.clone())]);
    let (ok, text) = verify(&env.path("cas/acme.crt"), &cert, "sslserver");
    assert!(ok, "{text}");
    let text = x509_text(&cert);
    assert!(text.contains("Subject: CN = db3.example.com\n"), "{text}");
    assert!(
        text.contains("CA:FALSE") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(
        text.contains("X509v3 Subject Alternative Name: \n                DNS:db3.example.com, DNS:db3, IP Address:10.0.0.3\n"),
        "{text}"
    );
    assert!(
        !text.contains("www.example.org") && !text.contains("192.0.2.99"),
        "{text}"
    );
    assert!(
        !text.contains("Certificate Sign") && !text.contains("CRL Sign"),
        "{text}"
    );
    assert!(!text.contains("Code Signing"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");

    // As a user certificate: no names at all, clientAuth.
    let csr = greedy_openssl_csr(&env, "carol", "/CN=carol");
    env.ok(&["--sign-csr", csr.to_str().unwrap(), "--signas", "acme"]);
    let cert = env.path("users/carol.crt");
    let text = x509_text(&cert);
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    assert!(
        text.contains("CA:FALSE") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    let (ok, text) = verify(&env.path("cas/acme.crt"), &cert, "sslclient");
    assert!(ok, "{text}");
}

#[test]
fn bad_csrs_and_missing_cas_are_clear_errors() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    let junk = env.tmp.path().join("junk.csr");
    fs::write(&junk, "this is no request\n").unwrap();
    let err = env.fails(
        &["--sign-csr", junk.to_str().unwrap(), "--signas", "acme"],
        1,
    );
    assert!(err.starts_with("cairn-easycert: error: "), "{err}");
    assert!(err.contains("not a certificate signing request"), "{err}");

    fs::write(
        &junk,
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let err = env.fails(
        &["--sign-csr", junk.to_str().unwrap(), "--signas", "acme"],
        1,
    );
    assert!(
        err.contains("malformed certificate signing request"),
        "{err}"
    );

    let missing = env.tmp.path().join("missing.csr");
    let err = env.fails(
        &["--sign-csr", missing.to_str().unwrap(), "--signas", "acme"],
        1,
    );
    assert!(
        err.contains("missing.csr") && err.contains("No such file"),
        "{err}"
    );

    let csr = greedy_openssl_csr(&env, "dave", "/CN=dave");
    let err = env.fails(
        &["--sign-csr", csr.to_str().unwrap(), "--signas", "nope"],
        1,
    );
    assert!(err.contains("no CA certificate nope"), "{err}");
    assert!(err.contains("cairn-easycert --ca nope"), "{err}");
    assert!(!env.path("users/dave.crt").exists());
}
