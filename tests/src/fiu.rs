//! Faults injected into a real service with libfiu (Debian's `fiu-utils`): the service
//! runs under `fiu-run -x` (its POSIX calls wrapped), and `fiu-ctrl` makes chosen calls
//! (`fdatasync`, `pwrite`, …) fail with a chosen errno while it runs, then stops.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::ServiceProcess;

/// A service whose POSIX calls can be made to fail.
pub struct FaultyService {
    pub service: ServiceProcess,
    control: PathBuf,
}

fn need(program: &str) -> Result<()> {
    match Command::new(program).arg("-h").output() {
        Ok(_) => Ok(()),
        Err(_) => bail!("{program} is missing: apt-get install fiu-utils"),
    }
}

impl FaultyService {
    /// Starts the workspace's service on `dir` under `fiu-run -x`, its control pipes in
    /// `control_dir`.
    pub fn start(dir: &Path, control_dir: &Path, extra: &[&str]) -> Result<FaultyService> {
        need("fiu-run")?;
        need("fiu-ctrl")?;
        let control = control_dir.join("fiu-ctrl");
        let control_text = control.display().to_string();
        let service =
            ServiceProcess::start_wrapped(&["fiu-run", "-x", "-f", &control_text], dir, extra)?;
        Ok(FaultyService { service, control })
    }

    fn control(&self, command: &str) -> Result<()> {
        let status = Command::new("fiu-ctrl")
            .arg("-f")
            .arg(&self.control)
            .args(["-c", command])
            .arg(self.service.pid().to_string())
            .status()
            .context("running fiu-ctrl")?;
        if !status.success() {
            bail!("fiu-ctrl -c {command:?} failed: {status}");
        }
        Ok(())
    }

    /// Makes the POSIX call `point` (`posix/io/sync/fdatasync`, …) fail with `errno`.
    pub fn fail(&self, point: &str, errno: i32) -> Result<()> {
        self.control(&format!("enable name={point},failinfo={errno}"))
    }

    /// Lets `point` work again.
    pub fn heal(&self, point: &str) -> Result<()> {
        self.control(&format!("disable name={point}"))
    }
}

/// Runs `program ARGS` to its end under `fiu-run -x`, with the POSIX call `fault` (if
/// any) failing with `errno` throughout.
pub fn run_with_fault(
    program: &Path,
    args: &[&std::ffi::OsStr],
    fault: Option<&str>,
    errno: i32,
) -> Result<std::process::Output> {
    need("fiu-run")?;
    let mut command = Command::new("fiu-run");
    command.args(["-x", "-f", ""]);
    if let Some(point) = fault {
        command.args(["-c", &format!("enable name={point},failinfo={errno}")]);
    }
    command
        .arg(program)
        .args(args)
        .output()
        .context("running fiu-run")
}
