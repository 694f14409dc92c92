//! `cairn-crash-writer`: the child process of the crash test. It opens (or creates) a
//! store, then writes into database `crash` from several threads through the store's
//! writer, and prints one acknowledgement line for every write that returned `Ok`, that
//! is, that was committed with fsync. It never stops by itself before `--max-secs`: the
//! crash test kills it with SIGKILL at a random moment and checks what survived. The
//! keys, values and line format are in `cairn_tests::crash`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use cairn_store::{DirLock, Op, Store, StoreError, StoreOptions};
use cairn_tests::crash::{
    batch_key, hot_key, hot_write_name, msgpack_str, msgpack_u64, role, unique_key, Ack, Role,
    BATCH_OPS, DATABASE, HOT_KEYS,
};

const HELP: &str = "\
cairn-crash-writer: write into a Cairn store from several threads until killed

Usage: cairn-crash-writer DIR --run R [--threads N] [--max-secs S]

Opens the store of the working directory DIR (creating it when there is none), creates
database \"crash\" when missing, and starts N writer threads. Threads 0 and 1 overwrite
and delete the shared keys hot-0..hot-7, mostly under rev conditions, thread 2 writes
batches of three new keys, the others write one new key at a time (new keys alternate
between create-only and unconditional puts); new keys carry the run number R, so R must
differ between runs on the same directory. After every write that returned Ok it
prints one line on stdout and flushes it:

  ack put KEY REV VALUE_HEX
  ack del KEY REV

It runs until it is killed; after S seconds it gives up and exits with status 2, so a
forgotten child does not run forever. Any unexpected error exits with status 1.

Options:
  --run R        run number, part of every new key (required)
  --threads N    writer threads, 1 to 64 (default 4)
  --max-secs S   exit after S seconds (default 120)
  -h, --help     print this help
";

struct Args {
    dir: PathBuf,
    run: u32,
    threads: u32,
    max_secs: u64,
}

