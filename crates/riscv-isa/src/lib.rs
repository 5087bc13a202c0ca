//! RV64GC(+H) instruction decoding: 32-bit and compressed 16-bit encodings
//! of RV64I, M, A, F, D, Zicsr, Zifencei, the privileged instructions and
//! the hypervisor extension's, into one [`Instruction`] type that every
//! engine executes.
//!
//! Hand-written rather than taken from a crate: the crates we evaluated either
//! cover RV32 only, decode into strings (disassemblers), or lack the
//! compressed-to-base expansion and strict reserved-encoding checks an
//! emulator needs (every reserved encoding must decode to
//! [`Instruction::Illegal`] so the guest gets an illegal-instruction trap).
#![no_std]

mod compressed;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use compressed::decode_compressed;

/// An integer register number, 0..=31.
pub type Reg = u8;

/// Integer ALU operations shared by register-register and register-immediate forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchCond {
    Eq,
    Ne,
    Lt,
    Ge,
    Ltu,
    Geu,
}

/// Width and signedness of an integer load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadWidth {
    B,
    H,
    W,
    D,
    Bu,
    Hu,
    Wu,
}

impl LoadWidth {
    pub fn bytes(self) -> u8 {
        match self {
            LoadWidth::B | LoadWidth::Bu => 1,
            LoadWidth::H | LoadWidth::Hu => 2,
            LoadWidth::W | LoadWidth::Wu => 4,
            LoadWidth::D => 8,
        }
    }
}

