//! The store's records and enums in their wire form, and back: the store keeps its own
//! types (its byte layout is its own business) and the protocol its own (their strings
//! are the clients'); these conversions are the one place the two meet, each an
//! exhaustive match, so a value added on either side does not compile until it is
//! mapped.

use cairn_proto::{methods, values};
use cairn_store::{Access, ChangeOp, JobKind, JobRecord, JobStatus, Retention, ServiceMode};

/// A store value in its wire form.
pub trait IntoWire {
    type Wire;
    fn into_wire(self) -> Self::Wire;
}

/// A wire value in the store's form.
pub trait IntoStore {
    type Stored;
    fn into_store(self) -> Self::Stored;
}

/// Implements both directions for an enum whose variants pair one to one.
macro_rules! paired {
    ($stored:ty, $wire:ty, { $($s:ident <=> $w:ident),+ $(,)? }) => {
        impl IntoWire for $stored {
            type Wire = $wire;
            fn into_wire(self) -> $wire {
                match self {
                    $(<$stored>::$s => <$wire>::$w,)+
                }
            }
        }

        impl IntoStore for $wire {
            type Stored = $stored;
            fn into_store(self) -> $stored {
                match self {
                    $(<$wire>::$w => <$stored>::$s,)+
                }
            }
        }
    };
}

paired!(ServiceMode, values::ServiceMode, {
    ReadWrite <=> ReadWrite,
    ReadOnly <=> ReadOnly,
    Down <=> Down,
});

paired!(Access, values::Access, { Read <=> Read, Write <=> Write });

paired!(JobKind, values::JobKind, {
    Backup <=> Backup,
    Restore <=> Restore,
    Resync <=> Resync,
});

paired!(JobStatus, values::JobStatus, {
    Queued <=> Queued,
    Started <=> Started,
    InProgress <=> InProgress,
    Completed <=> Completed,
    Failed <=> Failed,
    Canceled <=> Canceled,
});

paired!(ChangeOp, values::Op, { Put <=> Put, Delete <=> Del });

impl IntoWire for Retention {
    type Wire = methods::RetentionArgs;
    fn into_wire(self) -> methods::RetentionArgs {
        methods::RetentionArgs {
            max_changes: self.max_changes,
            max_age_secs: self.max_age_secs,
        }
    }
}

impl IntoStore for methods::RetentionArgs {
    type Stored = Retention;
    /// Zero keeps everything, as an absent limit does.
    fn into_store(self) -> Retention {
        Retention {
            max_changes: self.max_changes.filter(|n| *n > 0),
            max_age_secs: self.max_age_secs.filter(|n| *n > 0),
        }
    }
}

impl IntoWire for &JobRecord {
    type Wire = methods::Job;
    fn into_wire(self) -> methods::Job {
        methods::Job {
            id: self.id,
            kind: self.kind.into_wire(),
            status: self.status.into_wire(),
            progress: methods::JobProgress {
                current: self.progress_current,
                total: self.progress_total,
                message: self.progress_message.clone(),
            },
            error: self
                .error_message
                .as_ref()
                .map(|message| methods::JobError {
                    message: message.clone(),
                    details: self.error_details.clone(),
                }),
            location: self.result_location.clone(),
            started_by: self.started_by.clone(),
            started_on_ms: self.started_on_ms,
            finished_on_ms: self.finished_on_ms,
            total_time_ms: self.total_time_ms,
            params: self.params.clone(),
            stats: self.stats.clone(),
        }
    }
}
