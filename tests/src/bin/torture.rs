//! `torture`: the long crash campaign (see `cairn_tests::torture`): kills a real
//! `cairn-service` with SIGKILL `--kills` times while clients run, checks every stretch's
//! history for linearizability and every acknowledged write in the change logs, and
//! prints kills, operations, acknowledged writes, lost (must be 0) and violations (must
//! be 0). Exits 1 when either is not 0.
//!
//! cargo run -p cairn-tests --bin torture -- --kills 1000 [--seed N] [--clients N]
//!     [--databases N] [--keys N] [--stretch-ms N] [--fault-probability P] [--dir DIR]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_tests::torture::{run, Campaign};

fn main() -> Result<()> {
    let mut campaign = Campaign {
        kills: 100,
        clients: 4,
        databases: 2,
        keys: 3,
        seed: rand::random(),
        stretch: Duration::from_millis(800),
        fault_probability: None,
    };
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kills" => campaign.kills = value()?.parse()?,
            "--seed" => campaign.seed = value()?.parse()?,
            "--clients" => campaign.clients = value()?.parse()?,
            "--databases" => campaign.databases = value()?.parse()?,
            "--keys" => campaign.keys = value()?.parse()?,
            "--stretch-ms" => campaign.stretch = Duration::from_millis(value()?.parse()?),
            "--dir" => dir = Some(std::path::PathBuf::from(value()?)),
            "--fault-probability" => campaign.fault_probability = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("usage: torture [--kills N] [--seed N] [--clients N] [--databases N] [--keys N] [--stretch-ms N] [--fault-probability P] [--dir DIR]\n\nexamples:\n  cargo run --release -p cairn-tests --bin torture -- --kills 1000 --seed 7\n  # with libfiu failing 2% of the service's fdatasyncs with EIO:\n  cargo run --release -p cairn-tests --bin torture -- --kills 100 --fault-probability 0.02");
                return Ok(());
            }
            other => bail!("unknown flag {other}: see --help"),
        }
    }
    let scratch = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| scratch.path().join("data"));
    eprintln!("torture: {campaign:?} in {}", dir.display());
    let started = Instant::now();
    let report = run(&dir, &campaign)?;
    println!("seed:                {}", campaign.seed);
    println!("kills:               {}", report.kills);
    println!("operations:          {}", report.operations);
    println!("acknowledged writes: {}", report.acknowledged_writes);
    println!("refused (not done):  {}", report.refused);
    println!("lost:                {}", report.lost);
    println!("violations:          {}", report.violations.len());
    println!("feed errors:         {}", report.feed_errors.len());
    println!(
        "time:                {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for violation in report.violations.iter().chain(&report.feed_errors) {
        println!("{violation}");
    }
    if report.lost > 0 || !report.violations.is_empty() || !report.feed_errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
