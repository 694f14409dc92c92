//! The fixed sets of values that travel as strings (a batch operation, a grant's access,
//! a feed's kind, the service's mode, a database's state, a job's kind and status, why a
//! feed ended, …). Each is a Rust enum that is sent and read as its stable string, so
//! the service, the client and every tool share one spelling, and a value outside the
//! set is refused when the message is decoded, with an error listing the values allowed.

use std::fmt;
use std::str::FromStr;

use serde::de::{Deserializer, Error as _, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What every enum of this module offers besides its variants.
pub trait WireEnum: Sized + Copy + 'static {
    /// What the value is, as error messages name it (`op`, `access`, …).
    const WHAT: &'static str;

    /// Every value, in table order.
    fn all() -> &'static [Self];

    /// The string sent on the wire.
    fn as_str(self) -> &'static str;

    /// The value spelled exactly `text`.
    fn parse(text: &str) -> Option<Self> {
        Self::all().iter().copied().find(|v| v.as_str() == text)
    }

    /// The value spelled `text` in any case (`backup` for `BACKUP`).
    fn parse_ignore_case(text: &str) -> Option<Self> {
        Self::all()
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(text))
    }

    /// The values for people: `a, b or c`.
    fn choices() -> String {
        let names: Vec<&str> = Self::all().iter().map(|v| v.as_str()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The error of a value outside the set: `op is put or del, not "x"`.
    fn refusal(text: &str) -> String {
        format!("{} is {}, not {text:?}", Self::WHAT, Self::choices())
    }
}

/// Reads a value of `T` in any case (serde's `deserialize_with` for filters that people
/// type, such as `jobs.list`'s `type` and `status`).
pub fn ignore_case<'de, D: Deserializer<'de>, T: WireEnum>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|text| T::parse_ignore_case(&text).ok_or_else(|| D::Error::custom(T::refusal(&text))))
        .transpose()
}

/// Reads a `WireEnum` from its string.
struct EnumVisitor<T>(std::marker::PhantomData<T>);

impl<T: WireEnum> Visitor<'_> for EnumVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", T::WHAT, T::choices())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        T::parse(text).ok_or_else(|| E::custom(T::refusal(text)))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<T, E> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.visit_str(text),
            Err(_) => Err(E::custom(format!("{} is not UTF-8", T::WHAT))),
        }
    }
}

