//! The device layer every visor engine shares.
//!
//! An engine (the RISC-V interpreter, the KVM VMM) turns a guest access it
//! could not complete itself — an MMIO load or store, a port I/O — into a
//! call on a [`Bus`], which finds the [`BusDevice`] that owns the address and
//! counts the trap in that device's [`DeviceStats`]. Devices raise interrupts
//! through an [`IrqLine`]; the engine decides how a line reaches the guest
//! (a PLIC source, a KVM irqfd). Work a device finishes on a host thread of
//! its own (a disk request) rings a [`Doorbell`], and the engine completes
//! it on the thread that owns the device; such a thread enters its
//! [`sandbox`] role first. Devices that move data (virtio) read and write
//! guest RAM through vm-memory's bounds-checked `GuestMemoryMmap`
//! (re-exported here), so a guest-supplied address can never reach
//! outside guest RAM. Devices whose state a snapshot keeps implement
//! [`Persist`].

mod bus;
mod doorbell;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod image;
mod irq;
mod persist;
pub mod sandbox;
mod stats;

pub use bus::{Bus, BusDevice, BusError, SharedDevice};
pub use doorbell::Doorbell;
pub use irq::{IrqLine, LevelIrq};
pub use persist::{check, Persist, RestoreError};
pub use stats::{DeviceStats, StatsTable};
pub use vm_memory;

/// Console input events from the host side, as every engine receives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    Byte(u8),
    /// The user asked to quit (Ctrl-A x).
    Quit,
}
/// Guest memory as devices see it: vm-memory's mmap regions with a dirty
/// bitmap (a bit per 4 KiB page that every write through this view sets),
/// so snapshots and live migration know what devices wrote.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<vm_memory::bitmap::AtomicBitmap>;
pub type GuestRegionMmap = vm_memory::GuestRegionMmap<vm_memory::bitmap::AtomicBitmap>;

/// Fills `buf` from the kernel's CSPRNG; false if it fails.
pub fn host_random(buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe a live, writable slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        filled += n as usize;
    }
    true
}
