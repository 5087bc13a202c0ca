//! SiFive PLIC: level-triggered sources with priorities, and per-context
//! enables, thresholds and claim/complete. Context 2h is hart h's M mode,
//! 2h+1 its S mode (the QEMU `virt` layout).

pub const BASE: u64 = 0x0c00_0000;
pub const SIZE: u64 = 0x60_0000;
/// Number of interrupt sources, excluding the reserved source 0.
pub const SOURCES: usize = 95;
const PENDING: u64 = 0x1000;
const ENABLE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;
const WORDS: usize = (SOURCES + 1).div_ceil(32);
/// Priorities and thresholds are 3 bits wide.
const PRIORITY_MASK: u32 = 7;

use vm_device::{check, Persist, RestoreError};

pub struct Plic {
    priority: [u32; SOURCES + 1],
    /// The level each device drives.
    level: [bool; SOURCES + 1],
    pending: [bool; SOURCES + 1],
    /// Claimed and not yet completed: the gateway holds further requests.
    in_service: [bool; SOURCES + 1],
    enable: Vec<[u32; WORDS]>,
    threshold: Vec<u32>,
}

impl Plic {
    pub fn new(harts: usize) -> Plic {
        let contexts = harts * 2;
        Plic {
            priority: [0; SOURCES + 1],
            level: [false; SOURCES + 1],
            pending: [false; SOURCES + 1],
            in_service: [false; SOURCES + 1],
            enable: vec![[0; WORDS]; contexts],
            threshold: vec![0; contexts],
        }
    }

    /// Sets the level a device drives on `source`.
    pub fn set_level(&mut self, source: usize, high: bool) {
        if source == 0 || source > SOURCES {
            return;
        }
        self.level[source] = high;
        self.pending[source] = high && !self.in_service[source];
    }

    fn enabled(&self, context: usize, source: usize) -> bool {
        self.enable[context][source / 32] >> (source % 32) & 1 != 0
    }

    /// The best claimable source for `context`: pending, enabled, above the threshold.
    fn best(&self, context: usize) -> Option<usize> {
        let mut best: Option<usize> = None;
        for s in 1..=SOURCES {
            if self.pending[s]
                && self.enabled(context, s)
                && self.priority[s] > self.threshold[context]
                && best.is_none_or(|b| self.priority[s] > self.priority[b])
            {
                best = Some(s);
            }
        }
        best
    }

    /// Whether `context` has an interrupt to take (drives MEIP/SEIP).
    pub fn context_pending(&self, context: usize) -> bool {
        context < self.threshold.len() && self.best(context).is_some()
    }

    pub fn read(&mut self, offset: u64, size: u8) -> Option<u64> {
        if size != 4 || !offset.is_multiple_of(4) {
            return None;
        }
        Some(match offset {
            o if o < PENDING => self.priority.get((o / 4) as usize).copied().unwrap_or(0) as u64,
            o if o < ENABLE => {
                let word = ((o - PENDING) / 4) as usize;
                (0..32)
                    .filter(|b| self.pending.get(word * 32 + b).copied().unwrap_or(false))
                    .fold(0u64, |acc, b| acc | 1 << b)
            }
            o if o < CONTEXT => {
                let context = ((o - ENABLE) / ENABLE_STRIDE) as usize;
                let word = ((o - ENABLE) % ENABLE_STRIDE / 4) as usize;
                self.enable
                    .get(context)
                    .and_then(|e| e.get(word))
                    .copied()
                    .unwrap_or(0) as u64
            }
            o => {
                let context = ((o - CONTEXT) / CONTEXT_STRIDE) as usize;
                if context >= self.threshold.len() {
                    return Some(0);
                }
                match (o - CONTEXT) % CONTEXT_STRIDE {
                    0 => self.threshold[context] as u64,
                    4 => self.claim(context) as u64,
                    _ => 0,
                }
            }
        })
    }

    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> bool {
        if size != 4 || !offset.is_multiple_of(4) {
            return false;
        }
        let value = value as u32;
        match offset {
            o if o < PENDING => {
                let s = (o / 4) as usize;
                if (1..=SOURCES).contains(&s) {
                    self.priority[s] = value & PRIORITY_MASK;
                }
            }
            o if o < ENABLE => {} // pending bits are read-only
            o if o < CONTEXT => {
                let context = ((o - ENABLE) / ENABLE_STRIDE) as usize;
                let word = ((o - ENABLE) % ENABLE_STRIDE / 4) as usize;
                if let Some(w) = self.enable.get_mut(context).and_then(|e| e.get_mut(word)) {
                    *w = if word == 0 { value & !1 } else { value };
                }
            }
            o => {
                let context = ((o - CONTEXT) / CONTEXT_STRIDE) as usize;
                if context < self.threshold.len() {
                    match (o - CONTEXT) % CONTEXT_STRIDE {
                        0 => self.threshold[context] = value & PRIORITY_MASK,
                        4 => self.complete(context, value as usize),
                        _ => {}
                    }
                }
            }
        }
        true
    }

