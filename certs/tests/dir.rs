//! The certificate directory on disk: modes, no overwriting, name checks, default path.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_certs::{CertDir, CertError, Kind, CERT_DIR_ENV};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn layout_has_private_dirs_and_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("deep").join("certs"));
    let ca = dir.gen_ca("acme", 30).unwrap();
    let user = dir.gen_user("alice", "acme", 30).unwrap();

    assert_eq!(mode(dir.root()), 0o700);
    for sub in ["cas", "hosts", "users", "crls"] {
        assert_eq!(mode(&dir.root().join(sub)), 0o700, "{sub}");
    }
    for paths in [&ca, &user] {
        assert_eq!(mode(&paths.key), 0o600, "{}", paths.key.display());
        assert_eq!(mode(&paths.cert), 0o644, "{}", paths.cert.display());
    }
    assert_eq!(ca.cert, dir.root().join("cas/acme.crt"));
    assert_eq!(ca.key, dir.root().join("cas/acme.key"));
    assert_eq!(user.cert, dir.root().join("users/alice.crt"));
    // No temporary file is left behind.
    let mut files: Vec<String> = fs::read_dir(dir.root().join("cas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["acme.crt", "acme.key"]);
    assert_eq!(dir.names(Kind::Ca).unwrap(), ["acme"]);
    assert!(dir.names(Kind::Host).unwrap().is_empty());
}

#[test]
fn existing_files_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path());
    let ca = dir.gen_ca("acme", 30).unwrap();
    let cert_before = fs::read(&ca.cert).unwrap();
    let key_before = fs::read(&ca.key).unwrap();

    match dir.gen_ca("acme", 30) {
        Err(CertError::FileExists(path)) => assert_eq!(path, ca.key),
        other => panic!("expected FileExists, got {other:?}"),
    }
    match dir.write_cert(Kind::Ca, "acme", "replacement") {
        Err(CertError::FileExists(path)) => assert_eq!(path, ca.cert),
        other => panic!("expected FileExists, got {other:?}"),
    }
    match dir.write_key(Kind::Ca, "acme", "replacement") {
        Err(CertError::FileExists(path)) => assert_eq!(path, ca.key),
        other => panic!("expected FileExists, got {other:?}"),
    }
    assert_eq!(fs::read(&ca.cert).unwrap(), cert_before);
    assert_eq!(fs::read(&ca.key).unwrap(), key_before);
    let message = dir.gen_ca("acme", 30).unwrap_err().to_string();
    assert!(message.contains("never overwritten"), "{message}");
}

#[test]
fn bad_names_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    for bad in ["../evil", "a/b", ".hidden", "", "sp ace"] {
        assert!(
            matches!(dir.gen_ca(bad, 30), Err(CertError::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(matches!(
            dir.cert_path(Kind::Host, bad),
            Err(CertError::InvalidName { .. })
        ));
    }
    assert!(!dir.root().exists(), "a refused name created the directory");

    dir.gen_ca("acme", 30).unwrap();
    assert!(matches!(
        dir.gen_user("../alice", "acme", 30),
        Err(CertError::InvalidName { .. })
    ));
    assert!(matches!(
        dir.gen_user("alice", "../acme", 30),
        Err(CertError::InvalidName { .. })
    ));
    assert!(matches!(
        dir.gen_user("alice", "acme", 0),
        Err(CertError::BadDays(0))
    ));
    assert!(matches!(
        dir.gen_user("alice", "acme", u32::MAX),
        Err(CertError::BadDays(u32::MAX))
    ));
    assert!(dir.names(Kind::User).unwrap().is_empty());
    assert_eq!(fs::read_dir(dir.root().join("users")).unwrap().count(), 0);
}

#[test]
fn default_path_follows_the_environment() {
    // The only test of this binary that touches the environment.
    std::env::set_var(CERT_DIR_ENV, "/srv/cairn-certs");
    assert_eq!(
        CertDir::default_path().unwrap(),
        Path::new("/srv/cairn-certs")
    );
    std::env::remove_var(CERT_DIR_ENV);
    std::env::set_var("HOME", "/home/operator");
    assert_eq!(
        CertDir::default_path().unwrap(),
        Path::new("/home/operator/.cairn/certs")
    );
    std::env::remove_var("HOME");
    assert!(matches!(CertDir::default_path(), Err(CertError::NoHome)));
}
