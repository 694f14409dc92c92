//! A small file system for tests of a full disk, without root. A test wraps its body in
//! [`with_tmpfs`], which runs this same test again, and only it, in a child process of
//! its own test binary that has a new user and mount namespace: there the child is root
//! of its own namespaces, mounts a tmpfs of the size asked for, and runs the body with
//! its path. The processes the body starts (a real `cairn-service`, `cairn-backup`)
//! inherit the namespaces and see the tmpfs; nobody else does, and it goes away with
//! them. The test passes when the child's test passed; the child's output is shown as
//! the test's own. Run as root, the child gets only a new mount namespace.
//!
//! This needs unprivileged user namespaces (or root). When the kernel refuses them the
//! test fails saying so; it is never skipped.

use std::ffi::{CStr, CString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use rustix::mount::{
    mount, mount_change, unmount, MountFlags, MountPropagationFlags, UnmountFlags,
};
use rustix::thread::{unshare_unsafe, UnshareFlags};

/// Set to the test's name in the child process that runs it inside its namespaces. Not
/// `CAIRN_*`: the service, which inherits it, refuses CAIRN variables it does not know.
const CHILD_TEST_VARIABLE: &str = "TMPFS_TEST_IN_NAMESPACE";

/// What a test says when the kernel refuses it its namespaces or its mount.
const REQUIREMENTS: &str = "a full-disk test mounts a small tmpfs in a user and mount namespace of its own: allow unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1` and `user.max_user_namespaces` above 0; on Ubuntu also `kernel.apparmor_restrict_unprivileged_userns=0`) or run the tests as root with CAP_SYS_ADMIN";

/// Runs `test` with the path of an empty tmpfs of `size` (e.g. `"4m"`), in a child
/// process of this test binary that has mount (and user) namespaces of its own (see
/// the module doc). Call it from a `#[test]` function, whose name it reruns; it panics
/// when the child's test fails or cannot run.
pub fn with_tmpfs(size: &str, test: impl FnOnce(&Path)) {
    let name = current_test_name();
    if std::env::var_os(CHILD_TEST_VARIABLE).is_some_and(|child_test| child_test == *name) {
        let tmpfs = Tmpfs::mount(size).unwrap_or_else(|error| panic!("{error:#}"));
        test(tmpfs.dir.path());
    } else {
        rerun_in_namespaces(&name).unwrap_or_else(|error| panic!("{error:#}"));
    }
}

/// The name of the running test: libtest runs each test on a thread of that name.
fn current_test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => panic!("with_tmpfs must be called on the thread of a #[test] function"),
    }
}

/// Runs the test `name` of this binary in a child process with its own namespaces and
/// forwards the child's output; fails unless the child ran that test and it passed.
fn rerun_in_namespaces(name: &str) -> Result<()> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let namespaces = Namespaces::for_this_user();
    let mut command = Command::new(&exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TEST_VARIABLE, name)
        .stdin(Stdio::null());
    // SAFETY: `enter` only makes system calls, on memory prepared before the fork.
    unsafe { command.pre_exec(move || namespaces.enter()) };
    let output = command.output().with_context(|| {
        format!(
            "starting {} {name} in new namespaces failed: {REQUIREMENTS}",
            exe.display()
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    ensure!(
        output.status.success(),
        "{name}, run with a tmpfs in its own namespaces, failed ({}): its output is above",
        output.status
    );
    ensure!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process did not run {name}: its output is above"
    );
    Ok(())
}

/// The namespaces a child process enters between fork and exec, with everything that
/// needs memory made before the fork (the child of a threaded process must not
/// allocate).
struct Namespaces {
    /// For a user other than root: `/proc/self/uid_map` and `gid_map` lines that make
    /// the user root of the new user namespace.
    user_maps: Option<(String, String)>,
}

impl Namespaces {
    fn for_this_user() -> Namespaces {
        let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
        Namespaces {
            user_maps: (!uid.is_root()).then(|| {
                (
                    format!("0 {} 1", uid.as_raw()),
                    format!("0 {} 1", gid.as_raw()),
                )
            }),
        }
    }

    /// In the child, after the fork: a new mount namespace, and for a user other than
    /// root a new user namespace in which that user is root.
    fn enter(&self) -> std::io::Result<()> {
        let flags = match self.user_maps {
            Some(_) => UnshareFlags::NEWUSER | UnshareFlags::NEWNS,
            None => UnshareFlags::NEWNS,
        };
        // SAFETY: new user and mount namespaces share no file descriptors, memory or
        // threads; the child has one thread, as a new user namespace needs.
        unsafe { unshare_unsafe(flags) }?;
        if let Some((uid_map, gid_map)) = &self.user_maps {
            // An unprivileged process may map its own ids once it gives up setgroups.
            write_proc_file(c"/proc/self/setgroups", "deny")?;
            write_proc_file(c"/proc/self/uid_map", uid_map)?;
            write_proc_file(c"/proc/self/gid_map", gid_map)?;
        }
        Ok(())
    }
}

fn write_proc_file(path: &CStr, text: &str) -> std::io::Result<()> {
    let file = rustix::fs::open(path, rustix::fs::OFlags::WRONLY, rustix::fs::Mode::empty())?;
    rustix::io::write(&file, text.as_bytes())?;
    Ok(())
}

/// A tmpfs mounted on a new temporary directory in the test's own mount namespace;
/// dropping it unmounts it and removes the directory.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs> {
        let Ok(options) = CString::new(format!("size={size}")) else {
            bail!("tmpfs size {size:?} has a NUL byte");
        };
        // The namespace starts with copies of the parent's mounts: keep what is mounted
        // here from reaching them.
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .with_context(|| format!("making the test's mounts private: {REQUIREMENTS}"))?;
        let dir = tempfile::Builder::new()
            .prefix("tmpfs-")
            .tempdir()
            .context("creating a mount point")?;
        mount(
            "tmpfs",
            dir.path(),
            "tmpfs",
            MountFlags::empty(),
            options.as_c_str(),
        )
        .with_context(|| {
            format!(
                "mounting a {size} tmpfs on {}: {REQUIREMENTS}",
                dir.path().display()
            )
        })?;
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Detached: a process the test left behind cannot keep the directory busy.
        let _ = unmount(self.dir.path(), UnmountFlags::DETACH);
    }
}