    fn claim(&mut self, context: usize) -> usize {
        match self.best(context) {
            Some(s) => {
                self.pending[s] = false;
                self.in_service[s] = true;
                s
            }
            None => 0,
        }
    }

    fn complete(&mut self, context: usize, source: usize) {
        if source == 0 || source > SOURCES || !self.enabled(context, source) {
            return;
        }
        self.in_service[source] = false;
        self.pending[source] = self.level[source];
    }
}

/// What a snapshot keeps of the PLIC: per source (0 included, always
/// clear) its priority, the level its device drives, pending and in
/// service; per context its enable words and threshold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlicState {
    pub priority: Vec<u32>,
    pub level: Vec<bool>,
    pub pending: Vec<bool>,
    pub in_service: Vec<bool>,
    pub enable: Vec<Vec<u32>>,
    pub threshold: Vec<u32>,
}

impl Persist for Plic {
    type State = PlicState;

    fn save(&self) -> PlicState {
        PlicState {
            priority: self.priority.to_vec(),
            level: self.level.to_vec(),
            pending: self.pending.to_vec(),
            in_service: self.in_service.to_vec(),
            enable: self.enable.iter().map(|e| e.to_vec()).collect(),
            threshold: self.threshold.clone(),
        }
    }

    fn restore(&mut self, state: &PlicState) -> Result<(), RestoreError> {
        let s = state;
        let per_source = [&s.level, &s.pending, &s.in_service];
        check(
            s.priority.len() == SOURCES + 1 && per_source.iter().all(|v| v.len() == SOURCES + 1),
            "PLIC",
            &format!("not {SOURCES} sources"),
        )?;
        let contexts = self.threshold.len();
        check(
            s.threshold.len() == contexts
                && s.enable.len() == contexts
                && s.enable.iter().all(|e| e.len() == WORDS),
            "PLIC",
            &format!("not for {contexts} contexts"),
        )?;
        check(
            s.priority
                .iter()
                .chain(&s.threshold)
                .all(|&p| p <= PRIORITY_MASK),
            "PLIC",
            "a priority or threshold above 7",
        )?;
        check(
            s.priority[0] == 0
                && !s.pending[0]
                && !s.in_service[0]
                && s.enable.iter().all(|e| e[0] & 1 == 0),
            "PLIC",
            "source 0 is in use",
        )?;
        self.priority.copy_from_slice(&s.priority);
        self.level.copy_from_slice(&s.level);
        self.pending.copy_from_slice(&s.pending);
        self.in_service.copy_from_slice(&s.in_service);
        for (mine, saved) in self.enable.iter_mut().zip(&s.enable) {
            mine.copy_from_slice(saved);
        }
        self.threshold.copy_from_slice(&s.threshold);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Plic {
        let mut p = Plic::new(1);
        p.write(4 * 10, 4, 1); // priority of source 10
        p.write(4 * 3, 4, 2); // priority of source 3
        p.write(ENABLE + ENABLE_STRIDE, 4, (1 << 10) | (1 << 3)); // S context of hart 0
        p
    }

    #[test]
    fn claim_returns_highest_priority_and_complete_rearms_level() {
        let mut p = setup();
        p.set_level(10, true);
        p.set_level(3, true);
        assert!(p.context_pending(1));
        assert!(!p.context_pending(0), "M context has nothing enabled");
        let claim = CONTEXT + CONTEXT_STRIDE + 4;
        assert_eq!(p.read(claim, 4), Some(3));
        assert_eq!(p.read(claim, 4), Some(10));
        assert_eq!(p.read(claim, 4), Some(0));
        assert!(!p.context_pending(1));
        // Source 3 still high: completing it makes it pending again.
        p.write(claim, 4, 3);
        assert!(p.context_pending(1));
        // Source 10 dropped its line before completion: stays quiet.
        p.set_level(10, false);
        p.write(claim, 4, 10);
        assert_eq!(p.read(claim, 4), Some(3));
        assert_eq!(p.read(claim, 4), Some(0));
    }

    #[test]
    fn threshold_masks_lower_priorities() {
        let mut p = setup();
        p.set_level(10, true);
        p.write(CONTEXT + CONTEXT_STRIDE, 4, 1);
        assert!(!p.context_pending(1));
        p.write(CONTEXT + CONTEXT_STRIDE, 4, 0);
        assert!(p.context_pending(1));
        assert_eq!(p.read(PENDING, 4), Some(1 << 10));
    }

    #[test]
    fn state_round_trips_and_impossible_states_change_nothing() {
        let mut p = setup();
        p.set_level(10, true);
        p.set_level(3, true);
        assert_eq!(p.read(CONTEXT + CONTEXT_STRIDE + 4, 4), Some(3));
        let text = serde_json::to_string(&p.save()).unwrap();
        let mut restored = Plic::new(1);
        restored
            .restore(&serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(restored.save(), p.save());
        // It goes on as the original: 10 next, 3 once completed.
        assert_eq!(restored.read(CONTEXT + CONTEXT_STRIDE + 4, 4), Some(10));
        restored.write(CONTEXT + CONTEXT_STRIDE + 4, 4, 3);
        assert_eq!(restored.read(CONTEXT + CONTEXT_STRIDE + 4, 4), Some(3));

        let saved = p.save();
        let bad = |change: &dyn Fn(&mut PlicState)| {
            let mut state = saved.clone();
            change(&mut state);
            state
        };
        let mut target = Plic::new(1);
        let before = target.save();
        for (state, error) in [
            (
                bad(&|s| s.priority.truncate(SOURCES)),
                "PLIC state: not 95 sources",
            ),
            (
                bad(&|s| s.threshold.push(0)),
                "PLIC state: not for 2 contexts",
            ),
            (
                bad(&|s| s.priority[4] = 8),
                "PLIC state: a priority or threshold above 7",
            ),
            (
                bad(&|s| s.enable[0][0] |= 1),
                "PLIC state: source 0 is in use",
            ),
        ] {
            assert_eq!(target.restore(&state).unwrap_err().to_string(), error);
            assert_eq!(target.save(), before);
        }
        assert!(Plic::new(2).restore(&saved).is_err(), "another hart count");
    }

    #[test]
    fn bad_accesses_are_rejected_not_panics() {
        let mut p = setup();
        assert_eq!(p.read(2, 4), None);
        assert!(!p.write(0, 8, 0));
        assert_eq!(p.read(CONTEXT + 100 * CONTEXT_STRIDE + 4, 4), Some(0));
        p.write(CONTEXT + CONTEXT_STRIDE + 4, 4, 5000);
    }
}
