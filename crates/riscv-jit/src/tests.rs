use super::*;
use riscv_hart::GuestRam;

const BASE: u64 = 0x8000_0000;

/// A platform with nothing but RAM and a clock that never advances.
struct Bare;

impl Platform for Bare {
    fn load(&mut self, _hart: usize, _addr: u64, _size: u8) -> Option<u64> {
        None
    }
    fn store(&mut self, _hart: usize, _addr: u64, _size: u8, _value: u64) -> bool {
        false
    }
    fn watched_store(&mut self, _hart: usize, _addr: u64, _size: u8, _value: u64) {}
    fn mtime(&mut self) -> u64 {
        0
    }
}

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
        jit.translated_instructions > 300,
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
    let mut hart = hart_with(program);
    let (exit, _) = hart.run(&mut Bare, 10_000);
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
    assert!(jit.translated_instructions > 500, "the loop ran translated");
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
    // The first instruction runs interpreted (its page is not in the TLB
    // yet); the first block starts at "addi x2, x0, 100".
    assert_eq!(divergence.block_pc, BASE + 4, "{divergence}");
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
    // Someone (another hart, a DMA) rewrites "x2 = 100" to "x2 = 7"; the
    // loop runs again from the top and must see the new instruction.
    assert!(ram.write(BASE + 4, 4, i_type(0x13, 0, 2, 0, 7) as u64));
    hart.pc = BASE;
    hart.waiting = false;
    jit.run(&mut hart, &mut Bare, 10_000);
    assert_eq!((hart.x[1], hart.x[2]), (7, 7));
}

#[test]
fn self_loops_stop_exactly_at_the_budget() {
    for budget in [70, 200, 333] {
        let mut reference = hart_with(&program());
        assert_eq!(reference.run(&mut Bare, budget), (RunExit::Budget, budget));
        let mut hart = hart_with(&program());
        let mut jit = Jit::new(JitOptions::default());
        assert_eq!(
            jit.run(&mut hart, &mut Bare, budget),
            (RunExit::Budget, budget)
        );
        assert_eq!(hart.x, reference.x, "budget {budget}");
        assert_eq!((hart.pc, hart.instret), (reference.pc, reference.instret));
    }
}
