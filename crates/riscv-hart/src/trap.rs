//! Synchronous exception causes and trap-vector arithmetic.

/// The interrupt bit of `mcause`/`scause`.
pub const INTERRUPT_BIT: u64 = 1 << 63;

/// Synchronous exception codes (privileged spec table 3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExceptionCause {
    InstructionMisaligned = 0,
    InstructionAccessFault = 1,
    IllegalInstruction = 2,
    Breakpoint = 3,
    LoadMisaligned = 4,
    LoadAccessFault = 5,
    StoreMisaligned = 6,
    StoreAccessFault = 7,
    EcallFromU = 8,
    EcallFromS = 9,
    EcallFromM = 11,
    InstructionPageFault = 12,
    LoadPageFault = 13,
    StorePageFault = 15,
}

/// A synchronous exception with its trap value (`mtval`/`stval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub cause: ExceptionCause,
    pub tval: u64,
}

impl Exception {
    pub fn new(cause: ExceptionCause, tval: u64) -> Exception {
        Exception { cause, tval }
    }

    pub fn illegal(raw: u32) -> Exception {
        Exception::new(ExceptionCause::IllegalInstruction, raw as u64)
    }
}

/// The handler address for a trap through `tvec`: vectored mode sends
/// interrupts to base + 4 * cause.
pub fn vector(tvec: u64, interrupt: bool, code: u64) -> u64 {
    let base = tvec & !3;
    if interrupt && tvec & 3 == 1 {
        base + 4 * code
    } else {
        base
    }
}
