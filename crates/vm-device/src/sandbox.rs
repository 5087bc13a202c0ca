//! Where a device's host thread narrows what it may do. The visor binary
//! owns the policy (its seccomp module) and registers it here once the VM
//! is set up; a device thread calls [`enter`] with its role before each
//! piece of work it does on the guest's behalf, and from the first call
//! after registration on runs under that role's narrower list. Without a
//! registered policy (`--seccomp off`, unit tests, fuzzing) `enter` does
//! nothing.

use std::cell::Cell;
use std::sync::OnceLock;

/// What a host thread does, and so what it may ask of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadRole {
    /// A disk's I/O thread: reads and writes the image it was given and
    /// guest RAM, nothing else.
    DiskIo,
}

/// Narrows the calling thread to what `role` needs; does not return if it
/// cannot (the policy ends the process rather than run wider than meant).
pub type Policy = fn(ThreadRole);

static POLICY: OnceLock<Policy> = OnceLock::new();

thread_local! {
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// Registers the policy threads enter their roles under; false when one
/// was registered already.
pub fn set_policy(policy: Policy) -> bool {
    POLICY.set(policy).is_ok()
}

/// Puts the calling thread under `role`'s policy, once.
pub fn enter(role: ThreadRole) {
    if ENTERED.get() {
        return;
    }
    if let Some(policy) = POLICY.get() {
        policy(role);
        ENTERED.set(true);
    }
}
