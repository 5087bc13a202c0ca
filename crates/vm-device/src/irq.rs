//! Interrupt lines from devices to the engine's interrupt controller.

use crate::DeviceStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A device's interrupt output. Level-triggered: the device holds it high
/// while it has something for the driver to look at.
pub trait IrqLine: Send + Sync {
    fn set_level(&self, high: bool);
}

/// A level the engine samples (the RISC-V board copies it into a PLIC
/// source); each rising edge counts as one injected interrupt.
pub struct LevelIrq {
    level: AtomicBool,
    stats: Arc<DeviceStats>,
}

impl LevelIrq {
    pub fn new(stats: Arc<DeviceStats>) -> Arc<LevelIrq> {
        Arc::new(LevelIrq {
            level: AtomicBool::new(false),
            stats,
        })
    }

    pub fn level(&self) -> bool {
        self.level.load(Ordering::Acquire)
    }
}

impl IrqLine for LevelIrq {
    fn set_level(&self, high: bool) {
        if !self.level.swap(high, Ordering::AcqRel) && high {
            self.stats.interrupt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rising_edges_only() {
        let stats = Arc::new(DeviceStats::default());
        let line = LevelIrq::new(stats.clone());
        line.set_level(true);
        line.set_level(true);
        assert!(line.level());
        line.set_level(false);
        line.set_level(false);
        line.set_level(true);
        assert_eq!(stats.snapshot()[1], 2);
    }
}
