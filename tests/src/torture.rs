//! The crash campaign: clients over TLS run random `get`, `put` (unconditional and
//! conditional on a rev), `delete` and `batch` on a few keys of a few databases against
//! a real `cairn-service`, which is `kill -9`ed and restarted at random moments. Every
//! operation's invocation and completion is recorded in real-time order; one whose
//! answer never came (the service died) stays in flight: it may or may not have taken
//! effect. Each stretch between two restarts is checked per database by stateright's
//! `LinearizabilityTester` against a sequential model of a database (its seq, and each
//! key's value and rev), starting from the state read after the previous restart and
//! ending with the state read after the next one, so that what the crash did to the
//! operations in flight must explain what the restarted service holds. A continuous
//! feed per database and stretch must deliver consecutive seqs, and at the end every
//! acknowledged write must be in its database's change log, once, at its rev.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions};
use cairn_proto::methods::{BatchOp, ChangesArgs, FeedItem, ScanArgs};
use cairn_proto::values::{FeedKind, Op as WireOp};
use cairn_proto::ErrorCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rmpv::Value;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use crate::process::ServiceProcess;

/// What a campaign does.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// How many times the service is killed.
    pub kills: usize,
    /// Clients running at once.
    pub clients: usize,
    pub databases: usize,
    /// Keys per database.
    pub keys: usize,
    pub seed: u64,
    /// How long the clients run between two kills, at most (at random below it).
    pub stretch: Duration,
    /// With libfiu, the probability that each `fdatasync` of the service fails with EIO
    /// (its commits then fail: those writes must not be acknowledged, the service turns
    /// READ_ONLY and recovers by itself).
    pub fault_probability: Option<f64>,
}

/// Starts of a service under injected faults before a campaign gives up.
const FAULTY_START_ATTEMPTS: usize = 10;

/// Starts the service of a campaign: under `fiu-run` when it injects faults.
fn start_service(dir: &Path, campaign: &Campaign) -> Result<ServiceProcess> {
    match campaign.fault_probability {
        None => ServiceProcess::start(dir, &[]),
        Some(probability) => {
            let fault = format!(
                "enable_random name=posix/io/sync/fdatasync,probability={probability},failinfo=5"
            );
            // A start whose own commits meet an injected fault stops with the error and
            // changes nothing (tests/tests/faults.rs): start again.
            let mut failed = Vec::new();
            for _ in 0..FAULTY_START_ATTEMPTS {
                match ServiceProcess::start_wrapped(
                    &["fiu-run", "-x", "-f", "", "-c", &fault],
                    dir,
                    &[],
                ) {
                    Ok(service) => return Ok(service),
                    Err(error) => failed.push(format!("{error:#}")),
                }
            }
            bail!(
                "the service did not start in {FAULTY_START_ATTEMPTS} attempts: {}",
                failed.join("; ")
            )
        }
    }
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kills: usize,
    pub operations: u64,
    pub acknowledged_writes: u64,
    /// Operations the service refused without doing them (with faults injected: the
    /// commits that failed and the writes refused while READ_ONLY).
    pub refused: u64,
    /// Acknowledged writes missing from the change logs (must be 0).
    pub lost: u64,
    /// Histories no linearization explains, each with the history printed.
    pub violations: Vec<String>,
    /// Feeds that skipped or repeated a seq, and change logs that are not 1..=last.
    pub feed_errors: Vec<String>,
}

/// A document as the model holds it: its value and rev.
type Doc = (u64, u64);

/// The sequential model of one database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    seq: u64,
    docs: BTreeMap<String, Doc>,
}

/// One write of a batch: a value to put (or a delete), maybe conditional on a rev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    key: String,
    value: Option<u64>,
    rev: Option<u64>,
}

/// An operation of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get(String),
    /// `put`, `delete` (one write) or `batch` (several).
    Writes(Vec<Write>),
    /// The state read after a restart (the last operation of a stretch).
    ReadAll,
}

/// What an operation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    Got(Option<Doc>),
    Revs(Vec<u64>),
    Conflict,
    NotFound,
    /// Refused before doing anything (another error code).
    Refused,
    All(Model),
}

