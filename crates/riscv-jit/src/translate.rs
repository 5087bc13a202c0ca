//! Block discovery: which instructions at a PC the first tier translates.

use riscv_isa::{decode, AluOp, Instruction};

/// Longest block, in instructions.
pub const MAX_BLOCK: usize = 64;

/// What to translate at a PC.
pub struct Translation {
    /// The translatable prefix (empty when the first instruction is not).
    pub instructions: Vec<(Instruction, u8)>,
    /// Guest bytes the translation depends on.
    pub bytes: usize,
}

/// Integer work the first tier emits (loads and stores unless `memory` is
/// off); a JAL, JALR or branch ends the block.
fn supported(inst: &Instruction, memory: bool) -> bool {
    use Instruction as I;
    match *inst {
        I::Load { .. } | I::Store { .. } => memory,
        I::Lui { .. } | I::Auipc { .. } | I::Jal { .. } | I::Jalr { .. } | I::Branch { .. } => true,
        I::OpImm { op, .. } => {
            !matches!(op, AluOp::Mul | AluOp::Mulh | AluOp::Mulhsu | AluOp::Mulhu)
        }
        I::OpImm32 { op, .. } => matches!(op, AluOp::Add | AluOp::Sll | AluOp::Srl | AluOp::Sra),
        I::Op { op, .. } => matches!(
            op,
            AluOp::Add
                | AluOp::Sub
                | AluOp::Sll
                | AluOp::Slt
                | AluOp::Sltu
                | AluOp::Xor
                | AluOp::Srl
                | AluOp::Sra
                | AluOp::Or
                | AluOp::And
                | AluOp::Mul
        ),
        I::Op32 { op, .. } => matches!(
            op,
            AluOp::Add | AluOp::Sub | AluOp::Sll | AluOp::Srl | AluOp::Sra | AluOp::Mul
        ),
        _ => false,
    }
}

fn ends_block(inst: &Instruction) -> bool {
    matches!(
        inst,
        Instruction::Jal { .. } | Instruction::Jalr { .. } | Instruction::Branch { .. }
    )
}

/// Decodes from `code` (the bytes at a PC to the end of its page). `None`
/// when not even one instruction fits in the bytes given.
pub fn translate(code: &[u8], memory: bool) -> Option<Translation> {
    let mut instructions = Vec::new();
    let mut offset = 0;
    while instructions.len() < MAX_BLOCK {
        let Some(raw) = raw_at(&code[offset..]) else {
            break;
        };
        let (inst, len) = decode(raw);
        if !supported(&inst, memory) {
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
