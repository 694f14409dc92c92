//! `openapi-spec-validator` (PyPI), installed on first use into a virtual environment in
//! the user's cache (`CACHE/openapi-spec-validator-0.7.2`), to validate the service's
//! OpenAPI document in the tests.

use std::path::PathBuf;

use anyhow::Result;

use crate::cache;

const VERSION: &str = "0.7.2";

/// The validator's command, installing it first if it is not in the cache yet.
pub fn validator() -> Result<PathBuf> {
    let venv = cache::python_package("openapi-spec-validator", VERSION)?;
    Ok(venv.join("bin").join("openapi-spec-validator"))
}
