//! The RV64C compressed encodings, expanded to the base instructions they stand for.

use crate::{AluOp, BranchCond, FpFormat, Instruction, LoadWidth, Reg};

/// Bits `hi..=lo` of `raw`, shifted down.
#[inline]
fn bits(raw: u16, hi: u32, lo: u32) -> u32 {
    (raw as u32 >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// Sign-extends the low `width` bits of `value`.
#[inline]
fn sext(value: u32, width: u32) -> i32 {
    let shift = 32 - width;
    ((value << shift) as i32) >> shift
}

/// The 3-bit "popular register" fields name x8..x15.
#[inline]
fn creg(field: u32) -> Reg {
    (field + 8) as Reg
}

/// Decodes a 16-bit compressed instruction into the instruction it expands to.
pub fn decode_compressed(raw: u16) -> Instruction {
    use Instruction::*;
    let illegal = Illegal(raw as u32);
    let f3 = bits(raw, 15, 13);
    let rd_full = bits(raw, 11, 7) as Reg;
    let rs2_full = bits(raw, 6, 2) as Reg;
    let rd_short = creg(bits(raw, 4, 2));
    let rs1_short = creg(bits(raw, 9, 7));
    match (raw & 3, f3) {
        // Quadrant 0
        (0, 0) => {
            // c.addi4spn: nzuimm[5:4|9:6|2|3]
            let imm = bits(raw, 12, 11) << 4
                | bits(raw, 10, 7) << 6
                | bits(raw, 6, 6) << 2
                | bits(raw, 5, 5) << 3;
            if imm == 0 {
                return illegal; // includes the all-zero parcel
            }
            OpImm {
                op: AluOp::Add,
                rd: rd_short,
                rs1: 2,
                imm: imm as i32,
            }
        }
        (0, 1) => FpLoad {
            fmt: FpFormat::D,
            rd: rd_short,
            rs1: rs1_short,
            offset: offset_d(raw),
        },
        (0, 2) => Load {
            width: LoadWidth::W,
            rd: rd_short,
            rs1: rs1_short,
            offset: offset_w(raw),
        },
        (0, 3) => Load {
            width: LoadWidth::D,
            rd: rd_short,
            rs1: rs1_short,
            offset: offset_d(raw),
        },
        (0, 5) => FpStore {
            fmt: FpFormat::D,
            rs1: rs1_short,
            rs2: rd_short,
            offset: offset_d(raw),
        },
        (0, 6) => Store {
            bytes: 4,
            rs1: rs1_short,
            rs2: rd_short,
            offset: offset_w(raw),
        },
        (0, 7) => Store {
            bytes: 8,
            rs1: rs1_short,
            rs2: rd_short,
            offset: offset_d(raw),
        },
        // Quadrant 1
        (1, 0) => OpImm {
            op: AluOp::Add,
            rd: rd_full,
            rs1: rd_full,
            imm: imm6(raw),
        },
        (1, 1) if rd_full != 0 => OpImm32 {
            op: AluOp::Add,
            rd: rd_full,
            rs1: rd_full,
            imm: imm6(raw),
        },
        (1, 2) => OpImm {
            op: AluOp::Add,
            rd: rd_full,
            rs1: 0,
            imm: imm6(raw),
        },
        (1, 3) if rd_full == 2 => {
            // c.addi16sp: nzimm[9|4|6|8:7|5]
            let imm = bits(raw, 12, 12) << 9
                | bits(raw, 6, 6) << 4
                | bits(raw, 5, 5) << 6
                | bits(raw, 4, 3) << 7
                | bits(raw, 2, 2) << 5;
            if imm == 0 {
                return illegal;
            }
            OpImm {
                op: AluOp::Add,
                rd: 2,
                rs1: 2,
                imm: sext(imm, 10),
            }
        }
        (1, 3) => {
            let imm = imm6(raw);
            if imm == 0 {
                return illegal;
            }
            Lui {
                rd: rd_full,
                imm: imm << 12,
            }
        }
        (1, 4) => {
            let rd = rs1_short;
            match bits(raw, 11, 10) {
                0 => OpImm {
                    op: AluOp::Srl,
                    rd,
                    rs1: rd,
                    imm: shamt(raw),
                },
                1 => OpImm {
                    op: AluOp::Sra,
                    rd,
                    rs1: rd,
                    imm: shamt(raw),
                },
                2 => OpImm {
                    op: AluOp::And,
                    rd,
                    rs1: rd,
                    imm: imm6(raw),
                },
                _ => {
                    let rs2 = rd_short;
                    match (bits(raw, 12, 12), bits(raw, 6, 5)) {
                        (0, 0) => Op {
                            op: AluOp::Sub,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        (0, 1) => Op {
                            op: AluOp::Xor,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        (0, 2) => Op {
                            op: AluOp::Or,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        (0, 3) => Op {
                            op: AluOp::And,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        (1, 0) => Op32 {
                            op: AluOp::Sub,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        (1, 1) => Op32 {
                            op: AluOp::Add,
                            rd,
                            rs1: rd,
                            rs2,
                        },
                        _ => illegal,
                    }
                }
            }
        }
        (1, 5) => {
            // c.j: imm[11|4|9:8|10|6|7|3:1|5]
            let imm = bits(raw, 12, 12) << 11
                | bits(raw, 11, 11) << 4
                | bits(raw, 10, 9) << 8
                | bits(raw, 8, 8) << 10
                | bits(raw, 7, 7) << 6
                | bits(raw, 6, 6) << 7
                | bits(raw, 5, 3) << 1
                | bits(raw, 2, 2) << 5;
            Jal {
                rd: 0,
                offset: sext(imm, 12),
            }
        }
        (1, 6 | 7) => {
            // c.beqz / c.bnez: imm[8|4:3] rs1' imm[7:6|2:1|5]
            let imm = bits(raw, 12, 12) << 8
                | bits(raw, 11, 10) << 3
                | bits(raw, 6, 5) << 6
                | bits(raw, 4, 3) << 1
                | bits(raw, 2, 2) << 5;
            let cond = if f3 == 6 {
                BranchCond::Eq
            } else {
                BranchCond::Ne
            };
            Branch {
                cond,
                rs1: rs1_short,
                rs2: 0,
                offset: sext(imm, 9),
            }
        }
        // Quadrant 2
        (2, 0) => OpImm {
            op: AluOp::Sll,
            rd: rd_full,
            rs1: rd_full,
            imm: shamt(raw),
        },
        (2, 1) => {
            let offset = bits(raw, 12, 12) << 5 | bits(raw, 6, 5) << 3 | bits(raw, 4, 2) << 6;
            FpLoad {
                fmt: FpFormat::D,
                rd: rd_full,
                rs1: 2,
                offset: offset as i32,
            }
        }
        (2, 2) if rd_full != 0 => {
            let offset = bits(raw, 12, 12) << 5 | bits(raw, 6, 4) << 2 | bits(raw, 3, 2) << 6;
            Load {
                width: LoadWidth::W,
                rd: rd_full,
                rs1: 2,
                offset: offset as i32,
            }
        }
        (2, 3) if rd_full != 0 => {
            let offset = bits(raw, 12, 12) << 5 | bits(raw, 6, 5) << 3 | bits(raw, 4, 2) << 6;
            Load {
                width: LoadWidth::D,
                rd: rd_full,
                rs1: 2,
                offset: offset as i32,
            }
        }
        (2, 4) => match (bits(raw, 12, 12), rd_full, rs2_full) {
            (0, 0, 0) => illegal,
            (0, rs1, 0) => Jalr {
                rd: 0,
                rs1,
                offset: 0,
            },
            (0, rd, rs2) => Op {
                op: AluOp::Add,
                rd,
                rs1: 0,
                rs2,
            },
            (1, 0, 0) => Ebreak,
            (1, rs1, 0) => Jalr {
                rd: 1,
                rs1,
                offset: 0,
            },
            (_, rd, rs2) => Op {
                op: AluOp::Add,
                rd,
                rs1: rd,
                rs2,
            },
        },
        (2, 5) => FpStore {
            fmt: FpFormat::D,
            rs1: 2,
            rs2: rs2_full,
            offset: offset_sdsp(raw),
        },
        (2, 6) => {
            let offset = bits(raw, 12, 9) << 2 | bits(raw, 8, 7) << 6;
            Store {
                bytes: 4,
                rs1: 2,
                rs2: rs2_full,
                offset: offset as i32,
            }
        }
        (2, 7) => Store {
            bytes: 8,
            rs1: 2,
            rs2: rs2_full,
            offset: offset_sdsp(raw),
        },
        _ => illegal,
    }
}

/// imm[5] at bit 12, imm[4:0] at bits 6:2, sign-extended.
fn imm6(raw: u16) -> i32 {
    sext(bits(raw, 12, 12) << 5 | bits(raw, 6, 2), 6)
}

/// shamt[5] at bit 12, shamt[4:0] at bits 6:2 (RV64: 6-bit, zero-extended).
fn shamt(raw: u16) -> i32 {
    (bits(raw, 12, 12) << 5 | bits(raw, 6, 2)) as i32
}

/// c.lw/c.sw offset: uimm[5:3] at 12:10, uimm[2|6] at 6:5.
fn offset_w(raw: u16) -> i32 {
    (bits(raw, 12, 10) << 3 | bits(raw, 6, 6) << 2 | bits(raw, 5, 5) << 6) as i32
}

/// c.ld/c.sd/c.fld/c.fsd offset: uimm[5:3] at 12:10, uimm[7:6] at 6:5.
fn offset_d(raw: u16) -> i32 {
    (bits(raw, 12, 10) << 3 | bits(raw, 6, 5) << 6) as i32
}

/// c.sdsp/c.fsdsp offset: uimm[5:3|8:6] at 12:7.
fn offset_sdsp(raw: u16) -> i32 {
    (bits(raw, 12, 10) << 3 | bits(raw, 9, 7) << 6) as i32
}
