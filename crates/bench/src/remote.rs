//! The measured side of the `service` comparison: workloads run with `cairn-client` over
//! TLS on loopback, authenticated as `root` by the user certificate the service created
//! in `DIR/certs`, on one database `bench`. Concurrent callers are tokio tasks that each
//! make one call at a time, as an application's request handlers would; they share a
//! few connections (a `Client` pipelines the calls of all its clones), and every get
//! checks the value it read.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cairn_client::methods::{
    call, to_value, BatchOp, ChangesArgs, Doc, FeedItem, GetArgs, RetentionArgs, ScanArgs,
};
use cairn_client::values::{FeedKind, Op};
use cairn_client::Call;
use cairn_client::{Client, ClientUrl, ConnectOptions};
use cairn_proto::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rmpv::Value;

use crate::data::{add_to_checksum, Dataset, VALUE_POOL};
use crate::measure::Run;

/// Name of the database every workload uses.
pub const DATABASE: &str = "bench";

/// A call id of the size most calls of a run have (a msgpack uint32), for frame sizes.
const TYPICAL_CALL_ID: u64 = 1 << 20;

/// The values of a [`Dataset`] as the client sends them: key `i`'s value is
/// `values.of(i)`.
pub struct Values(Vec<Value>);

impl Values {
    pub fn decode(data: &Dataset) -> Result<Values> {
        (0..VALUE_POOL)
            .map(|index| {
                rmpv::decode::read_value(&mut data.value(index)).context("decoding a value")
            })
            .collect::<Result<_>>()
            .map(Values)
    }

    pub fn of(&self, index: usize) -> &Value {
        &self.0[index % self.0.len()]
    }
}

/// Connects to the service of the working directory `dir` at `address` (`host:port`)
/// as `root`, with the certificates of `DIR/certs`.
pub async fn connect(dir: &Path, address: &str) -> Result<Client> {
    let url: ClientUrl = format!("ssl://root@{address}/?hostname=localhost").parse()?;
    Client::connect(&url, &ConnectOptions::for_working_dir(dir))
        .await
        .with_context(|| format!("connecting to the service at {address}"))
}

/// `count` connections to the service.
pub async fn connect_many(dir: &Path, address: &str, count: usize) -> Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(connect(dir, address).await?);
    }
    Ok(clients)
}

/// Creates the database the workloads use.
pub async fn create_database(client: &Client) -> Result<()> {
    client
        .db_create(DATABASE, RetentionArgs::default())
        .await
        .context("creating the database")?;
    Ok(())
}

/// Puts every key of `data`, one `batch` call of `per_batch` puts at a time.
pub async fn load(
    client: &Client,
    data: &Dataset,
    values: &Values,
    per_batch: usize,
) -> Result<Run> {
    let start = Instant::now();
    for (chunk_index, chunk) in data.keys.chunks(per_batch).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(offset, key)| BatchOp {
                op: Op::Put,
                key: Value::from(key.as_str()),
                value: Some(values.of(chunk_index * per_batch + offset).clone()),
                rev: None,
            })
            .collect();
        client.batch(DATABASE, ops).await?;
    }
    Ok(Run {
        ops: data.keys.len() as u64,
        elapsed: start.elapsed(),
    })
}

/// Scans the whole database in pages of the service's default size on one connection,
/// read in place (`scan_pages`); counts the documents, checks that every key came once,
/// in order, and sums their values' bytes as the raw scan does.
pub async fn scan_all(client: &Client, expected: u64) -> Result<Run> {
    let start = Instant::now();
    let mut pages = client.scan_pages(ScanArgs {
        db: DATABASE.to_string(),
        ..ScanArgs::default()
    });
    let (mut count, mut last, mut checksum) = (0u64, String::new(), 0);
    while let Some(page) = pages.next_page().await? {
        for doc in page.iter() {
            ensure!(
                doc.key > last.as_str(),
                "the scan went backwards after {last:?}"
            );
            last.clear();
            last.push_str(doc.key);
            checksum = add_to_checksum(checksum, doc.value_msgpack);
            count += 1;
        }
    }
    std::hint::black_box(checksum);
    ensure!(
        count == expected,
        "scanned {count} documents, not {expected}"
    );
    Ok(Run {
        ops: count,
        elapsed: start.elapsed(),
    })
}

/// Follows the database's change log from its start with a continuous feed on one
/// connection until it has received the change `last_seq`; counts the changes.
pub async fn feed_catch_up(client: &Client, last_seq: u64) -> Result<Run> {
    let start = Instant::now();
    let mut feed = client
        .changes_feed(&ChangesArgs {
            db: DATABASE.to_string(),
            feed: Some(FeedKind::Continuous),
            ..ChangesArgs::default()
        })
        .await?;
    let (mut count, mut seq) = (0u64, 0u64);
    while seq < last_seq {
        let item = feed
            .next()
            .await
            .context("the feed ended before catching up")??;
        if let FeedItem::Change(change) = item {
            ensure!(change.seq == seq + 1, "change {} after {seq}", change.seq);
            seq = change.seq;
            count += 1;
        }
    }
    let elapsed = start.elapsed();
    feed.cancel();
    Ok(Run {
        ops: count,
        elapsed,
    })
}

/// `callers` tasks, spread over `clients`, each calling `step` with a random number, one
/// call at a time, until `duration` has passed; counts the calls.
pub async fn callers_for<F, Fut>(
    clients: &[Client],
    callers: usize,
    duration: Duration,
    step: F,
) -> Result<Run>
where
    F: Fn(Client, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    callers_while(clients, callers, move || Instant::now() < deadline, step).await
}

