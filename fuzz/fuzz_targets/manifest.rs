//! A backup's `MANIFEST.json`, which `cairn-backup --verify` and restores read from
//! directories and buckets they did not write.
#![no_main]

use std::sync::OnceLock;

use cairn_store::backup::{read_manifest, MANIFEST_FILE};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    std::fs::write(dir.path().join(MANIFEST_FILE), data).expect("writing the manifest");
    let _ = read_manifest(dir.path());
});
