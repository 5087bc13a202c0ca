//! Block discovery: which instructions at a PC the first tier translates.

use riscv_isa::{AluOp, CsrOp, FpOp, Instruction, IntFormat};

/// The `fflags` CSR.
pub const FFLAGS: u16 = 0x001;
/// The `fcsr` CSR (`frm` lies between the two).
const FCSR: u16 = 0x003;
/// The FP CSRs (`fflags`, `frm`, `fcsr`): translated FP code keeps flags
/// in MXCSR until it exits, so only the inline `fflags` accesses see them.
const FP_CSRS: std::ops::RangeInclusive<u16> = FFLAGS..=FCSR;

/// Longest block, in instructions.
pub const MAX_BLOCK: usize = 64;

/// Rounding modes (the `rm` field): to nearest even, towards zero, dynamic.
const RM_RNE: u8 = 0;
pub const RM_RTZ: u8 = 1;
const RM_DYN: u8 = 7;

/// What to translate at a PC.
pub struct Translation {
    /// The translatable prefix (empty when the first instruction is not).
    pub instructions: Vec<(Instruction, u8)>,
    /// Guest bytes the translation depends on.
    pub bytes: usize,
}

/// What the translator may emit.
#[derive(Clone, Copy)]
pub struct Features {
    /// Loads, stores, AMOs and `fflags` accesses: effects beyond the
    /// registers (lock-step keeps them interpreted).
    pub side_effects: bool,
    /// FP instructions: FP is enabled and dirty and the dynamic rounding
    /// mode is RNE, so `rm = dyn` means what the host does by default.
    pub fp: bool,
    /// The host has FMA3.
    pub fma: bool,
}

/// True for the rounding modes translated FP code honours: RNE (static or
/// dynamic, given [`Features::fp`]).
fn nearest_even(rm: u8) -> bool {
    rm == RM_RNE || rm == RM_DYN
}

/// The work the first tier emits.
fn supported(inst: &Instruction, features: Features) -> bool {
    use Instruction as I;
    match *inst {
        I::Load { .. } | I::Store { .. } | I::Amo { .. } => features.side_effects,
        // Harts take turns on one host thread: memory is sequentially
        // consistent, and FENCE orders nothing further.
        I::Fence => true,
        I::Lui { .. } | I::Auipc { .. } | I::Jal { .. } | I::Jalr { .. } | I::Branch { .. } => true,
        // Handed to the interpreter from inside the block (see
        // `emit::Emitter::hand_over`): no exit to the dispatcher.
        I::Lr { .. } | I::Sc { .. } => features.side_effects,
        I::Csr { csr, .. } if !FP_CSRS.contains(&csr) => features.side_effects,
        I::OpImm { op, .. } => {
            !matches!(op, AluOp::Mul | AluOp::Mulh | AluOp::Mulhsu | AluOp::Mulhu)
        }
        I::OpImm32 { op, .. } => matches!(op, AluOp::Add | AluOp::Sll | AluOp::Srl | AluOp::Sra),
        I::Op { op, .. } => op != AluOp::Mulhsu,
        I::Op32 { op, .. } => matches!(
            op,
            AluOp::Add
                | AluOp::Sub
                | AluOp::Sll
                | AluOp::Srl
                | AluOp::Sra
                | AluOp::Mul
                | AluOp::Div
                | AluOp::Divu
                | AluOp::Rem
                | AluOp::Remu
        ),
        _ if !features.fp => false,
        I::FpLoad { .. } | I::FpStore { .. } => features.side_effects,
        I::FpArith { op, rm, .. } => match op {
            FpOp::Min | FpOp::Max => false,
            FpOp::SgnJ | FpOp::SgnJn | FpOp::SgnJx => true,
            _ => nearest_even(rm),
        },
        I::FpFma { rm, .. } => features.fma && nearest_even(rm),
        I::FpSqrt { rm, .. } | I::FpConvert { rm, .. } => nearest_even(rm),
        I::FpToInt { int, rm, .. } => {
            matches!(int, IntFormat::W | IntFormat::L) && (nearest_even(rm) || rm == RM_RTZ)
        }
        I::IntToFp { int, rm, .. } => {
            matches!(int, IntFormat::W | IntFormat::L) && nearest_even(rm)
        }
        I::FpCompare { .. } | I::FpMoveToInt { .. } | I::FpMoveFromInt { .. } => true,
        // frflags / fsflags (libm saves and restores the flags around
        // compares whose exceptions it wants hidden).
        I::Csr {
            op,
            src,
            imm: false,
            csr: FFLAGS,
            ..
        } => features.side_effects && (op == CsrOp::Write || (op == CsrOp::Set && src == 0)),
        _ => false,
    }
}

/// Unconditional jumps end a block; conditional branches become side
/// exits and the block goes on along the fall-through path.
fn ends_block(inst: &Instruction) -> bool {
    matches!(inst, Instruction::Jal { .. } | Instruction::Jalr { .. })
}

/// Decodes from `code` (the bytes at a PC to the end of its page). `None`
/// when not even one instruction fits in the bytes given.
pub fn translate(code: &[u8], features: Features) -> Option<Translation> {
    let mut instructions = Vec::new();
    let mut offset = 0;
    while instructions.len() < MAX_BLOCK {
        let Some(raw) = raw_at(&code[offset..]) else {
            break;
        };
        let (inst, len) = riscv_isa::decode(raw);
        if !supported(&inst, features) {
            if instructions.is_empty() {
                return Some(Translation {
                    instructions,
                    bytes: len as usize,
                });
            }
            break;
        }
        instructions.push((inst, len));
        offset += len as usize;
        if ends_block(&inst) {
            break;
        }
    }
    (!instructions.is_empty()).then_some(Translation {
        instructions,
        bytes: offset,
    })
}

/// The instruction bits at the start of `code` (16 for a compressed one).
fn raw_at(code: &[u8]) -> Option<u32> {
    let low = u16::from_le_bytes([*code.first()?, *code.get(1)?]) as u32;
    if low & 3 != 3 {
        return Some(low);
    }
    let high = u16::from_le_bytes([*code.get(2)?, *code.get(3)?]) as u32;
    Some(low | high << 16)
}