impl SequentialSpec for Model {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Get(key) => Ret::Got(self.docs.get(key).copied()),
            Op::ReadAll => Ret::All(self.clone()),
            Op::Writes(writes) => {
                let mut docs = self.docs.clone();
                let mut revs = Vec::with_capacity(writes.len());
                for (i, write) in writes.iter().enumerate() {
                    let seq = self.seq + i as u64 + 1;
                    let current = docs.get(&write.key).map_or(0, |d| d.1);
                    if write.rev.is_some_and(|rev| rev != current) {
                        return Ret::Conflict;
                    }
                    match write.value {
                        Some(value) => {
                            docs.insert(write.key.clone(), (value, seq));
                        }
                        None if current == 0 => return Ret::NotFound,
                        None => {
                            docs.remove(&write.key);
                        }
                    }
                    revs.push(seq);
                }
                self.seq += writes.len() as u64;
                self.docs = docs;
                Ret::Revs(revs)
            }
        }
    }

    fn is_valid_step(&mut self, op: &Op, ret: &Ret) -> bool {
        // A refusal did nothing, whatever the state.
        if *ret == Ret::Refused {
            return !matches!(op, Op::ReadAll);
        }
        self.invoke(op) == *ret
    }
}

/// A thread of the history: one client of one stretch (its one connection).
type Thread = (usize, usize);

/// One event of a stretch's history, in real-time order.
#[derive(Debug, Clone)]
enum Event {
    Invoke(Thread, usize, Op),
    Return(Thread, usize, Ret),
}

/// The history of one stretch, shared by its clients.
#[derive(Default)]
struct History {
    events: Mutex<Vec<Event>>,
}

impl History {
    fn push(&self, event: Event) {
        self.events.lock().expect("history lock").push(event);
    }
}

fn db_name(db: usize) -> String {
    format!("t{db}")
}

fn key_name(key: usize) -> String {
    format!("k{key}")
}

/// Runs a campaign in `dir` (a new working directory).
pub fn run(dir: &Path, campaign: &Campaign) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(dir, campaign))
}

async fn local(dir: &Path) -> Result<Client> {
    let url: ClientUrl = format!("unix://{}", dir.join("sock").display()).parse()?;
    Ok(Client::connect(&url, &ConnectOptions::for_working_dir(dir)).await?)
}

async fn remote(service_address: &str, dir: &Path) -> Result<Client, ClientError> {
    let url: ClientUrl = format!("ssl://root@{service_address}/?hostname=localhost").parse()?;
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        ..ConnectOptions::for_working_dir(dir)
    };
    Client::connect(&url, &options).await
}

/// Creates `db`; under injected faults a commit may fail (`io_error`): again, until
/// the database is there.
async fn create_database(admin: &Client, db: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..FAULTY_START_ATTEMPTS {
        match admin.db_create(db, Default::default()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(ErrorCode::DatabaseExists) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "cannot create {db}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

async fn run_async(dir: &Path, campaign: &Campaign) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(campaign.seed);
    if campaign.fault_probability.is_some() {
        // Free-space checks (and so the probe writes that end an io_error) every second.
        crate::process::write_settings(dir, "[status]\nfree_space_check_secs = 1\n");
    }
    let mut service = start_service(dir, campaign)?;
    let admin = local(dir).await?;
    for db in 0..campaign.databases {
        create_database(&admin, &db_name(db)).await?;
    }
    drop(admin);
    let mut states: Vec<Model> = vec![Model::default(); campaign.databases];
    let mut report = Report::default();
    // Acknowledged writes: (db, seq) -> (key, value or delete).
    let mut acknowledged: BTreeMap<(usize, u64), (String, Option<u64>)> = BTreeMap::new();
    for stretch in 0..=campaign.kills {
        let histories: Arc<Vec<History>> = Arc::new(
            (0..campaign.databases)
                .map(|_| History::default())
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for client in 0..campaign.clients {
            let histories = histories.clone();
            let stop = stop.clone();
            let address = service.tls_address.clone();
            let dir = dir.to_path_buf();
            let seed = rng.random::<u64>();
            let (databases, keys) = (campaign.databases, campaign.keys);
            tasks.push(tokio::spawn(async move {
                run_client(ClientRun {
                    thread: (stretch, client),
                    address,
                    dir,
                    seed,
                    databases,
                    keys,
                    histories,
                    stop,
                })
                .await
            }));
        }
        let mut feeds = Vec::new();
        for (db, state) in states.iter().enumerate() {
            let address = service.tls_address.clone();
            let dir = dir.to_path_buf();
            let since = state.seq;
            let stop = stop.clone();
            feeds.push(tokio::spawn(async move {
                follow(&address, &dir, db, since, stop).await
            }));
        }
        let millis = u64::try_from(campaign.stretch.as_millis()).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_millis(rng.random_range(millis / 4..=millis))).await;
        if stretch < campaign.kills {
            // Whatever was in flight stays so; the restarted service (on a new port)
            // is only reached by the next stretch's clients.
            service.kill()?;
            report.kills += 1;
            service = start_service(dir, campaign)?;
        }
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            report.operations += task.await.context("a client task")?;
        }
        for (db, feed) in feeds.into_iter().enumerate() {
            if let Err(error) = feed.await.context("a feed task")? {
                report
                    .feed_errors
                    .push(format!("stretch {stretch}, {}: {error}", db_name(db)));
            }
        }
        let admin = local(dir).await?;
        for (db, state) in states.iter_mut().enumerate() {
            let after = read_state(&admin, db).await?;
            let events = histories[db].events.lock().expect("history lock").clone();
            for event in &events {
                match event {
                    Event::Return(_, _, Ret::Revs(revs)) => {
                        report.acknowledged_writes += revs.len() as u64;
                    }
                    Event::Return(_, _, Ret::Refused) => report.refused += 1,
                    _ => {}
                }
            }
            record_acknowledged(&events, db, &mut acknowledged);
            if let Some(violation) = check(state, &events, &after) {
                report.violations.push(format!(
                    "stretch {stretch}, database {}: {violation}",
                    db_name(db)
                ));
            }
            *state = after;
        }
        if stretch > 0 && stretch % 50 == 0 {
            eprintln!(
                "torture: {} kills, {} operations, {} acknowledged writes, {} violations",
                report.kills,
                report.operations,
                report.acknowledged_writes,
                report.violations.len()
            );
        }
    }
    // Every acknowledged write is in its change log, once, at its rev; the logs are
    // 1..=last_seq without a gap.
    let admin = local(dir).await?;
    for db in 0..campaign.databases {
        let log = read_log(&admin, db).await?;
        let seqs: Vec<u64> = log.keys().copied().collect();
        if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
            report
                .feed_errors
                .push(format!("{}: the change log is not 1..=last", db_name(db)));
        }
        for ((_, seq), write) in acknowledged.range((db, 0)..=(db, u64::MAX)) {
            if log.get(seq) != Some(write) {
                report.lost += 1;
            }
        }
    }
    drop(admin);
    service.stop()?;
    Ok(report)
}

