//! How a hart's instructions get executed: one trait for the interpreter,
//! the binary translator and lock-step checking, so a board runs its harts
//! without knowing which engine it was given.

use crate::{Hart, Platform, RunExit};

pub trait Engine {
    /// Runs `hart` for `budget` instructions or until it must stop (WFI, a
    /// device write), as [`Hart::run`] does; the instructions retired.
    fn run(&mut self, hart: &mut Hart, platform: &mut dyn Platform, budget: u64) -> (RunExit, u64);

    /// Where checking found translated code disagreeing with the
    /// interpreter, once it did.
    fn divergence(&self) -> Option<String> {
        None
    }

    /// What translating did (`None` for an engine that does not translate).
    fn translation_stats(&self) -> Option<TranslationStats> {
        None
    }
}

/// The interpreter alone.
pub struct Interpreter;

impl Engine for Interpreter {
    fn run(&mut self, hart: &mut Hart, platform: &mut dyn Platform, budget: u64) -> (RunExit, u64) {
        hart.run(platform, budget)
    }
}

/// What a translating engine did: how much ran translated, and what
/// translating cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranslationStats {
    /// Guest instructions run as translated code.
    pub translated_instructions: u64,
    /// Blocks translated, and the guest instructions and host code bytes
    /// in them.
    pub blocks: u64,
    pub block_instructions: u64,
    pub code_bytes: u64,
    /// Time spent translating (decoding and emitting), in nanoseconds.
    pub translation_nanos: u64,
    /// Times the table of blocks reached its bound and was emptied.
    pub table_flushes: u64,
    /// Blocks whose bytes were compared again after the code epoch moved
    /// and found unchanged, and blocks translated again because they had
    /// changed.
    pub revalidations: u64,
    pub retranslations: u64,
    /// Times the indirect-jump cache was cleared (after a TLB flush).
    pub jump_cache_clears: u64,
    /// Times the engine's dispatcher looked for a block to run (blocks
    /// reached by chained jumps or jump-cache hits need no lookup).
    pub dispatches: u64,
    /// Jump-cache misses translated code resolved in the block table
    /// without returning to the dispatcher.
    pub code_lookups: u64,
}

impl std::ops::AddAssign for TranslationStats {
    fn add_assign(&mut self, other: TranslationStats) {
        self.translated_instructions += other.translated_instructions;
        self.blocks += other.blocks;
        self.block_instructions += other.block_instructions;
        self.code_bytes += other.code_bytes;
        self.translation_nanos += other.translation_nanos;
        self.table_flushes += other.table_flushes;
        self.revalidations += other.revalidations;
        self.retranslations += other.retranslations;
        self.dispatches += other.dispatches;
        self.code_lookups += other.code_lookups;
        self.jump_cache_clears += other.jump_cache_clears;
    }
}
