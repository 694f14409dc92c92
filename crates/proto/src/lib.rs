//! `cairn-proto`: Cairn's native wire protocol, shared by the service and its clients.
//! A connection carries frames (`frame`: a 4-byte big-endian length and a msgpack body);
//! each body is one message (`message`: call, result, error, item, end, cancel), and
//! errors carry a stable code from one table (`code`). Nothing here knows of LMDB or TLS.
//! `PROTOCOL.md` beside this crate is the reference and is checked against this code.

pub mod code;
pub mod frame;
pub mod message;
pub mod methods;

pub use code::{ErrorCode, WireError};
pub use frame::{FrameCodec, FrameError, DEFAULT_MAX_FRAME, MAX_UNAUTHENTICATED_FRAME};
pub use message::{encode_doc_result, Message, MessageError};
