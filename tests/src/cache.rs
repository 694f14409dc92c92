//! The user's cache of what the tests build once for every work tree and run (garage for
//! the S3 tests, the format-1 release for the migration tests):
//! `${XDG_CACHE_HOME:-$HOME/.cache}/cairn-tests`. Here too: the file lock that test
//! processes needing the same build take in turns, and the lines such a build says past
//! the test harness's capture, since it keeps a test waiting for minutes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};

/// How many of the last lines of a build's log a failed build shows.
const LOG_LINES_SHOWN: usize = 30;

/// `$XDG_CACHE_HOME/cairn-tests` when that is an absolute path, else
/// `$HOME/.cache/cairn-tests`; `None` with neither.
pub fn dir() -> Option<PathBuf> {
    let xdg_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    let home_cache = || {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".cache"))
    };
    xdg_cache
        .or_else(home_cache)
        .map(|cache| cache.join("cairn-tests"))
}

/// Takes the exclusive lock `CACHE/NAME.lock` (creating the cache directory), waiting
/// for the process that holds it, if any, after saying so; held until the file drops.
/// `what` says what the holder does, e.g. "installing garage 2.5.0".
pub fn lock(cache: &Path, name: &str, what: &str) -> Result<File> {
    std::fs::create_dir_all(cache)
        .with_context(|| format!("creating the cache directory {}", cache.display()))?;
    let lock_path = cache.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating the lock file {}", lock_path.display()))?;
    if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
        say(&format!(
            "waiting for another test process {what} (lock {})",
            lock_path.display()
        ));
        flock(&lock, FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    Ok(lock)
}

/// The last lines of the file at `path` (a build's log).
pub fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..].join("\n")
}

/// Writes a line on stderr itself, which the test harness does not capture (it only
/// captures `eprintln!`): a test that waits minutes says why at once.
pub fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Runs an installer's `command`, keeping what it printed in `log`; its failure says
/// the last lines of it.
pub fn run_logged(command: &mut std::process::Command, log: &Path) -> Result<()> {
    let output = command.output().context("running the installer")?;
    std::fs::write(
        log,
        [output.stdout.as_slice(), output.stderr.as_slice()].concat(),
    )?;
    if !output.status.success() {
        anyhow::bail!("{} failed: {}", output.status, last_lines(log));
    }
    Ok(())
}

/// A virtual environment in the cache (`CACHE/PACKAGE-VERSION`) with the PyPI package
/// `package` at `version`, made on first use (needs python3 with venv); its directory.
pub fn python_package(package: &str, version: &str) -> Result<PathBuf> {
    let cache = dir().context("no cache directory: set HOME or XDG_CACHE_HOME")?;
    let venv = cache.join(format!("{package}-{version}"));
    let marker = venv.join("installed");
    if marker.exists() {
        return Ok(venv);
    }
    let _lock = lock(&cache, package, &format!("installing {package}"))?;
    if marker.exists() {
        return Ok(venv);
    }
    say(&format!(
        "installing {package} {version} into {}",
        venv.display()
    ));
    let log = cache.join(format!("{package}-install.log"));
    run_logged(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
        &log,
    )
    .context("creating a virtual environment (needs python3 with venv)")?;
    run_logged(
        std::process::Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            &format!("{package}=={version}"),
        ]),
        &log,
    )
    .with_context(|| format!("installing {package} from PyPI"))?;
    std::fs::write(&marker, version)?;
    Ok(venv)
}
