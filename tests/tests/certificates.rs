//! End to end with real binaries: a PKI made by `cairn-easycert` (CA `acme`, host `db1`
//! with an IP SAN, users), a `cairn-service` listening with `?hostname=db1&ca=acme`, and
//! the `cairn` CLI connecting by client certificate. Checks login by certificate, refusal
//! without one, revocation taking effect without a restart, host-name checks against the
//! SANs, and certificate pinning.

use std::path::Path;
use std::process::{Command, Output};

use cairn_tests::process::{binary, ServiceProcess};

fn easycert(certdir: &Path, args: &[&str]) -> Output {
    let output = Command::new(binary("cairn-easycert", "cairn-easycert").unwrap())
        .arg("--certdir")
        .arg(certdir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cairn-easycert {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `cairn ARGS`; returns (exit code, stdout, stderr).
fn cairn(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("cairn-cli", "cairn").unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The SHA-256 pin of a PEM certificate, computed by openssl.
fn openssl_pin(cert: &Path) -> String {
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(cert)
        .output()
        .expect("openssl is installed");
    let digest = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&der.stdout)?;
            child.wait_with_output()
        })
        .unwrap();
    let hex = String::from_utf8(digest.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

#[test]
fn an_easycert_pki_with_required_client_certificates() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = scratch.path().join("pki");
    let pki_arg = pki.to_str().unwrap();
    easycert(&pki, &["--ca", "acme"]);
    easycert(
        &pki,
        &[
            "--server",
            "db1",
            "--signas",
            "acme",
            "--server-sans",
            "IP:127.0.0.1",
        ],
    );
    easycert(&pki, &["alice", "--signas", "acme"]);
    easycert(&pki, &["bob", "--signas", "acme"]);

    let dir = scratch.path().join("data");
    let service = ServiceProcess::start_with_env(
        &dir,
        &["--listen", "ssl://127.0.0.1:0/?hostname=db1&ca=acme"],
        &[("CAIRN_CERT_DIR", pki_arg)],
    )
    .unwrap();
    let port = service.tls_address.rsplit(':').next().unwrap().to_string();
    let dir_arg = dir.to_str().unwrap();
    for user in ["alice", "bob"] {
        let (code, _, err) = cairn(&["--dir", dir_arg, "user", "add", user]);
        assert_eq!(code, 0, "{err}");
    }
    let url = |user: &str, query: &str| format!("ssl://{user}127.0.0.1:{port}/{query}");

    // A user logs in by certificate (the IP SAN matches 127.0.0.1).
    let (code, out, err) = cairn(&[
        "--url",
        &url("alice@", ""),
        "--certdir",
        pki_arg,
        "-o",
        "json",
        "whoami",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"user\":\"alice\"") && out.contains("\"via\":\"certificate\""),
        "{out}"
    );
    // By host name through SNI.
    let (code, _, err) = cairn(&[
        "--url",
        &url("bob@", "?hostname=db1"),
        "--certdir",
        pki_arg,
        "whoami",
    ]);
    assert_eq!(code, 0, "{err}");

    // Without a client certificate, ca=acme refuses the connection.
    let (code, _, err) = cairn(&["--url", &url("", ""), "--certdir", pki_arg, "status"]);
    assert_eq!(code, 1, "no client certificate must be refused");
    assert!(!err.is_empty());

    // A name the certificate does not carry is refused by the client.
    let (code, _, err) = cairn(&[
        "--url",
        &url("alice@", "?hostname=db2.elsewhere"),
        "--certdir",
        pki_arg,
        "status",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("hostname") || err.contains("name"), "{err}");

    // Pinning the host certificate works; a wrong pin is refused.
    let pin = openssl_pin(&pki.join("hosts/db1.crt"));
    let (code, _, err) = cairn(&[
        "--url",
        &url("alice@", &format!("?certhash={pin}")),
        "--certdir",
        pki_arg,
        "status",
    ]);
    assert_eq!(code, 0, "{err}");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (code, _, _) = cairn(&[
        "--url",
        &url("alice@", &format!("?certhash={wrong}")),
        "--certdir",
        pki_arg,
        "status",
    ]);
    assert_eq!(code, 1);

    // Revoking alice takes effect at her next connection, without a restart; bob stays.
    easycert(&pki, &["--revokeas", "acme", "alice"]);
    let (code, _, _) = cairn(&["--url", &url("alice@", ""), "--certdir", pki_arg, "whoami"]);
    assert_eq!(code, 1, "a revoked certificate is refused");
    let (code, out, err) = cairn(&[
        "--url",
        &url("bob@", ""),
        "--certdir",
        pki_arg,
        "-o",
        "json",
        "whoami",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"user\":\"bob\""));

    let (status, _) = service.stop().unwrap();
    assert!(status.success());
}

#[test]
fn a_certificate_from_another_ca_is_refused_not_downgraded() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(&dir, &[]).unwrap();
    let port = service.tls_address.rsplit(':').next().unwrap().to_string();
    // A stranger's PKI: its own CA and a "root" user certificate; it also trusts the
    // service's CA so that only the client side is foreign.
    let stranger = scratch.path().join("stranger");
    easycert(&stranger, &["--ca", "evil"]);
    easycert(&stranger, &["root", "--signas", "evil"]);
    let service_ca = std::fs::read_dir(dir.join("certs/cas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "crt"))
        .unwrap();
    easycert(
        &stranger,
        &["--importfile", "cas", service_ca.to_str().unwrap()],
    );
    let url = format!("ssl://root@127.0.0.1:{port}/?hostname=localhost");
    let (code, _, _) = cairn(&[
        "--url",
        &url,
        "--certdir",
        stranger.to_str().unwrap(),
        "db",
        "list",
    ]);
    assert_eq!(code, 1, "a certificate from an unknown CA never gets in");
    // The service's own root certificate does.
    let certs = dir.join("certs");
    let (code, _, err) = cairn(&[
        "--url",
        &url,
        "--certdir",
        certs.to_str().unwrap(),
        "db",
        "list",
    ]);
    assert_eq!(code, 0, "{err}");
    service.stop().unwrap();
}
