//! Requests from one hart to the vCPUs that another may be running: an
//! IPI to inject, VS-stage translations or the instruction cache to flush.
//! Kept apart from the VM table, as atomics, so a hart about to enter a
//! guest applies them without the scheduler's lock; a vCPU running on
//! another hart is kicked there with a machine IPI (SBI), which makes it
//! exit and apply them.

use crate::vm::MAX_VCPUS;
use core::sync::atomic::{AtomicUsize, Ordering};
use hv_image::MAX_VMS;

/// Request bits.
pub const INJECT_VSSIP: usize = 1 << 0;
pub const FLUSH_VVMA: usize = 1 << 1;
pub const FENCE_I: usize = 1 << 2;
/// The requests the asking vCPU waits for (SBI's remote fences complete
/// before the call returns).
pub const FENCES: usize = FLUSH_VVMA | FENCE_I;

struct Signal {
    requests: AtomicUsize,
    /// The hart running the vCPU, plus one (0: none).
    running_on: AtomicUsize,
}

static SIGNALS: [[Signal; MAX_VCPUS]; MAX_VMS] = [const {
    [const {
        Signal {
            requests: AtomicUsize::new(0),
            running_on: AtomicUsize::new(0),
        }
    }; MAX_VCPUS]
}; MAX_VMS];

/// Adds `bits` to vCPU `v` of VM `vm`; the hart running it, if any.
pub fn post(vm: usize, v: usize, bits: usize) -> Option<usize> {
    let signal = &SIGNALS[vm][v];
    signal.requests.fetch_or(bits, Ordering::AcqRel);
    signal.running_on.load(Ordering::Acquire).checked_sub(1)
}

/// Requests not yet applied.
pub fn pending(vm: usize, v: usize) -> usize {
    SIGNALS[vm][v].requests.load(Ordering::Acquire)
}

/// Whether the requests `bits` posted to a vCPU running elsewhere are
/// still to be applied there.
pub fn awaited(vm: usize, v: usize, bits: usize) -> bool {
    let signal = &SIGNALS[vm][v];
    signal.requests.load(Ordering::Acquire) & bits != 0
        && signal.running_on.load(Ordering::Acquire) != 0
}

/// Drops vCPU `v`'s requests (its VM starts afresh).
pub fn clear(vm: usize, v: usize) {
    SIGNALS[vm][v].requests.store(0, Ordering::Release);
}

pub fn set_running(vm: usize, v: usize, hart: Option<usize>) {
    SIGNALS[vm][v]
        .running_on
        .store(hart.map_or(0, |h| h + 1), Ordering::Release);
}

/// Applies vCPU `v`'s requests on this hart, where it is about to run
/// (its VS CSRs and the VM's hgatp in place).
pub fn apply(vm: usize, v: usize) {
    let bits = SIGNALS[vm][v].requests.swap(0, Ordering::AcqRel);
    if bits & INJECT_VSSIP != 0 {
        crate::csr::csr_write!("hvip", crate::csr::csr_read!("hvip") | crate::vcpu::VSSIP);
    }
    if bits & FLUSH_VVMA != 0 {
        crate::vm::hfence_vvma();
    }
    if bits & FENCE_I != 0 {
        // SAFETY: orders this hart's instruction fetches after stores.
        unsafe { core::arch::asm!("fence.i") };
    }
}
