//! The service status an admin sets: READ_WRITE, READ_ONLY or DOWN, with the current
//! message and the pending maintenance message. Kept in the `meta` table (key `status`,
//! a msgpack map), so that it survives restarts and travels with backups.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::format::table;

/// Longest message, in characters.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 256;

/// What the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceMode {
    #[default]
    ReadWrite,
    /// Reads work; writes of non-admins are refused.
    ReadOnly,
    /// Every non-admin call is refused.
    Down,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::ReadWrite => "READ_WRITE",
            ServiceMode::ReadOnly => "READ_ONLY",
            ServiceMode::Down => "DOWN",
        }
    }

    pub fn parse(name: &str) -> Option<ServiceMode> {
        match name {
            "READ_WRITE" => Some(ServiceMode::ReadWrite),
            "READ_ONLY" => Some(ServiceMode::ReadOnly),
            "DOWN" => Some(ServiceMode::Down),
            _ => None,
        }
    }
}

/// The stored status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub mode: ServiceMode,
    pub current_message: String,
    pub pending_maintenance_message: String,
    /// Who set it, and when (ms since the epoch); empty and 0 before the first change.
    #[serde(default)]
    pub set_by: String,
    #[serde(default)]
    pub set_ms: u64,
}

impl ServiceStatus {
    /// Checks the messages' lengths.
    pub fn validate(&self) -> Result<()> {
        for (what, message) in [
            ("currentMessage", &self.current_message),
            (
                "pendingMaintenanceMessage",
                &self.pending_maintenance_message,
            ),
        ] {
            let chars = message.chars().count();
            if chars > MAX_STATUS_MESSAGE_CHARS {
                return Err(StoreError::InvalidArgument {
                    reason: format!(
                        "{what} has {chars} characters, at most {MAX_STATUS_MESSAGE_CHARS}"
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a status always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<ServiceStatus> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::META,
            reason: format!("status: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_long_messages_are_refused() {
        let status = ServiceStatus {
            mode: ServiceMode::ReadOnly,
            current_message: "migrating".to_string(),
            pending_maintenance_message: "down at 03:00".to_string(),
            set_by: "root".to_string(),
            set_ms: 5,
        };
        assert_eq!(ServiceStatus::decode(&status.encode()).unwrap(), status);
        assert!(status.validate().is_ok());
        let long = ServiceStatus {
            current_message: "é".repeat(257),
            ..status
        };
        assert!(matches!(
            long.validate(),
            Err(StoreError::InvalidArgument { .. })
        ));
        assert_eq!(ServiceMode::parse("DOWN"), Some(ServiceMode::Down));
        assert_eq!(ServiceMode::parse("down"), None);
    }
}
