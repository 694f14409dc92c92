//! garage, the S3-compatible server the S3 tests start, installed on first use into the
//! user's cache, `${XDG_CACHE_HOME:-$HOME/.cache}/cairn-tests/garage-VERSION/bin/garage`:
//! outside every work tree, so that all clones and later runs share one build. Building it
//! takes minutes, once; the test says so on stderr (past the test harness's capture).
//! The threads of a test process share one attempt; processes that need it at the same
//! time take turns on a file lock beside it: the first builds it into
//! `garage-VERSION.partial` and renames that into place, the others wait and then find it
//! there (the cache, its lock and these messages: [`crate::cache`]). A failed build fails
//! the tests with a line saying how to install garage by hand.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cache::{last_lines, say};

/// The garage release the S3 tests run.
pub const GARAGE_VERSION: &str = "2.5.0";

/// `cargo install` arguments that build it, before `--root DIR`: LMDB as its only
/// database engine, its C libraries built from source.
const CARGO_INSTALL_ARGS: [&str; 8] = [
    "install",
    "garage",
    "--version",
    GARAGE_VERSION,
    "--locked",
    "--no-default-features",
    "--features",
    "bundled-libs,lmdb",
];

/// The garage binary in the user's cache, installed there first when it is missing.
pub fn cached_garage() -> Result<PathBuf> {
    // One attempt per process: the other threads wait for it and share its outcome.
    static GARAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    GARAGE
        .get_or_init(|| find_or_install().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The garage binary in the user's cache, after installing it unless it is there or
/// another process installed it meanwhile.
fn find_or_install() -> Result<PathBuf> {
    let cache = crate::cache::dir().with_context(|| format!(
        "the S3 tests install garage into the user's cache: set HOME or XDG_CACHE_HOME, or GARAGE_BIN to a garage {GARAGE_VERSION} binary"
    ))?;
    let root = cache.join(format!("garage-{GARAGE_VERSION}"));
    let bin = root.join("bin/garage");
    if bin.is_file() {
        return Ok(bin);
    }
    let _lock = crate::cache::lock(
        &cache,
        &format!("garage-{GARAGE_VERSION}"),
        &format!("installing garage {GARAGE_VERSION}"),
    )?;
    if !bin.is_file() {
        install(&cache, &root)?;
    }
    Ok(bin)
}

/// Builds garage with `cargo install` into `root`, by way of a partial directory beside
/// it; called with the lock held.
fn install(cache: &Path, root: &Path) -> Result<()> {
    let partial = cache.join(format!("garage-{GARAGE_VERSION}.partial"));
    let log_path = cache.join(format!("garage-{GARAGE_VERSION}.install.log"));
    let by_hand = format!(
        "install it by hand with `cargo {} --root {}`, or set GARAGE_BIN to a garage {GARAGE_VERSION} binary",
        CARGO_INSTALL_ARGS.join(" "),
        root.display()
    );
    // Left by an install that was killed: nobody else holds the lock.
    for leftover in [&partial, root] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    say(&format!(
        "installing garage {GARAGE_VERSION} for the S3 tests into {}: this takes several minutes, once (cargo's output: {})",
        root.display(),
        log_path.display()
    ));
    let started = Instant::now();
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let status = crate::process::cargo()
        .args(CARGO_INSTALL_ARGS)
        .arg("--root")
        .arg(&partial)
        // Away from the work tree, whose cargo configuration is not garage's.
        .current_dir(cache)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status();
    let installed = match status {
        Ok(status) if status.success() => std::fs::rename(&partial, root)
            .with_context(|| format!("renaming {} to {}", partial.display(), root.display())),
        Ok(status) => {
            say(&last_lines(&log_path));
            Err(anyhow::anyhow!("cargo install exited with {status}"))
        }
        Err(error) => Err(anyhow::Error::new(error).context("running cargo")),
    };
    installed.with_context(|| {
        format!(
            "installing garage {GARAGE_VERSION} failed (cargo's output: {}): {by_hand}",
            log_path.display()
        )
    })?;
    say(&format!(
        "installed garage {GARAGE_VERSION} in {} s",
        started.elapsed().as_secs()
    ));
    Ok(())
}
