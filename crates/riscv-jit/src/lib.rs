//! visor's binary translation engine for RISC-V harts (first tier).
//!
//! Straight-line integer code — LUI/AUIPC, register-immediate and
//! register-register ALU operations (32- and 64-bit, MUL), integer loads
//! and stores — is translated into host x86-64 code with dynasm-rs, up to
//! and including a closing JAL, JALR or conditional branch, which the
//! block resolves itself. Loads and stores use the hart's soft-TLB inline; on a
//! miss the block stops before that instruction. Everything else (CSRs, FP,
//! atomics, system instructions, division) and every TLB miss is
//! executed by the interpreter, one instruction at a time, between blocks.
//! Translated code never traps, so precise exceptions stay the
//! interpreter's job.
//!
//! Validity without invalidation machinery: a block is keyed by its
//! virtual PC and stores the guest bytes it was translated from. Before it
//! runs, the bytes now at that PC (through the hart's execute TLB, under
//! the current privilege and address space) must still equal them. Self-
//! modifying code, `fence.i`, remapping and other harts' stores are all
//! covered by that comparison; the cost is a short `memcmp` per block.
//!
//! Lock-step mode runs every block twice — translated, then interpreted
//! from the same starting state — and reports the first block whose
//! results differ. Replaying stores would corrupt the comparison, so in
//! lock-step blocks keep loads and stores interpreted.
//!
//! Why dynasm-rs: it assembles at compile time from checked Intel syntax,
//! so translation is little more than copying pre-encoded bytes with
//! patched displacements and immediates (microseconds per block), with a
//! tiny runtime; a second, optimizing tier could use Cranelift later.

mod arena;
mod emit;
mod translate;

use riscv_hart::{DataTlb, Hart, Platform, RunExit};
use std::collections::HashMap;
use std::rc::Rc;

/// Entries in the direct-mapped front of the block cache.
const RECENT_SLOTS: usize = 4096;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hashing for guest PCs (SipHash is needlessly slow here).
#[derive(Default)]
struct PcHasher(u64);

impl Hasher for PcHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, pc: u64) {
        self.0 = (pc >> 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Where lock-step found the translation and the interpreter disagreeing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Virtual PC of the block.
    pub block_pc: u64,
    pub instructions: u64,
    /// (translated, interpreted) next PC.
    pub pc: (u64, u64),
    /// Registers that differ: (index, translated, interpreted).
    pub registers: Vec<(usize, u64, u64)>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "block at {:#x} ({} instructions): next pc {:#x} translated vs {:#x} interpreted",
            self.block_pc, self.instructions, self.pc.0, self.pc.1
        )?;
        for (r, t, i) in &self.registers {
            write!(f, "; x{r} {t:#x} vs {i:#x}")?;
        }
        Ok(())
    }
}

/// How the engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitOptions {
    /// Check every block against the interpreter.
    pub lockstep: bool,
    /// Deliberately mistranslate ADDI (adds one more): for testing lock-step.
    pub inject_bug: bool,
}

struct Slot {
    /// Data privilege the block's loads and stores were emitted for.
    privilege: u64,
    /// None: the first instruction here is one the interpreter runs.
    block: Option<emit::Block>,
    /// The guest bytes the slot was built from (for an untranslatable
    /// start: that first instruction's bytes).
    bytes: Vec<u8>,
}

/// The translation engine for one hart.
pub struct Jit {
    options: JitOptions,
    /// Blocks by virtual PC, kept until replaced (no eviction yet).
    slots: HashMap<u64, Rc<Slot>, BuildHasherDefault<PcHasher>>,
    /// Direct-mapped front for `slots`: the last block seen per index.
    recent: Vec<Option<(u64, Rc<Slot>)>>,
    arena: arena::CodeArena,
    divergence: Option<Divergence>,
    /// Instructions run as translated code.
    pub translated_instructions: u64,
}

impl Jit {
    pub fn new(options: JitOptions) -> Jit {
        Jit {
            options,
            slots: HashMap::default(),
            recent: vec![None; RECENT_SLOTS],
            arena: arena::CodeArena::new(),
            divergence: None,
            translated_instructions: 0,
        }
    }

    /// The first lock-step mismatch, once found (the engine then stops translating).
    pub fn divergence(&self) -> Option<&Divergence> {
        self.divergence.as_ref()
    }

