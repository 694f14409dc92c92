//! The format-1 release and the working directories it writes, for the tests of what
//! comes after it (format 2 and `cairn-migrate`, a follower syncing from an old
//! service): every directory made before format 2 was written by the release at commit
//! 03ebda0, so those tests take their inputs from that release's own binaries, never from
//! newer code imitating it.
//!
//! [`binaries`] are that commit's `cairn-service`, `cairn` and `cairn-backup`, built on
//! first use from `git archive 03ebda0` of the repository the tests run in (a clone with
//! main's history; a shallow one is told to `git fetch --unshallow`) with
//! `cargo build --locked -p cairn-server -p cairn-cli -p cairn-backup`: only those three
//! binaries, not the old tests, with the old Cargo.lock. A debug build: 126 s on two
//! otherwise idle cores (3 to 5 minutes beside other builds), where a release build
//! took 411 s (right after, with some other load), and the fixtures are small enough
//! for unoptimised binaries. They go to the user's cache, outside every work tree, so
//! that all clones and runs (and CI, which keeps the cache) share one build:
//! `${XDG_CACHE_HOME:-$HOME/.cache}/cairn-tests/format1-03ebda0/`, with the source in
//! `src/` and the binaries in `bin/`; cargo's target directory (`target/` beside `src/`
//! while building, 2 GB) is removed once the binaries are out of it. The threads of a
//! test process share one attempt; processes take turns on a file lock beside it (see
//! [`crate::cache`]): the first builds into `format1-03ebda0.partial` and renames that
//! into place, the others wait and then find it there. A failed build fails the test
//! with a line saying how to build by hand. `FORMAT1_BIN_DIR`, when set, is a directory
//! holding the three binaries, used as it is (not a `CAIRN_*` name: the service refuses
//! variables of its prefix that it does not know).
//!
//! [`populate`] makes a working directory with those binaries alone: the old service,
//! filled through the old `cairn` (databases with overwritten and deleted documents,
//! indexes, a trimmed change log and an offline database; users, grants and a session;
//! a resync and a backup job; a status message), read back through the old `cairn` and
//! stopped, and returns what it read as the [`Fixture`] a migrated directory must still
//! serve. [`start_service`] starts the old service on a directory, and [`stored`] reads
//! the format version and the tables' sizes with LMDB directly (cairn-store reads only
//! the format it writes).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use heed::types::{Bytes, Str};
use heed::{CommitOrAbort, Database, DatabaseFlags, EnvFlags, EnvOpenOptions};
use serde_json::{json, Value};

use crate::cache::{last_lines, say};
use crate::cli::Endpoint;
use crate::process::ServiceProcess;

/// The commit of the format-1 release.
pub const COMMIT: &str = "03ebda0d02cc6ace2fd0cb9f27c55e7b53a1bbab";

/// The variable naming a directory with the format-1 binaries, instead of the cache.
pub const BIN_DIR_VARIABLE: &str = "FORMAT1_BIN_DIR";

/// The commit as people write it.
const SHORT_COMMIT: &str = "03ebda0";

/// The build's name in the cache: its directory, lock, partial directory and log.
const CACHE_NAME: &str = "format1-03ebda0";

/// `cargo build` arguments (in the old source, before `--target-dir`): the three
/// binaries, with the old Cargo.lock.
const CARGO_BUILD_ARGS: [&str; 8] = [
    "build",
    "--locked",
    "-p",
    "cairn-server",
    "-p",
    "cairn-cli",
    "-p",
    "cairn-backup",
];

/// The binaries of the format-1 release.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `cairn-service`.
    pub service: PathBuf,
    /// `cairn`, the CLI.
    pub cli: PathBuf,
    /// `cairn-backup`.
    pub backup: PathBuf,
}

impl Binaries {
    /// The three binaries in `dir`.
    fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            service: dir.join("cairn-service"),
            cli: dir.join("cairn"),
            backup: dir.join("cairn-backup"),
        }
    }

    /// The first of them that is not a file.
    fn missing(&self) -> Option<&Path> {
        [&self.service, &self.cli, &self.backup]
            .into_iter()
            .find(|path| !path.is_file())
            .map(PathBuf::as_path)
    }
}

