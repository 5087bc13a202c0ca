//! Address-range dispatch of trapped guest accesses to devices.

use crate::DeviceStats;
use std::sync::{Arc, Mutex};

/// A device reached through guest register accesses. `offset` is relative to
/// the start of the device's range; `data` is the access (1, 2, 4 or 8 bytes,
/// little-endian).
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
    /// Host-side work that arrives without a guest access (a received
    /// packet, console input). Engines call it regularly for the devices
    /// that say they need it.
    fn poll(&mut self) {}
    /// Whether [`BusDevice::poll`] does anything (asked once, at insertion).
    fn needs_poll(&self) -> bool {
        false
    }
}

pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("device range {base:#x}+{size:#x} is empty or overlaps another device")]
    Overlap { base: u64, size: u64 },
}

struct Range {
    base: u64,
    size: u64,
    device: SharedDevice,
    stats: Arc<DeviceStats>,
}

/// The devices of one address space (MMIO or port I/O), sorted by address.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
    /// The devices with host-side input, for [`Bus::poll`].
    polled: Vec<SharedDevice>,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Places `device` at `[base, base + size)`; its traps count in `stats`.
    pub fn insert(
        &mut self,
        base: u64,
        size: u64,
        device: SharedDevice,
        stats: Arc<DeviceStats>,
    ) -> Result<(), BusError> {
        let end = base.checked_add(size).filter(|_| size > 0);
        let overlaps = |r: &Range| base < r.base + r.size && r.base < base + size;
        if end.is_none() || self.ranges.iter().any(overlaps) {
            return Err(BusError::Overlap { base, size });
        }
        if lock(&device).needs_poll() {
            self.polled.push(device.clone());
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(
            at,
            Range {
                base,
                size,
                device,
                stats,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<&Range> {
        let i = self
            .ranges
            .partition_point(|r| r.base <= addr)
            .checked_sub(1)?;
        let r = &self.ranges[i];
        let offset = addr - r.base;
        (offset.checked_add(len as u64)? <= r.size).then_some(r)
    }

    /// Dispatches a read; false when no device covers the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some(r) = self.find(addr, data.len()) else {
            return false;
        };
        r.stats.trap();
        lock(&r.device).read(addr - r.base, data);
        true
    }

    /// Dispatches a write; false when no device covers the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some(r) = self.find(addr, data.len()) else {
            return false;
        };
        r.stats.trap();
        lock(&r.device).write(addr - r.base, data);
        true
    }

    /// Lets the devices with host-side input do their work.
    pub fn poll(&self) {
        for device in &self.polled {
            lock(device).poll();
        }
    }
}

/// Locks a device; a device that panicked mid-access poisons nothing worth
/// stopping for, since the process aborts on panic anyway.
fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch([u8; 16]);
    impl BusDevice for Scratch {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            let o = offset as usize;
            data.copy_from_slice(&self.0[o..o + data.len()]);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            let o = offset as usize;
            self.0[o..o + data.len()].copy_from_slice(data);
        }
    }

    fn scratch() -> SharedDevice {
        Arc::new(Mutex::new(Scratch([0; 16])))
    }

    #[test]
    fn dispatches_by_range_and_counts_traps() {
        let mut bus = Bus::new();
        let a = Arc::new(DeviceStats::default());
        let b = Arc::new(DeviceStats::default());
        bus.insert(0x2000, 16, scratch(), b.clone()).unwrap();
        bus.insert(0x1000, 16, scratch(), a.clone()).unwrap();
        assert!(bus.write(0x1004, &[1, 2, 3, 4]));
        let mut out = [0; 4];
        assert!(bus.read(0x1004, &mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(bus.read(0x2000, &mut out));
        assert_eq!(out, [0; 4]);
        assert_eq!(a.snapshot()[0], 2);
        assert_eq!(b.snapshot()[0], 1);
    }

    #[test]
    fn rejects_overlaps_and_accesses_outside_devices() {
        let mut bus = Bus::new();
        let s = Arc::new(DeviceStats::default());
        bus.insert(0x1000, 16, scratch(), s.clone()).unwrap();
        assert!(bus.insert(0x100f, 16, scratch(), s.clone()).is_err());
        assert!(bus.insert(0xff8, 9, scratch(), s.clone()).is_err());
        assert!(bus.insert(u64::MAX - 4, 16, scratch(), s.clone()).is_err());
        assert!(bus.insert(0x3000, 0, scratch(), s.clone()).is_err());
        let mut out = [0; 8];
        assert!(!bus.read(0xfff, &mut out[..1]));
        assert!(!bus.read(0x100c, &mut out)); // straddles the end
        assert!(!bus.write(0x1010, &[0]));
        assert!(!bus.read(u64::MAX, &mut out));
    }
}