/// Defines an enum of wire strings with its `WireEnum`, serde, `Display`, `FromStr` and
/// comparisons with `&str`.
macro_rules! wire_enum {
    (
        $(#[doc = $doc:literal])*
        $name:ident ($what:literal) {
            $($(#[doc = $vdoc:literal])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[doc = $vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in table order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value spelled exactly `text`.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl WireEnum for $name {
            const WHAT: &'static str = $what;

            fn all() -> &'static [$name] {
                $name::ALL
            }

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<$name, String> {
                <$name as WireEnum>::parse(text).ok_or_else(|| <$name as WireEnum>::refusal(text))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                deserializer.deserialize_str(EnumVisitor(std::marker::PhantomData))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

wire_enum! {
    /// What a change or a batch operation does to its document.
    Op("op") {
        Put = "put",
        /// A delete (a tombstone in the change log).
        Del = "del",
    }
}

wire_enum! {
    /// A user's grant on a database (`write` includes `read`).
    Access("access") {
        Read = "read",
        Write = "write",
    }
}

wire_enum! {
    /// How `changes` answers.
    FeedKind("feed") {
        /// One page of changes.
        Normal = "normal",
        /// A page, waiting for a change when there is none yet.
        Longpoll = "longpoll",
        /// A stream of changes as they commit, with heartbeats.
        Continuous = "continuous",
    }
}

wire_enum! {
    /// Why a live change feed ended.
    FeedEndReason("reason") {
        /// The client canceled it.
        Canceled = "canceled",
        DatabaseDropped = "database_dropped",
        /// The database went offline: resume once it is back online.
        DatabaseOffline = "database_offline",
        ShuttingDown = "shutting_down",
        /// A restore replaced the data: resynchronise.
        Restore = "restore",
    }
}

wire_enum! {
    /// The service's mode: what it serves.
    ServiceMode("status") {
        ReadWrite = "READ_WRITE",
        /// Writes of non-admins are refused.
        ReadOnly = "READ_ONLY",
        /// Every non-admin call is refused.
        Down = "DOWN",
    }
}

wire_enum! {
    /// Why the service turned itself read-only.
    ReasonCode("reason") {
        LowDiskSpace = "low_disk_space",
        DiskFull = "disk_full",
        MapFull = "map_full",
        /// A write failed with an I/O error; cleared when a probe write commits.
        IoError = "io_error",
    }
}

wire_enum! {
    /// Where a database is in its life.
    DbState("state") {
        Online = "Online",
        Offline = "Offline",
        /// Brought online after a delay.
        Starting = "Starting",
        /// Going offline while the calls in flight finish.
        Stopping = "Stopping",
        /// Offline, with a resync job running.
        Resyncing = "Resyncing",
    }
}

wire_enum! {
    /// How a connection proved who it is.
    Via("via") {
        Password = "password",
        Token = "token",
        Certificate = "certificate",
        /// The service's own unix socket.
        Socket = "socket",
    }
}

wire_enum! {
    /// What a background job does.
    JobKind("type") {
        Backup = "BACKUP",
        Restore = "RESTORE",
        Resync = "RESYNC",
    }
}

wire_enum! {
    /// Where a background job is.
    JobStatus("status") {
        Queued = "QUEUED",
        Started = "STARTED",
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Failed = "FAILED",
        Canceled = "CANCELED",
    }
}

impl JobStatus {
    /// True once the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::{from_value, to_value};

    #[test]
    fn values_travel_as_their_strings_and_others_are_refused() {
        for op in Op::ALL {
            let value = to_value(op);
            assert_eq!(value.as_str(), Some(op.as_str()));
            assert_eq!(from_value::<Op>(value).unwrap(), *op);
        }
        let refused = from_value::<Access>(rmpv::Value::from("admin")).unwrap_err();
        assert!(
            refused
                .message
                .contains(r#"access is read or write, not "admin""#),
            "{}",
            refused.message
        );
        assert_eq!(
            "IN_PROGRESS".parse::<JobStatus>(),
            Ok(JobStatus::InProgress)
        );
        assert_eq!(
            JobStatus::choices(),
            "QUEUED, STARTED, IN_PROGRESS, COMPLETED, FAILED or CANCELED"
        );
        assert_eq!(JobKind::parse_ignore_case("backup"), Some(JobKind::Backup));
        assert_eq!(JobKind::parse("backup"), None);
        assert!(ServiceMode::Down == "DOWN");
    }

    #[test]
    fn every_set_spells_each_value_once() {
        fn unique<T: WireEnum>() {
            let mut seen = std::collections::HashSet::new();
            for value in T::all() {
                assert!(seen.insert(value.as_str()), "{} twice", value.as_str());
                assert_eq!(
                    T::parse(value.as_str()).map(T::as_str),
                    Some(value.as_str())
                );
            }
        }
        unique::<Op>();
        unique::<Access>();
        unique::<FeedKind>();
        unique::<FeedEndReason>();
        unique::<ServiceMode>();
        unique::<ReasonCode>();
        unique::<DbState>();
        unique::<Via>();
        unique::<JobKind>();
        unique::<JobStatus>();
    }
}

wire_enum! {
    /// Where a database's sync stands (`sync.status`, `sync.report`).
    SyncState("state") {
        /// The follower is applying changes the source committed earlier.
        CatchingUp = "catching_up",
        /// The follower has applied everything the source holds and waits for more.
        Live = "live",
        /// The database's sync stopped with an error (kept until it is resolved).
        Stopped = "stopped",
        /// No follower has reported on this database lately.
        Idle = "idle",
    }
}

wire_enum! {
    /// How a sync ends (`sync.detach`).
    SyncEnd("reason") {
        /// The source went READ_ONLY and everything was applied and compared.
        Cutover = "cutover",
        /// The operator gave up: the data stays as it is.
        Abort = "abort",
    }
}

wire_enum! {
    /// Where a mirror's connection to its leader stands (`status`'s `mirror`).
    MirrorState("state") {
        /// Connecting to the leader (first, or again after a failure).
        Connecting = "connecting",
        /// Copying the leader's environment (an empty directory, or one whose history
        /// the leader no longer continues).
        Bootstrapping = "bootstrapping",
        /// Applying the leader's journal as it commits.
        Following = "following",
        /// The connection failed: the mirror waits before it connects again.
        Disconnected = "disconnected",
    }
}

wire_enum! {
    /// A step of a graceful promotion, on the leader (`mirror.handoff`).
    HandoffMode("mode") {
        /// Stop taking writes and answer the journal's final head.
        Begin = "begin",
        /// Become a mirror of the promoted one.
        Complete = "complete",
        /// Take writes again: the promotion did not happen.
        Cancel = "cancel",
    }
}
