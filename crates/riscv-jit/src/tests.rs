use super::*;
use riscv_hart::GuestRam;

const BASE: u64 = 0x8000_0000;

use crate::fuzzing::Bare;

fn i_type(opcode: u32, funct3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | rs1 << 15 | funct3 << 12 | rd << 7 | opcode
}

fn r_type(opcode: u32, funct3: u32, funct7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    funct7 << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode
}

fn b_type(funct3: u32, rs1: u32, rs2: u32, offset: i32) -> u32 {
    let o = offset as u32;
    ((o >> 12) & 1) << 31
        | ((o >> 5) & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | funct3 << 12
        | ((o >> 1) & 0xf) << 8
        | ((o >> 11) & 1) << 7
        | 0x63
}

fn s_type(funct3: u32, rs1: u32, rs2: u32, offset: i32) -> u32 {
    let o = offset as u32;
    ((o >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | (o & 0x1f) << 7 | 0x23
}

const WFI: u32 = 0x1050_0073;

/// A loop of ALU work ending in WFI:
///   x1 = 0; x2 = 100; loop: x1 += 1; x3 = x1 << 2; x4 ^= x3; x5 = x4 * x1
///   (MUL); x6 = (x5 as i32 + x1) sign-extended (ADDW); if x1 != x2 goto loop.
fn program() -> Vec<u32> {
    vec![
        i_type(0x13, 0, 1, 0, 0),
        i_type(0x13, 0, 2, 0, 100),
        i_type(0x13, 0, 1, 1, 1),
        i_type(0x13, 1, 3, 1, 2),
        r_type(0x33, 4, 0, 4, 4, 3),
        r_type(0x33, 0, 1, 5, 4, 1),
        r_type(0x3b, 0, 0, 6, 5, 1),
        b_type(1, 1, 2, -20),
        WFI,
    ]
}

/// Loads and stores of several widths in a loop, through the soft-TLB:
///   x10 = pc + 0x1000; x1 = 0; x2 = 50; loop: x1 += 1; sd x1, 0(x10);
///   ld x11, 0(x10); x12 += x11; sb x1, 8(x10); lb x13, 8(x10);
///   x10 += 16; if x1 != x2 goto loop.
fn memory_program() -> Vec<u32> {
    vec![
        1 << 12 | 10 << 7 | 0x17,
        i_type(0x13, 0, 1, 0, 0),
        i_type(0x13, 0, 2, 0, 50),
        i_type(0x13, 0, 1, 1, 1),
        s_type(3, 10, 1, 0),
        i_type(0x03, 3, 11, 10, 0),
        r_type(0x33, 0, 0, 12, 12, 11),
        s_type(0, 10, 1, 8),
        i_type(0x03, 0, 13, 10, 8),
        i_type(0x13, 0, 10, 10, 16),
        b_type(1, 1, 2, -32),
        WFI,
    ]
}

#[test]
fn translated_loads_and_stores_match_the_interpreter() {
    let (mut reference, reference_ram) = hart_and_ram(&memory_program());
    assert_eq!(reference.run(&mut Bare, 10_000).0, RunExit::Wfi);
    let (mut hart, ram) = hart_and_ram(&memory_program());
    let mut jit = Jit::new(JitOptions::default());
    assert_eq!(jit.run(&mut hart, &mut Bare, 10_000).0, RunExit::Wfi);
    assert_eq!(hart.x, reference.x);
    assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    assert_eq!(hart.x[12], (1..=50).sum::<u64>());
    for offset in (0x1000..0x1000 + 50 * 16).step_by(8) {
        assert_eq!(
            ram.read(BASE + offset, 8),
            reference_ram.read(BASE + offset, 8)
        );
    }
    assert!(
        jit.stats.translated_instructions > 300,
        "the loop ran translated, memory accesses included"
    );
}

fn hart_and_ram(program: &[u32]) -> (Hart, GuestRam) {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    for (i, word) in program.iter().enumerate() {
        assert!(ram.write(BASE + 4 * i as u64, 4, *word as u64));
    }
    let mut hart = Hart::new(0, ram.clone());
    hart.pc = BASE;
    (hart, ram)
}

fn hart_with(program: &[u32]) -> Hart {
    hart_and_ram(program).0
}

fn interpret(program: &[u32]) -> Hart {
    interpret_for(program, 10_000)
}

/// The interpreter's state once `program` reached its WFI within `budget`.
fn interpret_for(program: &[u32], budget: u64) -> Hart {
    let mut hart = hart_with(program);
    let (exit, _) = hart.run(&mut Bare, budget);
    assert_eq!(exit, RunExit::Wfi);
    hart
}

#[test]
fn translated_blocks_match_the_interpreter() {
    let reference = interpret(&program());
    let mut hart = hart_with(&program());
    let mut jit = Jit::new(JitOptions::default());
    let (exit, executed) = jit.run(&mut hart, &mut Bare, 10_000);
    assert_eq!(exit, RunExit::Wfi);
    assert_eq!(hart.x, reference.x);
    assert_eq!(hart.pc, reference.pc);
    assert_eq!(hart.instret, reference.instret);
    assert_eq!(executed, reference.instret);
    assert!(
        jit.stats.translated_instructions > 500,
        "the loop ran translated"
    );
    assert_eq!(hart.x[1], 100);
}

#[test]
fn lockstep_finds_an_injected_translation_bug() {
    let mut hart = hart_with(&program());
    let mut jit = Jit::new(JitOptions {
        lockstep: true,
        inject_bug: false,
    });
    jit.run(&mut hart, &mut Bare, 10_000);
    assert_eq!(jit.divergence(), None, "a correct translation agrees");

    let mut hart = hart_with(&program());
    let mut jit = Jit::new(JitOptions {
        lockstep: true,
        inject_bug: true,
    });
    jit.run(&mut hart, &mut Bare, 10_000);
    let divergence = jit.divergence().expect("lock-step notices the bad ADDI");
    // The first block starts at the first instruction and holds the bad
    // "addi x2, x0, 100".
    assert_eq!(divergence.block_pc, BASE, "{divergence}");
    assert!(
        divergence.registers.contains(&(2, 101, 100)),
        "{divergence}"
    );
}

#[test]
fn rewritten_code_is_retranslated() {
    let code = program();
    let (mut hart, ram) = hart_and_ram(&code);
    let mut jit = Jit::new(JitOptions::default());
    jit.run(&mut hart, &mut Bare, 10_000);
    assert_eq!((hart.x[1], hart.x[2]), (100, 100));
    // The host (a loader, another hart through GuestRam) rewrites "x2 =
    // 100" to "x2 = 7"; the loop runs again from the top and must see it.
    assert!(ram.write(BASE + 4, 4, i_type(0x13, 0, 2, 0, 7) as u64));
    hart.pc = BASE;
    hart.waiting = false;
    jit.run(&mut hart, &mut Bare, 10_000);
    assert_eq!((hart.x[1], hart.x[2]), (7, 7));
}

#[test]
fn self_loops_stop_at_the_first_block_boundary_past_the_budget() {
    // The loop body is 6 instructions, entered after 2.
    for budget in [70, 200, 333] {
        let mut hart = hart_with(&program());
        let mut jit = Jit::new(JitOptions::default());
        let (exit, executed) = jit.run(&mut hart, &mut Bare, budget);
        assert_eq!(exit, RunExit::Budget);
        assert!(
            (budget..budget + 6).contains(&executed) && (executed - 2) % 6 == 0,
            "budget {budget}: ran {executed}"
        );
        let mut reference = hart_with(&program());
        assert_eq!(
            reference.run(&mut Bare, executed),
            (RunExit::Budget, executed)
        );
        assert_eq!(hart.x, reference.x, "budget {budget}");
        assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    }
}

/// Runs `program` under the interpreter and under the JIT and checks that
/// both end in the same architectural state (registers, FP registers and
/// flags, PC, instructions retired); returns the JIT's instruction count.
fn matches_interpreter(program: &[u32], options: JitOptions) -> u64 {
    let reference = interpret(program);
    let mut hart = hart_with(program);
    let mut jit = Jit::new(options);
    assert_eq!(jit.run(&mut hart, &mut Bare, 100_000).0, RunExit::Wfi);
    assert_eq!(jit.divergence(), None);
    assert_eq!(hart.x, reference.x, "integer registers");
    assert_eq!(hart.f, reference.f, "FP registers");
    assert_eq!(hart.csr.fflags, reference.csr.fflags, "accrued FP flags");
    assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    jit.stats.translated_instructions
}

fn fp_op(funct7: u32, rm: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    r_type(0x53, rm, funct7, rd, rs1, rs2)
}

/// FP arithmetic in a loop: division (inexact, by zero), add, mul, sqrt,
/// fused multiply-add, sign injection, conversions both ways (one out of
/// range), compares, moves, singles, inf - inf (a NaN: the interpreter's
/// canonical one), and reading and clearing the accrued flags.
fn fp_program() -> Vec<u32> {
    const DYN: u32 = 7;
    let fmadd_d = |rd: u32, rs1: u32, rs2: u32, rs3: u32| {
        rs3 << 27 | 1 << 25 | rs2 << 20 | rs1 << 15 | DYN << 12 | rd << 7 | 0x43
    };
    vec![
        6 << 12 | 5 << 7 | 0x37,      // lui x5, 6 (mstatus.FS = dirty)
        i_type(0x73, 2, 0, 5, 0x300), // csrs mstatus, x5
        i_type(0x13, 0, 1, 0, 20),
        i_type(0x13, 0, 2, 0, 3),
        fp_op(0x69, DYN, 1, 2, 2),  // fcvt.d.l f1, x2
        fp_op(0x69, DYN, 2, 1, 2),  // fcvt.d.l f2, x1
        fp_op(0x69, DYN, 9, 0, 2),  // fcvt.d.l f9, x0
        fp_op(0x68, DYN, 11, 0, 2), // fcvt.s.l f11, x0
        // loop:
        i_type(0x73, 1, 12, 0, 1),    // fsflags x12, x0 (clears; x12 = old)
        fp_op(0x0d, DYN, 3, 1, 2),    // fdiv.d f3, f1, f2
        fp_op(0x01, DYN, 4, 4, 3),    // fadd.d f4, f4, f3
        fp_op(0x09, DYN, 5, 4, 4),    // fmul.d f5, f4, f4
        fp_op(0x2d, DYN, 6, 5, 0),    // fsqrt.d f6, f5
        fmadd_d(7, 3, 2, 7),          // fmadd.d f7, f3, f2, f7
        fp_op(0x11, 1, 8, 7, 7),      // fsgnjn.d f8, f7, f7
        fp_op(0x61, 1, 3, 8, 2),      // fcvt.l.d x3, f8, rtz
        fp_op(0x61, 0, 4, 6, 0),      // fcvt.w.d x4, f6, rne
        fp_op(0x51, 1, 6, 8, 7),      // flt.d x6, f8, f7
        fp_op(0x51, 2, 7, 4, 4),      // feq.d x7, f4, f4
        fp_op(0x71, 0, 8, 5, 0),      // fmv.x.d x8, f5
        fp_op(0x20, DYN, 10, 5, 1),   // fcvt.s.d f10, f5
        fp_op(0x00, DYN, 11, 11, 10), // fadd.s f11, f11, f10
        fp_op(0x21, DYN, 12, 11, 0),  // fcvt.d.s f12, f11
        fp_op(0x0d, DYN, 13, 1, 9),   // fdiv.d f13, f1, f9 (3 / 0)
        fp_op(0x05, DYN, 14, 13, 13), // fsub.d f14, f13, f13 (inf - inf)
        fp_op(0x71, 0, 9, 14, 0),     // fmv.x.d x9, f14
        i_type(0x73, 2, 11, 0, 1),    // frflags x11
        fp_op(0x61, 0, 10, 13, 0),    // fcvt.w.d x10, f13 (out of range)
        i_type(0x13, 0, 1, 1, -1),
        b_type(1, 1, 0, -80),
        WFI,
    ]
}

#[test]
fn translated_fp_matches_the_interpreter_bit_for_bit() {
    let translated = matches_interpreter(&fp_program(), JitOptions::default());
    assert!(
        translated > 300,
        "the FP loop ran translated ({translated})"
    );
    let reference = interpret(&fp_program());
    assert_eq!(reference.x[9], 0x7ff8_0000_0000_0000, "canonical NaN");
    assert_eq!(reference.x[10], i32::MAX as u64, "saturated conversion");
    assert_eq!(reference.csr.fflags, 0x19, "NV, DZ and NX accrued");
    assert_eq!(reference.x[11], 0x19, "frflags saw them mid-loop");
}

#[test]
fn lockstep_agrees_on_fp_blocks() {
    matches_interpreter(
        &fp_program(),
        JitOptions {
            lockstep: true,
            inject_bug: false,
        },
    );
}

/// Division and high multiplies with the cases x86 traps on or shapes
/// differently: by zero, MIN / -1, their 32-bit forms.
fn divide_program() -> Vec<u32> {
    let m = |funct3, rd, rs1, rs2| r_type(0x33, funct3, 1, rd, rs1, rs2);
    let mw = |funct3, rd, rs1, rs2| r_type(0x3b, funct3, 1, rd, rs1, rs2);
    vec![
        i_type(0x13, 0, 1, 0, -1),
        i_type(0x13, 0, 2, 0, 1),
        i_type(0x13, 1, 3, 2, 63),      // x3 = i64::MIN
        0x80000 << 12 | 11 << 7 | 0x37, // x11 = i32::MIN, sign-extended
        i_type(0x13, 0, 20, 0, 10),
        // loop:
        m(4, 4, 3, 1),     // div x4, MIN, -1
        m(6, 5, 3, 1),     // rem x5, MIN, -1
        m(4, 6, 2, 0),     // div x6, 1, 0
        m(5, 7, 3, 0),     // divu x7, MIN, 0
        m(6, 8, 3, 0),     // rem x8, MIN, 0
        m(7, 9, 2, 0),     // remu x9, 1, 0
        mw(4, 12, 11, 1),  // divw x12, MIN32, -1
        mw(6, 13, 11, 1),  // remw x13, MIN32, -1
        mw(5, 14, 11, 20), // divuw x14, MIN32, x20
        mw(7, 15, 11, 0),  // remuw x15, MIN32, 0
        m(1, 16, 3, 3),    // mulh x16, MIN, MIN
        m(3, 17, 3, 1),    // mulhu x17, MIN, -1
        m(4, 18, 17, 20),  // div x18, x17, x20
        m(6, 19, 1, 20),   // rem x19, -1, x20
        i_type(0x13, 0, 20, 20, -1),
        b_type(1, 20, 0, -60),
        WFI,
    ]
}

#[test]
fn translated_division_matches_the_interpreter() {
    let translated = matches_interpreter(&divide_program(), JitOptions::default());
    assert!(translated > 100, "the loop ran translated ({translated})");
    let reference = interpret(&divide_program());
    assert_eq!(reference.x[4], i64::MIN as u64);
    assert_eq!(
        (reference.x[6], reference.x[8]),
        (u64::MAX, i64::MIN as u64)
    );
}

/// A loop that, in its first pass, stores a new instruction over its own
/// first instruction (no fence.i): `x1 += 1` becomes `x1 += 100`.
fn self_modifying_program() -> Vec<u32> {
    vec![
        i_type(0x13, 0, 1, 0, 0),
        i_type(0x13, 0, 2, 0, 3),
        // loop:
        i_type(0x13, 0, 1, 1, 1),    // addi x1, x1, 1 (rewritten)
        0x17 | 10 << 7,              // auipc x10, 0
        i_type(0x03, 2, 11, 10, 24), // lw x11, 24(x10)
        s_type(2, 10, 11, -4),       // sw x11, -4(x10)
        i_type(0x13, 0, 2, 2, -1),
        b_type(1, 2, 0, -20),
        WFI,
        i_type(0x13, 0, 1, 1, 100), // data: addi x1, x1, 100
    ]
}

#[test]
fn a_guest_store_over_translated_code_takes_effect() {
    let reference = interpret(&self_modifying_program());
    assert_eq!(reference.x[1], 201);
    matches_interpreter(&self_modifying_program(), JitOptions::default());
}

/// Data and code sharing a page: a store to the data part first (which
/// must not open a write fast path to the page), then, in each pass, a
/// store over the loop's own first instruction: `x1 += 1` becomes
/// `x1 += 100`.
fn shared_page_program() -> Vec<u32> {
    vec![
        0x17 | 10 << 7,           // auipc x10, 0
        i_type(0x13, 0, 2, 0, 3), // x2 = 3
        s_type(2, 10, 0, 0x7f8),  // sw x0, 0x7f8(x10): data in this page
        // loop:
        i_type(0x13, 0, 1, 1, 1),    // addi x1, x1, 1 (rewritten)
        i_type(0x03, 2, 11, 10, 44), // lw x11, 44(x10)
        s_type(2, 10, 11, 12),       // sw x11, 12(x10)
        i_type(0x13, 0, 2, 2, -1),
        b_type(1, 2, 0, -16),
        WFI,
        0,
        0,
        i_type(0x13, 0, 1, 1, 100), // data: addi x1, x1, 100
    ]
}

#[test]
fn a_store_over_code_is_seen_after_data_stores_to_its_page() {
    let reference = interpret(&shared_page_program());
    assert_eq!(reference.x[1], 201);
    matches_interpreter(&shared_page_program(), JitOptions::default());
}

/// Atomic memory operations of both widths on two words, and FENCE, in a
/// loop.
fn atomics_program() -> Vec<u32> {
    let amo = |funct5: u32, double: bool, rd, rs1, rs2| {
        r_type(0x2f, if double { 3 } else { 2 }, funct5 << 2, rd, rs1, rs2)
    };
    vec![
        1 << 12 | 10 << 7 | 0x17,   // auipc x10, 1 (data page)
        i_type(0x13, 0, 11, 10, 8), // x11 = x10 + 8
        i_type(0x13, 0, 1, 0, 5),
        i_type(0x13, 0, 2, 0, -3),
        i_type(0x13, 0, 20, 0, 10),
        // loop:
        amo(0x00, false, 3, 10, 1),  // amoadd.w
        amo(0x01, true, 4, 11, 2),   // amoswap.d
        amo(0x10, false, 5, 10, 2),  // amomin.w
        amo(0x1c, true, 6, 11, 1),   // amomaxu.d
        amo(0x04, false, 7, 10, 1),  // amoxor.w
        amo(0x08, true, 8, 11, 2),   // amoor.d
        amo(0x0c, false, 9, 10, 1),  // amoand.w
        amo(0x14, false, 12, 10, 2), // amomax.w
        amo(0x18, true, 13, 11, 1),  // amominu.d
        0x0ff0_000f,                 // fence
        i_type(0x13, 0, 20, 20, -1),
        b_type(1, 20, 0, -44),
        WFI,
    ]
}

#[test]
fn translated_atomics_match_the_interpreter() {
    let (mut reference, reference_ram) = hart_and_ram(&atomics_program());
    assert_eq!(reference.run(&mut Bare, 10_000).0, RunExit::Wfi);
    let (mut hart, ram) = hart_and_ram(&atomics_program());
    let mut jit = Jit::new(JitOptions::default());
    assert_eq!(jit.run(&mut hart, &mut Bare, 10_000).0, RunExit::Wfi);
    assert_eq!(hart.x, reference.x);
    assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    for offset in [0x1000, 0x1008] {
        assert_eq!(
            ram.read(BASE + offset, 8),
            reference_ram.read(BASE + offset, 8)
        );
    }
    assert!(
        jit.stats.translated_instructions > 100,
        "the loop ran translated"
    );
}

/// A deterministic pseudo-random source for generated programs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u32 {
        (self.next() % n) as u32
    }
}

/// Registers generated code writes: x1..x15 except the data pointer x10.
const DATA_POINTER: u32 = 10;
const COUNTER: u32 = 31;

/// One random instruction (or, for a forward branch, one that skips up to
/// `room` instructions) from what the translator handles, on x0..x15, f0..f7
/// and the data page at x10.
fn random_instruction(r: &mut Random, room: u32) -> u32 {
    let rd = |r: &mut Random| match r.below(14) + 1 {
        d if d >= DATA_POINTER => d + 1,
        d => d,
    };
    let rs = |r: &mut Random| r.below(16);
    let f = |r: &mut Random| r.below(8);
    let imm = |r: &mut Random| r.below(4096) as i32 - 2048;
    const DYN: u32 = 7;
    match r.below(16) {
        0 => {
            let funct3 = r.below(8);
            let imm = if funct3 == 1 || funct3 == 5 {
                (r.below(64)
                    | if funct3 == 5 && r.below(2) == 1 {
                        0x400
                    } else {
                        0
                    }) as i32
            } else {
                imm(r)
            };
            i_type(0x13, funct3, rd(r), rs(r), imm)
        }
        1 => match r.below(4) {
            0 => i_type(0x1b, 0, rd(r), rs(r), imm(r)),
            1 => i_type(0x1b, 1, rd(r), rs(r), r.below(32) as i32),
            2 => i_type(0x1b, 5, rd(r), rs(r), r.below(32) as i32),
            _ => i_type(0x1b, 5, rd(r), rs(r), 0x400 | r.below(32) as i32),
        },
        2 | 3 => {
            let funct7 = [0, 0x20, 1][r.below(3) as usize];
            let funct3 = if funct7 == 0x20 {
                [0, 5][r.below(2) as usize]
            } else {
                r.below(8)
            };
            r_type(0x33, funct3, funct7, rd(r), rs(r), rs(r))
        }
        4 => {
            let (funct7, funct3) = [
                (0, 0),
                (0x20, 0),
                (0, 1),
                (0, 5),
                (0x20, 5),
                (1, 0),
                (1, 4),
                (1, 5),
                (1, 6),
                (1, 7),
            ][r.below(10) as usize];
            r_type(0x3b, funct3, funct7, rd(r), rs(r), rs(r))
        }
        5 => (r.below(1 << 20) << 12) | rd(r) << 7 | [0x37, 0x17][r.below(2) as usize],
        6 => i_type(0x03, r.below(7), rd(r), DATA_POINTER, r.below(2048) as i32),
        7 => s_type(r.below(4), DATA_POINTER, rs(r), r.below(2048) as i32),
        8 if room > 0 => {
            let funct3 = [0, 1, 4, 5, 6, 7][r.below(6) as usize];
            b_type(funct3, rs(r), rs(r), 4 * (1 + r.below(room as u64) as i32))
        }
        9 => {
            let funct5 =
                [0x00, 0x01, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c][r.below(9) as usize];
            let double = r.below(2) == 1;
            r_type(
                0x2f,
                2 + double as u32,
                funct5 << 2,
                rd(r),
                DATA_POINTER,
                rs(r),
            )
        }
        10 | 11 => match r.below(12) {
            0 => fp_op(
                [0x69, 0x68][r.below(2) as usize],
                DYN,
                f(r),
                rs(r),
                r.below(2) * 2,
            ),
            1 => fp_op(
                [0x61, 0x60][r.below(2) as usize],
                [0, 1, DYN][r.below(3) as usize],
                rd(r),
                f(r),
                r.below(2) * 2,
            ),
            2 => fp_op(0x2d, DYN, f(r), f(r), 0),
            3 => fp_op(0x10 | r.below(2), r.below(3), f(r), f(r), f(r)),
            4 => fp_op(0x50 | r.below(2), r.below(3), rd(r), f(r), f(r)),
            5 => fp_op(0x71, 0, rd(r), f(r), 0),
            6 => fp_op(0x79, 0, f(r), rs(r), 0),
            7 => {
                let to_double = r.below(2); // fcvt.d.s, else fcvt.s.d
                fp_op(0x20 + to_double, DYN, f(r), f(r), 1 - to_double)
            }
            8 => {
                let fmt = r.below(2);
                (f(r) << 27 | fmt << 25 | f(r) << 20 | f(r) << 15 | DYN << 12 | f(r) << 7)
                    | [0x43, 0x47, 0x4b, 0x4f][r.below(4) as usize]
            }
            9 => i_type(
                0x07,
                2 + r.below(2),
                f(r),
                DATA_POINTER,
                8 * r.below(256) as i32,
            ),
            10 => {
                s_type(2 + r.below(2), DATA_POINTER, f(r), 8 * r.below(256) as i32) & !0x7f | 0x27
            }
            _ => fp_op(
                [0x00, 0x04, 0x08, 0x0c][r.below(4) as usize] | r.below(2),
                DYN,
                f(r),
                f(r),
                f(r),
            ),
        },
        12 => i_type(
            0x73,
            [1, 2][r.below(2) as usize],
            rd(r),
            [0, rs(r)][r.below(2) as usize],
            1,
        ),
        // A CSR the interpreter runs from inside the block: mscratch, and
        // the counters, whose reads must see every instruction before.
        13 => {
            let csr = [0x340, 0xb00, 0xb02, 0xc00, 0xc02][r.below(5) as usize];
            let read_only = csr >= 0xc00;
            let funct3 = match read_only {
                true => [2, 3, 6, 7][r.below(4) as usize],
                false => [1, 2, 3, 5, 6, 7][r.below(6) as usize],
            };
            let source = if read_only { 0 } else { rs(r) };
            i_type(0x73, funct3, rd(r), source, csr)
        }
        // LR, then usually an SC (succeeding when nothing stored between).
        14 => {
            let double = r.below(2);
            let funct5 = [0x02, 0x03, 0x03][r.below(3) as usize];
            let rs2 = if funct5 == 0x02 { 0 } else { rs(r) };
            r_type(0x2f, 2 + double, funct5 << 2, rd(r), DATA_POINTER, rs2)
        }
        _ => 0x0ff0_000f,
    }
}

/// Runs generated programs — a loop over random instructions from
/// everything the translator handles, with forward branches, on random
/// register values — under the interpreter and the JIT, and compares
/// registers, FP state, PC, instructions retired and the data page; and
/// under lock-step, which must find no divergence. (40,000 cases passed
/// during development; the suite runs 300.)
#[test]
fn generated_programs_match_the_interpreter() {
    let mut r = Random(0x2545_f491_4f6c_dd1d);
    let mut translated = 0;
    for case in 0..300 {
        let length = 8 + r.below(40);
        let mut program = vec![
            6 << 12 | 5 << 7 | 0x37,      // lui x5, 6 (mstatus.FS = dirty)
            i_type(0x73, 2, 0, 5, 0x300), // csrs mstatus, x5
        ];
        for i in 0..length {
            program.push(random_instruction(&mut r, length - i));
        }
        program.push(i_type(0x13, 0, COUNTER, COUNTER, -1));
        program.push(b_type(1, COUNTER, 0, -4 * (length as i32 + 1)));
        program.push(WFI);
        let setup = |hart: &mut Hart, r: &mut Random| {
            for x in 1..16 {
                hart.x[x] = match r.below(4) {
                    0 => r.next() as i32 as u64,
                    1 => r.below(64) as u64,
                    2 => [i64::MIN as u64, u64::MAX, 1 << 31, 0][r.below(4) as usize],
                    _ => r.next(),
                };
            }
            for x in 0..8 {
                hart.f[x] = match r.below(3) {
                    0 => (r.below(2000) as f64 - 1000.0).to_bits(),
                    1 => 0xffff_ffff_0000_0000 | (r.below(2000) as f32 / 7.0).to_bits() as u64,
                    _ => r.next(),
                };
            }
            hart.x[DATA_POINTER as usize] = BASE + 0x4000;
            hart.x[COUNTER as usize] = 3;
        };
        let state = r.next();
        let (mut reference, reference_ram) = hart_and_ram(&program);
        setup(&mut reference, &mut Random(state));
        let (mut hart, ram) = hart_and_ram(&program);
        setup(&mut hart, &mut Random(state));
        assert_eq!(
            reference.run(&mut Bare, 100_000).0,
            RunExit::Wfi,
            "case {case}"
        );
        let mut jit = Jit::new(JitOptions::default());
        assert_eq!(
            jit.run(&mut hart, &mut Bare, 100_000).0,
            RunExit::Wfi,
            "case {case}"
        );
        let listing: Vec<String> = program.iter().map(|w| format!("{w:08x}")).collect();
        assert_eq!(hart.x, reference.x, "case {case}: {listing:?}");
        assert_eq!(hart.f, reference.f, "case {case}: {listing:?}");
        assert_eq!(
            hart.csr.fflags, reference.csr.fflags,
            "case {case}: {listing:?}"
        );
        assert_eq!(
            (hart.pc, hart.instret),
            (reference.pc, reference.instret),
            "case {case}"
        );
        for offset in (0x4000..0x5000).step_by(8) {
            assert_eq!(
                ram.read(BASE + offset, 8),
                reference_ram.read(BASE + offset, 8),
                "case {case}"
            );
        }
        translated += jit.stats.translated_instructions;
        // Lock-step finds nothing to report and ends in the same state.
        let (mut checked, _) = hart_and_ram(&program);
        setup(&mut checked, &mut Random(state));
        let mut lockstep = Jit::new(JitOptions {
            lockstep: true,
            inject_bug: false,
        });
        assert_eq!(
            lockstep.run(&mut checked, &mut Bare, 100_000).0,
            RunExit::Wfi
        );
        assert_eq!(lockstep.divergence(), None, "case {case}: {listing:?}");
        assert_eq!(
            (checked.x, checked.f),
            (reference.x, reference.f),
            "case {case}"
        );
    }
    assert!(
        translated > 10_000,
        "most of it ran translated ({translated})"
    );
}

/// A loop whose middle instruction straddles a page boundary (a c.nop puts
/// the 32-bit ADD at 0xffe): x1 counts to 100, x3 sums it.
fn straddling_loop() -> (Hart, GuestRam) {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    let at = |offset: u64, bytes: u8, value: u32| {
        assert!(ram.write(BASE + offset, bytes, value as u64));
    };
    at(0xff0, 4, i_type(0x13, 0, 1, 0, 0));
    at(0xff4, 4, i_type(0x13, 0, 2, 0, 100));
    at(0xff8, 2, 0x0001); // c.nop
    at(0xffa, 4, i_type(0x13, 0, 1, 1, 1)); // loop: x1 += 1
    at(0xffe, 2, STRADDLING_ADD & 0xffff); // add x3, x3, x1 (low parcel)
    at(0x1000, 2, STRADDLING_ADD >> 16); // (high parcel, next page)
    at(0x1002, 4, b_type(1, 1, 2, -8)); // bne x1, x2, loop
    at(0x1006, 4, WFI);
    let mut hart = Hart::new(0, ram.clone());
    hart.pc = BASE + 0xff0;
    (hart, ram)
}

const STRADDLING_ADD: u32 = 0x0011_81b3; // add x3, x3, x1
const STRADDLING_SUB_HIGH: u32 = 0x4011; // the high parcel of sub x3, x3, x1

#[test]
fn an_instruction_straddling_two_pages_runs_translated() {
    let (mut reference, _) = straddling_loop();
    assert_eq!(reference.run(&mut Bare, 10_000).0, RunExit::Wfi);
    assert_eq!(reference.x[3], (1..=100).sum::<u64>());
    let (mut hart, _) = straddling_loop();
    let mut jit = Jit::new(JitOptions::default());
    assert_eq!(jit.run(&mut hart, &mut Bare, 10_000).0, RunExit::Wfi);
    assert_eq!(hart.x, reference.x);
    assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    assert!(
        jit.stats.translated_instructions > 250,
        "the loop, straddling ADD included, ran translated ({})",
        jit.stats.translated_instructions
    );
}

#[test]
fn a_store_to_the_next_page_half_of_a_translated_instruction_is_seen() {
    // Run half the loop, rewrite the ADD's high parcel (in the next page)
    // into SUB, run on: the interpreter and the JIT must agree.
    let run_in_two_halves = |engine: &mut dyn FnMut(&mut Hart, u64) -> RunExit| {
        let (mut hart, ram) = straddling_loop();
        assert_eq!(engine(&mut hart, 150), RunExit::Budget);
        assert!(ram.write(BASE + 0x1000, 2, STRADDLING_SUB_HIGH as u64));
        assert_eq!(engine(&mut hart, 10_000), RunExit::Wfi);
        hart
    };
    let reference = run_in_two_halves(&mut |hart, budget| hart.run(&mut Bare, budget).0);
    let mut jit = Jit::new(JitOptions::default());
    let translated = run_in_two_halves(&mut |hart, budget| jit.run(hart, &mut Bare, budget).0);
    assert_ne!(
        reference.x[3],
        (1..=100).sum::<u64>(),
        "the rewrite took effect"
    );
    assert_eq!(translated.x, reference.x);
    assert_eq!(translated.pc, reference.pc);
}

#[test]
fn the_perf_map_is_never_opened_through_a_symlink() {
    let dir = std::env::temp_dir().join(format!("visor-perf-map-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("victim");
    std::fs::write(&target, b"precious").unwrap();
    let link = dir.join("perf.map");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(
        super::open_perf_map(&link).is_none(),
        "followed the symlink"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let plain = dir.join("plain.map");
    assert!(super::open_perf_map(&plain).is_some());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&plain).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "private to its user: {mode:o}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_block_table_stays_bounded_over_many_distinct_blocks() {
    // 1,500 blocks of `addi x1, x1, 1; jal x0, +4`, then WFI.
    let mut program = Vec::new();
    for _ in 0..1500 {
        program.push(i_type(0x13, 0, 1, 1, 1));
        program.push(1 << 22 | 0x6f); // jal x0, +4
    }
    program.push(WFI);
    let reference = interpret_for(&program, 100_000);
    let mut hart = hart_with(&program);
    let mut jit = Jit::new(JitOptions::default());
    assert_eq!(jit.run(&mut hart, &mut Bare, 100_000).0, RunExit::Wfi);
    assert_eq!(hart.x, reference.x);
    assert_eq!(hart.x[1], 1500);
    assert!(
        jit.blocks.slots.len() <= MAX_SLOTS,
        "{} entries",
        jit.blocks.slots.len()
    );
    assert!(jit.stats.table_flushes >= 5, "{:?}", jit.stats);
}

#[test]
fn translated_code_is_never_writable_where_it_runs() {
    let mut hart = hart_with(&program());
    let mut jit = Jit::new(JitOptions::default());
    assert_eq!(jit.run(&mut hart, &mut Bare, 10_000).0, RunExit::Wfi);
    assert!(jit.stats.blocks > 0);
    let range = jit.arena.exec_range();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let view = maps
        .lines()
        .find(|l| {
            let start = l.split('-').next().unwrap();
            usize::from_str_radix(start, 16).unwrap() == range.start
        })
        .expect("the executable view is mapped");
    let perms = view.split_whitespace().nth(1).unwrap();
    assert_eq!(perms, "r-xs", "{view}");
    let writable_and_executable = maps
        .lines()
        .filter(|l| l.contains("visor-jit"))
        .filter(|l| l.split_whitespace().nth(1).unwrap().starts_with("rwx"))
        .count();
    assert_eq!(writable_and_executable, 0, "{maps}");
}

/// The same physical code page mapped at two virtual pages (Sv39, S-mode):
///   nop; auipc x5, 0; jal x6, +8; (skipped); wfi
/// (a run's first instruction is the interpreter's, the rest translated)
/// Returns the hart, its RAM, and the two virtual addresses.
fn code_mapped_twice() -> (Hart, GuestRam, [u64; 2]) {
    const ROOT: u64 = BASE + 0x1000;
    const L1: u64 = BASE + 0x2000;
    const L0: u64 = BASE + 0x3000;
    const CODE: u64 = BASE + 0x10_000;
    const PTE_V: u64 = 1;
    const LEAF_RXA: u64 = 1 << 1 | 1 << 3 | 1 << 6 | PTE_V;
    let pte = |pa: u64, flags: u64| (pa >> 12) << 10 | flags;
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    for (i, word) in [
        i_type(0x13, 0, 0, 0, 0),
        0x17 | 5 << 7, // auipc x5, 0
        0x0080_036f,   // jal x6, +8
        i_type(0x13, 0, 7, 0, 1),
        WFI,
    ]
    .iter()
    .enumerate()
    {
        assert!(ram.write(CODE + 4 * i as u64, 4, *word as u64));
    }
    // VA 0x4000_0000 and 0x4000_5000 -> CODE.
    assert!(ram.write(ROOT + 8, 8, pte(L1, PTE_V)));
    assert!(ram.write(L1, 8, pte(L0, PTE_V)));
    assert!(ram.write(L0, 8, pte(CODE, LEAF_RXA)));
    assert!(ram.write(L0 + 5 * 8, 8, pte(CODE, LEAF_RXA)));
    let mut hart = Hart::new(0, ram.clone());
    hart.privilege = riscv_hart::Privilege::Supervisor;
    hart.csr.satp = 8 << 60 | ROOT >> 12;
    hart.csr.pmpcfg[0] = 0x1f; // NAPOT RWX over everything
    hart.csr.pmpaddr[0] = u64::MAX >> 10;
    (hart, ram, [0x4000_0000, 0x4000_5000])
}

#[test]
fn code_mapped_at_two_addresses_shares_one_translation() {
    let (mut hart, _ram, addresses) = code_mapped_twice();
    let mut jit = Jit::new(JitOptions::default());
    let mut blocks = Vec::new();
    for va in addresses {
        hart.pc = va;
        hart.x[5] = 0;
        hart.x[6] = 0;
        hart.waiting = false;
        assert_eq!(jit.run(&mut hart, &mut Bare, 100).0, RunExit::Wfi);
        assert_eq!(hart.x[5], va + 4, "AUIPC sees where the code runs");
        assert_eq!(hart.x[6], va + 12, "so does JAL's link");
        assert_eq!(hart.pc, va + 20, "past the WFI at the jump's target");
        assert_eq!(hart.x[7], 0, "the jump skipped an instruction");
        blocks.push(jit.stats.blocks);
    }
    assert!(jit.stats.translated_instructions >= 4);
    assert_eq!(blocks[0], blocks[1], "the second address reused the blocks");
}