/// The writes a stretch acknowledged, by (database, seq).
fn record_acknowledged(
    events: &[Event],
    db: usize,
    acknowledged: &mut BTreeMap<(usize, u64), (String, Option<u64>)>,
) {
    let mut invoked: BTreeMap<(Thread, usize), &Op> = BTreeMap::new();
    for event in events {
        match event {
            Event::Invoke(thread, n, op) => {
                invoked.insert((*thread, *n), op);
            }
            Event::Return(thread, n, Ret::Revs(revs)) => {
                if let Some(Op::Writes(writes)) = invoked.get(&(*thread, *n)) {
                    for (write, rev) in writes.iter().zip(revs) {
                        acknowledged.insert((db, *rev), (write.key.clone(), write.value));
                    }
                }
            }
            Event::Return(..) => {}
        }
    }
}

/// Checks one stretch of one database; the violation, with the history, if any.
fn check(before: &Model, events: &[Event], after: &Model) -> Option<String> {
    let before = before.clone();
    let events = events.to_vec();
    let after = after.clone();
    // The search recurses once per operation: a thread with a deep stack.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let mut tester = LinearizabilityTester::new(before.clone());
            for event in &events {
                let recorded = match event {
                    Event::Invoke(thread, _, op) => tester.on_invoke(*thread, op.clone()).map(drop),
                    Event::Return(thread, _, ret) => {
                        tester.on_return(*thread, ret.clone()).map(drop)
                    }
                };
                if let Err(error) = recorded {
                    return Some(format!("an invalid history ({error})"));
                }
            }
            let last: Thread = (usize::MAX, usize::MAX);
            let recorded = tester
                .on_invoke(last, Op::ReadAll)
                .and_then(|t| t.on_return(last, Ret::All(after.clone())));
            if recorded.is_err() || tester.serialized_history().is_none() {
                let mut text = format!("no linearization from {before:?} to {after:?}:\n");
                for event in &events {
                    text.push_str(&format!("  {event:?}\n"));
                }
                return Some(text);
            }
            None
        })
        .expect("spawning the checker")
        .join()
        .expect("the checker")
}

/// A database's state as the model holds it.
async fn read_state(admin: &Client, db: usize) -> Result<Model> {
    let name = db_name(db);
    let seq = admin.db_info(&name).await?.last_seq;
    let page = admin
        .scan(&ScanArgs {
            db: name,
            limit: Some(10_000),
            ..ScanArgs::default()
        })
        .await?;
    let docs = page
        .docs
        .into_iter()
        .map(|doc| Ok((doc.key, (doc.value.as_u64().context("a value")?, doc.rev))))
        .collect::<Result<_>>()?;
    Ok(Model { seq, docs })
}

