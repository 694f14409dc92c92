//! Bytes a client sends: frames (before authentication's 64 KiB limit and after it, at
//! the default limit), each body decoded as a message, each call's method looked up and
//! its arguments decoded into the typed request. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use cairn_proto::{
    FrameCodec, Message, Method, Request, DEFAULT_MAX_FRAME, MAX_UNAUTHENTICATED_FRAME,
};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    for limit in [MAX_UNAUTHENTICATED_FRAME, DEFAULT_MAX_FRAME] {
        let mut codec = FrameCodec::new(limit);
        let mut buffer = BytesMut::from(data);
        while let Ok(Some(body)) = codec.decode(&mut buffer) {
            if let Ok(Message::Call { method, args, .. }) = Message::decode(&body) {
                if let Some(method) = Method::parse(&method) {
                    let _ = Request::decode(method, args);
                }
            }
        }
    }
});
