//! x86-64 code for a block (System V: RDI = the hart's `x` array; returns
//! the next PC in RAX). No register allocation: each instruction loads its
//! operands from `x`, computes in RAX/RCX/RDX and stores the result. The
//! code is position-independent and lands in the engine's code arena.
//!
//! Loads and stores look up the hart's data soft-TLB inline, exactly as the
//! interpreter's fast path does; on a miss (or a page-crossing access) the
//! block returns the PC of that instruction and how many ran before it, and
//! the interpreter executes it, faults and all.

use crate::arena::CodeArena;
use dynasmrt::{dynasm, x64::X64Relocation, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use riscv_hart::{DataTlb, TLB_ENTRIES};
use riscv_isa::{AluOp, BranchCond, Instruction, LoadWidth};

type Assembler = VecAssembler<X64Relocation>;

/// A translated block.
pub struct Block {
    entry: *const u8,
}

/// Where a block stopped: the next PC and the instructions it completed.
#[repr(C)]
pub struct BlockExit {
    pub pc: u64,
    pub count: u64,
}

/// RDI = x, RSI = the most instructions the block may complete (it loops
/// on itself while another full iteration fits).
type BlockFn = extern "sysv64" fn(*mut u64, u64) -> BlockExit;

/// RAX = the effective address x[rs1] + offset; R9 = entry offset and RDX =
/// tag for `tlb`'s table at R8; jumps to `slow` unless the page hits and
/// the `size`-byte access stays inside it; then RAX = host address.
fn translate_address(
    ops: &mut Assembler,
    rs1: u8,
    offset: i32,
    size: u8,
    table: *const u8,
    privilege: u64,
    slow: DynamicLabel,
) {
    load_rax(ops, rs1);
    dynasm!(ops ; .arch x64
        ; mov rcx, QWORD offset as i64
        ; add rax, rcx
        ; mov rdx, rax
        ; shr rdx, 12
        ; mov r9, rdx
        ; and r9d, (TLB_ENTRIES - 1) as i32
        ; shl r9, 4
        ; shl rdx, 2
        ; or rdx, privilege as i32
        ; mov r8, QWORD table as i64
        ; cmp rdx, QWORD [r8 + r9]
        ; jne =>slow
        ; mov edx, eax
        ; and edx, 0xfff
        ; cmp edx, (0x1000 - size as u32) as i32
        ; ja =>slow
        ; add rax, QWORD [r8 + r9 + 8]
    );
}

fn slot(r: u8) -> i32 {
    r as i32 * 8
}

/// RAX = x[r].
fn load_rax(ops: &mut Assembler, r: u8) {
    if r == 0 {
        dynasm!(ops ; .arch x64 ; xor eax, eax);
    } else {
        dynasm!(ops ; .arch x64 ; mov rax, QWORD [rdi + slot(r)]);
    }
}

/// RCX = x[r].
fn load_rcx(ops: &mut Assembler, r: u8) {
    if r == 0 {
        dynasm!(ops ; .arch x64 ; xor ecx, ecx);
    } else {
        dynasm!(ops ; .arch x64 ; mov rcx, QWORD [rdi + slot(r)]);
    }
}

/// x[rd] = RAX (x0 stays zero).
fn store_rax(ops: &mut Assembler, rd: u8) {
    if rd != 0 {
        dynasm!(ops ; .arch x64 ; mov QWORD [rdi + slot(rd)], rax);
    }
}

fn load_const(ops: &mut Assembler, value: u64) {
    dynasm!(ops ; .arch x64 ; mov rax, QWORD value as i64);
}

/// RAX = RAX op RCX for the 64-bit operations.
fn alu64(ops: &mut Assembler, op: AluOp) {
    match op {
        AluOp::Add => dynasm!(ops ; .arch x64 ; add rax, rcx),
        AluOp::Sub => dynasm!(ops ; .arch x64 ; sub rax, rcx),
        AluOp::Xor => dynasm!(ops ; .arch x64 ; xor rax, rcx),
        AluOp::Or => dynasm!(ops ; .arch x64 ; or rax, rcx),
        AluOp::And => dynasm!(ops ; .arch x64 ; and rax, rcx),
        AluOp::Sll => dynasm!(ops ; .arch x64 ; shl rax, cl),
        AluOp::Srl => dynasm!(ops ; .arch x64 ; shr rax, cl),
        AluOp::Sra => dynasm!(ops ; .arch x64 ; sar rax, cl),
        AluOp::Mul => dynasm!(ops ; .arch x64 ; imul rax, rcx),
        AluOp::Slt => dynasm!(ops ; .arch x64
            ; xor edx, edx ; cmp rax, rcx ; setl dl ; mov rax, rdx),
        AluOp::Sltu => dynasm!(ops ; .arch x64
            ; xor edx, edx ; cmp rax, rcx ; setb dl ; mov rax, rdx),
        _ => unreachable!("the translator only passes supported 64-bit operations"),
    }
}

/// RAX = sign-extended (EAX op ECX) for the 32-bit ("W") operations.
fn alu32(ops: &mut Assembler, op: AluOp) {
    match op {
        AluOp::Add => dynasm!(ops ; .arch x64 ; add eax, ecx),
        AluOp::Sub => dynasm!(ops ; .arch x64 ; sub eax, ecx),
        AluOp::Sll => dynasm!(ops ; .arch x64 ; shl eax, cl),
        AluOp::Srl => dynasm!(ops ; .arch x64 ; shr eax, cl),
        AluOp::Sra => dynasm!(ops ; .arch x64 ; sar eax, cl),
        AluOp::Mul => dynasm!(ops ; .arch x64 ; imul eax, ecx),
        _ => unreachable!("the translator only passes supported 32-bit operations"),
    }
    dynasm!(ops ; .arch x64 ; movsxd rax, eax);
}

/// A branch back to the block's own start (flags already set by `cmp rax,
/// rcx`): while taken and another full pass fits the budget, loop inside
/// the block without returning; otherwise return the next PC.
fn emit_self_loop(
    ops: &mut Assembler,
    cond: BranchCond,
    next: u64,
    start: u64,
    total: i32,
    top: DynamicLabel,
) {
    let fall = ops.new_dynamic_label();
    let stop = ops.new_dynamic_label();
    dynasm!(ops ; .arch x64 ; cmp rax, rcx);
    match cond {
        BranchCond::Eq => dynasm!(ops ; .arch x64 ; jne =>fall),
        BranchCond::Ne => dynasm!(ops ; .arch x64 ; je =>fall),
        BranchCond::Lt => dynasm!(ops ; .arch x64 ; jge =>fall),
        BranchCond::Ge => dynasm!(ops ; .arch x64 ; jl =>fall),
        BranchCond::Ltu => dynasm!(ops ; .arch x64 ; jae =>fall),
        BranchCond::Geu => dynasm!(ops ; .arch x64 ; jb =>fall),
    }
    dynasm!(ops ; .arch x64
        ; add r11, total
        ; lea rax, [r11 + total]
        ; cmp rax, rsi
        ; ja =>stop
        ; jmp =>top
        ; =>stop
        ; mov rax, QWORD start as i64
        ; mov rdx, r11
        ; ret
        ; =>fall
        ; mov rax, QWORD next as i64
        ; lea rdx, [r11 + total]
        ; ret
    );
}

impl Block {
    /// Emits `instructions` (the translator's output) starting at guest `pc`
    /// into `arena`, for loads and stores through `tlb`; `None` when the
    /// arena is full.
    pub fn emit(
        arena: &mut CodeArena,
        pc: u64,
        instructions: &[(Instruction, u8)],
        tlb: DataTlb,
        inject_bug: bool,
    ) -> Option<Block> {
        use Instruction as I;
        let mut ops = Assembler::new(0);
        // Slow-path exits: (label, pc of the instruction, instructions before it).
        let mut exits: Vec<(DynamicLabel, u64, u64)> = Vec::new();
        let start = pc;
        let total = instructions.len() as i32;
        // R11 counts the instructions of completed iterations of a self-loop.
        let top = ops.new_dynamic_label();
        dynasm!(ops ; .arch x64 ; xor r11d, r11d ; =>top);
        let mut pc = pc;
        let mut resolved = false;
        for (done, &(inst, len)) in instructions.iter().enumerate() {
            let next = pc.wrapping_add(len as u64);
            match inst {
                I::Load {
                    width,
                    rd,
                    rs1,
                    offset,
                } => {
                    let slow = ops.new_dynamic_label();
                    exits.push((slow, pc, done as u64));
                    translate_address(
                        &mut ops,
                        rs1,
                        offset,
                        width.bytes(),
                        tlb.read,
                        tlb.privilege,
                        slow,
                    );
                    match width {
                        LoadWidth::B => dynasm!(ops ; .arch x64 ; movsx rax, BYTE [rax]),
                        LoadWidth::H => dynasm!(ops ; .arch x64 ; movsx rax, WORD [rax]),
                        LoadWidth::W => dynasm!(ops ; .arch x64 ; movsxd rax, DWORD [rax]),
                        LoadWidth::D => dynasm!(ops ; .arch x64 ; mov rax, QWORD [rax]),
                        LoadWidth::Bu => dynasm!(ops ; .arch x64 ; movzx eax, BYTE [rax]),
                        LoadWidth::Hu => dynasm!(ops ; .arch x64 ; movzx eax, WORD [rax]),
                        LoadWidth::Wu => dynasm!(ops ; .arch x64 ; mov eax, DWORD [rax]),
                    }
                    store_rax(&mut ops, rd);
                }
                I::Store {
                    bytes,
                    rs1,
                    rs2,
                    offset,
                } => {
                    let slow = ops.new_dynamic_label();
                    exits.push((slow, pc, done as u64));
                    translate_address(&mut ops, rs1, offset, bytes, tlb.write, tlb.privilege, slow);
                    load_rcx(&mut ops, rs2);
                    match bytes {
                        1 => dynasm!(ops ; .arch x64 ; mov BYTE [rax], cl),
                        2 => dynasm!(ops ; .arch x64 ; mov WORD [rax], cx),
                        4 => dynasm!(ops ; .arch x64 ; mov DWORD [rax], ecx),
                        _ => dynasm!(ops ; .arch x64 ; mov QWORD [rax], rcx),
                    }
                }
                I::Lui { rd, imm } => {
                    load_const(&mut ops, imm as i64 as u64);
                    store_rax(&mut ops, rd);
                }
                I::Auipc { rd, imm } => {
                    load_const(&mut ops, pc.wrapping_add(imm as i64 as u64));
                    store_rax(&mut ops, rd);
                }
                I::OpImm { op, rd, rs1, imm } => {
                    load_rax(&mut ops, rs1);
                    let imm = if inject_bug && op == AluOp::Add {
                        imm.wrapping_add(1)
                    } else {
                        imm
                    };
                    let imm = match op {
                        AluOp::Sll | AluOp::Srl | AluOp::Sra => imm & 63,
                        _ => imm,
                    };
                    dynasm!(ops ; .arch x64 ; mov rcx, QWORD imm as i64);
                    alu64(&mut ops, op);
                    store_rax(&mut ops, rd);
                }
                I::OpImm32 { op, rd, rs1, imm } => {
                    load_rax(&mut ops, rs1);
                    let imm = match op {
                        AluOp::Sll | AluOp::Srl | AluOp::Sra => imm & 31,
                        _ => imm,
                    };
                    dynasm!(ops ; .arch x64 ; mov ecx, imm);
                    alu32(&mut ops, op);
                    store_rax(&mut ops, rd);
                }
                I::Op { op, rd, rs1, rs2 } => {
                    load_rax(&mut ops, rs1);
                    load_rcx(&mut ops, rs2);
                    alu64(&mut ops, op);
                    store_rax(&mut ops, rd);
                }
                I::Op32 { op, rd, rs1, rs2 } => {
                    load_rax(&mut ops, rs1);
                    load_rcx(&mut ops, rs2);
                    alu32(&mut ops, op);
                    store_rax(&mut ops, rd);
                }
                I::Jal { rd, offset } => {
                    load_const(&mut ops, next);
                    store_rax(&mut ops, rd);
                    load_const(&mut ops, pc.wrapping_add(offset as i64 as u64));
                    dynasm!(ops ; .arch x64 ; lea rdx, [r11 + total] ; ret);
                    resolved = true;
                }
                I::Jalr { rd, rs1, offset } => {
                    // Target first: rd may be rs1. Bit 0 is cleared; with
                    // compressed instructions no target can be misaligned.
                    load_rax(&mut ops, rs1);
                    dynasm!(ops ; .arch x64
                        ; mov rcx, QWORD offset as i64
                        ; add rax, rcx
                        ; and rax, -2
                        ; mov r10, rax
                    );
                    load_const(&mut ops, next);
                    store_rax(&mut ops, rd);
                    dynasm!(ops ; .arch x64
                        ; mov rax, r10
                        ; lea rdx, [r11 + total]
                        ; ret
                    );
                    resolved = true;
                }
                I::Branch {
                    cond,
                    rs1,
                    rs2,
                    offset,
                } => {
                    load_rax(&mut ops, rs1);
                    load_rcx(&mut ops, rs2);
                    let target = pc.wrapping_add(offset as i64 as u64);
                    if target == start {
                        emit_self_loop(&mut ops, cond, next, start, total, top);
                        resolved = true;
                        pc = next;
                        continue;
                    }
                    dynasm!(ops ; .arch x64
                        ; cmp rax, rcx
                        ; mov rax, QWORD next as i64
                        ; mov rdx, QWORD target as i64
                    );
                    match cond {
                        BranchCond::Eq => dynasm!(ops ; .arch x64 ; cmove rax, rdx),
                        BranchCond::Ne => dynasm!(ops ; .arch x64 ; cmovne rax, rdx),
                        BranchCond::Lt => dynasm!(ops ; .arch x64 ; cmovl rax, rdx),
                        BranchCond::Ge => dynasm!(ops ; .arch x64 ; cmovge rax, rdx),
                        BranchCond::Ltu => dynasm!(ops ; .arch x64 ; cmovb rax, rdx),
                        BranchCond::Geu => dynasm!(ops ; .arch x64 ; cmovae rax, rdx),
                    }
                    dynasm!(ops ; .arch x64 ; lea rdx, [r11 + total] ; ret);
                    resolved = true;
                }
                _ => unreachable!("the translator only passes supported instructions"),
            }
            pc = next;
        }
        if !resolved {
            load_const(&mut ops, pc);
            dynasm!(ops ; .arch x64 ; lea rdx, [r11 + total] ; ret);
        }
        for (label, at, done) in exits {
            dynasm!(ops ; .arch x64
                ; =>label
                ; mov rax, QWORD at as i64
                ; lea rdx, [r11 + done as i32]
                ; ret
            );
        }
        let code = ops.finalize().expect("blocks use no labels or relocations");
        Some(Block {
            entry: arena.place(&code)?,
        })
    }

    /// Runs the block on `x`, completing at most `budget` instructions
    /// (at least one pass must fit); returns where it stopped.
    pub fn run(&self, x: &mut [u64; 32], budget: u64) -> BlockExit {
        // SAFETY: `entry` is the start of position-independent code emitted
        // above for exactly this signature, in an arena that outlives every
        // Block taken from it (the engine drops blocks before resetting it);
        // it reads and writes x[0..32] through RDI, and guest RAM only
        // through host addresses the hart's TLB vouches for.
        let f: BlockFn = unsafe { std::mem::transmute(self.entry) };
        f(x.as_mut_ptr(), budget)
    }
}
