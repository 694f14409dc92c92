//! `cairn-proto`: Cairn's native wire protocol, shared by the service and its clients.
//! A connection carries frames (`frame`: a 4-byte big-endian length and a msgpack body);
//! each body is one message (`message`: call, result, error, item, end, cancel), and
//! errors carry a stable code from one table (`code`). The methods, with their argument
//! and result types, kind and permission, are one table too (`methods`), and the fixed
//! sets of values they carry are enums sent as strings (`values`); pages of documents and
//! changes are written straight from stored bytes (`pages`) and a client reads
//! documents' pages in place (`doc_spans`); a value decoded straight from a frame is
//! checked to fill it with `value_len`. Values as people read and write them, in JSON,
//! are `json`'s (the CLI's and the HTTP API's). Nothing here knows of LMDB or TLS.
//! `PROTOCOL.md` beside this crate is the reference and is checked against this code.

pub mod code;
pub mod doc_spans;
pub mod frame;
pub mod json;
pub mod message;
pub mod methods;
pub mod pages;
pub mod value_len;
pub mod values;

pub use code::{ErrorCode, WireError};
pub use frame::{push_frame, FrameCodec, FrameError, DEFAULT_MAX_FRAME, MAX_UNAUTHENTICATED_FRAME};
pub use message::{
    call_args_at, encode_call, encode_doc_result, encode_result, value_at, Message, MessageError,
};
pub use methods::{Call, Effect, Method, MethodKind, Need, Permission, Request};
