//! The archive of a remote backup: one tar stream compressed with zstd (`NAME.tar.zst`),
//! holding a backup directory as `cairn_store::backup::create_backup` wrote it:
//! `MANIFEST.json` first, then the directories (with their permission bits), then every
//! file the manifest lists (with its permission bits), owner 0 and the backup's time, so
//! that the same backup always packs to the same bytes. `unpack` is strict: only plain
//! relative paths, only files and directories, only files the manifest lists and at
//! their listed sizes; whatever an archive holds beyond that is refused, not written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use cairn_store::backup::{Manifest, MANIFEST_FILE};

/// zstd's level: its default, fast and a good ratio.
const ZSTD_LEVEL: i32 = 3;

/// The largest `MANIFEST.json` an archive may hold.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Called with the bytes of each file read (packing) or written (unpacking); an error
/// (a cancel) stops the work.
pub(crate) type Tick<'t> = &'t mut dyn FnMut(u64) -> io::Result<()>;

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// Packs the backup directory `dir`, whose manifest is `manifest`, into `out` (see the
/// module doc); returns `out` once the archive is complete.
pub(crate) fn pack<W: Write>(dir: &Path, manifest: &Manifest, out: W, tick: Tick) -> io::Result<W> {
    let mtime = manifest.created_ms / 1000;
    let mut builder = tar::Builder::new(zstd::Encoder::new(out, ZSTD_LEVEL)?);
    let header = |kind: tar::EntryType, size: u64, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    };

    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_size = fs::metadata(&manifest_path)?.len();
    builder.append_data(
        &mut header(tar::EntryType::Regular, manifest_size, 0o600),
        MANIFEST_FILE,
        File::open(&manifest_path)?.take(manifest_size),
    )?;

    let mut dirs: Vec<&str> = Vec::new();
    for entry in &manifest.files {
        let mut end = 0;
        while let Some(at) = entry.path[end..].find('/') {
            end += at;
            let parent = &entry.path[..end];
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
            end += 1;
        }
    }
    for rel in dirs {
        let mode = fs::metadata(dir.join(rel))?.permissions().mode() & 0o7777;
        builder.append_data(
            &mut header(tar::EntryType::Directory, 0, mode),
            rel,
            io::empty(),
        )?;
    }

    for entry in &manifest.files {
        let path = dir.join(&entry.path);
        let file = File::open(&path)?;
        let size = file.metadata()?.len();
        if size != entry.size {
            return Err(invalid(format!(
                "{} is {size} bytes, its manifest says {}",
                path.display(),
                entry.size
            )));
        }
        let reader = Ticking {
            inner: file.take(size),
            tick: &mut *tick,
        };
        builder.append_data(
            &mut header(tar::EntryType::Regular, size, entry.mode),
            &entry.path,
            reader,
        )?;
    }
    builder.into_inner()?.finish()
}

/// Unpacks an archive read from `input` into the new directory `dest` (see the module
/// doc), checking every file against `manifest`, the one the archive is said to hold.
pub(crate) fn unpack<R: Read>(
    input: R,
    dest: &Path,
    manifest: &Manifest,
    tick: Tick,
) -> io::Result<()> {
    fs::create_dir(dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o700))?;
    let mut archive = tar::Archive::new(zstd::Decoder::new(input)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = plain_relative(&entry.path()?)?;
        let mode = entry.header().mode()? & 0o7777;
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))?;
            }
            tar::EntryType::Regular => {
                let expected = if rel == MANIFEST_FILE {
                    None
                } else {
                    let listed = manifest.file(&rel).ok_or_else(|| {
                        invalid(format!(
                            "the archive holds {rel:?}, which its manifest does not list"
                        ))
                    })?;
                    Some(listed.size)
                };
                let size = entry.size();
                if expected.is_some_and(|e| e != size)
                    || (expected.is_none() && size > MAX_MANIFEST_BYTES)
                {
                    return Err(invalid(format!(
                        "{rel:?} is {size} bytes in the archive, not the size its manifest lists"
                    )));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&target)?;
                let copied = io::copy(
                    &mut Ticking {
                        inner: &mut entry,
                        tick: &mut *tick,
                    },
                    &mut file,
                )?;
                if copied != size {
                    return Err(invalid(format!("{rel:?} is cut short in the archive")));
                }
            }
            other => {
                return Err(invalid(format!(
                    "the archive holds {rel:?} of type {other:?}: only files and directories belong in a backup"
                )))
            }
        }
    }
    Ok(())
}

