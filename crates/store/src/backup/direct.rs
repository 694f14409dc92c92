//! Writing a large file around the page cache (`O_DIRECT`), as `mdb_copy` does, with two
//! aligned buffers: while a thread of its own writes one to the disk, the caller fills
//! the other, so that the disk's time and the caller's (reading the copy, hashing it)
//! overlap instead of adding up. What is not a whole number of blocks at the end is
//! written through the cache.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::fs::CHUNK;

/// Alignment of `O_DIRECT` writes (a multiple of every logical block size in use).
const DIRECT_ALIGN: usize = 4096;

/// A `CHUNK`-sized buffer aligned for `O_DIRECT`.
struct AlignedBuffer {
    memory: Vec<u8>,
    start: usize,
    filled: usize,
}

impl AlignedBuffer {
    fn new() -> AlignedBuffer {
        let memory = vec![0u8; CHUNK + DIRECT_ALIGN];
        let start = memory.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuffer {
            memory,
            start,
            filled: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.filled]
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let at = self.start + self.filled;
        let n = data.len().min(CHUNK - self.filled);
        self.memory[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        n
    }
}

/// Writes to a file opened with `O_DIRECT` (see the module doc).
pub(crate) struct DirectWriter {
    current: AlignedBuffer,
    /// A buffer the writer thread is not holding, when there is one.
    spare: Option<AlignedBuffer>,
    to_disk: Option<SyncSender<AlignedBuffer>>,
    written: Receiver<io::Result<AlignedBuffer>>,
    thread: Option<JoinHandle<()>>,
}

impl DirectWriter {
    /// Starts the writer thread on a duplicate of `file`'s descriptor.
    pub(crate) fn start(file: &File) -> io::Result<DirectWriter> {
        let mut disk = file.try_clone()?;
        let (to_disk, full) = mpsc::sync_channel::<AlignedBuffer>(1);
        let (done, written) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cairn-direct-write".to_string())
            .spawn(move || {
                for mut buffer in full {
                    let outcome = disk.write_all(buffer.filled()).map(|()| {
                        buffer.filled = 0;
                        buffer
                    });
                    let failed = outcome.is_err();
                    if done.send(outcome).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(DirectWriter {
            current: AlignedBuffer::new(),
            spare: Some(AlignedBuffer::new()),
            to_disk: Some(to_disk),
            written,
            thread: Some(thread),
        })
    }

    pub(crate) fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.current.fill(data);
            data = &data[n..];
            if self.current.filled == CHUNK {
                self.hand_over()?;
            }
        }
        Ok(())
    }

    /// Gives the full current buffer to the writer thread and takes an empty one.
    fn hand_over(&mut self) -> io::Result<()> {
        let empty = match self.spare.take() {
            Some(buffer) => buffer,
            None => self.wait_for_a_buffer()?,
        };
        let full = std::mem::replace(&mut self.current, empty);
        let sent = self.to_disk.as_ref().map(|to_disk| to_disk.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread is gone: it said why in `written`.
            _ => self.wait_for_a_buffer().map(|_| ()),
        }
    }

    /// The next buffer the writer thread wrote, or what failed.
    fn wait_for_a_buffer(&self) -> io::Result<AlignedBuffer> {
        self.written
            .recv()
            .map_err(|_| io::Error::other("the writing thread stopped"))?
    }

    /// Waits for every buffer handed over to be written, then writes what the current
    /// buffer holds into `file` (through the cache when it is not a whole number of
    /// blocks).
    pub(crate) fn finish(mut self, file: &mut File) -> io::Result<()> {
        drop(self.to_disk.take());
        let in_flight = usize::from(self.spare.is_none());
        for _ in 0..in_flight {
            self.wait_for_a_buffer()?;
        }
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| io::Error::other("the writing thread panicked"))?;
        }
        if self.current.filled % DIRECT_ALIGN != 0 {
            let flags = rustix::fs::fcntl_getfl(&*file)?;
            rustix::fs::fcntl_setfl(&*file, flags - rustix::fs::OFlags::DIRECT)?;
        }
        file.write_all(self.current.filled())
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        drop(self.to_disk.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_of_the_writing_thread_reaches_the_caller() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        // A descriptor open for reading: every write the thread makes fails (EBADF), as
        // a full or failing disk would make it fail.
        let mut file = File::open(&path).unwrap();
        let mut writer = DirectWriter::start(&file).unwrap();
        let chunk = vec![7u8; CHUNK];
        let mut failed = None;
        for _ in 0..4 {
            if let Err(error) = writer.write(&chunk) {
                failed = Some(error);
                break;
            }
        }
        let error = match failed {
            Some(error) => error,
            None => writer.finish(&mut file).unwrap_err(),
        };
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error())
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
