//! Fuzz body for the JIT (`fuzz/fuzz_targets/jit_vs_interpreter.rs`;
//! seeded pseudo-random inputs in the unit tests): fuzzer-chosen code —
//! self-modifying stores, `fence.i`, `sfence.vma`, traps, privilege
//! changes included — runs under the JIT and under the interpreter from
//! the same state, and both must end in the same architectural state
//! (registers, FP registers and flags, PC, privilege, trap CSRs,
//! instructions retired, every byte of RAM), with the block table within
//! its bound.

use crate::{Jit, JitOptions, MAX_SLOTS};
use arbitrary::Unstructured;
use riscv_hart::{GuestRam, Hart, Platform, RunExit};

const RAM_BASE: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 0x1_0000;
/// Most code bytes taken from the input (the rest of RAM starts zeroed).
const CODE_BYTES: usize = 0x4000;
const BUDGET: u64 = 4000;
/// mstatus.FS = Dirty: FP instructions run.
const MSTATUS_FS_DIRTY: u64 = 3 << 13;

/// A platform with nothing but RAM and a clock that never advances.
pub(crate) struct Bare;

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

/// A hart on its own RAM holding `code`, with the registers `u` chooses.
fn machine(code: &[u8], u: &mut Unstructured) -> (Hart, GuestRam) {
    let ram = GuestRam::new(RAM_BASE, RAM_SIZE).expect("64 KiB of guest RAM");
    ram.write_bytes(RAM_BASE, code);
    let mut hart = Hart::new(0, ram.clone());
    hart.pc = RAM_BASE;
    hart.csr.mstatus |= MSTATUS_FS_DIRTY;
    hart.csr.mtvec = RAM_BASE + 4 * u.int_in_range(0..=255u64).unwrap_or(0);
    for x in 1..32 {
        hart.x[x] = match u.int_in_range(0..=3u8).unwrap_or(0) {
            // Code (stores rewrite it), data, or RAM's last bytes.
            0 => RAM_BASE + u.int_in_range(0..=RAM_SIZE - 1).unwrap_or(0),
            1 => RAM_BASE + RAM_SIZE - u.int_in_range(1..=16u64).unwrap_or(1),
            2 => u.int_in_range(0..=64u64).unwrap_or(0),
            _ => u.arbitrary().unwrap_or(0),
        };
    }
    for f in 0..32 {
        hart.f[f] = u.arbitrary().unwrap_or(0);
    }
    (hart, ram)
}

fn ram_bytes(ram: &GuestRam) -> Vec<u8> {
    let mut bytes = vec![0; RAM_SIZE as usize];
    ram.read_bytes(RAM_BASE, &mut bytes);
    bytes
}

/// Fuzz body: see the module documentation. Panics on a difference.
pub fn jit_matches_interpreter(data: &[u8]) {
    let [flags, length_low, length_high, rest @ ..] = data else {
        return;
    };
    let length = u16::from_le_bytes([*length_low, *length_high]) as usize % (CODE_BYTES + 1);
    let code = &rest[..rest.len().min(length)];
    let state = &rest[code.len()..];
    let (mut hart, ram) = machine(code, &mut Unstructured::new(state));
    let (mut reference, reference_ram) = machine(code, &mut Unstructured::new(state));
    let mut jit = Jit::new(JitOptions {
        lockstep: flags & 1 != 0,
        ..JitOptions::default()
    });
    let (exit, executed) = jit.run(&mut hart, &mut Bare, BUDGET);
    assert!(
        jit.blocks.slots.len() <= MAX_SLOTS,
        "the block table outgrew its bound"
    );
    if let Some(divergence) = jit.divergence() {
        panic!("lock-step: {divergence}");
    }
    // Translated code may run past the budget to the end of its block:
    // the interpreter runs exactly as many.
    let (_, reference_executed) = reference.run(&mut Bare, executed);
    assert_eq!(executed, reference_executed, "instructions run");
    assert_eq!(
        (exit == RunExit::Wfi, hart.waiting),
        (exit == RunExit::Wfi, reference.waiting),
        "waiting in WFI"
    );
    assert_eq!(hart.x, reference.x, "integer registers");
    assert_eq!(hart.f, reference.f, "FP registers");
    assert_eq!(hart.csr.fflags, reference.csr.fflags, "accrued FP flags");
    assert_eq!(
        (hart.pc, hart.privilege, hart.instret, hart.traps),
        (
            reference.pc,
            reference.privilege,
            reference.instret,
            reference.traps
        ),
        "PC, privilege, instructions retired, traps"
    );
    assert_eq!(
        (
            hart.csr.mepc,
            hart.csr.mcause,
            hart.csr.mtval,
            hart.csr.mstatus
        ),
        (
            reference.csr.mepc,
            reference.csr.mcause,
            reference.csr.mtval,
            reference.csr.mstatus
        ),
        "trap CSRs"
    );
    assert!(ram_bytes(&ram) == ram_bytes(&reference_ram), "guest RAM");
}

#[cfg(test)]
mod tests {
    /// The fuzz body over seeded pseudo-random code: mostly one of a few
    /// opcodes with random fields, so loads, stores (over code, too),
    /// branches and fences are common.
    #[test]
    fn pseudo_random_code_runs_alike_under_both_engines() {
        let mut state = 0x6a09_e667_f3bc_c909u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const OPCODES: [u32; 10] = [0x03, 0x13, 0x23, 0x33, 0x3b, 0x63, 0x0f, 0x2f, 0x53, 0x73];
        for round in 0..300 {
            let words = 64 + round % 512;
            let mut data = vec![(round % 7 == 0) as u8];
            data.extend_from_slice(&(4 * words as u16).to_le_bytes());
            for _ in 0..words {
                let word = next() as u32;
                let word = match next() % 8 {
                    0 => word,
                    1 => 0x1050_0073, // wfi
                    _ => word & !0x7f | OPCODES[(next() % OPCODES.len() as u64) as usize],
                };
                data.extend_from_slice(&word.to_le_bytes());
            }
            data.extend((0..600).map(|_| next() as u8));
            super::jit_matches_interpreter(&data);
        }
    }
}
