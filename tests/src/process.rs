//! Real service processes for end-to-end tests: finds the workspace's binaries (building
//! one with cargo when this test run did not, or taking it as built when cargo cannot be
//! run), starts `cairn-service` on a directory, waits until it listens, and stops it with
//! a signal, bounded in time throughout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The longest a service may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a service may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the workspace binary `name` (of package `package`), built by cargo once
/// per test process so that a test never runs a stale binary (cargo does nothing when it
/// is up to date). A test binary run without cargo at hand takes the binary as built.
pub fn binary(package: &str, name: &str) -> Result<PathBuf> {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test binary>, or target/<profile>/<binary of this crate>
    // (the torture campaign) -> target/<profile>/<name>
    let exe_dir = exe.parent().context("locating the target directory")?;
    let profile_dir = if exe_dir.file_name().is_some_and(|n| n == "deps") {
        exe_dir.parent().context("locating the target directory")?
    } else {
        exe_dir
    };
    let path = profile_dir.join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|b| b == name) {
        let mut build = cargo();
        build.args(["build", "--quiet", "-p", package, "--bin", name]);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            build.arg("--release");
        }
        let status = match build.status() {
            Ok(status) => status,
            // No cargo to run (a test binary started by hand, by a user without the
            // toolchain): what this test run's build made is the binary to test.
            Err(error) if path.exists() => {
                eprintln!(
                    "cannot run cargo ({error}): using {} as it was built",
                    path.display()
                );
                built.push(name.to_string());
                return Ok(path);
            }
            Err(error) => return Err(error).context("running cargo build"),
        };
        if !status.success() || !path.exists() {
            bail!("cannot build {name}: run cargo build -p {package} --bin {name}");
        }
        built.push(name.to_string());
    }
    Ok(path)
}

/// A command running the cargo that runs the tests (`CARGO`, else `cargo`) without the
/// variables cargo gives a test about its package (CARGO_MANIFEST_DIR, CARGO_PKG_*, …).
/// Build scripts watch some of them (ring's does CARGO_MANIFEST_DIR): a build that saw
/// them would rebuild what the test run's own build made, and back again.
pub fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (variable, _) in std::env::vars_os() {
        let variable = variable.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| variable.starts_with(prefix))
        {
            cargo.env_remove(&*variable);
        }
    }
    cargo
}

/// Every line an exited process wrote: its reader thread forwards what is left in the
/// pipe, then hangs up (bounded, in case a grandchild keeps the pipe open).
fn drain_exited(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => all.push(line),
            Err(_) => break,
        }
    }
    all
}

/// Writes `DIR/cairn.toml` (creating `DIR`), before a start or a reload.
pub fn write_settings(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).expect("creating the working directory");
    std::fs::write(dir.join("cairn.toml"), text).expect("writing cairn.toml");
}

/// A `cairn-service` child process.
pub struct ServiceProcess {
    child: Child,
    pub dir: PathBuf,
    /// `host:port` of its TLS listener.
    pub tls_address: String,
    /// `host:port` of its `https://` listener (HTTP alone), if it has one.
    pub https_address: Option<String>,
    /// What it printed on stderr so far is collected here when it stops.
    stderr_lines: mpsc::Receiver<String>,
}

impl ServiceProcess {
    /// Starts a service on `dir` with `extra` flags and a TLS listener on a free port
    /// (unless `extra` has a `--listen` of its own, whose first TLS URL is then used).
    pub fn start(dir: &Path, extra: &[&str]) -> Result<ServiceProcess> {
        ServiceProcess::start_with_env(dir, extra, &[])
    }

    /// As [`ServiceProcess::start`], with the environment variables `env` (such as
    /// `CAIRN_SESSION_TTL_SECS`) set for the service.
    pub fn start_with_env(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ServiceProcess> {
        ServiceProcess::spawn(
            &binary("cairn-server", "cairn-service")?,
            &[],
            dir,
            extra,
            env,
            true,
        )
    }

    /// As [`ServiceProcess::start`], running the service binary `program` instead of the
    /// workspace's (the format-1 release's, for instance: see [`crate::format1`]).
    pub fn start_program(program: &Path, dir: &Path, extra: &[&str]) -> Result<ServiceProcess> {
        ServiceProcess::spawn(program, &[], dir, extra, &[], true)
    }

    /// As [`ServiceProcess::start`], under a wrapper command (`fiu-run -x`, which execs
    /// the service in its own process: the pid stays the service's).
    pub fn start_wrapped(wrapper: &[&str], dir: &Path, extra: &[&str]) -> Result<ServiceProcess> {
        let service = binary("cairn-server", "cairn-service")?;
        let (program, prefix) = wrapper.split_first().context("a wrapper command")?;
        let mut args: Vec<std::ffi::OsString> = prefix.iter().map(Into::into).collect();
        args.push(service.into_os_string());
        ServiceProcess::spawn(Path::new(program), &args, dir, extra, &[], true)
    }

    /// Starts a service on `dir` whose listeners come from `DIR/cairn.toml` alone (no
    /// `--listen` flag, which would win over the file); the file must name a TLS URL.
    pub fn start_listening_from_file(dir: &Path) -> Result<ServiceProcess> {
        ServiceProcess::spawn(
            &binary("cairn-server", "cairn-service")?,
            &[],
            dir,
            &[],
            &[],
            false,
        )
    }

    fn spawn(
        program: &Path,
        prefix: &[std::ffi::OsString],
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        default_listen: bool,
    ) -> Result<ServiceProcess> {
        let mut command = Command::new(program);
        command.args(prefix).arg(dir);
        if default_listen && !extra.contains(&"--listen") {
            command.args(["--listen", "ssl://127.0.0.1:0"]);
        }
        command
            .args(extra)
            .env_remove("CAIRN_AUTH_PASSWD")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("spawning cairn-service")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_sender, lines) = mpsc::channel();
        // Reads stdout to its end, even once nobody listens: a closed pipe would fail
        // the service's next write.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_sender.send(line);
            }
        });
        let (stderr_sender, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if stderr_sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut tls_address = None;
        let mut https_address = None;
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ssl://") {
                        tls_address = Some(url.split('/').next().unwrap_or(url).to_string());
                    }
                    if let Some(url) = line.strip_prefix("listening on https://") {
                        https_address = Some(url.split('/').next().unwrap_or(url).to_string());
                    }
                    if line.starts_with("connect:") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        let errors = drain_exited(&stderr_lines);
                        bail!(
                            "cairn-service exited with {status} before listening: {}",
                            errors.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let Some(tls_address) = tls_address else {
            let _ = child.kill();
            let _ = child.wait();
            let errors = drain_exited(&stderr_lines);
            bail!(
                "cairn-service did not report a TLS listener: {}",
                errors.join("\n")
            );
        };
        Ok(ServiceProcess {
            child,
            dir: dir.to_path_buf(),
            tls_address,
            https_address,
            stderr_lines,
        })
    }

    /// The lines it wrote on stderr since the last call (or its start).
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }

    /// The service's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL (no shutdown of any kind) and waits for the exit.
    pub fn kill(mut self) -> Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Sends SIGTERM and waits for the exit; returns the status and stderr.
    pub fn stop(mut self) -> Result<(ExitStatus, String)> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on the pid of our own live child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let stderr = drain_exited(&self.stderr_lines).join("\n");
                return Ok((status, stderr));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(anyhow!("cairn-service did not stop within 30 s of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
