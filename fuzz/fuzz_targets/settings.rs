//! `cairn.toml` as an operator may write it: read as the service reads it at start (the
//! file, then the environment and flags), errors and all.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cairn_server::{Flags, Settings, SETTINGS_FILE};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    std::fs::write(dir.path().join(SETTINGS_FILE), data).expect("writing cairn.toml");
    let _ = Settings::load(dir.path(), &BTreeMap::new(), &Flags::default());
});
