//! `openapi-spec-validator` (PyPI), installed on first use into a virtual environment in
//! the user's cache (`CACHE/openapi-spec-validator-0.7.2`), to validate the service's
//! OpenAPI document in the tests.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cache;

const VERSION: &str = "0.7.2";

/// The validator's command, installing it first if it is not in the cache yet.
pub fn validator() -> Result<PathBuf> {
    let cache = cache::dir().context("no cache directory: set HOME or XDG_CACHE_HOME")?;
    let venv = cache.join(format!("openapi-spec-validator-{VERSION}"));
    let program = venv.join("bin").join("openapi-spec-validator");
    if program.exists() {
        return Ok(program);
    }
    let _lock = cache::lock(
        &cache,
        "openapi-spec-validator",
        "installing openapi-spec-validator",
    )?;
    if program.exists() {
        return Ok(program);
    }
    cache::say(&format!(
        "installing openapi-spec-validator {VERSION} into {}",
        venv.display()
    ));
    let log = cache.join("openapi-spec-validator-install.log");
    cache::run_logged(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        &log,
    )
    .context("creating a virtual environment (needs python3 with venv)")?;
    cache::run_logged(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            &format!("openapi-spec-validator=={VERSION}"),
        ]),
        &log,
    )
    .context("installing openapi-spec-validator from PyPI")?;
    Ok(program)
}
