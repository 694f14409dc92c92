//! The environment's part of a backup: LMDB's compacting copy (one read transaction, so
//! the copy is consistent and writers never wait) streamed through a pipe into
//! `store/data.mdb` (or to a mirror, `stream_env_copy`), hashed and counted on the way. The reader end checks for a cancel
//! between chunks and closes the pipe to stop LMDB at once. Also the size estimate of a
//! copy (the pages in use) and the facts of a copy that go into its manifest.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use heed::CompactionOption;
use rustix::event::{poll, PollFd, PollFlags};

use super::fs::{Checksum, HashingFile, CHUNK};
use super::manifest::DatabaseEntry;
use super::progress::Tracker;
use crate::error::{Result, StoreError};
use crate::store::{Store, StoreMeta};
use crate::usage::used_pages;

/// How long the copy waits for LMDB's next bytes before it looks at the cancel flag.
const POLL_MS: i64 = 100;

/// Bytes a compacted copy of the store's environment takes: every page in use (meta
/// pages, the main tree, every table's branch, leaf and overflow pages) as of now.
pub(crate) fn estimate_env_bytes(store: &Store) -> Result<u64> {
    let (pages, page_size) = used_pages(&store.snapshot()?, store.env())?;
    Ok(pages * page_size)
}

/// Bytes of documents and change logs of every database (what verification reads).
pub(crate) fn content_bytes(store: &Store) -> Result<u64> {
    Ok(store
        .list_databases()?
        .iter()
        .map(|d| d.doc_bytes + d.log_bytes)
        .sum())
}

/// Copies the environment of `store`, compacted, into the new file `target` (fsync'd);
/// returns its size and `checksum`.
pub(crate) fn copy_env(
    store: &Store,
    target: &Path,
    checksum: Checksum,
    tracker: &mut Tracker,
) -> Result<(u64, String)> {
    let mut file = HashingFile::create_uncached(target, 0o600, checksum)?;
    stream_env_copy(store, |bytes| {
        tracker.check()?;
        if !bytes.is_empty() {
            file.write(bytes)?;
            tracker.advance(bytes.len() as u64)?;
        }
        Ok(())
    })?;
    file.finish()
}

/// Streams a compacted copy of the environment of `store` (LMDB's, under one read
/// transaction: consistent, and writers never wait) to `on_bytes`, chunk by chunk in
/// order. `on_bytes` is also called with no bytes at least every 100 ms while LMDB
/// works: an error it returns (a cancel, a reader gone) stops the copy at once.
pub fn stream_env_copy(store: &Store, on_bytes: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let (reader, writer) = rustix::pipe::pipe()
        .map_err(|e| StoreError::io("creating a pipe for the copy", e.into()))?;
    // Fewer, larger reads; the default pipe buffer (64 KiB) is fine too.
    let _ = rustix::pipe::fcntl_setpipe_size(&writer, CHUNK);
    let env = store.env().clone();
    let copier = std::thread::Builder::new()
        .name("cairn-env-copy".to_string())
        .spawn(move || {
            // SAFETY: `writer` is the open write end of a pipe, kept open until the copy
            // returns, and closed after it (end of file for the reader).
            let copied = unsafe { env.copy_to_fd(writer.as_raw_fd(), CompactionOption::Enabled) };
            drop(writer);
            copied
        })
        .map_err(|e| StoreError::io("starting the copy thread", e))?;
    // `pump` owns the read end and closes it when it returns, even on an error, so
    // that a copy still writing fails at once (EPIPE) rather than block forever.
    let pumped = pump(reader, on_bytes);
    let copied = copier
        .join()
        .map_err(|_| StoreError::Lmdb("the copy thread panicked".to_string()))?;
    pumped?;
    copied?;
    Ok(())
}

/// Moves everything from the pipe to `on_bytes` until end of file or an error.
fn pump(reader: OwnedFd, mut on_bytes: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: POLL_MS * 1_000_000,
    };
    loop {
        on_bytes(&[])?;
        let mut fds = [PollFd::new(&reader, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(StoreError::io("waiting for the copy", e.into())),
        }
        let n = match rustix::io::read(&reader, &mut buffer) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => return Err(StoreError::io("reading the copy", e.into())),
        };
        if n == 0 {
            return Ok(());
        }
        on_bytes(&buffer[..n])?;
    }
}

/// The meta of a copied environment and its databases as of the copy.
pub(crate) fn copy_facts(dir: &Path) -> Result<(StoreMeta, Vec<DatabaseEntry>)> {
    let copy = Store::open_unshared(dir)?;
    let databases = copy
        .list_databases()?
        .into_iter()
        .map(|d| DatabaseEntry {
            name: d.name,
            last_seq: d.last_seq,
            oldest_seq: d.oldest_seq,
            doc_count: d.doc_count,
        })
        .collect();
    Ok((copy.meta().clone(), databases))
}
