//! The HTTP load generator of the `http` comparison: `oha`, pinned to one release and
//! installed on first use with `cargo install` into the user's cache,
//! `${XDG_CACHE_HOME:-$HOME/.cache}/cairn-bench/oha-VERSION/bin/oha` (outside every work
//! tree, so that later runs and other clones share the build), or the binary `OHA_BIN`
//! names. A run is one `oha` process for a set time, its summary read from its JSON
//! output; a run in which any request failed or was answered other than 2xx fails.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::measure::Run;

/// The oha release the bench runs; its flags are the ones [`Oha::run`] passes.
pub const VERSION: &str = "1.16.0";

/// Names an oha binary to run instead of the cached one.
const BIN_ENV: &str = "OHA_BIN";

/// An oha binary.
pub struct Oha {
    binary: PathBuf,
}

/// How an [`Oha::run`] speaks HTTP.
#[derive(Debug, Clone, Copy)]
pub enum Http {
    /// HTTP/1.1 with keep-alive: one request at a time on each connection.
    One { connections: usize },
    /// HTTP/2: `streams` requests at a time on each connection.
    Two { connections: usize, streams: usize },
}

impl fmt::Display for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http::One { connections } => write!(f, "HTTP/1.1 on {connections} connections"),
            Http::Two {
                connections,
                streams,
            } => write!(
                f,
                "HTTP/2, {streams} streams on each of {connections} connections"
            ),
        }
    }
}

/// One timed run of requests.
pub struct Load<'a> {
    /// The URLs, as a regular expression that oha draws each request's URL from (`.`
    /// stands for itself).
    pub url_pattern: &'a str,
    pub http: Http,
    pub method: &'a str,
    /// A JSON body sent with every request.
    pub body: Option<&'a str>,
    /// Headers (`name: value`) sent with every request.
    pub headers: &'a [String],
    /// The PEM certificate of the CA that signed the service's.
    pub ca_cert: &'a Path,
    pub duration: Duration,
}

/// What a run did: its 2xx answers over its whole time, and percentiles of its latency.
pub struct Outcome {
    pub run: Run,
    pub p50: Duration,
    pub p99: Duration,
}

/// The parts of oha's JSON output the bench reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    summary: Summary,
    /// `p50`, `p99`, … in seconds.
    latency_percentiles: BTreeMap<String, f64>,
    /// Answers by HTTP status.
    status_code_distribution: BTreeMap<String, u64>,
    /// Requests that got no answer, by error.
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Summary {
    /// The run's whole time, in seconds.
    total: f64,
}

impl Oha {
    /// The binary `OHA_BIN` names, else the cached one, installed first if missing.
    pub fn find_or_install() -> Result<Oha> {
        if let Some(binary) = std::env::var_os(BIN_ENV).filter(|path| !path.is_empty()) {
            let binary = PathBuf::from(binary);
            ensure!(
                binary.is_file(),
                "{BIN_ENV} names {}, which is no file",
                binary.display()
            );
            return Ok(Oha { binary });
        }
        let cache = cache_dir()?;
        let root = cache.join(format!("oha-{VERSION}"));
        let binary = root.join("bin/oha");
        if !binary.is_file() {
            install(&cache, &root)?;
        }
        Ok(Oha { binary })
    }

