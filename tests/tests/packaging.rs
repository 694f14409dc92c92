//! Packaging, with the real binaries and tools: every binary prints its man page (roff)
//! and completion scripts from its clap definition (bash's pass `bash -n`, and `--help`
//! says how to get them); `contrib/cairn.service` passes `systemd-analyze verify` (with
//! the binary it starts and the man page it names in place); and the service tells a
//! notify socket of the test's own `READY=1` once it serves, `RELOADING=1` while
//! SIGHUP reloads its settings, then `READY=1` again, and `STOPPING=1` at shutdown.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cairn_tests::process::{binary, ServiceProcess};

/// Every binary an operator installs: (package, binary).
const BINARIES: [(&str, &str); 6] = [
    ("cairn-cli", "cairn"),
    ("cairn-server", "cairn-service"),
    ("cairn-backup", "cairn-backup"),
    ("cairn-easycert", "cairn-easycert"),
    ("cairn-migrate", "cairn-migrate"),
    ("cairn-sync", "cairn-sync"),
];

fn run(program: &Path, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))
}

fn stdout_of(program: &Path, args: &[&str]) -> Result<String> {
    let output = run(program, args)?;
    ensure!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn every_binary_prints_its_man_page_and_completions() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    for (package, name) in BINARIES {
        let program = binary(package, name)?;
        let man = stdout_of(&program, &["--man"])?;
        ensure!(
            man.contains(&format!(".TH {name} 1")) && man.contains(".SH SYNOPSIS"),
            "{name} --man: {man}"
        );
        let help = stdout_of(&program, &["--help"])?;
        ensure!(
            help.contains("--completions SHELL"),
            "{name} --help: {help}"
        );
        for shell in ["bash", "zsh", "fish"] {
            let script = stdout_of(&program, &["--completions", shell])?;
            ensure!(
                script.contains(name),
                "{name} --completions {shell}: {script}"
            );
            if shell == "bash" {
                let path = scratch.path().join(format!("{name}.bash"));
                std::fs::write(&path, &script)?;
                let checked = run(Path::new("bash"), &["-n", path.to_str().unwrap()])?;
                ensure!(
                    checked.status.success(),
                    "bash -n on {name}'s completions: {}",
                    String::from_utf8_lossy(&checked.stderr)
                );
            }
        }
        let refused = run(&program, &["--completions", "tcsh"])?;
        ensure!(refused.status.code() == Some(2), "{name}: {refused:?}");
        ensure!(String::from_utf8_lossy(&refused.stderr).contains("bash, zsh, fish"));
    }
    Ok(())
}

/// The repository's `contrib/` directory.
fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("contrib")
}

#[test]
fn the_systemd_unit_verifies() -> Result<()> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        bail!("systemd-analyze is missing: install it with apt-get install systemd (.ci/run does)");
    }
    let scratch = tempfile::tempdir()?;
    let service = binary("cairn-server", "cairn-service")?;
    // The unit as installed: the binary it starts, and the man page it names.
    let unit = std::fs::read_to_string(contrib().join("cairn.service"))?;
    ensure!(unit.contains("Type=notify") && unit.contains("ProtectSystem=strict"));
    let unit = unit.replace("/usr/local/bin/cairn-service", service.to_str().unwrap());
    let unit_path = scratch.path().join("cairn.service");
    std::fs::write(&unit_path, unit)?;
    let man_dir = scratch.path().join("man").join("man1");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::write(
        man_dir.join("cairn-service.1"),
        stdout_of(&service, &["--man"])?,
    )?;
    let verified = Command::new(analyze)
        .arg("verify")
        .arg(&unit_path)
        .env("MANPATH", scratch.path().join("man"))
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    ensure!(
        verified.status.success() && !said.contains("cairn.service:"),
        "systemd-analyze verify: {said}"
    );
    Ok(())
}

/// The next notification the service sends, as its `KEY=VALUE` lines.
fn next_notification(socket: &UnixDatagram) -> Result<Vec<String>> {
    let mut buffer = [0u8; 4096];
    let n = socket
        .recv(&mut buffer)
        .context("waiting for a notification")?;
    Ok(String::from_utf8_lossy(&buffer[..n])
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn the_service_tells_systemd_when_it_is_ready_reloading_and_stopping() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let socket_path = scratch.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(30)))?;
    let service = ServiceProcess::start_with_env(
        &scratch.path().join("data"),
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )?;
    let ready = next_notification(&socket)?;
    ensure!(
        ready.contains(&"READY=1".to_string())
            && ready.iter().any(|l| l.starts_with("STATUS=serving")),
        "{ready:?}"
    );
    let pid = libc::pid_t::try_from(service.pid())?;
    // SAFETY: kill(2) on the pid of the test's own live child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let reloading = next_notification(&socket)?;
    ensure!(
        reloading.contains(&"RELOADING=1".to_string())
            && reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let reloaded = next_notification(&socket)?;
    ensure!(
        reloaded.contains(&"READY=1".to_string())
            && reloaded.contains(&"STATUS=serving; settings reloaded".to_string()),
        "{reloaded:?}"
    );
    let (status, stderr) = service.stop()?;
    ensure!(status.success(), "{stderr}");
    let stopping = next_notification(&socket)?;
    ensure!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    Ok(())
}
