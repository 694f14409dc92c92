//! Running the real `cairn` CLI in end-to-end tests: a run bounded in time with its exit
//! code and output, and the connection options (`--dir` or `--url`) of a service.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::process::{binary, ServiceProcess};

/// The longest one `cairn` run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

pub fn cairn_exe() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| binary("cairn-cli", "cairn").expect("the cairn binary"))
}

/// What one `cairn` run did.
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts that the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "{} failed: {}{}",
            self.command, self.stdout, self.stderr
        );
        self
    }

    /// Asserts that the run exited with `code` and said `needle` on stderr.
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "{}: expected exit {code}, stdout {:?}, stderr {:?}",
            self.command, self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "{}: expected {needle:?} on stderr, got {:?}",
            self.command,
            self.stderr
        );
        self
    }

    /// Stdout as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}): {:?}",
                self.command, self.stdout
            )
        })
    }
}

/// Runs `cairn ARGS` with `stdin`, for at most [`RUN_TIMEOUT`].
pub fn cairn(args: &[String], stdin: &str) -> Run {
    run_program(cairn_exe(), args, stdin)
}

/// Runs the CLI binary `program` (the workspace's `cairn`, another release's, or
/// another tool such as `cairn-migrate`) with `args` and `stdin`, for at most
/// [`RUN_TIMEOUT`].
pub fn run_program(program: &Path, args: &[String], stdin: &str) -> Run {
    let name = program.file_name().unwrap_or_default().to_string_lossy();
    let command = format!("{name} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command}: {e}"));
    // A command that does not read stdin may exit first: a broken pipe is no failure.
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    if let Err(error) = written {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe,
            "{command}: {error}"
        );
    }
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("waiting for cairn"),
        Err(_) => {
            let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
            // SAFETY: kill(2) on the pid of our own child, still unreaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{command} did not finish within {RUN_TIMEOUT:?}");
        }
    };
    Run {
        command,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// How to reach a service: the options that go before every command.
#[derive(Clone)]
pub struct Endpoint {
    pub options: Vec<String>,
}

impl Endpoint {
    /// The service's unix socket, as root.
    pub fn unix(service: &ServiceProcess) -> Endpoint {
        Endpoint {
            options: vec!["--dir".into(), service.dir.display().to_string()],
        }
    }

    /// TLS without authenticating, trusting the service's CAs.
    pub fn anonymous(service: &ServiceProcess) -> Endpoint {
        Endpoint {
            options: vec![
                "--url".to_string(),
                format!("ssl://{}/?hostname=localhost", service.tls_address),
                "--certdir".to_string(),
                service.dir.join("certs").display().to_string(),
            ],
        }
    }

    /// TLS, as `userinfo` (`USER` or `USER:PASSWORD`), trusting the service's CAs.
    pub fn tls(service: &ServiceProcess, userinfo: &str) -> Endpoint {
        let url = format!(
            "ssl://{userinfo}@{}/?hostname=localhost",
            service.tls_address
        );
        let certs = service.dir.join("certs").display().to_string();
        Endpoint {
            options: vec!["--url".into(), url, "--certdir".into(), certs],
        }
    }

    /// The same, authenticating with `token`.
    pub fn token(&self, token: &str) -> Endpoint {
        let mut options = self.options.clone();
        options.extend(["--token".to_string(), token.to_string()]);
        Endpoint { options }
    }

    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = self.options.clone();
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    pub fn run(&self, args: &[&str]) -> Run {
        cairn(&self.args(args), "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        cairn(&self.args(args), stdin)
    }

    /// Runs the CLI binary `program` instead of the workspace's `cairn` (see
    /// [`run_program`]).
    pub fn run_program(&self, program: &Path, args: &[&str], stdin: &str) -> Run {
        run_program(program, &self.args(args), stdin)
    }

    /// Starts `cairn ARGS` with its stdout piped, for streams.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(cairn_exe())
            .args(self.args(args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning cairn")
    }

    /// A document's value (`-o json get`, which must succeed).
    pub fn value(&self, db: &str, key: &str) -> Value {
        self.run(&["-o", "json", "get", db, key]).ok().json()["value"].clone()
    }
}