    /// Like [`Hart::run`]: up to `budget` instructions, translated blocks
    /// where possible, the interpreter elsewhere and at every boundary where
    /// interrupts must be re-evaluated.
    pub fn run(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        budget: u64,
    ) -> (RunExit, u64) {
        let mut executed = 0;
        // Like the interpreter, re-evaluate interrupts at the start of every
        // run: the first instruction goes through the interpreter's boundary.
        let mut boundary = true;
        while executed < budget {
            if !boundary
                && !hart.boundary_pending()
                && self.divergence.is_none()
                && budget - executed >= translate::MAX_BLOCK as u64
            {
                // Zero: the block's first instruction needs the interpreter
                // (a TLB miss); it runs below.
                if let Some(n) = self
                    .run_block(hart, platform, budget - executed)
                    .filter(|&n| n > 0)
                {
                    executed += n;
                    continue;
                }
            }
            let (exit, n) = if boundary {
                boundary = false;
                hart.run(platform, 1)
            } else {
                hart.continue_run(platform, 1)
            };
            executed += n;
            if exit != RunExit::Budget {
                return (exit, executed);
            }
        }
        (RunExit::Budget, executed)
    }

    /// Runs the block at the hart's PC, translating it first if needed;
    /// `None` when the code there is not translatable (or not mapped yet).
    fn run_block(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        budget: u64,
    ) -> Option<u64> {
        let pc = hart.pc;
        let tlb = hart.data_tlb();
        let code = hart.code_at(pc)?;
        let lockstep = self.options.lockstep;
        let slot = self.lookup(pc, code, tlb)?;
        if lockstep {
            let slot = slot.clone();
            return self.check_block(hart, platform, &slot, budget);
        }
        let block = slot.block.as_ref()?;
        let exit = block.run(&mut hart.x, budget);
        hart.pc = exit.pc;
        hart.instret += exit.count;
        self.translated_instructions += exit.count;
        Some(exit.count)
    }

    /// The valid slot for `pc` (whose bytes are `code`), translating anew
    /// when there is none or the code changed.
    fn lookup(&mut self, pc: u64, code: &[u8], tlb: DataTlb) -> Option<&Rc<Slot>> {
        let index = (pc >> 1) as usize % RECENT_SLOTS;
        let valid = |slot: &Slot| slot.privilege == tlb.privilege && code.starts_with(&slot.bytes);
        let hit = matches!(&self.recent[index], Some((p, slot)) if *p == pc && valid(slot));
        if !hit {
            let slot = match self.slots.get(&pc) {
                Some(slot) if valid(slot) => slot.clone(),
                _ => {
                    let slot = Rc::new(self.translate(pc, code, tlb)?);
                    self.slots.insert(pc, slot.clone());
                    slot
                }
            };
            self.recent[index] = Some((pc, slot));
        }
        self.recent[index].as_ref().map(|(_, slot)| slot)
    }

    fn translate(&mut self, pc: u64, code: &[u8], tlb: DataTlb) -> Option<Slot> {
        // Lock-step replays blocks, so their memory accesses stay interpreted.
        let translation = translate::translate(code, !self.options.lockstep)?;
        let bytes = code[..translation.bytes].to_vec();
        let privilege = tlb.privilege;
        if translation.instructions.is_empty() {
            return Some(Slot {
                privilege,
                block: None,
                bytes,
            });
        }
        let inject_bug = self.options.inject_bug;
        let emit = |arena: &mut arena::CodeArena| {
            emit::Block::emit(arena, pc, &translation.instructions, tlb, inject_bug)
        };
        let block = match emit(&mut self.arena) {
            Some(block) => block,
            None => {
                // Arena full: drop every block, then start over.
                self.slots.clear();
                self.recent.iter_mut().for_each(|r| *r = None);
                self.arena.reset();
                emit(&mut self.arena)?
            }
        };
        Some(Slot {
            privilege,
            block: Some(block),
            bytes,
        })
    }

    /// Lock-step: runs the block translated, then the same instructions in
    /// the interpreter from the same state, and compares.
    fn check_block(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        slot: &Slot,
        budget: u64,
    ) -> Option<u64> {
        let block = slot.block.as_ref()?;
        let (start_x, start_pc, start_traps) = (hart.x, hart.pc, hart.traps);
        let mut translated = start_x;
        let exit = block.run(&mut translated, budget);
        let (translated_pc, count) = (exit.pc, exit.count);
        let (_, ran) = hart.run(platform, count);
        // An interrupt that arrived meanwhile is not a translation bug.
        let comparable = ran == count && hart.traps == start_traps;
        if comparable && (translated != hart.x || translated_pc != hart.pc) {
            self.divergence = Some(Divergence {
                block_pc: start_pc,
                instructions: count,
                pc: (translated_pc, hart.pc),
                registers: (0..32)
                    .filter(|&r| translated[r] != hart.x[r])
                    .map(|r| (r, translated[r], hart.x[r]))
                    .collect(),
            });
        }
        self.translated_instructions += count;
        Some(ran)
    }
}

#[cfg(test)]
mod tests;
