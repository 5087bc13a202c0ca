//! Synchronous exception causes, the values a trap records, and trap-vector
//! arithmetic.

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
    EcallFromVS = 10,
    EcallFromM = 11,
    InstructionPageFault = 12,
    LoadPageFault = 13,
    StorePageFault = 15,
    InstructionGuestPageFault = 20,
    LoadGuestPageFault = 21,
    VirtualInstruction = 22,
    StoreGuestPageFault = 23,
}

/// Traps taken, by cause, for `--stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapCounts {
    /// Indexed by exception code (`mcause` without the interrupt bit).
    pub exceptions: [u64; CAUSE_CODES],
    /// Indexed by interrupt code.
    pub interrupts: [u64; CAUSE_CODES],
}

/// Exception and interrupt codes counted (the spec's standard ones are below 24).
pub const CAUSE_CODES: usize = 24;

impl Default for TrapCounts {
    fn default() -> TrapCounts {
        TrapCounts {
            exceptions: [0; CAUSE_CODES],
            interrupts: [0; CAUSE_CODES],
        }
    }
}

impl TrapCounts {
    pub(crate) fn count(&mut self, interrupt: bool, code: u64) {
        let counts = if interrupt {
            &mut self.interrupts
        } else {
            &mut self.exceptions
        };
        if let Some(n) = counts.get_mut(code as usize) {
            *n += 1;
        }
    }

    /// (name, count) of every cause taken at least once, most taken first.
    pub fn taken(&self) -> Vec<(&'static str, u64)> {
        let mut taken: Vec<_> = (0..CAUSE_CODES)
            .flat_map(|code| {
                [
                    (cause_name(false, code as u64), self.exceptions[code]),
                    (cause_name(true, code as u64), self.interrupts[code]),
                ]
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        taken.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        taken
    }
}

impl std::ops::AddAssign for TrapCounts {
    fn add_assign(&mut self, other: TrapCounts) {
        for (a, b) in self.exceptions.iter_mut().zip(other.exceptions) {
            *a += b;
        }
        for (a, b) in self.interrupts.iter_mut().zip(other.interrupts) {
            *a += b;
        }
    }
}

/// The privileged spec's name for a cause.
pub fn cause_name(interrupt: bool, code: u64) -> &'static str {
    if interrupt {
        return match code {
            1 => "S software interrupt",
            2 => "VS software interrupt",
            3 => "M software interrupt",
            5 => "S timer interrupt",
            6 => "VS timer interrupt",
            7 => "M timer interrupt",
            9 => "S external interrupt",
            10 => "VS external interrupt",
            11 => "M external interrupt",
            12 => "guest external interrupt",
            _ => "other interrupt",
        };
    }
    match code {
        0 => "instruction misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load misaligned",
        5 => "load access fault",
        6 => "store misaligned",
        7 => "store access fault",
        8 => "ecall from U/VU",
        9 => "ecall from HS",
        10 => "ecall from VS",
        11 => "ecall from M",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store page fault",
        20 => "instruction guest-page fault",
        21 => "load guest-page fault",
        22 => "virtual instruction",
        23 => "store guest-page fault",
        _ => "other exception",
    }
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

    /// What V=1 alone forbids (H extension): a virtual-instruction exception.
    pub fn virtual_instruction(raw: u32) -> Exception {
        Exception::new(ExceptionCause::VirtualInstruction, raw as u64)
    }
}

/// The handler address for a trap through `tvec`: vectored mode sends
/// interrupts to base + 4 * cause.
pub fn vector(tvec: u64, interrupt: bool, code: u64) -> u64 {
    let base = tvec & !3;
    if interrupt && tvec & 3 == 1 {
        // A guest may write any base: wrap around as the hardware would.
        base.wrapping_add(4 * code)
    } else {
        base
    }
}

/// Whether `cause` is a fault of an explicit load, store or AMO: the traps
/// whose `mtinst`/`htinst` may hold the transformed instruction.
pub(crate) fn is_data_fault(cause: ExceptionCause) -> bool {
    use ExceptionCause::*;
    matches!(
        cause,
        LoadMisaligned
            | LoadAccessFault
            | StoreMisaligned
            | StoreAccessFault
            | LoadPageFault
            | StorePageFault
            | LoadGuestPageFault
            | StoreGuestPageFault
    )
}

/// The transformed instruction the H extension writes to `mtinst`/`htinst`
/// for a data fault of `inst` (decoded from `raw`, `compressed` if it was
/// 16 bits): the 32-bit form of the access with its rs1 field holding the
/// faulting address's offset from the effective address and the
/// immediate cleared; bit 1 clear for a compressed instruction. Zero for
/// instructions that are not loads or stores.
pub(crate) fn transformed_instruction(
    inst: riscv_isa::Instruction,
    raw: u32,
    compressed: bool,
    offset: u64,
) -> u64 {
    use riscv_isa::{FpFormat, Instruction as I, LoadWidth};
    const LOAD: u32 = 0x03;
    const LOAD_FP: u32 = 0x07;
    const STORE: u32 = 0x23;
    const STORE_FP: u32 = 0x27;
    const RS1_FIELD: u32 = 0x1f << 15;
    let offset = (offset as u32 & 0x1f) << 15;
    let fp_width = |fmt: FpFormat| if fmt == FpFormat::S { 2 } else { 3 };
    let word = match inst {
        I::Load { width, rd, .. } => {
            let funct3 = match width {
                LoadWidth::B => 0,
                LoadWidth::H => 1,
                LoadWidth::W => 2,
                LoadWidth::D => 3,
                LoadWidth::Bu => 4,
                LoadWidth::Hu => 5,
                LoadWidth::Wu => 6,
            };
            offset | funct3 << 12 | (rd as u32) << 7 | LOAD
        }
        I::FpLoad { fmt, rd, .. } => offset | fp_width(fmt) << 12 | (rd as u32) << 7 | LOAD_FP,
        I::Store { bytes, rs2, .. } => {
            (rs2 as u32) << 20 | offset | bytes.trailing_zeros() << 12 | STORE
        }
        I::FpStore { fmt, rs2, .. } => (rs2 as u32) << 20 | offset | fp_width(fmt) << 12 | STORE_FP,
        // Atomics and the hypervisor accesses have no immediate: the
        // instruction itself with the offset in rs1.
        I::Lr { .. }
        | I::Sc { .. }
        | I::Amo { .. }
        | I::HypervisorLoad { .. }
        | I::HypervisorStore { .. } => raw & !RS1_FIELD | offset,
        _ => return 0,
    };
    let word = if compressed { word & !2 } else { word };
    word as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_are_counted_by_cause_most_taken_first() {
        let mut counts = TrapCounts::default();
        for _ in 0..3 {
            counts.count(false, ExceptionCause::EcallFromU as u64);
        }
        counts.count(true, 5);
        counts.count(false, 63); // beyond the table: not counted, no panic
        let mut more = TrapCounts::default();
        more.count(true, 5);
        more.count(true, 5);
        more.count(true, 5);
        more.count(true, 5);
        counts += more;
        assert_eq!(
            counts.taken(),
            [("S timer interrupt", 5), ("ecall from U/VU", 3)]
        );
    }

    #[test]
    fn a_vector_near_the_top_of_the_address_space_wraps() {
        // Vectored mode, base 0xffff_ffff_ffff_fffc: a guest can write it.
        assert_eq!(vector(u64::MAX - 2, true, 5), 0x10);
        assert_eq!(vector(u64::MAX - 2, false, 5), u64::MAX - 3);
    }
}
