//! The `http` comparison: the HTTPS JSON API of a real `cairn-service` beside its native
//! protocol (`cairn/1`), on one service, one data set and one TLS port, in one run. The
//! service is loaded over the native protocol with keys numbered `0000000000000000` on
//! (16 digits) and 100-byte values; root is given a password and logs in once over
//! HTTPS (`POST /v1/auth/session`), and its session token authenticates every HTTP
//! request (HTTP Basic would check the password with argon2 on each). Then gets of
//! random loaded keys and durable puts of new random keys, 64 at a time, run for the
//! same time through `cairn-client` (64 callers on 4 connections, as in the `service`
//! bench) and through `oha` (see [`crate::oha`]) over HTTP/1.1 keep-alive connections
//! and HTTP/2 streams, whose URL patterns draw exactly the loaded keys for the gets and
//! keys of the native puts' shape for the puts.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cairn_certs::{CertDir, Kind, Trust, EMBEDDED_HOST};
use cairn_client::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rustls::pki_types::ServerName;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::data::{Dataset, KEY_BYTES, VALUE_BYTES};
use crate::measure::Run;
use crate::oha::{self, Http, Load, Oha, Outcome};
use crate::process::{self, ServiceProcess};
use crate::procfs;
use crate::remote::{self, Values, DATABASE};
use crate::report::{Row, Target};
use crate::workloads::{fresh_dir, progress};

/// Smallest acceptable ratio of HTTP gets to native gets.
const GET_TARGET: f64 = 0.5;
/// Smallest acceptable ratio of HTTP durable puts to native ones.
const PUT_TARGET: f64 = 0.5;

/// Requests in flight in every workload: native callers, HTTP/1.1 connections, HTTP/2
/// streams.
const IN_FLIGHT: usize = 64;
/// Connections the native callers share, and HTTP/2's.
const CONNECTIONS: usize = 4;
/// HTTP/1.1: one request at a time on each connection.
const HTTP1: Http = Http::One {
    connections: IN_FLIGHT,
};
/// HTTP/2: the native callers' connections, as many streams on each as callers on each.
const HTTP2: Http = Http::Two {
    connections: CONNECTIONS,
    streams: IN_FLIGHT / CONNECTIONS,
};
/// The pattern of the new keys of the puts: 16 hex digits, as the native puts'.
const NEW_KEY_PATTERN: &str = "[0-9a-f]{16}";

/// Docs per `batch` call of the load.
const PER_BATCH: usize = 1000;

/// The user the HTTP requests are made as, and the password it is given.
const USER: &str = "root";
const PASSWORD: &str = "cairn-bench";

/// Seed of the value pool, so that every run uses the same values.
const SEED: u64 = 0x477_9C0DE;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct HttpSizes {
    /// Digits that vary among the loaded keys: `10^key_digits` docs are loaded.
    pub key_digits: u32,
    /// How long each timed workload lasts.
    pub run_for: Duration,
}

impl HttpSizes {
    pub fn full() -> HttpSizes {
        HttpSizes {
            key_digits: 6,
            run_for: Duration::from_secs(10),
        }
    }

    pub fn quick() -> HttpSizes {
        HttpSizes {
            key_digits: 4,
            run_for: Duration::from_secs(1),
        }
    }

    fn docs(self) -> usize {
        10_usize.pow(self.key_digits)
    }
}

/// The rows, and lines about how they were measured.
pub struct HttpReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// What each side did.
struct Figures {
    native_gets: Measured<Run>,
    http1_gets: Measured<Outcome>,
    http2_gets: Measured<Outcome>,
    native_puts: Measured<Run>,
    http1_puts: Measured<Outcome>,
}

/// What a workload did, and the CPU time the service spent meanwhile.
struct Measured<T> {
    result: T,
    service_cpu: Duration,
}

impl<T> Measured<T> {
    /// The service's CPU time per request of `run`, as shown.
    fn cpu_per_request(&self, run: &Run) -> String {
        let micros = self.service_cpu.as_secs_f64() * 1e6 / run.ops as f64;
        format!("{micros:.0} µs")
    }
}