/// `callers` tasks, spread over `clients`, each calling `step` with a random number, one
/// call at a time, for as long as `go_on` says so; counts the calls.
async fn callers_while<G, F, Fut>(
    clients: &[Client],
    callers: usize,
    go_on: G,
    step: F,
) -> Result<Run>
where
    G: Fn() -> bool + Clone + Send + 'static,
    F: Fn(Client, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let client = clients[caller % clients.len()].clone();
            let (go_on, step) = (go_on.clone(), step.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(caller as u64);
                let mut calls = 0;
                while go_on() {
                    step(client.clone(), rng.random()).await?;
                    calls += 1;
                }
                anyhow::Ok(calls)
            })
        })
        .collect();
    let mut ops = 0;
    for task in tasks {
        ops += task.await??;
    }
    Ok(Run {
        ops,
        elapsed: start.elapsed(),
    })
}

/// Gets random keys of `data` from `callers` tasks spread over `clients`.
pub async fn get_for(
    clients: &[Client],
    callers: usize,
    duration: Duration,
    data: Arc<Dataset>,
    values: Arc<Values>,
) -> Result<Run> {
    callers_for(clients, callers, duration, move |client, random| {
        let data = data.clone();
        let values = values.clone();
        async move {
            let index = index_below(random, data.keys.len());
            get_checked(&client, &data, &values, index).await
        }
    })
    .await
}

/// Gets key `index` and checks its value.
async fn get_checked(client: &Client, data: &Dataset, values: &Values, index: usize) -> Result<()> {
    let key = &data.keys[index];
    let doc = client.get(DATABASE, key).await?;
    ensure!(
        doc.value == *values.of(index),
        "the service returned a wrong value for {key:?}"
    );
    Ok(())
}

/// Puts random new 16-byte keys with values of `values` from `callers` tasks spread over
/// `clients`; each put is answered once durable.
pub async fn put_for(
    clients: &[Client],
    callers: usize,
    duration: Duration,
    values: Arc<Values>,
) -> Result<Run> {
    callers_for(clients, callers, duration, move |client, random| {
        put_random(client, random, values.clone())
    })
    .await
}

/// As [`put_for`], until `running` is cleared.
pub async fn put_while(
    clients: &[Client],
    callers: usize,
    running: Arc<AtomicBool>,
    values: Arc<Values>,
) -> Result<Run> {
    let go_on = move || running.load(Ordering::Relaxed);
    callers_while(clients, callers, go_on, move |client, random| {
        put_random(client, random, values.clone())
    })
    .await
}

/// The index below `len` that the random number `random` picks.
fn index_below(random: u64, len: usize) -> usize {
    usize::try_from(random % len as u64).expect("less than `len`, a usize")
}

/// One durable put of the new key `random` (as 16 hex digits).
async fn put_random(client: Client, random: u64, values: Arc<Values>) -> Result<()> {
    let value = values.of(index_below(random, VALUE_POOL)).clone();
    client
        .put(DATABASE, &format!("{random:016x}"), value, None)
        .await?;
    Ok(())
}

/// The round-trip time of each get of random keys, one call at a time on `client`,
/// until `duration` has passed.
pub async fn get_latencies(
    client: &Client,
    data: &Dataset,
    values: &Values,
    duration: Duration,
    rng: &mut StdRng,
) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < duration {
        let index = rng.random_range(0..data.keys.len());
        let call = Instant::now();
        get_checked(client, data, values, index).await?;
        samples.push(call.elapsed());
    }
    Ok(samples)
}

/// The body sizes of a get's call and of its answer for `key` and `value`, as the
/// client and the service encode them.
pub fn get_body_sizes(key: &str, value: &Value) -> (usize, usize) {
    let call = Message::Call {
        id: TYPICAL_CALL_ID,
        method: call::Get::METHOD.name().to_string(),
        args: to_value(&GetArgs {
            db: DATABASE.to_string(),
            key: Value::from(key),
        }),
    };
    let answer = Message::Result {
        id: TYPICAL_CALL_ID,
        value: to_value(&Doc {
            key: key.to_string(),
            rev: 1,
            value: value.clone(),
        }),
    };
    (call.encode().len(), answer.encode().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{KEY_BYTES, VALUE_BYTES};

    #[test]
    fn values_are_the_datasets_decoded() {
        let data = Dataset::generate(10, &mut StdRng::seed_from_u64(3));
        let values = Values::decode(&data).unwrap();
        for index in [0, 1, 9, VALUE_POOL + 1] {
            let mut encoded = Vec::new();
            rmpv::encode::write_value(&mut encoded, values.of(index)).unwrap();
            assert_eq!(encoded, data.value(index));
        }
    }

    #[test]
    fn get_frames_hold_the_key_and_the_value() {
        let data = Dataset::generate(1, &mut StdRng::seed_from_u64(4));
        let values = Values::decode(&data).unwrap();
        let (call, answer) = get_body_sizes(&data.keys[0], values.of(0));
        assert!(call > KEY_BYTES && call < KEY_BYTES + 64, "{call}");
        assert!(
            answer > KEY_BYTES + VALUE_BYTES && answer < KEY_BYTES + VALUE_BYTES + 64,
            "{answer}"
        );
    }
}
