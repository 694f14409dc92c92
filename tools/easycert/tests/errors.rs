//! What `cairn-easycert` refuses: existing files (exit 1, file unchanged), a missing CA,
//! bad names and SANs (exit 1), usage errors (exit 2); and its help and imports.

mod common;

use std::fs;

use common::{mode, saved, Env};

#[test]
fn existing_files_are_never_overwritten() {
    let env = Env::new();
    env.ok(&["--ca", "acme"]);
    env.ok(&["alice", "--signas", "acme"]);
    let key = env.path("cas/acme.key");
    let before = (
        fs::read(&key).unwrap(),
        fs::read(env.path("cas/acme.crt")).unwrap(),
    );

    let err = env.fails(&["--ca", "acme"], 1);
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "cairn-easycert: error: file exists: {} (certificates and keys are never overwritten: remove it first to replace it)",
            key.display()
        )
    );
    assert_eq!(
        (
            fs::read(&key).unwrap(),
            fs::read(env.path("cas/acme.crt")).unwrap()
        ),
        before
    );

    let user_key = fs::read(env.path("users/alice.key")).unwrap();
    let err = env.fails(&["alice", "--signas", "acme"], 1);
    assert!(
        err.contains(&format!(
            "file exists: {}",
            env.path("users/alice.key").display()
        )),
        "{err}"
    );
    let err = env.fails(&["--csr", "alice"], 1);
    assert!(err.contains("file exists: "), "{err}");
    assert_eq!(fs::read(env.path("users/alice.key")).unwrap(), user_key);
    assert!(!env.path("users/alice.csr").exists());
}

#[test]
fn bad_input_is_a_clear_error_that_writes_nothing() {
    let env = Env::new();
    let err = env.fails(&["--server", "db1", "--signas", "acme"], 1);
    assert!(err.contains("no CA certificate acme"), "{err}");
    assert!(err.contains("cairn-easycert --ca acme"), "{err}");
    let err = env.fails(&["alice", "--signas", "acme"], 1);
    assert!(err.contains("no CA certificate acme"), "{err}");

    env.ok(&["--ca", "acme"]);
    for bad in ["FOO:bar", "DNS:a..b", "IP:10.0.0.256", "db2"] {
        let err = env.fails(
            &["--server", "db1", "--signas", "acme", "--server-sans", bad],
            1,
        );
        assert!(
            err.contains(&format!("invalid subject alternative name {bad:?}")),
            "{err}"
        );
        assert!(
            err.contains("DNS:NAME") && err.contains("IP:ADDRESS"),
            "{err}"
        );
    }
    let err = env.fails(&["--server", "bad host", "--signas", "acme"], 1);
    assert!(err.contains("invalid name \"bad host\""), "{err}");
    let err = env.fails(&["../alice", "--signas", "acme"], 1);
    assert!(err.contains("invalid name"), "{err}");
    let err = env.fails(&["alice", "--signas", "acme", "--days", "0"], 1);
    assert!(err.contains("invalid validity of 0 days"), "{err}");

    assert_eq!(fs::read_dir(env.path("hosts")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(env.path("users")).unwrap().count(), 0);
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    for (args, says) in [
        (&[][..], "nothing to do"),
        (&["--server", "db1"][..], "--server NAME needs --signas CA"),
        (&["alice"][..], "a user NAME needs --signas CA"),
        (
            &["--ca", "acme", "--signas", "acme"][..],
            "--signas does not go with --ca",
        ),
        (
            &["--ca", "acme", "--p12", "alice"][..],
            "--ca and --p12 do not go together",
        ),
        (
            &["--ca", "acme", "alice"][..],
            "--ca takes no other certificate NAME",
        ),
        (
            &["alice", "--user", "bob", "--signas", "acme"][..],
            "give the user name once",
        ),
        (
            &["--server", "db1", "alice", "--signas", "acme"][..],
            "not both",
        ),
        (
            &["alice", "--signas", "acme", "--server-sans", "IP:10.0.0.1"][..],
            "--server-sans does not go with",
        ),
        (&["--csr"][..], "--csr needs --server NAME or a user NAME"),
        (
            &["--csr", "alice", "--signas", "acme"][..],
            "--signas does not go with --csr",
        ),
        (&["--sign-csr", "x.csr"][..], "--sign-csr needs --signas CA"),
        (
            &["--sign-csr", "x.csr", "--signas", "acme", "--server", "db1"][..],
            "takes no NAME",
        ),
        (
            &[
                "--sign-csr",
                "x.csr",
                "--signas",
                "acme",
                "--server-sans",
                "IP:10.0.0.1",
            ][..],
            "--server-sans does not go with --sign-csr",
        ),
        (
            &["--server", "--signas", "acme"][..],
            "--server needs a NAME",
        ),
        (
            &["--p12", "alice", "--days", "3"][..],
            "--days does not go with --p12",
        ),
        (
            &["alice", "--password-stdin", "--signas", "acme"][..],
            "--password-stdin does not go with",
        ),
        (
            &["--revokeas", "acme"][..],
            "--revokeas needs the certificate to revoke",
        ),
        (
            &["--revokeas", "acme", "--server", "db1", "alice"][..],
            "one certificate",
        ),
        (
            &["--importfile", "keys", "x.crt"][..],
            "cas, hosts or users",
        ),
        (
            &["--key-type", "rsa-2048", "--ca", "acme"][..],
            "invalid value 'rsa-2048'",
        ),
        (
            &["--days", "ten", "--ca", "acme"][..],
            "invalid value 'ten'",
        ),
        (&["--bogus"][..], "unexpected argument '--bogus'"),
    ] {
        let err = env.fails(args, 2);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!env.dir.exists(), "a usage error created the directory");
}

#[test]
fn help_shows_examples() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    assert!(help.contains("Examples:"), "{help}");
    for example in [
        "cairn-easycert --ca acme",
        "cairn-easycert --server db1.example.com --signas acme --server-sans DNS:db1,IP:10.0.0.1",
        "cairn-easycert alice --signas acme",
        "--p12 alice --password-stdin",
        "--revokeas acme alice",
        "--key-type",
    ] {
        assert!(help.contains(example), "{example}: {help}");
    }
}

