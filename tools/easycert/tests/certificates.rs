//! `cairn-easycert --ca`, `--server --signas` and `NAME --signas`: what they print and
//! write, checked with openssl (chains, extensions, names) and the file system (modes).

mod common;

use common::{mode, openssl, saved, verify, x509_text, Env};

#[test]
fn ca_is_a_critical_signing_ca() {
    let env = Env::new();
    let out = env.ok(&["--ca", "acme"]);
    let (key, cert) = (env.path("cas/acme.key"), env.path("cas/acme.crt"));
    assert_eq!(
        saved(&out),
        [
            ("key".to_string(), key.clone()),
            ("cert".to_string(), cert.clone())
        ]
    );
    let text = x509_text(&cert);
    assert!(text.contains("Issuer: CN = acme"), "{text}");
    assert!(text.contains("Subject: CN = acme"), "{text}");
    assert!(
        text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE"),
        "{text}"
    );
    assert!(
        text.contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"),
        "{text}"
    );
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    let (ok, text) = verify(&cert, &cert, "any");
    assert!(ok, "{text}");

    // Private by mode: the directory, its subdirectories and the key.
    assert_eq!(mode(&env.dir), 0o700);
    for sub in ["cas", "hosts", "users", "crls"] {
        assert_eq!(mode(&env.path(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
}

#[test]
fn host_certificate_serves_its_names_and_addresses() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    let out = env.ok(&[
        "--server",
        "db1.example.com",
        "--signas",
        "acme",
        "--server-sans",
        "DNS:db1,IP:10.0.0.1,IP:::1",
    ]);
    let cert = env.path("hosts/db1.example.com.crt");
    let key = env.path("hosts/db1.example.com.key");
    assert_eq!(
        saved(&out),
        [
            ("key".to_string(), key.clone()),
            ("cert".to_string(), cert.clone())
        ]
    );
    assert_eq!(mode(&key), 0o600);

    let ca = env.path("cas/acme.crt");
    let (ok, text) = verify(&ca, &cert, "sslserver");
    assert!(ok, "{text}");
    let (ok, text) = verify(&ca, &cert, "sslclient");
    assert!(!ok, "a host certificate passed as a client: {text}");

    let text = x509_text(&cert);
    assert!(text.contains("Subject: CN = db1.example.com"), "{text}");
    assert!(
        text.contains(
            "DNS:db1.example.com, DNS:db1, IP Address:10.0.0.1, IP Address:0:0:0:0:0:0:0:1"
        ),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");

    // openssl matches the host by its alternative names, not only the CN.
    for (flag, name) in [("-verify_hostname", "db1"), ("-verify_ip", "10.0.0.1")] {
        let (ok, text) = openssl(&[
            "verify".as_ref(),
            "-CAfile".as_ref(),
            ca.as_os_str(),
            flag.as_ref(),
            name.as_ref(),
            cert.as_os_str(),
        ]);
        assert!(ok, "{name}: {text}");
    }
    let (ok, text) = openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
        "-verify_hostname".as_ref(),
        "db2.example.com".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(!ok, "{text}");

    // A host named by its address gets an IP alternative name.
    env.ok(&["--server", "192.0.2.7", "--signas", "acme"]);
    let text = x509_text(&env.path("hosts/192.0.2.7.crt"));
    assert!(text.contains("IP Address:192.0.2.7"), "{text}");
}

#[test]
fn user_certificate_authenticates_a_client_by_its_cn() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["--ca", "other"]);
    let out = env.ok(&["alice", "--signas", "acme", "--days", "10"]);
    let cert = env.path("users/alice.crt");
    assert_eq!(
        saved(&out),
        [
            ("key".to_string(), env.path("users/alice.key")),
            ("cert".to_string(), cert.clone())
        ]
    );
    assert_eq!(mode(&env.path("users/alice.key")), 0o600);
    let (ok, text) = verify(&env.path("cas/acme.crt"), &cert, "sslclient");
    assert!(ok, "{text}");
    let (ok, text) = verify(&env.path("cas/other.crt"), &cert, "sslclient");
    assert!(!ok, "verified against a CA that did not sign it: {text}");
    let text = x509_text(&cert);
    assert!(text.contains("Subject: CN = alice"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");

    // --user NAME is the same as NAME.
    env.ok(&["--user", "bob", "--signas", "acme"]);
    assert!(env.path("users/bob.crt").exists());
}

/// Whether the certificate at `cert` is still valid in `days` days (`openssl x509
/// -checkend`).
fn valid_in(cert: &std::path::Path, days: u32) -> bool {
    let seconds = (u64::from(days) * 86400).to_string();
    let (ok, _) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-checkend".as_ref(),
        seconds.as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    ok
}

#[test]
fn days_set_the_validity() {
    let env = Env::new();
    env.ok(&["--ca", "acme", "--days", "20"]);
    env.ok(&["--ca", "long"]);
    env.ok(&["alice", "--signas", "acme"]);
    env.ok(&["bob", "--signas", "acme", "--days", "3"]);
    for (cert, days) in [
        ("cas/acme.crt", 20),
        ("cas/long.crt", 3650),
        ("users/alice.crt", 825),
        ("users/bob.crt", 3),
    ] {
        let cert = env.path(cert);
        assert!(valid_in(&cert, days - 1), "{}", cert.display());
        assert!(!valid_in(&cert, days + 1), "{}", cert.display());
    }
}

#[test]
fn ed25519_keys_work_throughout() {
    let env = Env::new();
    env.ok(&["--ca", "edca", "--key-type", "ed25519"]);
    env.ok(&[
        "--server",
        "db1",
        "--signas",
        "edca",
        "--key-type",
        "ed25519",
    ]);
    env.ok(&["alice", "--signas", "edca", "--key-type", "ed25519"]);
    let ca = env.path("cas/edca.crt");
    assert!(x509_text(&ca).contains("Public Key Algorithm: ED25519"));
    let (ok, text) = verify(&ca, &env.path("hosts/db1.crt"), "sslserver");
    assert!(ok, "{text}");
    let (ok, text) = verify(&ca, &env.path("users/alice.crt"), "sslclient");
    assert!(ok, "{text}");
    for key in ["cas/edca.key", "hosts/db1.key", "users/alice.key"] {
        let (ok, text) = openssl(&[
            "pkey".as_ref(),
            "-noout".as_ref(),
            "-in".as_ref(),
            env.path(key).as_os_str(),
        ]);
        assert!(ok, "openssl cannot read {key}: {text}");
    }
}

#[test]
fn rsa_4096_ca_signs_certificates() {
    // The one test that makes an RSA key: slow in a debug build.
    let env = Env::new();
    env.ok(&["--ca", "rsaca", "--key-type", "rsa-4096"]);
    env.ok(&["alice", "--signas", "rsaca"]);
    let ca = env.path("cas/rsaca.crt");
    let text = x509_text(&ca);
    assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    let (ok, text) = verify(&ca, &env.path("users/alice.crt"), "sslclient");
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "rsa".as_ref(),
        "-check".as_ref(),
        "-noout".as_ref(),
        "-in".as_ref(),
        env.path("cas/rsaca.key").as_os_str(),
    ]);
    assert!(ok && text.contains("RSA key ok"), "{text}");
}
