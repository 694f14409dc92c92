//! A full file system: the store runs on a small tmpfs (mounted in the test's own user
//! and mount namespace, see `cairn_tests::tmpfs`) and is written to until the disk
//! refuses. The refusal must reach the caller as `StorageFull`, never a panic, and every
//! write acknowledged before it must still be there, before and after a reopen; once the
//! disk has room again, writes go on without one.

use cairn_store::{Store, StoreError, StoreOptions};
use cairn_tests::tmpfs::with_tmpfs;

/// msgpack bin32 of `len` bytes.
fn blob(len: usize, fill: u8) -> Vec<u8> {
    let mut value = vec![0xc6];
    value.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    value.extend(std::iter::repeat_n(fill, len));
    value
}

#[test]
fn a_full_disk_is_an_error_and_loses_nothing_acknowledged() {
    with_tmpfs("4m", |small| {
        let options = StoreOptions {
            map_size: 64 << 20,
            ..StoreOptions::default()
        };
        let store = Store::create(small, options.clone()).unwrap();
        store.create_database("db").unwrap();

        let mut acknowledged = Vec::new();
        let mut refusal = None;
        for i in 0..1000u32 {
            let key = format!("doc-{i:04}");
            let fill = u8::try_from(i % 256).unwrap();
            match store.put("db", &key, &blob(64 << 10, fill), None) {
                Ok(rev) => acknowledged.push((key, rev, fill)),
                Err(error) => {
                    refusal = Some(error);
                    break;
                }
            }
        }
        let refusal = refusal.expect("a 4 MiB file system fills up");
        assert!(
            matches!(refusal, StoreError::StorageFull { .. }),
            "expected StorageFull, got {refusal:?}"
        );
        assert!(
            refusal.to_string().contains("file system is full"),
            "{refusal}"
        );
        assert!(!acknowledged.is_empty());

        // Reads still work, and every acknowledged write is intact.
        for (key, rev, fill) in &acknowledged {
            let doc = store.get("db", key).unwrap().expect("acknowledged write");
            assert_eq!((doc.rev, doc.value), (*rev, blob(64 << 10, *fill)));
        }
        // The writer thread survived: a second refusal is again a clean error.
        let again = store.put("db", "one-more", &blob(64 << 10, 1), None);
        assert!(
            matches!(again, Err(StoreError::StorageFull { .. })),
            "{again:?}"
        );

        drop(store);
        let store = Store::open(small, options).unwrap();
        let info = store.database_info("db").unwrap();
        assert_eq!(info.doc_count, acknowledged.len() as u64);
        assert_eq!(info.last_seq, acknowledged.last().unwrap().1);
        drop(store);
    });
}

#[test]
fn writes_go_on_once_the_disk_has_room_again() {
    with_tmpfs("24m", |small| {
        let ballast = small.join("ballast");
        std::fs::write(&ballast, vec![0u8; 16 << 20]).unwrap();
        let store = Store::create(&small.join("data"), StoreOptions::default()).unwrap();
        store.create_database("db").unwrap();
        let mut refusal = None;
        for i in 0..1000u32 {
            if let Err(error) = store.put("db", &format!("doc-{i:04}"), &blob(256 << 10, 1), None) {
                refusal = Some(error);
                break;
            }
        }
        let refusal = refusal.expect("the disk fills up");
        assert!(
            matches!(refusal, StoreError::StorageFull { .. }),
            "{refusal:?}"
        );
        std::fs::remove_file(&ballast).unwrap();
        let after = store.put("db", "after", &blob(1024, 2), None);
        assert!(after.is_ok(), "{after:?}");
    });
}
