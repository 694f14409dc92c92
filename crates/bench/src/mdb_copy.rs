//! `mdb_copy`, LMDB's own copy tool, as the baseline of the backup benchmark: built at
//! run time with gcc from the very LMDB sources heed links, the C files that the
//! `lmdb-master-sys` crate ships, at the version the workspace's Cargo.lock names and
//! with the defines its build script uses, into the bench's scratch directory. Nothing
//! is built at compile time and nothing is kept after the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The crate that ships LMDB's sources, and where they lie inside it.
const SYS_CRATE: &str = "lmdb-master-sys";
const SOURCES_IN_CRATE: &str = "lmdb/libraries/liblmdb";

/// The files `mdb_copy` is built from, and the headers they include.
const SOURCES: [&str; 3] = ["mdb_copy.c", "mdb.c", "midl.c"];
const HEADERS: [&str; 2] = ["lmdb.h", "midl.h"];

/// What `lmdb-master-sys`'s build script defines in a release build with the features
/// the workspace asks of heed (`longer-keys`: `MDB_MAXKEYSIZE=0`, so that mdb_copy
/// handles format 2's longer index keys as the store does), and LMDB's own Makefile's
/// optimisation and threads.
pub const CFLAGS: [&str; 5] = [
    "-O2",
    "-pthread",
    "-DMDB_IDL_LOGN=16",
    "-DMDB_MAXKEYSIZE=0",
    "-DNDEBUG",
];

/// The workspace's Cargo.lock, as of this binary's build.
const CARGO_LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");

/// Builds `mdb_copy` into `out_dir`; returns its path and the sources' directory.
pub fn build(out_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let sources = lmdb_sources()?;
    let exe = out_dir.join("mdb_copy");
    let mut command = Command::new("gcc");
    command
        .args(CFLAGS)
        .args(SOURCES.iter().map(|file| sources.join(file)))
        .arg("-o")
        .arg(&exe);
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "gcc is missing: install it (apt-get install gcc) to build mdb_copy, the \
                 baseline of the backup benchmark"
            )
        }
        Err(error) => return Err(error).context("running gcc"),
    };
    if !output.status.success() {
        bail!(
            "gcc could not build mdb_copy from {}: {}",
            sources.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((exe, sources))
}

/// The directory of LMDB's C sources in cargo's registry, for the version of
/// `lmdb-master-sys` in the workspace's Cargo.lock.
fn lmdb_sources() -> Result<PathBuf> {
    let lock = std::fs::read_to_string(CARGO_LOCK)
        .with_context(|| format!("reading {CARGO_LOCK} to find the LMDB version heed uses"))?;
    let version = locked_version(&lock, SYS_CRATE)
        .with_context(|| format!("{CARGO_LOCK} names no {SYS_CRATE} package"))?;
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cargo"),
    };
    let registry = cargo_home.join("registry/src");
    let wanted = format!("{SYS_CRATE}-{version}");
    let indexes = std::fs::read_dir(&registry)
        .with_context(|| format!("listing cargo's registry sources in {}", registry.display()))?;
    for index in indexes {
        let dir = index?.path().join(&wanted).join(SOURCES_IN_CRATE);
        if SOURCES
            .iter()
            .chain(&HEADERS)
            .all(|file| dir.join(file).is_file())
        {
            return Ok(dir);
        }
    }
    bail!(
        "no sources of {wanted} with {} under {}: run `cargo fetch` in the workspace",
        SOURCES.join(", "),
        registry.display()
    )
}

/// The version of `package` in the text of a Cargo.lock.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    lines.find(|line| line.trim() == name_line)?;
    let version = lines.next()?.trim().strip_prefix("version = \"")?;
    Some(version.strip_suffix('"')?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_packages_version_from_a_lock_file() {
        let lock = "[[package]]\nname = \"heed\"\nversion = \"0.23.1\"\n\n\
            [[package]]\nname = \"lmdb-master-sys\"\nversion = \"0.2.6\"\nsource = \"x\"\n";
        assert_eq!(
            locked_version(lock, "lmdb-master-sys").as_deref(),
            Some("0.2.6")
        );
        assert_eq!(locked_version(lock, "heed").as_deref(), Some("0.23.1"));
        assert_eq!(locked_version(lock, "lmdb"), None);
    }

    #[test]
    fn the_workspace_lock_names_the_lmdb_heed_links() {
        let lock = std::fs::read_to_string(CARGO_LOCK).unwrap();
        assert!(locked_version(&lock, SYS_CRATE).is_some());
    }
}
