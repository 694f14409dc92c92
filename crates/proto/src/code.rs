//! The error-code table: every error a call can end with has a stable snake_case code and
//! an HTTP-like status. Server and client share this table; `PROTOCOL.md` lists it and a
//! test keeps the two the same.

use rmpv::Value;

/// Defines `ErrorCode` with its code, status and description in one table.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $meaning:literal),)+) => {
        /// A stable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The snake_case code sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP-like status of the code.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)+ }
            }

            /// What the code means, one line.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }

            /// The code named by `code`, if it is in the table.
            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)+ _ => None }
            }
        }
    };
}

error_codes! {
    BadRequest = ("bad_request", 400, "the message or its arguments are malformed"),
    UnknownMethod = ("unknown_method", 400, "no method has this name"),
    InvalidKey = ("invalid_key", 400, "a document key is empty, longer than 400 bytes or not UTF-8"),
    InvalidName = ("invalid_name", 400, "a database or user name breaks the naming rule"),
    InvalidValue = ("invalid_value", 400, "a value is not one well-formed msgpack value"),
    InvalidSettings = ("invalid_settings", 400, "the settings file is invalid: the running settings stay in force"),
    Unauthenticated = ("unauthenticated", 401, "the call needs an authenticated connection"),
    BadCredentials = ("bad_credentials", 401, "unknown user, wrong password, or an expired or revoked token"),
    Forbidden = ("forbidden", 403, "the user has no grant for this call"),
    NotFound = ("not_found", 404, "the document, user or job does not exist"),
    DatabaseMissing = ("database_missing", 404, "the database does not exist"),
    DatabaseExists = ("database_exists", 409, "a database of this name already exists"),
    Conflict = ("conflict", 409, "the object exists already or is in a state that refuses the call"),
    RevConflict = ("rev_conflict", 409, "a conditional write found another rev"),
    UniqueViolation = ("unique_violation", 409, "a unique index already holds the value for another document"),
    IndexStale = ("index_stale", 409, "the index definitions changed: resync the database before using it"),
    ChangesCompacted = ("changes_compacted", 409, "the changes asked for were removed by retention: resynchronise"),
    SyncGap = ("sync_gap", 409, "a follower's changes do not continue the database's sync position: changes would be missing"),
    ResyncRequired = ("resync_required", 409, "the cursor belongs to data a restore replaced, or is ahead of the log: resynchronise"),
    FrameTooLarge = ("frame_too_large", 413, "a frame is larger than the connection's limit"),
    ValueTooLarge = ("value_too_large", 413, "a value is larger than the configured limit"),
    DatabaseOffline = ("database_offline", 503, "the database is offline, starting, stopping or resyncing: try again later"),
    MigrationInProgress = ("migration_in_progress", 503, "the database follows another service during a migration: write to the source until the cutover"),
    ReadOnly = ("read_only", 503, "the service is READ_ONLY: writes are refused"),
    MirrorReadOnly = ("mirror_read_only", 503, "the service is a mirror that takes no writes of its own: write to its leader (named in the details)"),
    MirrorLagging = ("mirror_lagging", 503, "the mirror is further behind its leader than its max_lag_secs, or is not following it: read from the leader, or wait"),
    Unavailable = ("unavailable", 503, "the service is DOWN or shutting down"),
    TooManyConnections = ("too_many_connections", 503, "the service has reached its connection limit"),
    TooManyCalls = ("too_many_calls", 503, "the connection has reached its limit of calls in flight"),
    StorageFull = ("storage_full", 507, "the disk or the storage map is full"),
    IoError = ("io_error", 503, "the disk failed a read or a write (an I/O error): nothing was written; the service is READ_ONLY until a probe write succeeds"),
    Corrupt = ("corrupt", 500, "stored data fails its checksum or does not decode: it is never served; restore it from a backup"),
    Internal = ("internal", 500, "an unexpected failure inside the service"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels: code, status, a one-line message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> WireError {
        self.details = Some(details);
        self
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.code.status(),
            self.message
        )
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert_eq!(ErrorCode::parse(text), Some(*code));
            assert!(
                [400, 401, 403, 404, 409, 413, 503, 507, 500].contains(&code.status()),
                "{text} has status {}",
                code.status()
            );
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn protocol_md_lists_every_code_with_its_status() {
        let doc = include_str!("../PROTOCOL.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status());
            assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        }
        let is_code_row = |line: &&str| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            cells.len() > 3
                && cells[1].starts_with('`')
                && cells[2].len() == 3
                && cells[2].bytes().all(|b| b.is_ascii_digit())
        };
        let rows = doc.lines().filter(is_code_row).count();
        assert_eq!(
            rows,
            ErrorCode::ALL.len(),
            "PROTOCOL.md lists codes the code lacks"
        );
    }
}