fn parse_args() -> Result<Option<Args>> {
    let mut dir = None;
    let mut run = None;
    let mut threads = 4;
    let mut max_secs = 120;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<String> {
            args.next()
                .with_context(|| format!("{name} needs a value (see --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--run" => run = Some(value("--run")?.parse().context("--run")?),
            "--threads" => threads = value("--threads")?.parse().context("--threads")?,
            "--max-secs" => max_secs = value("--max-secs")?.parse().context("--max-secs")?,
            flag if flag.starts_with('-') => bail!("unknown option {flag} (see --help)"),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => bail!("unexpected argument {arg:?} (see --help)"),
        }
    }
    let dir = dir.context("missing DIR (see --help)")?;
    let run = run.context("missing --run R (see --help)")?;
    if !(1..=64).contains(&threads) {
        bail!("--threads must be 1 to 64, not {threads}");
    }
    Ok(Some(Args {
        dir,
        run,
        threads,
        max_secs,
    }))
}

/// Prints one acknowledgement as a single complete line and flushes it at once.
fn print_ack(ack: &Ack) -> Result<()> {
    let line = ack.to_line();
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .context("writing an ack to stdout")
}

/// A small xorshift generator: the writer needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn new(run: u32, thread: u32) -> Rng {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the low 64 bits of the time are the seed"
        )]
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((nanos ^ (u64::from(run) << 32) ^ u64::from(thread)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Overwrites and deletes the hot keys. Deletes and most puts are conditioned on the rev
/// just read, and a condition that another hot thread broke in the meantime is not
/// acknowledged; every fourth put or so is unconditional.
fn hot_thread(store: &Store, run: u32, thread: u32) -> Result<()> {
    let mut rng = Rng::new(run, thread);
    for n in 0.. {
        let key = hot_key(rng.next() % HOT_KEYS);
        let current = store.get(DATABASE, &key)?;
        let dice = rng.next() % 4;
        let outcome = match current {
            Some(doc) if dice == 0 => {
                store
                    .delete(DATABASE, &key, Some(doc.rev))
                    .map(|rev| Ack::Delete {
                        key: key.clone(),
                        rev,
                    })
            }
            current => {
                let value = msgpack_str(&hot_write_name(run, thread, n));
                let condition = (dice != 1).then(|| current.map_or(0, |doc| doc.rev));
                store
                    .put(DATABASE, &key, &value, condition)
                    .map(|rev| Ack::Put {
                        key: key.clone(),
                        rev,
                        value,
                    })
            }
        };
        match outcome {
            Ok(ack) => print_ack(&ack)?,
            Err(StoreError::RevConflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("writing {key}")),
        }
    }
    Ok(())
}

/// Writes batches of `BATCH_OPS` new keys, the even ops conditioned on absence (rev 0),
/// the odd ones unconditional.
fn batch_thread(store: &Store, run: u32, thread: u32) -> Result<()> {
    for n in 0.. {
        let ops: Vec<Op> = (0..BATCH_OPS)
            .map(|j| Op::Put {
                key: batch_key(run, thread, n, j),
                value: msgpack_u64(n * BATCH_OPS + j),
                rev: (j % 2 == 0).then_some(0),
            })
            .collect();
        let revs = store
            .batch(DATABASE, ops.clone())
            .with_context(|| format!("writing batch {n}"))?;
        for (op, rev) in ops.into_iter().zip(revs) {
            if let Op::Put { key, value, .. } = op {
                print_ack(&Ack::Put { key, rev, value })?;
            }
        }
    }
    Ok(())
}

/// Writes one new key at a time: even ones conditioned on absence (rev 0), odd ones
/// unconditional.
fn unique_thread(store: &Store, run: u32, thread: u32) -> Result<()> {
    for n in 0.. {
        let key = unique_key(run, thread, n);
        let value = msgpack_u64(n);
        let rev = store
            .put(DATABASE, &key, &value, (n % 2 == 0).then_some(0))
            .with_context(|| format!("writing {key}"))?;
        print_ack(&Ack::Put { key, rev, value })?;
    }
    Ok(())
}

fn run(args: Args) -> Result<ExitCode> {
    // Held (like the service would) until the process ends; SIGKILL releases it too.
    let _lock = DirLock::acquire(&args.dir)?;
    let store = Store::open_or_create(&args.dir, StoreOptions::default())
        .with_context(|| format!("opening the store in {}", args.dir.display()))?;
    match store.create_database(DATABASE) {
        Ok(()) | Err(StoreError::DatabaseExists { .. }) => {}
        Err(e) => return Err(e).context("creating database crash"),
    }
    let (failed, failures) = mpsc::channel::<anyhow::Error>();
    for thread in 0..args.threads {
        let store = store.clone();
        let failed = failed.clone();
        let run = args.run;
        std::thread::Builder::new()
            .name(format!("crash-writer-{thread}"))
            .spawn(move || {
                let outcome = match role(thread) {
                    Role::Hot => hot_thread(&store, run, thread),
                    Role::Batch => batch_thread(&store, run, thread),
                    Role::Unique => unique_thread(&store, run, thread),
                };
                if let Err(e) = outcome {
                    let _ = failed.send(e.context(format!("thread {thread}")));
                }
            })
            .context("spawning a writer thread")?;
    }
    match failures.recv_timeout(Duration::from_secs(args.max_secs)) {
        Ok(error) => Err(error),
        Err(_) => {
            eprintln!(
                "cairn-crash-writer: not killed within {} s, exiting",
                args.max_secs
            );
            // Exit without dropping the store, like a crash, but with a telling status.
            std::process::exit(2)
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cairn-crash-writer: {e:#}");
            return ExitCode::from(64);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn-crash-writer: {e:#}");
            // Do not wait for the other writer threads: stop everything now.
            std::process::exit(1)
        }
    }
}
