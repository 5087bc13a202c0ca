//! SiFive CLINT: per-hart software interrupt (msip) and timer compare
//! (mtimecmp) registers, and the shared `mtime` counter.

pub const BASE: u64 = 0x0200_0000;
pub const SIZE: u64 = 0x1_0000;
const MTIMECMP: u64 = 0x4000;
const MTIME: u64 = 0xbff8;

use vm_device::{check, Persist, RestoreError};

pub struct Clint {
    pub msip: Vec<bool>,
    pub mtimecmp: Vec<u64>,
}

impl Clint {
    pub fn new(harts: usize) -> Clint {
        Clint {
            msip: vec![false; harts],
            mtimecmp: vec![u64::MAX; harts],
        }
    }

    /// Reads a register; `mtime` is the current timer value.
    pub fn read(&self, offset: u64, size: u8, mtime: u64) -> Option<u64> {
        if offset < MTIMECMP {
            // msip: one 32-bit register per hart
            if size != 4 || !offset.is_multiple_of(4) {
                return None;
            }
            return Some(
                self.msip
                    .get((offset / 4) as usize)
                    .map_or(0, |&b| b as u64),
            );
        }
        let (reg, shift) = (offset & !7, (offset & 7) * 8);
        let value = if reg == MTIME {
            mtime
        } else if (MTIMECMP..MTIME).contains(&reg) {
            self.mtimecmp
                .get(((reg - MTIMECMP) / 8) as usize)
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        Some(value >> shift & mask(size))
    }

    /// Writes a register. Returns a new `mtime` when the guest set it.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, mtime: u64) -> Option<u64> {
        let (reg, shift) = (offset & !7, (offset & 7) * 8);
        let merge = |old: u64| (old & !(mask(size) << shift)) | ((value & mask(size)) << shift);
        if offset < MTIMECMP {
            if let Some(bit) = self.msip.get_mut((offset / 4) as usize) {
                *bit = value & 1 != 0;
            }
        } else if reg == MTIME {
            return Some(merge(mtime));
        } else if (MTIMECMP..MTIME).contains(&reg) {
            if let Some(cmp) = self.mtimecmp.get_mut(((reg - MTIMECMP) / 8) as usize) {
                *cmp = merge(*cmp);
            }
        }
        None
    }
}

/// What a snapshot keeps of the CLINT (`mtime` is the machine's clock).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClintState {
    pub msip: Vec<bool>,
    pub mtimecmp: Vec<u64>,
}

impl Persist for Clint {
    type State = ClintState;

    fn save(&self) -> ClintState {
        ClintState {
            msip: self.msip.clone(),
            mtimecmp: self.mtimecmp.clone(),
        }
    }

    fn restore(&mut self, state: &ClintState) -> Result<(), RestoreError> {
        let harts = self.msip.len();
        check(
            state.msip.len() == harts && state.mtimecmp.len() == harts,
            "CLINT",
            &format!("not for {harts} hart(s)"),
        )?;
        *self = Clint {
            msip: state.msip.clone(),
            mtimecmp: state.mtimecmp.clone(),
        };
        Ok(())
    }
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1 << (8 * size as u64)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtimecmp_halves_compose() {
        let mut c = Clint::new(2);
        c.write(MTIMECMP + 8, 4, 0x1234_5678, 0);
        c.write(MTIMECMP + 12, 4, 0x9, 0);
        assert_eq!(c.mtimecmp[1], 0x9_1234_5678);
        assert_eq!(c.read(MTIMECMP + 12, 4, 0), Some(0x9));
        assert_eq!(c.read(MTIME, 8, 42), Some(42));
        c.write(4, 4, 1, 0);
        assert!(c.msip[1] && !c.msip[0]);
    }

    #[test]
    fn state_round_trips_and_a_wrong_hart_count_is_refused() {
        let mut c = Clint::new(2);
        c.write(4, 4, 1, 0);
        c.write(MTIMECMP, 8, 77, 0);
        let text = serde_json::to_string(&c.save()).unwrap();
        let mut restored = Clint::new(2);
        restored
            .restore(&serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(restored.save(), c.save());
        let mut one_hart = Clint::new(1);
        let before = one_hart.save();
        assert_eq!(
            one_hart.restore(&c.save()).unwrap_err().to_string(),
            "CLINT state: not for 1 hart(s)"
        );
        assert_eq!(one_hart.save(), before);
    }
}