/// A database's whole change log: seq -> (key, value or delete).
async fn read_log(admin: &Client, db: usize) -> Result<BTreeMap<u64, (String, Option<u64>)>> {
    let mut log = BTreeMap::new();
    let mut since = 0;
    loop {
        let page = admin
            .changes(&ChangesArgs {
                db: db_name(db),
                since,
                limit: Some(10_000),
                ..ChangesArgs::default()
            })
            .await?;
        if page.changes.is_empty() {
            return Ok(log);
        }
        for change in page.changes {
            let value = match change.op {
                WireOp::Put => Some(change.value.and_then(|v| v.as_u64()).context("a value")?),
                WireOp::Del => None,
            };
            log.insert(change.seq, (change.key, value));
        }
        since = page.last_seq;
    }
}

/// A continuous feed of one database from `since` until the service dies or the
/// stretch ends: its seqs must follow each other.
async fn follow(
    address: &str,
    dir: &Path,
    db: usize,
    since: u64,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let Ok(client) = remote(address, dir).await else {
        return Ok(()); // the service died first
    };
    let args = ChangesArgs {
        db: db_name(db),
        since,
        feed: Some(FeedKind::Continuous),
        heartbeat_ms: Some(100),
        ..ChangesArgs::default()
    };
    let Ok(mut feed) = client.changes_feed(&args).await else {
        return Ok(());
    };
    let mut last = since;
    while let Some(item) = feed.next().await {
        match item {
            Ok(FeedItem::Change(change)) => {
                if change.seq != last + 1 {
                    return Err(format!("after seq {last} the feed sent {}", change.seq));
                }
                last = change.seq;
            }
            Ok(FeedItem::Heartbeat { .. }) => {
                if stop.load(Ordering::SeqCst) {
                    feed.cancel();
                }
            }
            Err(_) => return Ok(()), // the service died
        }
    }
    Ok(())
}

/// One client of a stretch.
struct ClientRun {
    thread: Thread,
    address: String,
    dir: std::path::PathBuf,
    seed: u64,
    databases: usize,
    keys: usize,
    histories: Arc<Vec<History>>,
    stop: Arc<AtomicBool>,
}

/// Runs operations until the service dies or the stretch ends; returns how many.
async fn run_client(run: ClientRun) -> u64 {
    let mut rng = StdRng::seed_from_u64(run.seed);
    let Ok(client) = remote(&run.address, &run.dir).await else {
        return 0;
    };
    let (stretch, number) = run.thread;
    let thread = run.thread;
    // Revs this client last saw, by (db, key): conditional writes use them.
    let mut seen: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut count = 0u64;
    let mut next_value = ((stretch as u64) << 40) | ((number as u64) << 32);
    while !run.stop.load(Ordering::SeqCst) {
        let db = rng.random_range(0..run.databases);
        let key = rng.random_range(0..run.keys);
        let op = match rng.random_range(0..10) {
            0..=3 => Op::Get(key_name(key)),
            4..=6 => {
                next_value += 1;
                let rev = (rng.random_range(0..3) == 0)
                    .then(|| seen.get(&(db, key)).copied().unwrap_or(0));
                Op::Writes(vec![Write {
                    key: key_name(key),
                    value: Some(next_value),
                    rev,
                }])
            }
            7 => Op::Writes(vec![Write {
                key: key_name(key),
                value: None,
                rev: None,
            }]),
            _ => {
                let other = (key + 1) % run.keys;
                next_value += 2;
                Op::Writes(vec![
                    Write {
                        key: key_name(key),
                        value: Some(next_value - 1),
                        rev: None,
                    },
                    Write {
                        key: key_name(other),
                        value: if rng.random_range(0..2) == 0 {
                            Some(next_value)
                        } else {
                            None
                        },
                        rev: None,
                    },
                ])
            }
        };
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let history = &run.histories[db];
        history.push(Event::Invoke(thread, n, op.clone()));
        let Some(ret) = call(&client, db, &op).await else {
            // No answer: the operation stays in flight; this connection is done.
            return count;
        };
        if let (Op::Get(_), Ret::Got(Some((_, rev)))) = (&op, &ret) {
            seen.insert((db, key), *rev);
        }
        history.push(Event::Return(thread, n, ret));
        count += 1;
    }
    count
}

