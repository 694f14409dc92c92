//! `cairn-easycert --p12`: an encrypted bundle of a user's certificate, key and CA that
//! openssl opens with the password and not without.

mod common;

use common::{mode, openssl, saved, Env};

fn pkcs12(env: &Env, password: &str, extra: &str) -> (bool, String) {
    let p12 = env.path("users/alice.p12");
    let pass = format!("pass:{password}");
    openssl(&[
        "pkcs12".as_ref(),
        "-in".as_ref(),
        p12.as_os_str(),
        "-passin".as_ref(),
        pass.as_ref(),
        extra.as_ref(),
    ])
}

#[test]
fn bundle_opens_with_its_password_only() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["alice", "--signas", "acme"]);
    let run = env.run_with_stdin(&["--p12", "alice", "--password-stdin"], "correct horse\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    let p12 = env.path("users/alice.p12");
    assert_eq!(saved(&run.stdout), [("p12".to_string(), p12.clone())]);
    assert_eq!(mode(&p12), 0o600);

    let (ok, text) = pkcs12(&env, "correct horse", "-noout");
    assert!(ok, "{text}");
    let (ok, text) = pkcs12(&env, "correct horse", "-nokeys");
    assert!(ok, "{text}");
    assert!(
        text.contains("subject=CN = alice") && text.contains("subject=CN = acme"),
        "{text}"
    );
    let (ok, text) = pkcs12(&env, "correct horse", "-nodes");
    assert!(ok && text.contains("BEGIN PRIVATE KEY"), "{text}");

    for wrong in ["wrong", "correct horse\n", ""] {
        let (ok, text) = pkcs12(&env, wrong, "-noout");
        assert!(!ok, "{wrong:?} opened the bundle: {text}");
    }

    // Never replaced.
    let before = std::fs::read(&p12).unwrap();
    let run = env.run_with_stdin(&["--p12", "alice", "--password-stdin"], "other\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("file exists: {}", p12.display())),
        "{run:?}"
    );
    assert_eq!(std::fs::read(&p12).unwrap(), before);
}

#[test]
fn bundle_needs_a_password_and_a_user() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["alice", "--signas", "acme"]);
    let run = env.run_with_stdin(&["--p12", "alice", "--password-stdin"], "\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("empty password"), "{run:?}");
    let run = env.run_with_stdin(&["--p12", "bob", "--password-stdin"], "pw\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("users/bob.crt"), "{run:?}");
    // No terminal to ask on: a clear error, not a hang.
    let run = env.run_with_stdin(&["--p12", "alice"], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
    assert!(!env.path("users/alice.p12").exists());
    assert!(!env.path("users/bob.p12").exists());
}