/// Runs both sides and returns the rows in report order. `base` is the directory in
/// which the service's temporary directory is made.
pub fn run_http_comparison(sizes: HttpSizes, base: &Path) -> Result<HttpReport> {
    let oha = Oha::find_or_install()?;
    let load_before = procfs::load_average()?;
    let binary = process::service_binary()?;
    let root = fresh_dir(base, "http")?;
    let dir = root.path().join("data");
    let log = root.path().join("service.log");
    progress(&format!("starting {}", binary.display()));
    let service = ServiceProcess::start(&binary, &dir, &log)?;
    let figures = measure(sizes, &oha, &dir, &service)?;
    service.stop()?;
    let load_after = procfs::load_average()?;

    let Figures {
        native_gets,
        http1_gets,
        http2_gets,
        native_puts,
        http1_puts,
    } = &figures;
    let rows = vec![
        Row::new(
            &format!("get, {HTTP1}"),
            "gets/s",
            native_gets.result.per_second(),
            http1_gets.result.run.per_second(),
            Some(Target::RatioAtLeast(GET_TARGET)),
        ),
        Row::new(
            &format!("get, {HTTP2}"),
            "gets/s",
            native_gets.result.per_second(),
            http2_gets.result.run.per_second(),
            Some(Target::RatioAtLeast(GET_TARGET)),
        ),
        Row::new(
            &format!("durable put, {HTTP1}"),
            "puts/s",
            native_puts.result.per_second(),
            http1_puts.result.run.per_second(),
            Some(Target::RatioAtLeast(PUT_TARGET)),
        ),
    ];
    let latency = |what: &str, outcome: &Outcome| {
        let millis = |latency: Duration| latency.as_secs_f64() * 1e3;
        format!(
            "{what} {:.2} / {:.2} ms",
            millis(outcome.p50),
            millis(outcome.p99)
        )
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let notes = vec![
        format!(
            "native: cairn-client on the same service and TLS port, in the same run: \
             {IN_FLIGHT} callers (tokio tasks making one call at a time) on {CONNECTIONS} \
             connections, each get checking its value; HTTP: oha {}, every request \
             answered 2xx (checked), with the session token of one POST /v1/auth/session \
             in a sessionToken header",
            oha::VERSION
        ),
        format!(
            "keys: gets of random keys of the {} loaded (GET /{DATABASE}/{}); durable puts \
             of new random keys (/{DATABASE}/{}, as the native puts'), answered once \
             fsync'd; an HTTP put's body is a JSON string that is stored as a \
             {VALUE_BYTES}-byte msgpack value, the size of the native puts' values",
            sizes.docs(),
            key_pattern(sizes.key_digits),
            NEW_KEY_PATTERN
        ),
        format!(
            "HTTP latency p50 / p99 (oha): {}; {}; {}",
            latency("get, HTTP/1.1", &http1_gets.result),
            latency("get, HTTP/2", &http2_gets.result),
            latency("durable put, HTTP/1.1", &http1_puts.result)
        ),
        format!(
            "service CPU time (user + system) per request: get native {}, HTTP/1.1 {}, \
             HTTP/2 {}; durable put native {}, HTTP/1.1 {}",
            native_gets.cpu_per_request(&native_gets.result),
            http1_gets.cpu_per_request(&http1_gets.result.run),
            http2_gets.cpu_per_request(&http2_gets.result.run),
            native_puts.cpu_per_request(&native_puts.result),
            http1_puts.cpu_per_request(&http1_puts.result.run)
        ),
        format!(
            "load average before: {load_before}, after: {load_after} (oha, the bench's \
             client and the service share this machine's {cores} cores)"
        ),
    ];
    Ok(HttpReport { rows, notes })
}

/// The pattern of the loaded keys: each of the `10^digits` numbered keys, equally likely.
fn key_pattern(digits: u32) -> String {
    let zeros = KEY_BYTES - usize::try_from(digits).expect("a few digits");
    format!("{}[0-9]{{{digits}}}", "0".repeat(zeros))
}

/// Loads the service, then times each workload in turn.
fn measure(sizes: HttpSizes, oha: &Oha, dir: &Path, service: &ServiceProcess) -> Result<Figures> {
    let address = &service.tls_address;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data = Arc::new(Dataset::numbered(
        sizes.docs(),
        &mut StdRng::seed_from_u64(SEED),
    ));
    let values = Arc::new(Values::decode(&data)?);
    let (clients, token) = runtime.block_on(prepare(dir, address, &data, &values))?;
    let ca_cert = ca_cert(dir)?;
    let headers = [format!("sessionToken: {token}")];
    let get_url = format!(
        "https://{address}/{DATABASE}/{}",
        key_pattern(sizes.key_digits)
    );
    let put_url = format!("https://{address}/{DATABASE}/{NEW_KEY_PATTERN}");
    let put_body = format!("\"{}\"", "x".repeat(VALUE_BYTES - 2));
    let load = |http, method, url_pattern, body| Load {
        url_pattern,
        http,
        method,
        body,
        headers: &headers,
        ca_cert: &ca_cert,
        duration: sizes.run_for,
    };
    let native = format!("{IN_FLIGHT} callers on {CONNECTIONS} native connections");
    let pid = service.pid();
    let native_gets = timed(&format!("gets, {native}"), sizes, pid, || {
        runtime.block_on(remote::get_for(
            &clients,
            IN_FLIGHT,
            sizes.run_for,
            data,
            values.clone(),
        ))
    })?;
    let http1_gets = timed(&format!("gets, {HTTP1}"), sizes, pid, || {
        oha.run(&load(HTTP1, "GET", &get_url, None))
    })?;
    let http2_gets = timed(&format!("gets, {HTTP2}"), sizes, pid, || {
        oha.run(&load(HTTP2, "GET", &get_url, None))
    })?;
    let native_puts = timed(&format!("durable puts, {native}"), sizes, pid, || {
        runtime.block_on(remote::put_for(&clients, IN_FLIGHT, sizes.run_for, values))
    })?;
    let http1_puts = timed(&format!("durable puts, {HTTP1}"), sizes, pid, || {
        oha.run(&load(HTTP1, "PUT", &put_url, Some(&put_body)))
    })?;
    Ok(Figures {
        native_gets,
        http1_gets,
        http2_gets,
        native_puts,
        http1_puts,
    })
}

/// Runs the workload `what`, which lasts `sizes.run_for`, and measures the CPU time that
/// the service (process `pid`) spends meanwhile.
fn timed<T>(
    what: &str,
    sizes: HttpSizes,
    pid: u32,
    work: impl FnOnce() -> Result<T>,
) -> Result<Measured<T>> {
    progress(&format!("{what} for {} s", sizes.run_for.as_secs_f64()));
    let before = procfs::process_cpu_time(pid)?;
    let result = work().with_context(|| what.to_string())?;
    let service_cpu = procfs::process_cpu_time(pid)?.saturating_sub(before);
    Ok(Measured {
        result,
        service_cpu,
    })
}

/// Creates and loads the database over the native protocol, gives root its password,
/// logs in over HTTPS and gets one loaded key with the session token; returns the
/// native callers' connections and the token.
async fn prepare(
    dir: &Path,
    address: &str,
    data: &Dataset,
    values: &Values,
) -> Result<(Vec<Client>, String)> {
    let client = remote::connect(dir, address).await?;
    remote::create_database(&client).await?;
    progress(&format!(
        "load {} docs, batches of {PER_BATCH}, native",
        data.keys.len()
    ));
    remote::load(&client, data, values, PER_BATCH).await?;
    client
        .user_passwd(USER, PASSWORD)
        .await
        .with_context(|| format!("giving {USER} a password"))?;

    let certs = dir.join("certs");
    let login = json!({"username": USER, "password": PASSWORD}).to_string();
    let (status, session) =
        https_request(&certs, address, "POST /v1/auth/session", &[], &login).await?;
    ensure!(
        status == 201,
        "POST /v1/auth/session answered {status}: {session}"
    );
    let token = session["sessionToken"]
        .as_str()
        .with_context(|| format!("POST /v1/auth/session answered no sessionToken: {session}"))?
        .to_string();
    let key = data.keys.last().context("no keys were loaded")?;
    let get = format!("GET /{DATABASE}/{key}");
    let session_header = format!("sessionToken: {token}");
    let (status, doc) = https_request(&certs, address, &get, &[session_header], "").await?;
    ensure!(
        status == 200 && doc["key"] == key.as_str(),
        "{get} answered {status}: {doc}"
    );
    let clients = remote::connect_many(dir, address, CONNECTIONS).await?;
    Ok((clients, token))
}

/// Makes one HTTP/1.1 request (`request_line` without its version, `headers`, a JSON
/// `body`) on a new TLS connection to the service at `address`, trusting the CAs of
/// `certs`; returns the answer's status and JSON body.
async fn https_request(
    certs: &Path,
    address: &str,
    request_line: &str,
    headers: &[String],
    body: &str,
) -> Result<(u16, Json)> {
    let mut config = cairn_certs::client_config(&[CertDir::new(certs)], Trust::Cas, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(EMBEDDED_HOST)?, tcp)
        .await
        .context("TLS handshake for HTTPS")?;
    let mut request = format!("{request_line} HTTP/1.1\r\nHost: {EMBEDDED_HOST}\r\n");
    for header in headers {
        request.push_str(&format!("{header}\r\n"));
    }
    request.push_str(&format!(
        "Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer).await {
        // A server may close the connection without a TLS close_notify once it answered.
        Err(error) if error.kind() != ErrorKind::UnexpectedEof => {
            return Err(error).context("reading an HTTP answer");
        }
        _ => {}
    }
    let answer = String::from_utf8_lossy(&answer);
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        bail!("{request_line}: not an HTTP answer: {answer:?}");
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .with_context(|| format!("{request_line}: no status in {head:?}"))?;
    let body = serde_json::from_str(body)
        .with_context(|| format!("{request_line}: answered {status} without JSON: {body:?}"))?;
    Ok((status, body))
}

/// The certificate of the CA the service made on its first start, `DIR/certs/cas/NAME.crt`.
fn ca_cert(dir: &Path) -> Result<PathBuf> {
    let certs = CertDir::new(dir.join("certs"));
    let names = certs.names(Kind::Ca)?;
    let [name] = names.as_slice() else {
        bail!(
            "expected one CA in {}, found {names:?}",
            certs.root().display()
        );
    };
    Ok(certs.cert_path(Kind::Ca, name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pattern_draws_exactly_the_numbered_keys() {
        assert_eq!(key_pattern(4), "000000000000[0-9]{4}");
        let data = Dataset::numbered(10_000, &mut StdRng::seed_from_u64(1));
        assert_eq!(data.keys[0], "0000000000000000");
        assert_eq!(data.keys[9_999], "0000000000009999");
    }

    #[test]
    fn sizes_load_every_key_the_pattern_draws() {
        assert_eq!(HttpSizes::full().docs(), 1_000_000);
        assert_eq!(HttpSizes::quick().docs(), 10_000);
    }
}
