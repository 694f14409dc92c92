//! The measured service: a real `cairn-service` child process (the binary beside this
//! one, built with cargo when missing, as are the other workspace binaries a bench
//! runs) on a working directory, with a TLS listener on a free loopback port and its
//! default settings, or the flags it is given (a mirror's `--mirror URL`): no `CAIRN_*`
//! variable nor `RUST_LOG` of this process reaches it. Its log goes to a file; it is
//! ready once it prints its `connect:` line, and it is stopped with SIGTERM, bounded in
//! time throughout.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

/// The longest the service may take to print its `connect:` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the service may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The package and name of the service's binary.
const PACKAGE: &str = "cairn-server";
const BINARY: &str = "cairn-service";

/// The `cairn-service` binary of this build's profile (`target/release/cairn-service`
/// for a release build of the bench), built with cargo if it is missing. An existing
/// binary is used as it is: rebuild it after changing the service.
pub fn service_binary() -> Result<PathBuf> {
    workspace_binary(PACKAGE, BINARY)
}

/// The binary `name` of the workspace package `package` beside this one, built with
/// cargo (in this build's profile) if it is missing; an existing one is used as it is.
pub fn workspace_binary(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the cairn-bench binary")?;
    let profile_dir = exe.parent().context("locating the target directory")?;
    let path = profile_dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    eprintln!("building {name}: {} is missing", path.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", package, "--bin", name]);
    if profile_dir.file_name().and_then(|dir| dir.to_str()) == Some("release") {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() || !path.exists() {
        bail!("cannot build {name}: run cargo build --release -p {package} --bin {name}");
    }
    Ok(path)
}

/// What a service is started with beyond its directory and a TLS listener.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// More flags (`--mirror URL`, ...).
    pub args: Vec<OsString>,
    /// How long it may take to be ready [default: `START_TIMEOUT`].
    pub start_timeout: Option<Duration>,
}

/// A running `cairn-service`, killed if dropped without [`ServiceProcess::stop`].
pub struct ServiceProcess {
    child: Child,
    /// `127.0.0.1:PORT` of its TLS listener.
    pub tls_address: String,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` on the working directory `dir` (created on a first start) with
    /// its log appended to `log`, and waits until it is ready.
    pub fn start(binary: &Path, dir: &Path, log: &Path) -> Result<ServiceProcess> {
        ServiceProcess::start_with(binary, dir, log, &StartOptions::default())
    }

    /// As [`ServiceProcess::start`], with `extra`'s flags, waiting for it to be ready
    /// as long as `extra` says.
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        log: &Path,
        extra: &StartOptions,
    ) -> Result<ServiceProcess> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg(dir)
            .args(["--listen", "ssl://127.0.0.1:0"])
            .args(&extra.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CAIRN_") {
                command.env_remove(name);
            }
        }
        let start_timeout = extra.start_timeout.unwrap_or(START_TIMEOUT);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        // Reads until the service exits, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut service = ServiceProcess {
            child,
            tls_address: String::new(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + start_timeout;
        loop {
            let line = match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "{BINARY} was not ready within {start_timeout:?}{}",
                        service.log_tail()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = service.child.wait()?;
                    bail!(
                        "{BINARY} exited with {status} before it was ready{}",
                        service.log_tail()
                    )
                }
            };
            if let Some(url) = line.strip_prefix("listening on ssl://") {
                service.tls_address = url.split('/').next().unwrap_or(url).to_string();
            }
            if line.starts_with("connect:") {
                break;
            }
        }
        if service.tls_address.is_empty() {
            bail!("{BINARY} reported no TLS listener{}", service.log_tail());
        }
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a successful exit.
    pub fn stop(mut self) -> Result<()> {
        kill_process(Pid::from_child(&self.child), Signal::TERM)
            .with_context(|| format!("sending SIGTERM to {BINARY}"))?;
        wait_exit(&mut self.child, BINARY, &self.log, "SIGTERM")
    }

    /// The end of the service's log, to explain a failure.
    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// Waits (at most `STOP_TIMEOUT`) for the child `name` to exit successfully after
/// `cause` (SIGTERM, a cutover, …); a failure quotes the end of its `log`.
pub fn wait_exit(child: &mut Child, name: &str, log: &Path, cause: &str) -> Result<()> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{name} exited with {status} after {cause}{}", log_tail(log));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not exit within {STOP_TIMEOUT:?} of {cause}{}",
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The end of a child's log file, to explain a failure.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!(" (log {}):\n{tail}", log.display())
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
