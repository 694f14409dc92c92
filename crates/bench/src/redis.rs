//! Redis beside the service, where `redis-server` and `redis-benchmark` are installed
//! (Debian: `apt-get install redis-server redis-tools`): a real `redis-server` started
//! on a free loopback port with TLS (the service's own host certificate and CA) and
//! `appendonly yes` with `appendfsync always` (every write fsync'd before it is
//! answered, as Cairn's are), loaded with random keys of 100-byte values, then measured
//! by `redis-benchmark` over TLS: gets on one connection with 16 pipelined, gets from 64
//! clients, and sets from 64 clients.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

/// The longest redis-server may take to listen, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes of every value, as the service's workloads use.
pub const VALUE_BYTES: usize = 100;

/// How much a run does.
#[derive(Debug, Clone, Copy)]
pub struct RedisSizes {
    /// Distinct keys (`-r`) loaded and read.
    pub keys: usize,
    /// Requests of each get workload.
    pub gets: usize,
    /// Requests of the set workload.
    pub sets: usize,
}

/// Requests per second of each workload.
#[derive(Debug, Clone)]
pub struct RedisFigures {
    pub version: String,
    /// `-t get -c 1 -P 16`.
    pub pipelined_gets: f64,
    /// `-t get -c 64`.
    pub concurrent_gets: f64,
    /// `-t set -c 64`, each fsync'd.
    pub concurrent_sets: f64,
}

/// The installed `redis-server` and `redis-benchmark`, if both are on `PATH`.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    Some((find("redis-server")?, find("redis-benchmark")?))
}

/// What to say when Redis is not installed.
pub const NOT_INSTALLED: &str = "Redis rows: not measured, redis-server and redis-benchmark \
     are not on PATH (Debian: apt-get install redis-server redis-tools)";

/// Measures Redis with the certificates of the service's `certs` directory, its files
/// in `scratch`; `None` when Redis is not installed.
pub fn measure(certs: &Path, scratch: &Path, sizes: RedisSizes) -> Result<Option<RedisFigures>> {
    let Some((server, benchmark)) = installed() else {
        return Ok(None);
    };
    let ca = std::fs::read_dir(certs.join("cas"))
        .context("listing the service's CAs")?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "crt"))
        .context("the service has no CA certificate")?;
    let version = command_output(Command::new(&server).arg("--version"))?;
    let redis = RedisProcess::start(&server, certs, &ca, scratch)?;
    // One redis-benchmark run: `test` (set or get), `requests` of them, `clients`
    // connections, `pipeline` requests in flight on each.
    let run = |what: &str, test: &str, requests: usize, clients: u32, pipeline: u32| {
        crate::workloads::progress(&format!("redis: {what}"));
        let mut command = Command::new(&benchmark);
        command
            .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
            .args(["--tls", "--sni", "localhost", "--cacert"])
            .arg(&ca)
            .args([
                "-d",
                &VALUE_BYTES.to_string(),
                "-r",
                &sizes.keys.to_string(),
            ])
            .args(["-t", test, "-n", &requests.to_string()])
            .args([
                "-c",
                &clients.to_string(),
                "-P",
                &pipeline.to_string(),
                "--csv",
            ]);
        command_output(&mut command).and_then(|csv| requests_per_second(&csv))
    };
    run(
        "load the keys (64 clients, 16 pipelined)",
        "set",
        sizes.keys,
        64,
        16,
    )?;
    let pipelined_gets = run("gets, 1 connection, 16 pipelined", "get", sizes.gets, 1, 16)?;
    let concurrent_gets = run("gets, 64 clients", "get", sizes.gets, 64, 1)?;
    let concurrent_sets = run("sets, 64 clients, fsync'd", "set", sizes.sets, 64, 1)?;
    redis.stop()?;
    Ok(Some(RedisFigures {
        version: version.trim().to_string(),
        pipelined_gets,
        concurrent_gets,
        concurrent_sets,
    }))
}

/// The standard output of a command that must succeed.
fn command_output(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The `rps` of the one test in `redis-benchmark --csv` output: a header line
/// `"test","rps",…` and a line `"GET","123456.79",…`.
fn requests_per_second(csv: &str) -> Result<f64> {
    let mut lines = csv.lines().filter(|line| !line.trim().is_empty());
    let header = lines.next().context("redis-benchmark printed nothing")?;
    let column = header
        .split(',')
        .position(|field| field.trim_matches('"') == "rps")
        .with_context(|| format!("no rps column in {header:?}"))?;
    let row = lines
        .next_back()
        .context("redis-benchmark printed no result")?;
    let field = row
        .split(',')
        .nth(column)
        .with_context(|| format!("no rps in {row:?}"))?;
    field
        .trim_matches('"')
        .parse()
        .with_context(|| format!("rps {field:?} is not a number"))
}

/// A running `redis-server`, killed if dropped without [`RedisProcess::stop`].
struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    fn start(binary: &Path, certs: &Path, ca: &Path, scratch: &Path) -> Result<RedisProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(certs.join("hosts/localhost.crt"))
            .arg("--tls-key-file")
            .arg(certs.join("hosts/localhost.key"))
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "no"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(scratch)
            .arg("--logfile")
            .arg(scratch.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut redis = RedisProcess { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > START_TIMEOUT || redis.child.try_wait()?.is_some() {
                bail!(
                    "redis-server did not listen on port {port}: see {}",
                    scratch.join("redis.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn stop(mut self) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?).context("redis-server's pid")?;
        kill_process(pid, Signal::TERM)?;
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > STOP_TIMEOUT {
                bail!("redis-server did not exit within {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rps_of_redis_benchmark_csv_is_read() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"GET\",\"123456.79\",\"0.123\"\n";
        assert!((requests_per_second(csv).unwrap() - 123_456.79).abs() < 1e-6);
        assert!(requests_per_second("").is_err());
        assert!(requests_per_second("\"test\",\"x\"\n\"GET\",\"1\"\n").is_err());
    }
}