/// The format-1 binaries: those of `FORMAT1_BIN_DIR`, else those in the user's cache,
/// built there first when they are missing; or an error that says how to get them.
pub fn binaries() -> Result<Binaries> {
    // One attempt per process: the other threads wait for it and share its outcome.
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BINARIES
        .get_or_init(|| find_or_build().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The binaries of `FORMAT1_BIN_DIR`, or those in the cache after building them unless
/// they are there or another process built them meanwhile.
fn find_or_build() -> Result<Binaries> {
    if let Some(dir) = std::env::var_os(BIN_DIR_VARIABLE).map(PathBuf::from) {
        let given = Binaries::in_dir(&dir);
        if let Some(missing) = given.missing() {
            bail!(
                "{BIN_DIR_VARIABLE} is {}, which has no {}: point it at a directory with the cairn-service, cairn and cairn-backup of commit {SHORT_COMMIT}, or unset it and the tests build them",
                dir.display(),
                missing.display()
            );
        }
        return Ok(given);
    }
    let cache = crate::cache::dir().with_context(|| format!(
        "the format-1 binaries are built into the user's cache: set HOME or XDG_CACHE_HOME, or {BIN_DIR_VARIABLE} to a directory with the binaries of commit {SHORT_COMMIT}"
    ))?;
    let root = cache.join(CACHE_NAME);
    let built = Binaries::in_dir(&root.join("bin"));
    if built.missing().is_none() {
        return Ok(built);
    }
    let _lock = crate::cache::lock(
        &cache,
        CACHE_NAME,
        &format!("building the format-1 release ({SHORT_COMMIT})"),
    )?;
    if built.missing().is_some() {
        build(&cache, &root)?;
    }
    Ok(built)
}

/// Builds the three binaries of the format-1 release into `root/bin`, with the source in
/// `root/src`, by way of a partial directory beside it; called with the lock held.
fn build(cache: &Path, root: &Path) -> Result<()> {
    let partial = cache.join(format!("{CACHE_NAME}.partial"));
    let log_path = cache.join(format!("{CACHE_NAME}.build.log"));
    let by_hand = format!(
        "build them by hand in a clone with main's history: `mkdir -p /tmp/format1 && git archive {SHORT_COMMIT} | tar -x -C /tmp/format1 && cd /tmp/format1 && cargo {}`, then set {BIN_DIR_VARIABLE}=/tmp/format1/target/debug",
        CARGO_BUILD_ARGS.join(" ")
    );
    // Left by a build that was killed: nobody else holds the lock.
    for leftover in [&partial, root] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    let repository = repository()?;
    say(&format!(
        "building the format-1 release (commit {SHORT_COMMIT}: cairn-service, cairn, cairn-backup) into {}: this takes a few minutes, once (cargo's output: {})",
        root.display(),
        log_path.display()
    ));
    let started = Instant::now();
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let source = partial.join("src");
    let target = partial.join("target");
    let built = extract(&repository, &source, &log)
        .and_then(|()| compile(&source, &target, &log, &log_path))
        .and_then(|()| {
            let bin = partial.join("bin");
            std::fs::create_dir_all(&bin)?;
            for name in ["cairn-service", "cairn", "cairn-backup"] {
                std::fs::rename(target.join("debug").join(name), bin.join(name))
                    .with_context(|| format!("moving {name} out of {}", target.display()))?;
            }
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing {}", target.display()))?;
            std::fs::rename(&partial, root)
                .with_context(|| format!("renaming {} to {}", partial.display(), root.display()))
        });
    built.with_context(|| {
        format!(
            "building the format-1 release failed (output: {}): {by_hand}",
            log_path.display()
        )
    })?;
    say(&format!(
        "built the format-1 release in {} s",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// The top of the git repository the tests run in, which must hold the format-1 commit.
fn repository() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unavailable = format!(
        "or set {BIN_DIR_VARIABLE} to a directory with the cairn-service, cairn and cairn-backup of commit {SHORT_COMMIT}"
    );
    let top = git(manifest_dir, &["rev-parse", "--show-toplevel"]).with_context(|| {
        format!(
            "the format-1 binaries are built from commit {SHORT_COMMIT} of the repository's history, but {} is not in a git clone: run the tests in a clone of the repository, {unavailable}",
            manifest_dir.display()
        )
    })?;
    let top = PathBuf::from(top.trim());
    if git(&top, &["cat-file", "-e", &format!("{COMMIT}^{{commit}}")]).is_err() {
        let shallow = git(&top, &["rev-parse", "--is-shallow-repository"])
            .is_ok_and(|answer| answer.trim() == "true");
        if shallow {
            bail!(
                "commit {SHORT_COMMIT} (the format-1 release) is not in the shallow clone {}: run `git fetch --unshallow` there, {unavailable}",
                top.display()
            );
        }
        bail!(
            "commit {SHORT_COMMIT} (the format-1 release) is not in the repository {}: fetch main's history (`git fetch origin main`), {unavailable}",
            top.display()
        );
    }
    Ok(top)
}

/// Runs `git -C DIR ARGS` and returns its stdout, or its stderr as the error.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {} exited with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `git archive COMMIT | tar -x -C DEST`.
fn extract(repository: &Path, dest: &Path, log: &File) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repository)
        .args(["archive", "--format=tar", COMMIT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .spawn()
        .context("running git archive")?;
    let tar_input = archive.stdout.take().context("git archive's stdout")?;
    let untarred = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(tar_input)
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()
        .context("running tar");
    let archived = archive.wait().context("waiting for git archive")?;
    let untarred = untarred?;
    ensure!(
        archived.success() && untarred.success(),
        "git archive {SHORT_COMMIT} | tar -x failed: git archive {archived}, tar {untarred}"
    );
    Ok(())
}

/// `cargo build` of the three binaries in `source`, into `target`, with its output in
/// `log` (at `log_path`).
fn compile(source: &Path, target: &Path, log: &File, log_path: &Path) -> Result<()> {
    let status = crate::process::cargo()
        .args(CARGO_BUILD_ARGS)
        .arg("--target-dir")
        .arg(target)
        // The old workspace, whose Cargo.toml and Cargo.lock are those of the release.
        .current_dir(source)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()
        .context("running cargo")?;
    if !status.success() {
        say(&last_lines(log_path));
        bail!("cargo build exited with {status}");
    }
    Ok(())
}

/// Starts the format-1 `cairn-service` on `dir` (created on the first start), with its
/// unix socket `DIR/sock` and a TLS listener on a free port of 127.0.0.1
/// (`tls_address`; its CAs are in `DIR/certs`); [`ServiceProcess::stop`] stops it with
/// SIGTERM.
pub fn start_service(dir: &Path) -> Result<ServiceProcess> {
    let binaries = binaries()?;
    ServiceProcess::start_program(&binaries.service, dir, &[])
}

/// What a working directory made by [`populate`] holds, as the format-1 `cairn` read it
/// back (`-o json`) before the service stopped: what a later release must still serve.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The working directory.
    pub dir: PathBuf,
    /// The password of each user that has one (every user but `root` and `dave`).
    pub passwords: BTreeMap<String, String>,
    /// A session token of each user that logged in (`alice`), valid for 24 hours.
    pub tokens: BTreeMap<String, String>,
    /// Each database's content, by name.
    pub databases: BTreeMap<String, DatabaseContent>,
    /// `db list`: every database's counters, retention and state.
    pub db_list: Value,
    /// `user list`: users, admins and grants.
    pub users: Value,
    /// `jobs list`: the jobs, newest first.
    pub jobs: Value,
    /// `status`: the service status with its messages and service id.
    pub status: Value,
    /// The change-log epoch that every `changes` page carried.
    pub epoch: u64,
    /// The backup the backup job wrote, `DIR/backups/format1` (a format-1 working
    /// directory itself).
    pub backup: PathBuf,
}

/// One database of a [`Fixture`].
#[derive(Debug, Clone)]
pub struct DatabaseContent {
    /// Its entry of `db list` (`archive`'s before it went offline, `Online`).
    pub info: Value,
    /// `db config`: retention, indexes, offline.
    pub config: Value,
    /// Every document as `scan` prints it (`{key, rev, value}`), in key order.
    pub docs: Vec<Value>,
    /// Its change log as `changes` prints it (`{seq, op, key, value, time_ms}`), from the
    /// first change that retention kept.
    pub changes: Vec<Value>,
    /// Every change up to this seq was removed by retention (0: none was).
    pub trimmed_through: u64,
}

/// Makes the format-1 working directory `dir` with the format-1 binaries alone and
/// returns what it holds, read back through the old `cairn` before the old service
/// stopped. `seed` picks the values of the `notes` documents; everything else is fixed:
///
/// - `notes`: `note-0000` to `note-0239` with seeded values of every JSON type, and
///   `a`, `clé/été 日本 🪨`, `with space`, a key of 400 bytes and `big` (300 KB); every
///   third note overwritten, every seventh deleted, `note-0001` rewritten at its rev,
///   `note-0007` written again after its delete, `note-0010` deleted at its rev, `null`
///   holding null: 211 documents, 364 changes, all kept.
/// - `people`: `person-00` to `person-59` (name, email, age, address.city, tags) with
///   the indexes `by_email` (unique), `by_age` and `by_city`, the last one added to the
///   populated database and rebuilt by a resync job; three emails changed, `person-09`
///   and `person-26` deleted: 58 documents.
/// - `trimmed`: at most 10 changes kept (`--max-changes 10`); `t-00` to `t-09` written
///   four times: 10 documents, changes 31 to 40, `trimmed_through` 30.
/// - `archive`: `a-00` to `a-19`, then taken offline.
/// - Users: `alice` (read on notes, write on people), `bob` (write on trimmed, read on
///   archive), `carol` (admin), each with the password `NAME-format1-pw`; `dave` (write
///   on notes) without a password; `root`, made by the service. A session of alice's.
/// - Jobs: 1, the RESYNC of people; 2, the BACKUP `format1`; both COMPLETED.
/// - Status: READ_WRITE, message "format-1 fixture", pending "migration to format 2".
pub fn populate(dir: &Path, seed: u64) -> Result<Fixture> {
    let binaries = binaries()?;
    let service = start_service(dir)?;
    let filled = fill(&binaries, &service, seed);
    let stopped = service.stop();
    let fixture = filled.context("populating a format-1 directory")?;
    let (status, stderr) = stopped?;
    ensure!(
        status.success(),
        "the format-1 service exited with {status} on SIGTERM: {stderr}"
    );
    Ok(fixture)
}

/// The format-1 `cairn` on one endpoint.
struct OldCli<'a> {
    program: &'a Path,
    endpoint: Endpoint,
}

impl OldCli<'_> {
    /// Runs `cairn ARGS` with `stdin`; its stdout, or an error unless it succeeded.
    fn run(&self, args: &[&str], stdin: &str) -> Result<String> {
        let run = self.endpoint.run_program(self.program, args, stdin);
        ensure!(
            run.code == 0,
            "format-1 {} exited with {}: {}{}",
            run.command,
            run.code,
            run.stdout,
            run.stderr
        );
        Ok(run.stdout)
    }

    /// Runs `cairn -o json ARGS` with `stdin` and parses its stdout.
    fn json(&self, args: &[&str], stdin: &str) -> Result<Value> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let stdout = self.run(&all, stdin)?;
        serde_json::from_str(stdout.trim())
            .with_context(|| format!("format-1 cairn {}: stdout is not JSON", all.join(" ")))
    }

    /// Applies `ops` (`{"op": "put"|"del", "key", "value"}`) to `db` in one `batch`,
    /// and to `model`.
    fn batch(&self, db: &str, ops: &[Value], model: &mut Model) -> Result<()> {
        let lines: Vec<String> = ops.iter().map(Value::to_string).collect();
        self.run(&["batch", db], &(lines.join("\n") + "\n"))?;
        for op in ops {
            let key = op["key"].as_str().context("an op's key")?;
            model.apply(key, (op["op"] == "put").then(|| op["value"].clone()));
        }
        Ok(())
    }

    /// Every document of `db` (`scan`, page after page).
    fn scan(&self, db: &str) -> Result<Vec<Value>> {
        let mut docs: Vec<Value> = Vec::new();
        loop {
            let mut args = vec!["scan", db, "--limit", "1000"];
            let after = docs.last().and_then(|doc| doc["key"].as_str());
            if let Some(after) = after {
                args.extend(["--after", after]);
            }
            let page = self.json(&args, "")?;
            docs.extend(page["docs"].as_array().context("scan's docs")?.clone());
            if page["more"] != true {
                return Ok(docs);
            }
        }
    }

    /// The change log of `db` after `since` (`changes`, page after page), and its epoch.
    fn changes(&self, db: &str, since: u64, last_seq: u64) -> Result<(Vec<Value>, u64)> {
        let mut changes: Vec<Value> = Vec::new();
        let mut since = since;
        let mut epochs = Vec::new();
        while since < last_seq {
            let since_text = since.to_string();
            let page = self.json(
                &["changes", db, "--since", &since_text, "--limit", "1000"],
                "",
            )?;
            epochs.push(page["epoch"].as_u64().context("the changes' epoch")?);
            let entries = page["changes"].as_array().context("the changes")?;
            let Some(last) = entries.last() else {
                bail!("changes of {db} after {since} are empty, below last_seq {last_seq}");
            };
            since = last["seq"].as_u64().context("a change's seq")?;
            changes.extend(entries.iter().cloned());
        }
        epochs.dedup();
        ensure!(
            epochs.len() <= 1,
            "the epoch changed while paging: {epochs:?}"
        );
        Ok((changes, epochs.first().copied().unwrap_or(0)))
    }
}

