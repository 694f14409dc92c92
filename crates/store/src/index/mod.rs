//! Secondary indexes. A database declares them in its configuration (`IndexDef`: a
//! name and a JSON pointer into its documents); every batch keeps their entries in the
//! `indexes` table and `DatabaseView::find` queries them. The files of this folder:
//!
//! - `definitions.rs`: the rules for index definitions (names, JSON pointers) and the
//!   definitions compiled for use.
//! - `lookup.rs`: finding the value a JSON pointer (RFC 6901) names inside a msgpack
//!   document without decoding the rest of it.
//! - `key.rs`: the sortable byte encoding of indexed values (`IndexKey`), whose byte
//!   order is value order so that LMDB's key order serves range queries.
//! - `query.rs`: index queries (`IndexQuery`, `FoundPage`) and how a snapshot answers
//!   them (`DatabaseView::find`).

mod definitions;
mod key;
mod lookup;
mod query;

pub use definitions::{validate_index_defs, MAX_INDEXES};
pub use key::{IndexKey, MAX_INDEX_STRING_BYTES};
pub use query::{FoundPage, IndexQuery};

pub(crate) use definitions::{compile, position_byte, Compiled};
pub(crate) use key::{display_encoded, encoded_len};
pub(crate) use lookup::index_value;