/// Access size in bytes of a store: 1, 2, 4 or 8.
pub type StoreBytes = u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrOp {
    /// csrrw / csrrwi
    Write,
    /// csrrs / csrrsi
    Set,
    /// csrrc / csrrci
    Clear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmoOp {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    Minu,
    Maxu,
}

/// Floating-point format: single (F) or double (D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpFormat {
    S,
    D,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaOp {
    /// rs1*rs2 + rs3
    Madd,
    /// rs1*rs2 - rs3
    Msub,
    /// -(rs1*rs2) + rs3
    Nmsub,
    /// -(rs1*rs2) - rs3
    Nmadd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    SgnJ,
    SgnJn,
    SgnJx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpCmp {
    Eq,
    Lt,
    Le,
}

/// Integer side of a float<->integer conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntFormat {
    W,
    Wu,
    L,
    Lu,
}

/// One decoded instruction. Compressed instructions decode to the base
/// instruction they expand to; [`decode`] reports the length separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    Lui {
        rd: Reg,
        imm: i32,
    },
    Auipc {
        rd: Reg,
        imm: i32,
    },
    Jal {
        rd: Reg,
        offset: i32,
    },
    Jalr {
        rd: Reg,
        rs1: Reg,
        offset: i32,
    },
    Branch {
        cond: BranchCond,
        rs1: Reg,
        rs2: Reg,
        offset: i32,
    },
    Load {
        width: LoadWidth,
        rd: Reg,
        rs1: Reg,
        offset: i32,
    },
    Store {
        bytes: StoreBytes,
        rs1: Reg,
        rs2: Reg,
        offset: i32,
    },
    OpImm {
        op: AluOp,
        rd: Reg,
        rs1: Reg,
        imm: i32,
    },
    OpImm32 {
        op: AluOp,
        rd: Reg,
        rs1: Reg,
        imm: i32,
    },
    Op {
        op: AluOp,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    Op32 {
        op: AluOp,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    Fence,
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Sret,
    Wfi,
    SfenceVma {
        rs1: Reg,
        rs2: Reg,
    },
    /// HLV.* and HLVX.* (H extension): a load made as the guest would
    /// make it (V=1 at `hstatus.SPVP`); `execute` (HLVX) needs execute
    /// rather than read permission.
    HypervisorLoad {
        width: LoadWidth,
        execute: bool,
        rd: Reg,
        rs1: Reg,
    },
    /// HSV.*: a store made as the guest would make it.
    HypervisorStore {
        bytes: StoreBytes,
        rs1: Reg,
        rs2: Reg,
    },
    /// HFENCE.VVMA: orders and flushes VS-stage translations.
    HfenceVvma {
        rs1: Reg,
        rs2: Reg,
    },
    /// HFENCE.GVMA: orders and flushes G-stage (and so all guest) translations.
    HfenceGvma {
        rs1: Reg,
        rs2: Reg,
    },
    /// `src` is rs1 for the register forms, the 5-bit zero-extended immediate for the `i` forms.
    Csr {
        op: CsrOp,
        rd: Reg,
        src: u8,
        imm: bool,
        csr: u16,
    },
    /// `double` selects the .d (64-bit) form; otherwise .w.
    Lr {
        double: bool,
        rd: Reg,
        rs1: Reg,
    },
    Sc {
        double: bool,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    Amo {
        op: AmoOp,
        double: bool,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    FpLoad {
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
        offset: i32,
    },
    FpStore {
        fmt: FpFormat,
        rs1: Reg,
        rs2: Reg,
        offset: i32,
    },
    FpFma {
        op: FmaOp,
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
        rs3: Reg,
        rm: u8,
    },
    FpArith {
        op: FpOp,
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
        rm: u8,
    },
    FpSqrt {
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
        rm: u8,
    },
    FpCompare {
        cmp: FpCmp,
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    FpClass {
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
    },
    /// fcvt.{w,wu,l,lu}.{s,d}
    FpToInt {
        fmt: FpFormat,
        int: IntFormat,
        rd: Reg,
        rs1: Reg,
        rm: u8,
    },
    /// fcvt.{s,d}.{w,wu,l,lu}
    IntToFp {
        fmt: FpFormat,
        int: IntFormat,
        rd: Reg,
        rs1: Reg,
        rm: u8,
    },
    /// fcvt.s.d (to = S) or fcvt.d.s (to = D)
    FpConvert {
        to: FpFormat,
        rd: Reg,
        rs1: Reg,
        rm: u8,
    },
    /// fmv.x.w / fmv.x.d
    FpMoveToInt {
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
    },
    /// fmv.w.x / fmv.d.x
    FpMoveFromInt {
        fmt: FpFormat,
        rd: Reg,
        rs1: Reg,
    },
    /// A reserved or unsupported encoding; holds the raw bits (the trap value).
    Illegal(u32),
}

/// Length in bytes of the instruction whose first 16-bit parcel is `low`.
#[inline]
pub fn instruction_length(low: u16) -> u8 {
    if low & 3 == 3 {
        4
    } else {
        2
    }
}

/// Decodes an instruction from its raw bits (only the low 16 bits matter for
/// a compressed one). Returns the instruction and its length in bytes.
#[inline]
pub fn decode(raw: u32) -> (Instruction, u8) {
    if raw & 3 == 3 {
        (decode_full(raw), 4)
    } else {
        (decode_compressed(raw as u16), 2)
    }
}

#[inline]
fn rd(raw: u32) -> Reg {
    ((raw >> 7) & 31) as Reg
}
#[inline]
fn rs1(raw: u32) -> Reg {
    ((raw >> 15) & 31) as Reg
}
#[inline]
fn rs2(raw: u32) -> Reg {
    ((raw >> 20) & 31) as Reg
}
#[inline]
fn rs3(raw: u32) -> Reg {
    ((raw >> 27) & 31) as Reg
}
#[inline]
fn funct3(raw: u32) -> u32 {
    (raw >> 12) & 7
}
#[inline]
fn funct7(raw: u32) -> u32 {
    raw >> 25
}
#[inline]
fn imm_i(raw: u32) -> i32 {
    (raw as i32) >> 20
}
#[inline]
fn imm_s(raw: u32) -> i32 {
    (((raw as i32) >> 25) << 5) | ((raw >> 7) & 31) as i32
}
#[inline]
fn imm_b(raw: u32) -> i32 {
    (((raw as i32) >> 31) << 12)
        | (((raw >> 7) & 1) << 11) as i32
        | (((raw >> 25) & 0x3f) << 5) as i32
        | (((raw >> 8) & 0xf) << 1) as i32
}
#[inline]
fn imm_u(raw: u32) -> i32 {
    (raw & 0xffff_f000) as i32
}
#[inline]
fn imm_j(raw: u32) -> i32 {
    (((raw as i32) >> 31) << 20)
        | (raw & 0x000f_f000) as i32
        | (((raw >> 20) & 1) << 11) as i32
        | (((raw >> 21) & 0x3ff) << 1) as i32
}

fn fp_format(bits: u32) -> Option<FpFormat> {
    match bits {
        0 => Some(FpFormat::S),
        1 => Some(FpFormat::D),
        _ => None,
    }
}

fn int_format(bits: u8) -> Option<IntFormat> {
    match bits {
        0 => Some(IntFormat::W),
        1 => Some(IntFormat::Wu),
        2 => Some(IntFormat::L),
        3 => Some(IntFormat::Lu),
        _ => None,
    }
}

/// Decodes a 32-bit (non-compressed) instruction.
pub fn decode_full(raw: u32) -> Instruction {
    use Instruction::*;
    let illegal = Illegal(raw);
    let (rd, rs1, rs2, f3, f7) = (rd(raw), rs1(raw), rs2(raw), funct3(raw), funct7(raw));
    match (raw >> 2) & 0x1f {
        0x0d => Lui {
            rd,
            imm: imm_u(raw),
        },
        0x05 => Auipc {
            rd,
            imm: imm_u(raw),
        },
        0x1b => Jal {
            rd,
            offset: imm_j(raw),
        },
        0x19 if f3 == 0 => Jalr {
            rd,
            rs1,
            offset: imm_i(raw),
        },
        0x18 => {
            let cond = match f3 {
                0 => BranchCond::Eq,
                1 => BranchCond::Ne,
                4 => BranchCond::Lt,
                5 => BranchCond::Ge,
                6 => BranchCond::Ltu,
                7 => BranchCond::Geu,
                _ => return illegal,
            };
            Branch {
                cond,
                rs1,
                rs2,
                offset: imm_b(raw),
            }
        }
        0x00 => {
            let width = match f3 {
                0 => LoadWidth::B,
                1 => LoadWidth::H,
                2 => LoadWidth::W,
                3 => LoadWidth::D,
                4 => LoadWidth::Bu,
                5 => LoadWidth::Hu,
                6 => LoadWidth::Wu,
                _ => return illegal,
            };
            Load {
                width,
                rd,
                rs1,
                offset: imm_i(raw),
            }
        }
        0x08 if f3 < 4 => Store {
            bytes: 1 << f3,
            rs1,
            rs2,
            offset: imm_s(raw),
        },
        0x04 => {
            let imm = imm_i(raw);
            let op = match f3 {
                0 => AluOp::Add,
                2 => AluOp::Slt,
                3 => AluOp::Sltu,
                4 => AluOp::Xor,
                6 => AluOp::Or,
                7 => AluOp::And,
                1 if raw >> 26 == 0 => AluOp::Sll,
                5 if raw >> 26 == 0 => AluOp::Srl,
                5 if raw >> 26 == 0x10 => AluOp::Sra,
                _ => return illegal,
            };
            let imm = if matches!(f3, 1 | 5) { imm & 0x3f } else { imm };
            OpImm { op, rd, rs1, imm }
        }
        0x06 => {
            let op = match (f3, f7) {
                (0, _) => AluOp::Add,
                (1, 0) => AluOp::Sll,
                (5, 0) => AluOp::Srl,
                (5, 0x20) => AluOp::Sra,
                _ => return illegal,
            };
            let imm = if f3 == 0 {
                imm_i(raw)
            } else {
                (raw >> 20) as i32 & 0x1f
            };
            OpImm32 { op, rd, rs1, imm }
        }
        0x0c => {
            let op = match (f7, f3) {
                (0, 0) => AluOp::Add,
                (0x20, 0) => AluOp::Sub,
                (0, 1) => AluOp::Sll,
                (0, 2) => AluOp::Slt,
                (0, 3) => AluOp::Sltu,
                (0, 4) => AluOp::Xor,
                (0, 5) => AluOp::Srl,
                (0x20, 5) => AluOp::Sra,
                (0, 6) => AluOp::Or,
                (0, 7) => AluOp::And,
                (1, 0) => AluOp::Mul,
                (1, 1) => AluOp::Mulh,
                (1, 2) => AluOp::Mulhsu,
                (1, 3) => AluOp::Mulhu,
                (1, 4) => AluOp::Div,
                (1, 5) => AluOp::Divu,
                (1, 6) => AluOp::Rem,
                (1, 7) => AluOp::Remu,
                _ => return illegal,
            };
            Op { op, rd, rs1, rs2 }
        }
        0x0e => {
            let op = match (f7, f3) {
                (0, 0) => AluOp::Add,
                (0x20, 0) => AluOp::Sub,
                (0, 1) => AluOp::Sll,
                (0, 5) => AluOp::Srl,
                (0x20, 5) => AluOp::Sra,
                (1, 0) => AluOp::Mul,
                (1, 4) => AluOp::Div,
                (1, 5) => AluOp::Divu,
                (1, 6) => AluOp::Rem,
                (1, 7) => AluOp::Remu,
                _ => return illegal,
            };
            Op32 { op, rd, rs1, rs2 }
        }
        0x03 => match f3 {
            0 => Fence,
            1 => FenceI,
            _ => illegal,
        },
        0x1c => decode_system(raw),
        0x0b => decode_amo(raw),
        0x01 => match f3 {
            2 => FpLoad {
                fmt: FpFormat::S,
                rd,
                rs1,
                offset: imm_i(raw),
            },
            3 => FpLoad {
                fmt: FpFormat::D,
                rd,
                rs1,
                offset: imm_i(raw),
            },
            _ => illegal,
        },
        0x09 => match f3 {
            2 => FpStore {
                fmt: FpFormat::S,
                rs1,
                rs2,
                offset: imm_s(raw),
            },
            3 => FpStore {
                fmt: FpFormat::D,
                rs1,
                rs2,
                offset: imm_s(raw),
            },
            _ => illegal,
        },
        op @ 0x10..=0x13 => {
            let Some(fmt) = fp_format((raw >> 25) & 3) else {
                return illegal;
            };
            let op = match op {
                0x10 => FmaOp::Madd,
                0x11 => FmaOp::Msub,
                0x12 => FmaOp::Nmsub,
                _ => FmaOp::Nmadd,
            };
            FpFma {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rs3: rs3(raw),
                rm: f3 as u8,
            }
        }
        0x14 => decode_op_fp(raw),
        _ => illegal,
    }
}

fn decode_system(raw: u32) -> Instruction {
    use Instruction::*;
    let (rd, rs1, f3) = (rd(raw), rs1(raw), funct3(raw));
    let csr = (raw >> 20) as u16;
    let op = match f3 {
        0 => {
            return match (raw >> 20, rs1, rd) {
                (0x000, 0, 0) => Ecall,
                (0x001, 0, 0) => Ebreak,
                (0x102, 0, 0) => Sret,
                (0x302, 0, 0) => Mret,
                (0x105, 0, 0) => Wfi,
                (f, _, 0) if f >> 5 == 0x09 => SfenceVma { rs1, rs2: rs2(raw) },
                (f, _, 0) if f >> 5 == 0x11 => HfenceVvma { rs1, rs2: rs2(raw) },
                (f, _, 0) if f >> 5 == 0x31 => HfenceGvma { rs1, rs2: rs2(raw) },
                _ => Illegal(raw),
            }
        }
        4 => return decode_hypervisor_access(raw),
        1 | 5 => CsrOp::Write,
        2 | 6 => CsrOp::Set,
        3 | 7 => CsrOp::Clear,
        _ => return Illegal(raw),
    };
    Csr {
        op,
        rd,
        src: rs1,
        imm: f3 >= 5,
        csr,
    }
}

/// HLV, HLVX and HSV: SYSTEM with funct3 = 4; funct7 gives the width (bits
/// 2..=1) and load or store (bit 0), rs2 the load's kind.
fn decode_hypervisor_access(raw: u32) -> Instruction {
    use Instruction::*;
    let (rd, rs1, rs2) = (rd(raw), rs1(raw), rs2(raw));
    let funct7 = raw >> 25;
    if funct7 & 0x79 == 0x31 && rd == 0 {
        // 0110_ww1: HSV.{B,H,W,D}
        return HypervisorStore {
            bytes: 1 << ((funct7 >> 1) & 3),
            rs1,
            rs2,
        };
    }
    let (width, execute) = match (funct7, rs2) {
        (0x30, 0) => (LoadWidth::B, false),
        (0x30, 1) => (LoadWidth::Bu, false),
        (0x32, 0) => (LoadWidth::H, false),
        (0x32, 1) => (LoadWidth::Hu, false),
        (0x32, 3) => (LoadWidth::Hu, true),
        (0x34, 0) => (LoadWidth::W, false),
        (0x34, 1) => (LoadWidth::Wu, false),
        (0x34, 3) => (LoadWidth::Wu, true),
        (0x36, 0) => (LoadWidth::D, false),
        _ => return Illegal(raw),
    };
    HypervisorLoad {
        width,
        execute,
        rd,
        rs1,
    }
}

fn decode_amo(raw: u32) -> Instruction {
    use Instruction::*;
    let double = match funct3(raw) {
        2 => false,
        3 => true,
        _ => return Illegal(raw),
    };
    let (rd, rs1, rs2) = (rd(raw), rs1(raw), rs2(raw));
    let op = match raw >> 27 {
        0x02 if rs2 == 0 => return Lr { double, rd, rs1 },
        0x03 => {
            return Sc {
                double,
                rd,
                rs1,
                rs2,
            }
        }
        0x01 => AmoOp::Swap,
        0x00 => AmoOp::Add,
        0x04 => AmoOp::Xor,
        0x0c => AmoOp::And,
        0x08 => AmoOp::Or,
        0x10 => AmoOp::Min,
        0x14 => AmoOp::Max,
        0x18 => AmoOp::Minu,
        0x1c => AmoOp::Maxu,
        _ => return Illegal(raw),
    };
    Amo {
        op,
        double,
        rd,
        rs1,
        rs2,
    }
}

fn decode_op_fp(raw: u32) -> Instruction {
    use Instruction::*;
    let illegal = Illegal(raw);
    let (rd, rs1, rs2, f3) = (rd(raw), rs1(raw), rs2(raw), funct3(raw));
    let rm = f3 as u8;
    let Some(fmt) = fp_format((raw >> 25) & 3) else {
        return illegal;
    };
    let arith = |op| FpArith {
        op,
        fmt,
        rd,
        rs1,
        rs2,
        rm,
    };
    match funct7(raw) >> 2 {
        0x00 => arith(FpOp::Add),
        0x01 => arith(FpOp::Sub),
        0x02 => arith(FpOp::Mul),
        0x03 => arith(FpOp::Div),
        0x0b if rs2 == 0 => FpSqrt { fmt, rd, rs1, rm },
        0x04 => match f3 {
            0 => arith(FpOp::SgnJ),
            1 => arith(FpOp::SgnJn),
            2 => arith(FpOp::SgnJx),
            _ => illegal,
        },
        0x05 => match f3 {
            0 => arith(FpOp::Min),
            1 => arith(FpOp::Max),
            _ => illegal,
        },
        // fcvt.s.d: fmt = S, rs2 = 1 (D); fcvt.d.s: fmt = D, rs2 = 0 (S)
        0x08 => match (fmt, rs2) {
            (FpFormat::S, 1) | (FpFormat::D, 0) => FpConvert {
                to: fmt,
                rd,
                rs1,
                rm,
            },
            _ => illegal,
        },
        0x14 => {
            let cmp = match f3 {
                0 => FpCmp::Le,
                1 => FpCmp::Lt,
                2 => FpCmp::Eq,
                _ => return illegal,
            };
            FpCompare {
                cmp,
                fmt,
                rd,
                rs1,
                rs2,
            }
        }
        0x18 => match int_format(rs2) {
            Some(int) => FpToInt {
                fmt,
                int,
                rd,
                rs1,
                rm,
            },
            None => illegal,
        },
        0x1a => match int_format(rs2) {
            Some(int) => IntToFp {
                fmt,
                int,
                rd,
                rs1,
                rm,
            },
            None => illegal,
        },
        0x1c if rs2 == 0 => match f3 {
            0 => FpMoveToInt { fmt, rd, rs1 },
            1 => FpClass { fmt, rd, rs1 },
            _ => illegal,
        },
        0x1e if rs2 == 0 && f3 == 0 => FpMoveFromInt { fmt, rd, rs1 },
        _ => illegal,
    }
}