/// What a database should hold after the writes made to it: each key's rev and value.
#[derive(Default)]
struct Model {
    docs: BTreeMap<String, (u64, Value)>,
    last_seq: u64,
}

impl Model {
    /// One write (a put of `value`, or a delete) that took the next seq.
    fn apply(&mut self, key: &str, value: Option<Value>) {
        self.last_seq += 1;
        match value {
            Some(value) => {
                self.docs.insert(key.to_string(), (self.last_seq, value));
            }
            None => {
                self.docs.remove(key);
            }
        }
    }

    /// The current rev of `key`.
    fn rev(&self, key: &str) -> Result<u64> {
        Ok(self.docs.get(key).context("the model has no such key")?.0)
    }

    /// Checks `docs` (as `scan` printed them) against the model.
    fn check(&self, db: &str, docs: &[Value]) -> Result<()> {
        let expected: Vec<Value> = self
            .docs
            .iter()
            .map(|(key, (rev, value))| json!({"key": key, "rev": rev, "value": value}))
            .collect();
        ensure!(
            docs == expected.as_slice(),
            "the format-1 service holds other documents in {db} than were written"
        );
        Ok(())
    }
}

/// splitmix64: the seeded values of the `notes` documents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (at most 2^32).
    fn below(&mut self, n: u32) -> u32 {
        u32::try_from(self.next() % u64::from(n)).expect("below n, a u32")
    }

    /// One of `items`.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let n = u32::try_from(items.len()).expect("a short list");
        items[usize::try_from(self.below(n)).expect("a u32 fits usize")]
    }
}

