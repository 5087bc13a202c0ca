//! A VM's virtual PLIC at guest physical 0x0c00_0000, the layout of QEMU
//! virt's: priorities, pending bits, per-context enables, thresholds and
//! claim/complete, one context per vCPU (its S-mode external interrupt),
//! emulated on the guest-page faults its 32-bit accesses raise. Sources
//! are raised by the hypervisor (a passed-through device's interrupt, which
//! keeps its machine number); a context with a claimable source has its
//! vCPU's VSEIP set in hvip.

/// Where a VM finds its PLIC, and the window's size (as on QEMU virt).
pub const BASE: usize = 0x0c00_0000;
pub const SIZE: usize = 0x60_0000;
/// Interrupt sources 1..SOURCES (0 is "none").
pub const SOURCES: usize = 64;
/// Contexts: one per vCPU.
pub const CONTEXTS: usize = 4;

const PENDING: usize = 0x1000;
const ENABLE: usize = 0x2000;
const ENABLE_STRIDE: usize = 0x80;
const CONTEXT: usize = 0x20_0000;
const CONTEXT_STRIDE: usize = 0x1000;
const CLAIM: usize = 4;
/// Priorities and thresholds are 3 bits wide.
const PRIORITY_MASK: u32 = 7;
/// Source 0 does not exist.
const VALID_SOURCES: u64 = !1;

pub struct Vplic {
    priority: [u8; SOURCES],
    pending: u64,
    /// Claimed and not yet completed: not pending again until completed.
    in_service: u64,
    /// The level-triggered lines of virtual devices that are high: pending
    /// again at completion while they stay high.
    high: u64,
    enable: [u64; CONTEXTS],
    threshold: [u8; CONTEXTS],
}

impl Default for Vplic {
    fn default() -> Vplic {
        Vplic {
            priority: [0; SOURCES],
            pending: 0,
            in_service: 0,
            high: 0,
            enable: [0; CONTEXTS],
            threshold: [0; CONTEXTS],
        }
    }
}

impl Vplic {
    /// `source` interrupts (ignored while it is in service).
    pub fn raise(&mut self, source: usize) {
        let bit = 1u64 << (source % SOURCES);
        if bit & self.in_service == 0 {
            self.pending |= bit & VALID_SOURCES;
        }
    }

    /// The level of a virtual device's interrupt line `source`: high makes
    /// it pending (unless in service); low withdraws a pending request.
    pub fn set_level(&mut self, source: usize, high: bool) {
        let bit = (1u64 << (source % SOURCES)) & VALID_SOURCES;
        if high {
            self.high |= bit;
            if bit & self.in_service == 0 {
                self.pending |= bit;
            }
        } else {
            self.high &= !bit;
            self.pending &= !bit;
        }
    }

    /// Sources pending or in service: those whose interrupt the guest has
    /// not completed yet.
    pub fn outstanding(&self) -> u64 {
        self.pending | self.in_service
    }

    /// The best claimable source for `context`.
    fn best(&self, context: usize) -> Option<usize> {
        let candidates = self.pending & self.enable[context];
        if candidates == 0 {
            return None; // the common case, on every guest entry
        }
        (1..SOURCES)
            .filter(|&s| candidates & 1 << s != 0)
            .filter(|&s| self.priority[s] > self.threshold[context])
            .max_by_key(|&s| (self.priority[s], core::cmp::Reverse(s)))
    }

    /// Whether `context`'s vCPU has an external interrupt to take.
    pub fn interrupting(&self, context: usize) -> bool {
        context < CONTEXTS && self.best(context).is_some()
    }

    /// A 32-bit read of the register at `offset`.
    pub fn read(&mut self, offset: usize) -> u32 {
        match offset {
            o if o < PENDING => self.priority.get(o / 4).map_or(0, |&p| p as u32),
            o if o < ENABLE => word(self.pending, o - PENDING),
            o if o < CONTEXT => match enable_register(o) {
                Some((context, w)) => word(self.enable[context], w),
                None => 0,
            },
            o => match context_register(o) {
                Some((context, 0)) => self.threshold[context] as u32,
                Some((context, CLAIM)) => match self.best(context) {
                    Some(s) => {
                        self.pending &= !(1 << s);
                        self.in_service |= 1 << s;
                        s as u32
                    }
                    None => 0,
                },
                _ => 0,
            },
        }
    }

    /// A 32-bit write of the register at `offset`; the source a completion
    /// finished, if any (its machine interrupt may come again).
    pub fn write(&mut self, offset: usize, value: u32) -> Option<usize> {
        match offset {
            o if o < PENDING => {
                if let Some(p) = self.priority.get_mut(o / 4) {
                    *p = (value & PRIORITY_MASK) as u8;
                }
            }
            o if o < ENABLE => {} // pending bits are read-only
            o if o < CONTEXT => {
                if let Some((context, w)) = enable_register(o) {
                    let shift = 8 * w as u32;
                    let mask = 0xffff_ffffu64 << shift;
                    let bits = (value as u64) << shift & VALID_SOURCES;
                    self.enable[context] = self.enable[context] & !mask | bits;
                }
            }
            o => match context_register(o) {
                Some((context, 0)) => self.threshold[context] = (value & PRIORITY_MASK) as u8,
                Some((context, CLAIM)) => {
                    let s = value as usize;
                    let bit = 1u64.checked_shl(value).unwrap_or(0);
                    // As the PLIC does: a completion of a source the
                    // context has not enabled is ignored.
                    if s < SOURCES && self.in_service & bit & self.enable[context] != 0 {
                        self.in_service &= !bit;
                        self.pending |= bit & self.high;
                        return Some(s);
                    }
                }
                _ => {}
            },
        }
        None
    }
}

/// The 32 bits at byte offset `at` (0 or 4) of a 64-bit source mask.
fn word(bits: u64, at: usize) -> u32 {
    match at {
        0 => bits as u32,
        4 => (bits >> 32) as u32,
        _ => 0,
    }
}

/// (context, byte offset in its enable bits) of an enable register.
fn enable_register(offset: usize) -> Option<(usize, usize)> {
    let o = offset - ENABLE;
    let (context, at) = (o / ENABLE_STRIDE, o % ENABLE_STRIDE);
    (context < CONTEXTS && at < 8).then_some((context, at))
}

/// (context, register) of a threshold or claim register.
fn context_register(offset: usize) -> Option<(usize, usize)> {
    let o = offset - CONTEXT;
    let context = o / CONTEXT_STRIDE;
    (context < CONTEXTS).then_some((context, o % CONTEXT_STRIDE))
}
