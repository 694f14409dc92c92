//! Selenium (PyPI), installed on first use into a virtual environment in the user's
//! cache (`CACHE/selenium-VERSION`), and Debian's Chromium with its chromedriver, which
//! the console's browser test drives headless.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cache;

const VERSION: &str = "4.27.1";

/// The Python of a virtual environment that has selenium, installing it first if the
/// cache lacks it. Chromium and chromedriver must be installed (`apt-get install
/// chromium chromium-driver`; `.ci/run` does).
pub fn python() -> Result<PathBuf> {
    for needed in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(needed).exists() {
            bail!("{needed} is missing: install Chromium with apt-get install chromium chromium-driver");
        }
    }
    let cache = cache::dir().context("no cache directory: set HOME or XDG_CACHE_HOME")?;
    let venv = cache.join(format!("selenium-{VERSION}"));
    let python = venv.join("bin").join("python3");
    let marker = venv.join("installed");
    if marker.exists() {
        return Ok(python);
    }
    let _lock = cache::lock(&cache, "selenium", "installing selenium")?;
    if marker.exists() {
        return Ok(python);
    }
    cache::say(&format!(
        "installing selenium {VERSION} into {}",
        venv.display()
    ));
    let log = cache.join("selenium-install.log");
    cache::run_logged(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        &log,
    )
    .context("creating a virtual environment (needs python3 with venv)")?;
    cache::run_logged(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            &format!("selenium=={VERSION}"),
        ]),
        &log,
    )
    .context("installing selenium from PyPI")?;
    std::fs::write(&marker, VERSION)?;
    Ok(python)
}
