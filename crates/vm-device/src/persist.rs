//! Saving and restoring what a device's guest can observe, for snapshots
//! and migration, in the manner of Firecracker's `Persist`: `save` takes a
//! plain value that serializes; `restore` checks a saved value (untrusted:
//! it comes from a file or over a socket) against the device as this
//! machine configured it, and either puts all of it back or changes
//! nothing. Host-side parts (a backing file, a TAP, counters) are not part
//! of the state: the machine configuration re-creates them.

use serde::{de::DeserializeOwned, Serialize};

pub trait Persist {
    type State: Serialize + DeserializeOwned;

    fn save(&self) -> Self::State;

    fn restore(&mut self, state: &Self::State) -> Result<(), RestoreError>;
}

/// A saved state this device cannot take, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{device} state: {what}")]
pub struct RestoreError {
    pub device: &'static str,
    pub what: String,
}

impl RestoreError {
    pub fn new(device: &'static str, what: impl Into<String>) -> RestoreError {
        RestoreError {
            device,
            what: what.into(),
        }
    }
}

/// Refuses `state` unless `ok`.
pub fn check(ok: bool, device: &'static str, what: &str) -> Result<(), RestoreError> {
    if ok {
        Ok(())
    } else {
        Err(RestoreError::new(device, what))
    }
}