/// Sends one operation; `None` when its outcome is unknown (no answer came).
async fn call(client: &Client, db: usize, op: &Op) -> Option<Ret> {
    let name = db_name(db);
    let answered = |error: ClientError| match error {
        ClientError::Service(error) => Some(match error.code {
            ErrorCode::RevConflict => Ret::Conflict,
            ErrorCode::NotFound => Ret::NotFound,
            _ => Ret::Refused,
        }),
        _ => None,
    };
    match op {
        Op::Get(key) => match client.get(&name, key).await {
            Ok(doc) => Some(Ret::Got(Some((doc.value.as_u64()?, doc.rev)))),
            Err(ClientError::Service(error)) if error.code == ErrorCode::NotFound => {
                Some(Ret::Got(None))
            }
            Err(error) => answered(error),
        },
        // One write: `put` or `delete`; several: `batch`.
        Op::Writes(writes) if writes.len() == 1 => {
            let write = &writes[0];
            let result = match write.value {
                Some(value) => {
                    client
                        .put(&name, &write.key, Value::from(value), write.rev)
                        .await
                }
                None => client.delete(&name, &write.key, write.rev).await,
            };
            match result {
                Ok(result) => Some(Ret::Revs(vec![result.rev])),
                Err(error) => answered(error),
            }
        }
        Op::Writes(writes) => {
            let ops = writes
                .iter()
                .map(|w| BatchOp {
                    op: if w.value.is_some() {
                        WireOp::Put
                    } else {
                        WireOp::Del
                    },
                    key: Value::from(w.key.as_str()),
                    value: w.value.map(Value::from),
                    rev: w.rev,
                })
                .collect();
            match client.batch(&name, ops).await {
                Ok(result) => Some(Ret::Revs(result.revs)),
                Err(error) => answered(error),
            }
        }
        Op::ReadAll => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: u64) -> Op {
        Op::Writes(vec![Write {
            key: key.to_string(),
            value: Some(value),
            rev: None,
        }])
    }

    fn model(seq: u64, docs: &[(&str, Doc)]) -> Model {
        Model {
            seq,
            docs: docs.iter().map(|(k, d)| (k.to_string(), *d)).collect(),
        }
    }

    #[test]
    fn the_checker_accepts_what_a_database_could_do_and_refuses_the_rest() {
        let a = (0, 0);
        let b = (0, 1);
        // Two concurrent puts; a read after both sees the second to commit.
        let good = vec![
            Event::Invoke(a, 0, write("k", 10)),
            Event::Invoke(b, 0, write("k", 20)),
            Event::Return(b, 0, Ret::Revs(vec![1])),
            Event::Return(a, 0, Ret::Revs(vec![2])),
            Event::Invoke(b, 1, Op::Get("k".into())),
            Event::Return(b, 1, Ret::Got(Some((10, 2)))),
        ];
        let after = model(2, &[("k", (10, 2))]);
        assert_eq!(check(&Model::default(), &good, &after), None);
        // The read saw the first put after the second committed: no order explains it.
        let mut stale = good.clone();
        stale[5] = Event::Return(b, 1, Ret::Got(Some((20, 1))));
        assert!(check(&Model::default(), &stale, &after).is_some());
        // An acknowledged write the restarted service does not hold: lost.
        let lost = model(1, &[("k", (20, 1))]);
        assert!(check(&Model::default(), &good[..4], &lost).is_some());
    }

    #[test]
    fn a_write_in_flight_at_a_crash_may_or_may_not_have_happened() {
        let a = (0, 0);
        let history = vec![Event::Invoke(a, 0, write("k", 7))];
        assert_eq!(check(&Model::default(), &history, &Model::default()), None);
        let applied = model(1, &[("k", (7, 1))]);
        assert_eq!(check(&Model::default(), &history, &applied), None);
        // But not some other value.
        let other = model(1, &[("k", (8, 1))]);
        assert!(check(&Model::default(), &history, &other).is_some());
    }

    #[test]
    fn batches_are_all_or_nothing_and_conditions_are_checked() {
        let mut db = model(0, &[]);
        let conditional = Op::Writes(vec![
            Write {
                key: "a".into(),
                value: Some(1),
                rev: None,
            },
            Write {
                key: "b".into(),
                value: Some(2),
                rev: Some(5),
            },
        ]);
        assert_eq!(db.invoke(&conditional), Ret::Conflict);
        assert_eq!(db, Model::default());
        let delete_missing = Op::Writes(vec![Write {
            key: "a".into(),
            value: None,
            rev: None,
        }]);
        assert_eq!(db.invoke(&delete_missing), Ret::NotFound);
        assert_eq!(db.invoke(&write("a", 3)), Ret::Revs(vec![1]));
        assert_eq!(db.invoke(&delete_missing), Ret::Revs(vec![2]));
        assert_eq!(db, model(2, &[]));
    }
}