#[test]
fn importfile_copies_certificates_and_keys() {
    let env = Env::new();
    let elsewhere = Env::new();
    elsewhere.ok(&["--ca", "partner"]);
    elsewhere.ok(&["alice", "--signas", "partner"]);

    let out = env.ok(&[
        "--importfile",
        "cas",
        elsewhere.path("cas/partner.crt").to_str().unwrap(),
    ]);
    assert_eq!(
        saved(&out),
        [("cert".to_string(), env.path("cas/partner.crt"))]
    );
    assert_eq!(mode(&env.dir), 0o700);
    let out = env.ok(&[
        "--importfile",
        "users",
        elsewhere.path("users/alice.key").to_str().unwrap(),
    ]);
    assert_eq!(
        saved(&out),
        [("key".to_string(), env.path("users/alice.key"))]
    );
    assert_eq!(mode(&env.path("users/alice.key")), 0o600);
    env.ok(&[
        "--importfile",
        "users",
        elsewhere.path("users/alice.crt").to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read(env.path("users/alice.crt")).unwrap(),
        fs::read(elsewhere.path("users/alice.crt")).unwrap()
    );

    // The imported user bundles with the imported CA.
    let run = env.run_with_stdin(&["--p12", "alice", "--password-stdin"], "pw\n");
    assert_eq!(run.code, Some(0), "{run:?}");

    let err = env.fails(
        &[
            "--importfile",
            "cas",
            elsewhere.path("cas/partner.crt").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("file exists: "), "{err}");
    let err = env.fails(
        &[
            "--importfile",
            "cas",
            elsewhere.path("users/alice.crt").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("not a CA certificate"), "{err}");
}