/// Words of the generated strings, some beyond ASCII.
const WORDS: [&str; 12] = [
    "cairn", "stone", "ridge", "moss", "granite", "summit", "trail", "clé", "été", "日本", "🪨", "",
];

/// `count` words joined by spaces.
fn words(rng: &mut Rng, count: u32) -> String {
    (0..count)
        .map(|_| rng.pick(&WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A seeded JSON value of any type the CLI takes (JSON has no binary): strings, u64 up
/// to the largest, negative i64, f64, booleans, null (but at the top), arrays and maps,
/// nested up to three deep.
fn value(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth >= 3 { 7 } else { 10 };
    match rng.below(kinds) {
        0 => {
            let count = rng.below(4) + 1;
            json!(words(rng, count))
        }
        1 => json!(rng.next()),
        2 => json!(-1 - i64::try_from(rng.next() >> 1).expect("63 bits fit i64")),
        3 => {
            let sixteenths = u32::try_from(rng.next() >> 40).expect("24 bits fit u32");
            json!(f64::from(sixteenths) / 16.0 - 100_000.0)
        }
        4 => json!(rng.next() % 2 == 0),
        // The format-1 service takes a null value in a batch for none ("the put has no
        // value"): a null at the top goes through `put` (see `fill`).
        5 if depth == 0 => json!("not null"),
        5 => Value::Null,
        6 => json!(rng.below(1000)),
        7 => {
            let len = rng.below(5);
            Value::Array((0..len).map(|_| value(rng, depth + 1)).collect())
        }
        8 => {
            let len = rng.below(5);
            Value::Object(
                (0..len)
                    .map(|i| (format!("{}{i}", rng.pick(&WORDS)), value(rng, depth + 1)))
                    .collect(),
            )
        }
        _ => {
            let title_words = rng.below(3) + 1;
            let title = words(rng, title_words);
            let tag_count = rng.below(4);
            let tags: Vec<String> = (0..tag_count).map(|_| words(rng, 1)).collect();
            json!({
                "title": title,
                "tags": tags,
                "rating": f64::from(rng.below(50)) / 10.0,
                "meta": {"views": rng.below(100_000), "pinned": rng.next() % 2 == 0,
                         "extra": value(rng, depth + 1)},
            })
        }
    }
}

/// A user of the fixture.
struct User {
    name: &'static str,
    /// `None`: a user without a password (who could only use a client certificate).
    password: Option<&'static str>,
    admin: bool,
    /// Database and access.
    grants: &'static [(&'static str, &'static str)],
}

/// The users of the fixture (and `root`, which the service made).
const USERS: [User; 4] = [
    User {
        name: "alice",
        password: Some("alice-format1-pw"),
        admin: false,
        grants: &[("notes", "read"), ("people", "write")],
    },
    User {
        name: "bob",
        password: Some("bob-format1-pw"),
        admin: false,
        grants: &[("trimmed", "write"), ("archive", "read")],
    },
    User {
        name: "carol",
        password: Some("carol-format1-pw"),
        admin: true,
        grants: &[],
    },
    User {
        name: "dave",
        password: None,
        admin: false,
        grants: &[("notes", "write")],
    },
];

/// The cities of the `people` documents.
const CITIES: [&str; 5] = ["Oslo", "Lyon", "Kyōto", "Quito", "Perth"];

/// A person of the `people` database.
fn person(i: u32) -> Value {
    let city = CITIES[usize::try_from(i).expect("a u32 fits usize") % CITIES.len()];
    json!({
        "name": format!("Person {i}"),
        "email": format!("person-{i}@example.com"),
        "age": 20 + i % 50,
        "address": {"city": city, "zip": format!("{:05}", i * 37)},
        "tags": if i % 3 == 0 { json!(["climber"]) } else { json!([]) },
    })
}

/// A put op of a batch.
fn put(key: &str, value: Value) -> Value {
    json!({"op": "put", "key": key, "value": value})
}

/// A delete op of a batch.
fn del(key: &str) -> Value {
    json!({"op": "del", "key": key})
}

/// Fills the running format-1 service and reads everything back.
fn fill(binaries: &Binaries, service: &ServiceProcess, seed: u64) -> Result<Fixture> {
    let root = OldCli {
        program: &binaries.cli,
        endpoint: Endpoint::unix(service),
    };
    let mut rng = Rng(seed);
    let mut models: BTreeMap<&str, Model> = BTreeMap::new();
    let mut databases = BTreeMap::new();

    // notes: 240 documents with seeded values, keys of every shape, a value of 300 KB
    // (LMDB overflow pages); then overwrites, deletes, conditional writes, a key written
    // again after its delete and a null value.
    root.run(&["db", "create", "notes"], "")?;
    let notes = models.entry("notes").or_default();
    let note_key = |i: u32| format!("note-{i:04}");
    for chunk in 0..3 {
        let ops: Vec<Value> = (chunk * 80..chunk * 80 + 80)
            .map(|i| put(&note_key(i), value(&mut rng, 0)))
            .collect();
        root.batch("notes", &ops, notes)?;
    }
    let long_key = "k".repeat(400);
    let special = [
        put("a", json!("the shortest key")),
        put("clé/été 日本 🪨", json!({"unicode": "clé/été 日本 🪨"})),
        put("with space", json!([1, -1, 1.5, "x", null, true, {}, []])),
        put(&long_key, json!({"key_bytes": 400})),
        put("big", json!("cairn ".repeat(50_000))),
    ];
    root.batch("notes", &special, notes)?;
    let overwrites: Vec<Value> = (0..240)
        .step_by(3)
        .map(|i| put(&note_key(i), value(&mut rng, 0)))
        .collect();
    root.batch("notes", &overwrites, notes)?;
    let deletes: Vec<Value> = (0..240).step_by(7).map(|i| del(&note_key(i))).collect();
    root.batch("notes", &deletes, notes)?;
    let rev = notes.rev("note-0001")?.to_string();
    let rewritten = json!({"rewritten": true, "at_rev": rev});
    root.run(
        &[
            "put",
            "notes",
            "note-0001",
            &rewritten.to_string(),
            "--rev",
            &rev,
        ],
        "",
    )?;
    notes.apply("note-0001", Some(rewritten));
    let again = json!("written again after its delete");
    root.run(
        &[
            "put",
            "notes",
            "note-0007",
            &again.to_string(),
            "--rev",
            "0",
        ],
        "",
    )?;
    notes.apply("note-0007", Some(again));
    let rev = notes.rev("note-0010")?.to_string();
    root.run(&["del", "notes", "note-0010", "--rev", &rev], "")?;
    notes.apply("note-0010", None);
    root.run(&["put", "notes", "null", "null"], "")?;
    notes.apply("null", Some(Value::Null));

    // people: created offline with a unique index and another, online, 60 documents;
    // emails changed and documents deleted; then a third index on a database with
    // documents, stale until a resync job rebuilt it.
    root.run(&["db", "create", "people", "--offline"], "")?;
    let indexes = json!([
        {"name": "by_email", "field": "/email", "unique": true},
        {"name": "by_age", "field": "/age"},
    ]);
    let config = json!({"indexes": indexes});
    root.run(
        &["db", "config", "people", "--set", "-"],
        &config.to_string(),
    )?;
    root.run(&["db", "online", "people"], "")?;
    let people = models.entry("people").or_default();
    let ops: Vec<Value> = (0..60)
        .map(|i| put(&format!("person-{i:02}"), person(i)))
        .collect();
    root.batch("people", &ops, people)?;
    let mut changed = Vec::new();
    for i in [3, 14, 15] {
        let mut moved = person(i);
        moved["email"] = json!(format!("person-{i}@example.org"));
        changed.push(put(&format!("person-{i:02}"), moved));
    }
    changed.extend([del("person-09"), del("person-26")]);
    root.batch("people", &changed, people)?;
    root.run(&["db", "offline", "people", "--reason", "a new index"], "")?;
    let mut with_city = indexes.as_array().context("the indexes")?.clone();
    with_city.push(json!({"name": "by_city", "field": "/address/city"}));
    let config = json!({"indexes": with_city});
    root.run(
        &["db", "config", "people", "--set", "-"],
        &config.to_string(),
    )?;
    let resync = root.json(&["db", "resync", "people"], "")?;
    wait_for_job(&root, &resync)?;
    root.run(&["db", "online", "people"], "")?;
    let found = root.json(&["find", "people", "by_city", "\"Kyōto\""], "")?;
    ensure!(
        found["docs"]
            .as_array()
            .is_some_and(|docs| docs.len() == 12),
        "the rebuilt index by_city finds the 12 people of Kyōto: {found}"
    );

    // trimmed: keeps the 10 newest changes of 40.
    root.run(&["db", "create", "trimmed", "--max-changes", "10"], "")?;
    let trimmed = models.entry("trimmed").or_default();
    for round in 0..4 {
        let ops: Vec<Value> = (0..10)
            .map(|i| put(&format!("t-{i:02}"), json!({"round": round, "i": i})))
            .collect();
        root.batch("trimmed", &ops, trimmed)?;
    }

    // archive: 20 documents, read back, then offline.
    root.run(&["db", "create", "archive"], "")?;
    let archive = models.entry("archive").or_default();
    let ops: Vec<Value> = (0..20)
        .map(|i| put(&format!("a-{i:02}"), json!({"year": 2000 + i})))
        .collect();
    root.batch("archive", &ops, archive)?;
    let mut epochs = Vec::new();
    let (archive_content, epoch) = read_database(&root, "archive", archive)?;
    epochs.push(epoch);
    databases.insert("archive".to_string(), archive_content);
    root.run(
        &[
            "db",
            "offline",
            "archive",
            "--reason",
            "kept offline by the fixture",
        ],
        "",
    )?;

    // Users, grants and a session.
    let mut passwords = BTreeMap::new();
    for user in &USERS {
        let mut args = vec!["user", "add", user.name];
        if user.admin {
            args.push("--admin");
        }
        if user.password.is_some() {
            args.push("--password-stdin");
        }
        let stdin = user.password.map(|p| format!("{p}\n")).unwrap_or_default();
        root.run(&args, &stdin)?;
        for (db, access) in user.grants {
            root.run(&["user", "grant", user.name, db, access], "")?;
        }
        if let Some(password) = user.password {
            passwords.insert(user.name.to_string(), password.to_string());
        }
    }
    let alice = OldCli {
        program: &binaries.cli,
        endpoint: Endpoint::tls(service, "alice"),
    };
    let password = passwords.get("alice").context("alice's password")?;
    let login = alice.json(&["login", "--password-stdin"], &format!("{password}\n"))?;
    let token = login["token"].as_str().context("login's token")?;
    let tokens = BTreeMap::from([("alice".to_string(), token.to_string())]);

    // A backup job, and the status with messages.
    let backup = root.json(&["backup", "start", "--name", "format1"], "")?;
    wait_for_job(&root, &backup)?;
    root.run(
        &[
            "status",
            "set",
            "READ_WRITE",
            "--message",
            "format-1 fixture",
            "--pending",
            "migration to format 2",
        ],
        "",
    )?;

    // Everything read back.
    for name in ["notes", "people", "trimmed"] {
        let model = models.get(name).context("a model per database")?;
        let (content, epoch) = read_database(&root, name, model)?;
        epochs.push(epoch);
        databases.insert(name.to_string(), content);
    }
    let archive_config = root.json(&["db", "config", "archive"], "")?;
    databases
        .get_mut("archive")
        .context("archive was read")?
        .config = archive_config;
    epochs.dedup();
    ensure!(
        epochs.len() == 1,
        "the databases' epochs differ: {epochs:?}"
    );
    Ok(Fixture {
        dir: service.dir.clone(),
        passwords,
        tokens,
        databases,
        db_list: root.json(&["db", "list"], "")?,
        users: root.json(&["user", "list"], "")?,
        jobs: root.json(&["jobs", "list"], "")?,
        status: root.json(&["status"], "")?,
        epoch: epochs[0],
        backup: service.dir.join("backups/format1"),
    })
}

/// Waits for the job that `started` (a job as `-o json` prints it) describes; an error
/// unless it completed.
fn wait_for_job(cli: &OldCli, started: &Value) -> Result<()> {
    let id = started["id"].as_u64().context("the job's id")?.to_string();
    let ended = cli.json(&["jobs", "wait", &id], "")?;
    ensure!(ended["status"] == "COMPLETED", "job {id} ended so: {ended}");
    Ok(())
}

/// Reads one online database back and checks it against the writes made to it; with
/// the epoch of its changes.
fn read_database(cli: &OldCli, name: &str, model: &Model) -> Result<(DatabaseContent, u64)> {
    let info = cli.json(&["db", "info", name], "")?;
    let last_seq = info["last_seq"].as_u64().context("last_seq")?;
    let oldest_seq = info["oldest_seq"].as_u64().context("oldest_seq")?;
    ensure!(
        last_seq == model.last_seq,
        "{name} is at seq {last_seq}, after {} writes",
        model.last_seq
    );
    let docs = cli.scan(name)?;
    model.check(name, &docs)?;
    let trimmed_through = oldest_seq.saturating_sub(1);
    let (changes, epoch) = cli.changes(name, trimmed_through, last_seq)?;
    let content = DatabaseContent {
        info,
        config: cli.json(&["db", "config", name], "")?,
        docs,
        changes,
        trimmed_through,
    };
    Ok((content, epoch))
}

/// What [`stored`] found in a working directory's LMDB environment.
#[derive(Debug, Clone)]
pub struct Stored {
    /// `meta`'s `format_version`.
    pub format_version: u32,
    /// The entries of each table (`indexes`: one per document and index).
    pub entries: BTreeMap<&'static str, u64>,
}

/// The tables of format 1 but `meta`, and whether they are DUP_SORT.
const TABLES: [(&str, bool); 8] = [
    ("catalog", false),
    ("docs", false),
    ("changes", false),
    ("users", false),
    ("sessions", false),
    ("jobs", false),
    ("configs", false),
    ("indexes", true),
];

/// Reads the format version and the tables' sizes of the working directory `dir`
/// (`DIR/store`) with LMDB directly, read-only and without the lock file
/// (`MDB_RDONLY | MDB_NOLOCK`: nothing in the directory is written, not even
/// `lock.mdb`), so no service may be running on it.
pub fn stored(dir: &Path) -> Result<Stored> {
    let path = dir.join("store");
    let mut options = EnvOpenOptions::new();
    options.max_dbs(16);
    // SAFETY: read-only flags, and NO_LOCK on an environment no process uses (the
    // caller's promise).
    unsafe {
        options.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK);
    }
    // SAFETY: this process opens the environment once (heed refuses a second open of a
    // path) and nothing rewrites its files while it is open.
    let env = unsafe { options.open(&path) }
        .with_context(|| format!("opening {} read-only", path.display()))?;
    let rtxn = env.read_txn()?;
    let read = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
        let meta: Database<Str, Bytes> = opener
            .open_database(rtxn, Some("meta"))?
            .context("no meta table")?;
        let version = meta
            .get(rtxn, "format_version")?
            .context("no format_version in meta")?;
        let format_version = u32::from_be_bytes(
            version
                .try_into()
                .context("format_version is not 4 bytes")?,
        );
        let mut entries = BTreeMap::new();
        for (table, dup_sort) in TABLES {
            let mut table_options = opener.database_options().types::<Bytes, Bytes>();
            table_options.name(table);
            if dup_sort {
                table_options.flags(DatabaseFlags::DUP_SORT);
            }
            let count = match table_options.open(rtxn)? {
                Some(db) => db.len(rtxn)?,
                None => 0,
            };
            entries.insert(table, count);
        }
        Ok(CommitOrAbort::<(), _>::Abort(Stored {
            format_version,
            entries,
        }))
    })?;
    match read {
        CommitOrAbort::Abort(stored) => Ok(stored),
        CommitOrAbort::Commit(()) => bail!("reading {} committed nothing", path.display()),
    }
}
