//! Selenium (PyPI), installed on first use into a virtual environment in the user's
//! cache (`CACHE/selenium-VERSION`), and Debian's Chromium with its chromedriver, which
//! the console's browser test drives headless.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

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
    let venv = cache::python_package("selenium", VERSION)?;
    Ok(venv.join("bin").join("python3"))
}
