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

/// What a trap records besides its cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapValues {
    /// `mtval`/`stval`: the faulting address or instruction bits.
    pub tval: u64,
    /// `mtval2`/`htval`: the guest physical address of a guest-page fault, shifted right by 2.
    pub tval2: u64,
    /// `mtinst`/`htinst`: the (transformed) trapping instruction, or 0.
    pub tinst: u64,
    /// Whether `tval` is a guest virtual address (`mstatus.GVA`/`hstatus.GVA`).
    pub gva: bool,
}

/// A synchronous exception and the values its trap records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub cause: ExceptionCause,
    pub values: TrapValues,
}

impl Exception {
    pub fn new(cause: ExceptionCause, tval: u64) -> Exception {
        Exception {
            cause,
            values: TrapValues {
                tval,
                ..TrapValues::default()
            },
        }
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
