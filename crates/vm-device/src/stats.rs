//! Per-device counters: guest accesses that trapped into the monitor,
//! interrupts injected, payload bytes moved. Shared (atomics) between the bus,
//! the device's interrupt line and its backend.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Guest register accesses (MMIO or port I/O) that reached the device.
    pub traps: AtomicU64,
    /// Interrupts raised towards the guest (rising edges of the line).
    pub interrupts: AtomicU64,
    /// Payload bytes the guest handed to the device (disk writes, transmitted packets).
    pub bytes_from_guest: AtomicU64,
    /// Payload bytes the device handed to the guest (disk reads, received packets).
    pub bytes_to_guest: AtomicU64,
}

impl DeviceStats {
    pub fn trap(&self) {
        self.traps.fetch_add(1, Relaxed);
    }

    pub fn interrupt(&self) {
        self.interrupts.fetch_add(1, Relaxed);
    }

    pub fn from_guest(&self, bytes: usize) {
        self.bytes_from_guest.fetch_add(bytes as u64, Relaxed);
    }

    pub fn to_guest(&self, bytes: usize) {
        self.bytes_to_guest.fetch_add(bytes as u64, Relaxed);
    }

    /// (traps, interrupts, bytes from guest, bytes to guest) as of now.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.traps.load(Relaxed),
            self.interrupts.load(Relaxed),
            self.bytes_from_guest.load(Relaxed),
            self.bytes_to_guest.load(Relaxed),
        ]
    }
}

/// The named counters of a whole machine, printed by `--stats`.
#[derive(Clone, Default)]
pub struct StatsTable {
    rows: Vec<(String, Arc<DeviceStats>)>,
}

impl StatsTable {
    /// Adds a device's counters under `name` and returns them for the device to update.
    pub fn register(&mut self, name: impl Into<String>) -> Arc<DeviceStats> {
        let stats = Arc::new(DeviceStats::default());
        self.rows.push((name.into(), stats.clone()));
        stats
    }

    pub fn rows(&self) -> impl Iterator<Item = (&str, [u64; 4])> {
        self.rows.iter().map(|(n, s)| (n.as_str(), s.snapshot()))
    }

    /// A fixed-width table, one device per line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<20} {:>12} {:>12} {:>16} {:>16}\n",
            "device", "traps", "interrupts", "bytes-from-guest", "bytes-to-guest"
        );
        for (name, [traps, irqs, from, to]) in self.rows() {
            let _ = writeln!(out, "{name:<20} {traps:>12} {irqs:>12} {from:>16} {to:>16}");
        }
        out
    }
}
