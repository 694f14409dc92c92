//! `cairn-easycert --revokeas CA NAME`: the CA's CRL lists every certificate revoked,
//! openssl reads it and refuses the revoked certificates with it.

mod common;

use std::path::Path;

use common::{openssl, saved, serial, Env};

fn crl_text(crl: &Path, ca: &Path) -> String {
    let (ok, text) = openssl(&[
        "crl".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        crl.as_os_str(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("verify OK"), "the CA's signature: {text}");
    text
}

fn verify_with_crl(env: &Env, cert: &str) -> (bool, String) {
    openssl(&[
        "verify".as_ref(),
        "-crl_check".as_ref(),
        "-CAfile".as_ref(),
        env.path("cas/acme.crt").as_os_str(),
        "-CRLfile".as_ref(),
        env.path("crls/acme.crl").as_os_str(),
        env.path(cert).as_os_str(),
    ])
}

#[test]
fn revoked_serials_accumulate_in_the_cas_list() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["alice", "--signas", "acme"]);
    env.ok(&["bob", "--signas", "acme"]);
    env.ok(&["--server", "db1", "--signas", "acme"]);
    let (ca, crl) = (env.path("cas/acme.crt"), env.path("crls/acme.crl"));
    let alice = serial(&env.path("users/alice.crt"));
    let db1 = serial(&env.path("hosts/db1.crt"));

    let out = env.ok(&["--revokeas", "acme", "alice"]);
    assert!(
        out.contains(&format!(
            "revoked: {} (serial {alice})",
            env.path("users/alice.crt").display()
        )),
        "{out}"
    );
    assert_eq!(saved(&out), [("CRL".to_string(), crl.clone())]);
    let text = crl_text(&crl, &ca);
    assert!(text.contains(&format!("Serial Number: {alice}")), "{text}");
    assert!(text.contains("Issuer: CN = acme"), "{text}");
    assert!(
        text.contains("X509v3 CRL Number: \n                1"),
        "{text}"
    );
    assert!(text.contains("Next Update:"), "{text}");

    // A host by its name alone, the second revocation keeping the first.
    env.ok(&["--revokeas", "acme", "db1"]);
    let text = crl_text(&crl, &ca);
    assert!(text.contains(&format!("Serial Number: {alice}")), "{text}");
    assert!(text.contains(&format!("Serial Number: {db1}")), "{text}");
    assert!(
        text.contains("X509v3 CRL Number: \n                2"),
        "{text}"
    );

    let (ok, text) = verify_with_crl(&env, "users/alice.crt");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify_with_crl(&env, "hosts/db1.crt");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify_with_crl(&env, "users/bob.crt");
    assert!(ok, "{text}");

    // Again: an error, the list unchanged.
    let before = std::fs::read(&crl).unwrap();
    let err = env.fails(&["--revokeas", "acme", "--user", "alice"], 1);
    assert!(err.contains("already revoked"), "{err}");
    assert_eq!(std::fs::read(&crl).unwrap(), before);
}

#[test]
fn revocation_names_one_certificate_of_the_ca() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["--ca", "other"]);
    env.ok(&["db1", "--signas", "acme"]);
    env.ok(&["--server", "db1", "--signas", "acme"]);

    let err = env.fails(&["--revokeas", "acme", "db1"], 1);
    assert!(err.contains("--user db1 or --server db1"), "{err}");
    env.ok(&["--revokeas", "acme", "--server", "db1"]);
    let text = crl_text(&env.path("crls/acme.crl"), &env.path("cas/acme.crt"));
    assert!(text.contains(&serial(&env.path("hosts/db1.crt"))), "{text}");
    assert!(
        !text.contains(&serial(&env.path("users/db1.crt"))),
        "{text}"
    );

    let err = env.fails(&["--revokeas", "other", "--user", "db1"], 1);
    assert!(err.contains("was not signed by the CA other"), "{err}");
    let err = env.fails(&["--revokeas", "nope", "--user", "db1"], 1);
    assert!(err.contains("cairn-easycert --ca nope"), "{err}");
    let err = env.fails(&["--revokeas", "acme", "carol"], 1);
    assert!(err.contains("users/carol.crt"), "{err}");
    assert!(!env.path("crls/other.crl").exists());
    assert!(!env.path("crls/nope.crl").exists());
}
