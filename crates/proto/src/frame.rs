//! Frames: a 4-byte big-endian body length, then the body. The decoder refuses a frame
//! from its length alone, before buffering any of its body, when it is over the limit
//! in force (64 KiB before authentication, a configurable limit after it).

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// Largest frame body before a connection has authenticated.
pub const MAX_UNAUTHENTICATED_FRAME: usize = 64 << 10;

/// Default largest frame body after authentication: 16 MiB and room for the envelope.
pub const DEFAULT_MAX_FRAME: usize = (16 << 20) + (64 << 10);

const HEADER_BYTES: usize = 4;

/// Why reading or writing a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// A length-prefixed frame codec with a limit that can change while the connection
/// lives (it grows once the connection authenticates).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec { max_frame }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < HEADER_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes(src[..HEADER_BYTES].try_into().expect("4 bytes")) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                limit: self.max_frame,
            });
        }
        if src.len() < HEADER_BYTES + len {
            src.reserve(HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        Ok(Some(src.split_to(len)))
    }
}

/// Appends `body` to `buffer` as one frame: its length as 4 big-endian bytes, then the
/// body. The one place a frame's length prefix is written.
pub fn push_frame(buffer: &mut Vec<u8>, body: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        limit: u32::MAX as usize,
    })?;
    buffer.reserve(HEADER_BYTES + body.len());
    buffer.extend_from_slice(&len.to_be_bytes());
    buffer.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_split_reads() {
        let mut codec = FrameCodec::new(1024);
        let mut wire = Vec::new();
        for body in [&b"hello"[..], b"", b"world!"] {
            push_frame(&mut wire, body).unwrap();
        }
        let mut input = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire {
            input.extend_from_slice(&[byte]);
            while let Some(frame) = codec.decode(&mut input).unwrap() {
                frames.push(frame.to_vec());
            }
        }
        assert_eq!(frames, [b"hello".to_vec(), vec![], b"world!".to_vec()]);
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let mut codec = FrameCodec::new(MAX_UNAUTHENTICATED_FRAME);
        let mut input = BytesMut::from(&((64 << 10) as u32 + 1).to_be_bytes()[..]);
        match codec.decode(&mut input) {
            Err(FrameError::TooLarge { len, limit }) => {
                assert_eq!((len, limit), (65537, 65536))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut at_limit = BytesMut::from(&((64 << 10) as u32).to_be_bytes()[..]);
        assert!(
            codec.decode(&mut at_limit).unwrap().is_none(),
            "waits for the body"
        );
        codec.set_max_frame(10);
        assert!(
            codec.decode(&mut at_limit).is_err(),
            "the new limit applies"
        );
    }
}
