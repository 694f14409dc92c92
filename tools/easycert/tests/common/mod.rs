//! Helpers of the `cairn-easycert` tests: run the real binary on a temporary certificate
//! directory, run openssl on what it wrote, and read certificates.

#![allow(
    dead_code,
    reason = "each test file uses its own part of these helpers"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary certificate directory `TMP/certs` and the files around it.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        Env { tmp, dir }
    }

    /// A path in the certificate directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `cairn-easycert --certdir DIR ARGS`, standard input empty.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// `cairn-easycert --certdir DIR ARGS` with `stdin` as standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-easycert"))
            .arg("--certdir")
            .arg(&self.dir)
            .args(args)
            .env_remove("CAIRN_CERT_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        run_of(child.wait_with_output().unwrap())
    }

    /// Runs `args`, which must succeed; returns what it printed.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        run.stdout
    }

    /// Runs `args`, which must exit with `code`; returns its standard error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let run = self.run(args);
        assert_eq!(run.code, Some(code), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?} printed {:?}", run.stdout);
        run.stderr
    }
}

fn run_of(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl ARGS`: whether it succeeded, and its output and errors.
pub fn openssl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
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

/// `openssl x509 -in CERT -noout -text`, which must succeed.
pub fn x509_text(cert: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{text}");
    text
}

/// `openssl verify -CAfile CA -purpose PURPOSE CERT`.
pub fn verify(ca: &Path, cert: &Path, purpose: &str) -> (bool, String) {
    openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
        "-purpose".as_ref(),
        purpose.as_ref(),
        cert.as_os_str(),
    ])
}

/// The serial of a certificate file, as openssl prints it (upper-case hex).
pub fn serial(cert: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-serial".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{text}");
    text.trim().strip_prefix("serial=").unwrap().to_string()
}

/// The permission bits of a file or directory.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The lines `WHAT saved: PATH` that a run printed, as (WHAT, PATH).
pub fn saved(stdout: &str) -> Vec<(String, PathBuf)> {
    stdout
        .lines()
        .filter_map(|line| line.split_once(" saved: "))
        .map(|(what, path)| (what.to_string(), PathBuf::from(path)))
        .collect()
}
