//! A raw, synchronous protocol client for end-to-end tests: frames and messages written
//! and read by hand over a unix socket or TLS (rustls over a std TCP stream), so that a
//! test can also send what no well-behaved client would (oversized frames, garbage).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_proto::Message;
use rmpv::Value;

/// Any byte stream a raw connection runs on.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One raw connection.
pub struct RawConnection {
    stream: Box<dyn Stream>,
    next_id: u64,
}

const READ_TIMEOUT: Duration = Duration::from_secs(20);

impl RawConnection {
    /// Connects to a service's unix socket.
    pub fn unix(path: &Path) -> Result<RawConnection> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(RawConnection {
            stream: Box::new(stream),
            next_id: 1,
        })
    }

    /// Connects over TLS, trusting the CAs of `cert_dir` and naming the server `localhost`.
    pub fn tls(address: &str, cert_dir: &Path) -> Result<RawConnection> {
        let dirs = [cairn_certs::CertDir::new(cert_dir)];
        let config = cairn_certs::client_config(&dirs, cairn_certs::Trust::Cas, None)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
        let session = rustls::ClientConnection::new(Arc::new(config), name)?;
        let tcp =
            TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(RawConnection {
            stream: Box::new(rustls::StreamOwned::new(session, tcp)),
            next_id: 1,
        })
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Writes one message as a frame.
    pub fn send(&mut self, message: &Message) -> Result<()> {
        let mut frame = Vec::new();
        cairn_proto::push_frame(&mut frame, &message.encode())?;
        self.send_bytes(&frame)
    }

    /// Reads one message; `None` when the service closed the connection.
    pub fn receive(&mut self) -> Result<Option<Message>> {
        let mut header = [0u8; 4];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(Message::decode(&body)?))
    }

    /// True when the service has closed the connection (reads end without a message).
    pub fn is_closed(&mut self) -> bool {
        matches!(self.receive(), Ok(None) | Err(_))
    }

    /// Calls `method` and waits for its result value.
    pub fn call(&mut self, method: &str, args: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Message::Call {
            id,
            method: method.to_string(),
            args,
        })?;
        match self.receive()? {
            Some(Message::Result { id: got, value }) if got == id => Ok(value),
            Some(Message::Error { error, .. }) => bail!("{method}: {error}"),
            other => bail!("{method}: unexpected answer {other:?}"),
        }
    }
}

/// A msgpack map from string keys.
pub fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// The field `name` of a msgpack map.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}