/// `path` as `a/b/c` when it is relative and made of plain names only.
fn plain_relative(path: &Path) -> io::Result<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| invalid(format!("{} is not UTF-8", path.display())))?,
            ),
            _ => {
                return Err(invalid(format!(
                    "the archive holds {}, which is not a plain relative path",
                    path.display()
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(invalid("the archive holds an empty path".to_string()));
    }
    Ok(parts.join("/"))
}

/// A reader that ticks with every read.
struct Ticking<'t, R> {
    inner: R,
    tick: Tick<'t>,
}

impl<R: Read> Read for Ticking<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.tick)(n as u64)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::backup::FileEntry;

    fn manifest(files: &[(&str, &[u8], u32)]) -> Manifest {
        Manifest {
            format_version: 1,
            service_id: "0".repeat(32),
            created_ms: 1_795_230_245_000,
            tool: "test".into(),
            source: "/x".into(),
            files: files
                .iter()
                .map(|(path, bytes, mode)| FileEntry {
                    path: path.to_string(),
                    size: bytes.len() as u64,
                    checksum: String::new(),
                    mode: *mode,
                })
                .collect(),
            ..Manifest::current()
        }
    }

    fn write_dir(dir: &Path, files: &[(&str, &[u8], u32)]) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(MANIFEST_FILE), b"{}\n").unwrap();
        for (path, bytes, mode) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        fs::set_permissions(dir.join("certs"), fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_packed_backup_unpacks_to_the_same_files_and_modes() {
        let scratch = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8], u32)] = &[
            ("store/data.mdb", &[7u8; 100_000], 0o600),
            ("certs/cas/ca.crt", b"certificate", 0o644),
            ("certs/cas/ca.key", b"key", 0o600),
            ("cairn.toml", b"listen = []\n", 0o644),
        ];
        let source = scratch.path().join("source");
        write_dir(&source, files);
        let manifest = manifest(files);
        let mut read = 0;
        let packed = pack(&source, &manifest, Vec::new(), &mut |n| {
            read += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(read, 100_000 + 11 + 3 + 12);
        assert!(packed.len() < 10_000, "compressed: {}", packed.len());
        let again = pack(&source, &manifest, Vec::new(), &mut |_| Ok(())).unwrap();
        assert_eq!(packed, again, "the same backup packs to the same bytes");

        let dest = scratch.path().join("dest");
        unpack(&packed[..], &dest, &manifest, &mut |_| Ok(())).unwrap();
        for (path, bytes, mode) in files {
            assert_eq!(fs::read(dest.join(path)).unwrap(), *bytes, "{path}");
            let meta = fs::metadata(dest.join(path)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, *mode, "{path}");
        }
        assert_eq!(fs::read(dest.join(MANIFEST_FILE)).unwrap(), b"{}\n");
        let certs = fs::metadata(dest.join("certs")).unwrap();
        assert_eq!(certs.permissions().mode() & 0o777, 0o700);

        // A cancel stops the work.
        let stopped = pack(&source, &manifest, Vec::new(), &mut |_| {
            Err(io::Error::other("canceled"))
        });
        assert!(stopped.is_err());
    }

    #[test]
    fn unpack_refuses_what_the_manifest_does_not_list() {
        let scratch = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8], u32)] = &[("certs/extra", b"surprise", 0o644)];
        let source = scratch.path().join("source");
        write_dir(&source, files);
        let packed = pack(&source, &manifest(files), Vec::new(), &mut |_| Ok(())).unwrap();

        let error = unpack(
            &packed[..],
            &scratch.path().join("a"),
            &manifest(&[]),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(error.to_string().contains("does not list"), "{error}");

        let other_size: &[(&str, &[u8], u32)] = &[("certs/extra", b"longer text", 0o644)];
        let error = unpack(
            &packed[..],
            &scratch.path().join("b"),
            &manifest(other_size),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(error.to_string().contains("not the size"), "{error}");

        assert!(plain_relative(Path::new("../x")).is_err());
        assert!(plain_relative(Path::new("/etc/passwd")).is_err());
        assert!(
            plain_relative(Path::new("a/./b")).is_ok(),
            "`.` parts fold away"
        );
        assert_eq!(plain_relative(Path::new("a/b")).unwrap(), "a/b");
    }
}
