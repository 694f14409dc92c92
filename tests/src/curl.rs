//! Real `curl` (Debian's) against a service's HTTPS API: over TLS with the service's own
//! CA, in HTTP/1.1 or HTTP/2, or over `DIR/http.sock`. Each call returns the status, the
//! headers and the body; a test that needs curl fails saying how to install it. `sample`
//! reads one line of a `/metrics` text.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::process::ServiceProcess;

/// The HTTP version curl is told to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// How curl reaches a service.
#[derive(Debug, Clone)]
pub struct Curl {
    base: String,
    options: Vec<String>,
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The HTTP version curl used (`1.1` or `2`).
    pub version: String,
    /// Header lines, names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Checks the status, printing the answer when it differs.
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        self
    }
}

const STATUS_MARK: &str = "\n@@curl-status@@";

impl Curl {
    /// The service's TLS port, trusting its CAs, naming it `localhost`.
    pub fn tls(service: &ServiceProcess, version: HttpVersion) -> Curl {
        Curl::tls_address(service, &service.tls_address, version)
    }

    /// Another TLS port of the same service (an `https://` listener).
    pub fn tls_address(service: &ServiceProcess, address: &str, version: HttpVersion) -> Curl {
        let (_, port) = address.rsplit_once(':').expect("HOST:PORT");
        let ca = service_ca(service);
        let mut options = vec![
            "--cacert".to_string(),
            ca.display().to_string(),
            "--resolve".to_string(),
            format!("localhost:{port}:127.0.0.1"),
        ];
        options.push(
            match version {
                HttpVersion::Http1 => "--http1.1",
                HttpVersion::Http2 => "--http2",
            }
            .to_string(),
        );
        Curl {
            base: format!("https://localhost:{port}"),
            options,
        }
    }

    /// `DIR/http.sock`, where every request is root's.
    pub fn unix(service: &ServiceProcess) -> Curl {
        Curl {
            base: "http://cairn".to_string(),
            options: vec![
                "--unix-socket".to_string(),
                service.dir.join("http.sock").display().to_string(),
            ],
        }
    }

    /// The same, with extra curl options on every call (`-u USER:PW`, `-H …`, `--cert …`).
    pub fn with(&self, options: &[&str]) -> Curl {
        let mut curl = self.clone();
        curl.options.extend(options.iter().map(|o| o.to_string()));
        curl
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `VERB PATH` with `body` (JSON text) and `extra` options.
    pub fn call(&self, verb: &str, path: &str, body: Option<&str>, extra: &[&str]) -> Answer {
        let mut command = curl_command();
        command
            .args(&self.options)
            .args(["-sS", "-D", "-", "-X", verb, "-w"])
            .arg(format!("{STATUS_MARK}%{{http_code}} %{{http_version}}"))
            .args(extra);
        if body.is_some() {
            command
                .args([
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    "@-",
                ])
                .stdin(Stdio::piped());
        }
        command.arg(self.url(path));
        let output = run_with_stdin(command, body.unwrap_or_default());
        parse(&output)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[])
    }

    pub fn put(&self, path: &str, body: &str) -> Answer {
        self.call("PUT", path, Some(body), &[])
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        self.call("POST", path, Some(body), &[])
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None, &[])
    }

    /// `curl -N PATH` left running, its output piped (for streams).
    pub fn spawn_stream(&self, path: &str) -> Child {
        curl_command()
            .args(&self.options)
            .args(["-sS", "-N"])
            .arg(self.url(path))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning curl")
    }
}

/// The service's CA certificate (the embedded default's).
pub fn service_ca(service: &ServiceProcess) -> PathBuf {
    let cas = service.dir.join("certs").join("cas");
    std::fs::read_dir(&cas)
        .expect("the service's CA directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "crt"))
        .expect("a CA certificate")
}

fn curl_command() -> Command {
    let found = Command::new("curl").arg("--version").output();
    match found {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("HTTP2") => Command::new("curl"),
        _ => panic!("these tests need curl with HTTP/2: apt-get install curl"),
    }
}

fn run_with_stdin(mut command: Command, stdin: &str) -> String {
    use std::io::Write;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawning curl");
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .expect("writing curl's stdin");
    }
    let output = child.wait_with_output().expect("waiting for curl");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        stdout.contains(STATUS_MARK),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn parse(output: &str) -> Answer {
    let (rest, mark) = output.rsplit_once(STATUS_MARK).expect("the status mark");
    let (status, version) = mark.trim().split_once(' ').expect("status and version");
    // Headers of every answer curl saw (interim ones too); the last block is the answer's.
    let mut headers = Vec::new();
    let mut body = rest;
    while body.starts_with("HTTP/") {
        let (block, after) = body
            .split_once("\r\n\r\n")
            .expect("a header block ends with a blank line");
        headers = block
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        body = after;
    }
    Answer {
        status: status.parse().expect("a status"),
        version: version.to_string(),
        headers,
        body: body.to_string(),
    }
}

/// The value of a sample line `NAME{LABELS} VALUE` in a metrics text, if present.
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}