    /// Runs `load` to its end.
    pub fn run(&self, load: &Load) -> Result<Outcome> {
        let mut command = Command::new(&self.binary);
        command
            .args(["--no-tui", "--output-format", "json", "--rand-regex-url"])
            .arg("-z")
            .arg(format!("{}ms", load.duration.as_millis()))
            // HTTP/1.1 answers still awaited at the deadline are counted, not aborted.
            .arg("-w")
            .arg("--cacert")
            .arg(load.ca_cert)
            .args(["-m", load.method]);
        match load.http {
            Http::One { connections } => {
                command.args(["--http-version", "1.1", "-c", &connections.to_string()]);
            }
            Http::Two {
                connections,
                streams,
            } => {
                command.args(["--http2", "-c", &connections.to_string()]);
                command.args(["-p", &streams.to_string()]);
            }
        }
        for header in load.headers {
            command.args(["-H", header]);
        }
        if let Some(body) = load.body {
            command.args(["-T", "application/json", "-d", body]);
        }
        let output = command
            .arg(load.url_pattern)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !output.status.success() {
            bail!(
                "{} exited with {}: {}",
                self.binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let output: Output = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("reading the JSON output of {}", self.binary.display()))?;
        output.outcome()
    }
}

impl Output {
    /// The outcome, if every request was answered 2xx.
    fn outcome(&self) -> Result<Outcome> {
        let (answered, failed): (Vec<_>, Vec<_>) = self
            .status_code_distribution
            .iter()
            .partition(|(status, _)| status.starts_with('2'));
        let failures: Vec<String> = failed
            .into_iter()
            .chain(&self.error_distribution)
            .map(|(what, count)| format!("{count} × {what}"))
            .collect();
        ensure!(
            failures.is_empty(),
            "not every request was answered 2xx: {}",
            failures.join(", ")
        );
        let ops = answered.into_iter().map(|(_, count)| count).sum();
        ensure!(ops > 0, "oha made no request");
        let percentile = |name: &str| {
            self.latency_percentiles
                .get(name)
                .map(|&seconds| Duration::from_secs_f64(seconds))
                .with_context(|| format!("oha's output has no {name} latency"))
        };
        Ok(Outcome {
            run: Run {
                ops,
                elapsed: Duration::from_secs_f64(self.summary.total),
            },
            p50: percentile("p50")?,
            p99: percentile("p99")?,
        })
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/cairn-bench`.
fn cache_dir() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    let base = match (var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(cache), _) => PathBuf::from(cache),
        (None, Some(home)) => Path::new(&home).join(".cache"),
        (None, None) => bail!(
            "the http bench installs oha into the user's cache: set HOME or XDG_CACHE_HOME, \
             or {BIN_ENV} to an oha {VERSION} binary"
        ),
    };
    Ok(base.join("cairn-bench"))
}

/// Builds oha with `cargo install` into `root`, by way of a partial directory beside it,
/// so that a build cut short leaves no binary behind.
fn install(cache: &Path, root: &Path) -> Result<()> {
    let partial = cache.join(format!("oha-{VERSION}.partial"));
    let args = ["install", "oha", "--locked", "--version", VERSION, "--root"];
    let by_hand = format!(
        "install it with `cargo {} {}`, or set {BIN_ENV} to an oha {VERSION} binary",
        args.join(" "),
        root.display()
    );
    eprintln!(
        "installing oha {VERSION}, the HTTP load generator, into {}: this takes several \
         minutes, once",
        root.display()
    );
    for leftover in [&partial, root] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(args)
        .arg(&partial)
        // Away from the work tree, whose cargo configuration is not oha's.
        .current_dir(cache)
        .stdin(Stdio::null())
        // cargo's output on stderr, so that stdout holds only the report.
        .stdout(std::io::stderr())
        .status();
    match status {
        Ok(status) if status.success() => std::fs::rename(&partial, root)
            .with_context(|| format!("renaming {} to {}", partial.display(), root.display())),
        Ok(status) => Err(anyhow::anyhow!("cargo install exited with {status}")),
        Err(error) => Err(anyhow::Error::new(error).context("running cargo")),
    }
    .with_context(|| format!("installing oha {VERSION} failed: {by_hand}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(statuses: &[(&str, u64)], errors: &[(&str, u64)]) -> Output {
        let map = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|&(what, count)| (what.to_string(), count))
                .collect()
        };
        Output {
            summary: Summary { total: 2.0 },
            latency_percentiles: [("p50".to_string(), 0.001), ("p99".to_string(), 0.004)].into(),
            status_code_distribution: map(statuses),
            error_distribution: map(errors),
        }
    }

    #[test]
    fn outcome_counts_the_2xx_answers_over_the_whole_run() {
        let outcome = output(&[("200", 300), ("201", 100)], &[])
            .outcome()
            .unwrap();
        assert_eq!(outcome.run.ops, 400);
        assert_eq!(outcome.run.per_second(), 200.0);
        assert_eq!(outcome.p50, Duration::from_millis(1));
        assert_eq!(outcome.p99, Duration::from_millis(4));
    }

    #[test]
    fn any_other_answer_or_error_fails_the_run() {
        let not_found = output(&[("200", 300), ("404", 2)], &[]).outcome();
        assert!(format!("{:#}", not_found.err().unwrap()).contains("2 × 404"));
        let reset = output(&[("200", 300)], &[("connection reset", 1)]).outcome();
        assert!(format!("{:#}", reset.err().unwrap()).contains("1 × connection reset"));
        assert!(output(&[], &[]).outcome().is_err());
    }

    #[test]
    fn reads_ohas_json_output() {
        let json = r#"{"summary": {"successRate": 1.0, "total": 1.5, "requestsPerSec": 2.0},
            "latencyPercentiles": {"p50": 0.002, "p99": 0.01},
            "statusCodeDistribution": {"200": 3}, "errorDistribution": {}}"#;
        let outcome = serde_json::from_str::<Output>(json)
            .unwrap()
            .outcome()
            .unwrap();
        assert_eq!(outcome.run.ops, 3);
        assert_eq!(outcome.run.elapsed, Duration::from_millis(1500));
    }
}
