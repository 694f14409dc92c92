//! Backups onto a full file system, a tmpfs in the test's own user and mount namespace
//! (see `cairn_tests::tmpfs`): a target without room for the backup is refused up front,
//! saying how much is needed and available; when the room goes while the backup runs,
//! the write itself fails cleanly, leaving nothing on the target and the source intact.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Once;

use cairn_store::backup::{create_backup, BackupControl};
use cairn_store::{file_system_space, Store, StoreOptions};
use cairn_tests::tmpfs::with_tmpfs;

/// ENOSPC: no room left on the device.
const NO_SPACE: i32 = 28;

/// The file this test fills the target with, to take its room away.
const FILLER: &str = "filler";

/// Writes the file `path` until its file system has at most `room` bytes available.
fn fill_up(path: &Path, room: u64) {
    let dir = path.parent().unwrap();
    let mut file = File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        let available = file_system_space(dir).unwrap().available_bytes;
        if available <= room {
            return;
        }
        let len = chunk
            .len()
            .min(usize::try_from(available - room).unwrap_or(usize::MAX));
        match file.write_all(&chunk[..len]) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(NO_SPACE) => return,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
}

#[test]
fn a_full_file_system_is_refused_up_front_or_fails_cleanly_mid_copy() {
    with_tmpfs("32m", |small| {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        let store = Store::create(&dir, StoreOptions::default()).unwrap();
        store.create_database("db").unwrap();
        // msgpack bin32 of 256 KiB; 16 of them take 8 MiB with their change log.
        let big: Vec<u8> = [0xc6, 0, 4, 0, 0]
            .into_iter()
            .chain(std::iter::repeat_n(7, 256 << 10))
            .collect();
        for i in 0..16 {
            store.put("db", &format!("big{i}"), &big, None).unwrap();
        }
        let dst = small.join("backup");
        let filler = small.join(FILLER);

        // 2 MiB of room left on the target.
        fill_up(&filler, 2 << 20);
        let error = create_backup(&store, &dir, &dst, &BackupControl::default()).unwrap_err();
        let message = error.to_string();
        assert!(error.is_storage_full(), "{error:?}");
        assert!(
            message.contains("the backup needs") && message.contains("are available there"),
            "{message}"
        );
        std::fs::remove_file(&filler).unwrap();

        // Past the check (the space goes while it runs, at its first progress report):
        // the write itself fails.
        let filled = Once::new();
        let control = BackupControl::default()
            .with_progress(move |_| filled.call_once(|| fill_up(&filler, 0)));
        let error = create_backup(&store, &dir, &dst, &control).unwrap_err();
        assert!(error.is_storage_full(), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("file system is full while writing"),
            "{error}"
        );
        let left: Vec<_> = std::fs::read_dir(small)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name != FILLER)
            .collect();
        assert!(left.is_empty(), "nothing is left on the target: {left:?}");
        assert_eq!(store.database_info("db").unwrap().doc_count, 16);
    });
}
