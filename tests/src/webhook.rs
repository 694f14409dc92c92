//! A real HTTP/1.1 endpoint for webhook tests: it listens on `127.0.0.1:0`, reads each
//! request (request line, headers, a `Content-Length` body; keep-alive connections),
//! records it, and answers with a configurable status — or 500 for the first N
//! requests, or never (to test timeouts). Tests wait for what it received with
//! [`WebhookListener::wait_for`], bounded in time. Plain threads, no mocks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

/// The largest request body it reads.
const MAX_BODY: usize = 16 << 20;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (a JSON string holding the text when it is not JSON).
    pub body: Value,
    /// The status it was answered with; 0 when it was never answered.
    pub status: u16,
    pub at: Instant,
}

impl Received {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct Behaviour {
    status: u16,
    /// Requests still to be answered 500.
    fail_first: usize,
    /// Accept and read requests, never answer.
    hang: bool,
}

struct State {
    requests: Mutex<Vec<Received>>,
    arrived: Condvar,
    behaviour: Mutex<Behaviour>,
    stop: AtomicBool,
    /// Open connections, shut down when the listener is dropped.
    connections: Mutex<Vec<TcpStream>>,
}

/// A running HTTP endpoint; it stops when dropped.
pub struct WebhookListener {
    address: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl WebhookListener {
    /// Starts an endpoint answering 200 to every request.
    pub fn start() -> Result<WebhookListener> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            behaviour: Mutex::new(Behaviour {
                status: 200,
                fail_first: 0,
                hang: false,
            }),
            stop: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, accept_state));
        Ok(WebhookListener {
            address,
            state,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The status of the answers from now on (after any `fail_first`).
    pub fn set_status(&self, status: u16) {
        self.behaviour().status = status;
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_first(&self, n: usize) {
        self.behaviour().fail_first = n;
    }

    /// With `true`, requests are read and recorded but never answered.
    pub fn set_hang(&self, hang: bool) {
        self.behaviour().hang = hang;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// The bodies of every request received so far (every attempt, answered or not).
    pub fn events(&self) -> Vec<Value> {
        self.requests().into_iter().map(|r| r.body).collect()
    }

    /// Waits until `done` holds for the bodies received so far and returns them; panics
    /// with what arrived after `timeout`.
    pub fn wait_for(&self, done: impl Fn(&[Value]) -> bool, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut requests = self.state.requests.lock().expect("requests lock");
        loop {
            let bodies: Vec<Value> = requests.iter().map(|r| r.body.clone()).collect();
            if done(&bodies) {
                return bodies;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "{}: the awaited requests did not arrive within {timeout:?}; received {}: {:#?}",
                    self.url(),
                    bodies.len(),
                    bodies
                );
            }
            requests = self
                .state
                .arrived
                .wait_timeout(requests, deadline - now)
                .expect("requests lock")
                .0;
        }
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.state.behaviour.lock().expect("behaviour lock")
    }
}

impl Drop for WebhookListener {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for connection in self
            .state
            .connections
            .lock()
            .expect("connections lock")
            .drain(..)
        {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    state
                        .connections
                        .lock()
                        .expect("connections lock")
                        .push(clone);
                }
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Serves the requests of one connection until it closes.
fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        let mut raw = vec![0u8; length];
        reader.read_exact(&mut raw)?;
        let body = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (status, hang) = {
            let mut behaviour = state.behaviour.lock().expect("behaviour lock");
            if behaviour.fail_first > 0 {
                behaviour.fail_first -= 1;
                (500, false)
            } else if behaviour.hang {
                (0, true)
            } else {
                (behaviour.status, false)
            }
        };
        state
            .requests
            .lock()
            .expect("requests lock")
            .push(Received {
                method,
                path,
                headers,
                body,
                status,
                at: Instant::now(),
            });
        state.arrived.notify_all();
        if hang {
            while !state.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Ok(());
        }
        let answer = format!(
            "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\n{}\r\n",
            reason(status),
            if close { "connection: close\r\n" } else { "" }
        );
        writer.write_all(answer.as_bytes())?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
