//! The latency baseline: a bare TLS echo on loopback, in this process, with the service's
//! own certificate directory and Cairn's rustls configurations (`cairn_certs::server_config`
//! for the host `localhost`, `cairn_certs::client_config` presenting the user certificate
//! `root`). The client sends frames the size of a get's call and the server answers each
//! with a frame the size of a get's answer: the TLS, TCP and tokio work of a get round
//! trip, without the service's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_certs::{CertDir, ClientAuth, Trust, EMBEDDED_HOST};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The user certificate the client presents, as the bench's cairn clients do.
const CLIENT_CERT: &str = "root";

/// An echo server; it stops accepting when dropped.
pub struct EchoServer {
    pub address: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// A length-prefixed frame of `body_bytes` zero bytes.
fn frame(body_bytes: usize) -> Result<Vec<u8>> {
    let length = u32::try_from(body_bytes).context("an echo frame of 4 GiB or more")?;
    let mut frame = vec![0; 4 + body_bytes];
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// Reads one length-prefixed frame into `body`.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin), body: &mut Vec<u8>) -> Result<()> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).await?;
    body.resize(u32::from_be_bytes(header) as usize, 0);
    stream.read_exact(body).await?;
    Ok(())
}

/// Writes `frame` and flushes it.
async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), frame: &[u8]) -> Result<()> {
    stream.write_all(frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Starts an echo server on a free loopback port, with the host certificate `localhost`
/// of the certificate directory `certs`, answering every frame with `reply_bytes` bytes.
pub async fn start_server(certs: &Path, reply_bytes: usize) -> Result<EchoServer> {
    let config = cairn_certs::server_config(
        &[CertDir::new(certs)],
        &[EMBEDDED_HOST.to_string()],
        ClientAuth::Optional,
    )?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let reply = Arc::new(frame(reply_bytes)?);
    let accepting = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut body = Vec::new();
                while read_frame(&mut stream, &mut body).await.is_ok() {
                    if write_frame(&mut stream, &reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(EchoServer { address, accepting })
}

/// One connection to an echo server.
pub struct EchoClient {
    stream: TlsStream<TcpStream>,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl EchoClient {
    /// Connects to `address`, trusting the CAs of `certs`, and will send frames of
    /// `request_bytes` bytes.
    pub async fn connect(
        certs: &Path,
        address: SocketAddr,
        request_bytes: usize,
    ) -> Result<EchoClient> {
        let config =
            cairn_certs::client_config(&[CertDir::new(certs)], Trust::Cas, Some(CLIENT_CERT))?;
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let server_name = ServerName::try_from(EMBEDDED_HOST)?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .context("TLS handshake with the echo server")?;
        Ok(EchoClient {
            stream,
            request: frame(request_bytes)?,
            reply: Vec::new(),
        })
    }

    /// The round-trip time of each frame sent, one at a time, until `duration` has
    /// passed.
    pub async fn latencies(&mut self, duration: Duration) -> Result<Vec<Duration>> {
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed() < duration {
            let call = Instant::now();
            write_frame(&mut self.stream, &self.request).await?;
            read_frame(&mut self.stream, &mut self.reply).await?;
            samples.push(call.elapsed());
        }
        Ok(samples)
    }
}
