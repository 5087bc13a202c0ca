//! visor's binary translation engine for RISC-V harts (first tier).
//!
//! Integer ALU operations (32- and 64-bit, multiply and divide), LUI/AUIPC,
//! integer and FP loads and stores, AMOs, FENCE, the common FP arithmetic
//! (add, sub, mul, div, sqrt, fused multiply-add, sign injection, compares,
//! conversions, moves) and `frflags`/`fsflags` are translated into host
//! x86-64 code with dynasm-rs. Conditional branches are side exits; a JAL
//! or JALR ends a block. Everything else (other CSRs, LR/SC, system
//! instructions, FP min/max/classify, unusual rounding modes), every memory
//! access the TLB cannot serve (faults, devices) and every interrupt
//! boundary is the interpreter's, one instruction at a time, between
//! blocks. Translated code never traps, so precise exceptions stay the
//! interpreter's job.
//!
//! Blocks are keyed by the host address of the code (so the physical page
//! it came from, and the offset in it) and a mode (privileges, whether FP
//! may be translated), not by virtual PC: a block computes every PC it
//! needs (AUIPC, links, exits) from the virtual page it is running from
//! now, which entering it records, so one translation serves every process
//! that maps the same code, wherever address-space randomisation put it
//! (QEMU's TBs are position-independent the same way). A block runs without its guest bytes being compared as long
//! as the RAM's code epoch has not moved since it was checked: the code it
//! came from is protected, and a store over protected code (any hart, any
//! path) or a `fence.i` advances the epoch (see `riscv_hart::GuestRam`).
//! After that, a block's bytes are compared once before it runs again.
//!
//! Blocks chain: an exit to a constant PC in the same guest page is patched
//! into a direct jump to the block there (the page's mapping was checked
//! when the chain was entered, and a chain never leaves the page); JALR and
//! jumps to other pages go through an indirect-jump cache keyed by PC and
//! mode, cleared when the hart's TLB is flushed. Each block checks the
//! epoch and the budget at its entry, so chains stop at the first block
//! boundary past the end of a slice: interrupts are evaluated at slice
//! boundaries, as in the interpreter.
//!
//! Lock-step mode runs every block twice — translated, then interpreted
//! from the same starting state — and reports the first block whose
//! results differ. Replaying side effects would corrupt the comparison, so
//! in lock-step, memory accesses and `fflags` accesses stay interpreted.
//!
//! Why dynasm-rs: it assembles at compile time from checked Intel syntax,
//! so translation is little more than copying pre-encoded bytes with
//! patched displacements and immediates (2.5 µs per block in a Linux boot,
//! see `--stats`), with a tiny runtime; a second, optimizing tier could use
//! Cranelift later.

mod arena;
// dynasm expands dynamic registers (`Rq(n)`) with a `.into()` of the number.
#[allow(clippy::useless_conversion)]
mod emit;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod translate;

use emit::{Block, ExitState, JumpEntry, Runtime, JUMP_CACHE_ENTRIES};
use riscv_hart::{DataTlb, Hart, Platform, RunExit, TLB_TAG_MODE_BITS};
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::rc::Rc;

/// Entries in the direct-mapped front of the block cache.
const RECENT_SLOTS: usize = 32768;

/// Multiplicative hashing for block keys (SipHash is needlessly slow here).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
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
    /// Integer registers that differ: (index, translated, interpreted).
    pub registers: Vec<(usize, u64, u64)>,
    /// FP registers (raw bits) that differ: (index, translated, interpreted).
    pub fp_registers: Vec<(usize, u64, u64)>,
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
        for (r, t, i) in &self.fp_registers {
            write!(f, "; f{r} {t:#x} vs {i:#x}")?;
        }
        Ok(())
    }
}

/// What the engine did (the trait's counters, under the name this crate
/// has always given them).
pub type JitStats = riscv_hart::TranslationStats;

/// How the engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitOptions {
    /// Check every block against the interpreter.
    pub lockstep: bool,
    /// Deliberately mistranslate ADDI (adds one more): for testing
    /// lock-step; only this crate's tests have it.
    #[cfg(test)]
    pub inject_bug: bool,
}

impl JitOptions {
    /// Whether blocks are to be mistranslated on purpose (never outside tests).
    fn injects_bug(&self) -> bool {
        #[cfg(test)]
        return self.inject_bug;
        #[cfg(not(test))]
        false
    }
}

/// Blocks are looked up by the host address of their code (so its
/// physical page and offset) and mode, not by virtual PC: translated code
/// holds PCs as offsets from the page it runs from ([`emit::ExitState`]'s
/// `vpage`), so processes mapping the same code at other addresses share it.
type Key = (usize, u64);

/// The flag of a block mode saying FP instructions may run translated.
const MODE_FP: u64 = 1 << (2 * TLB_TAG_MODE_BITS);

/// A block's mode: what its code was translated for and may run in only —
/// the fetch mode (privilege and V), the data mode loads and stores use,
/// and whether FP is ready (see [`Hart::fp_ready`]).
fn block_mode(fetch: u64, data: u64, fp: bool) -> u64 {
    fetch | data << TLB_TAG_MODE_BITS | if fp { MODE_FP } else { 0 }
}

/// The mode key of the blocks the hart can run now.
fn current_mode(hart: &Hart) -> u64 {
    block_mode(
        hart.fetch_mode().tag_bits(),
        hart.data_tlb().mode,
        hart.fp_ready(),
    )
}

struct Slot {
    /// None: the first instruction here is one the interpreter runs.
    block: Option<Block>,
    /// The guest bytes the slot was built from in the block's page (for an
    /// untranslatable start: that first instruction's bytes).
    bytes: Vec<u8>,
    /// For a block whose last instruction straddles into the next page:
    /// that page's code as the block found it.
    next_page: Option<NextPage>,
    /// The code epoch in which `bytes` were last seen in RAM.
    epoch: Cell<u32>,
}

/// The start of the page after a block's: its host address and the
/// instruction parcel the block took from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct NextPage {
    host: usize,
    parcel: [u8; PARCEL],
}

/// A code epoch that never occurs (epochs start at 1 and skip 0).
const STALE_EPOCH: u32 = 0;

/// Bytes of an instruction parcel: what a 32-bit instruction that starts
/// 2 bytes before a page's end takes from the next page.
const PARCEL: usize = 2;
const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

impl NextPage {
    /// The next page as `code_at` shows it now.
    fn of(code: Option<&[u8]>) -> Option<NextPage> {
        let code = code?;
        Some(NextPage {
            host: code.as_ptr() as usize,
            parcel: code.get(..PARCEL)?.try_into().ok()?,
        })
    }
}

impl Slot {
    fn set_epoch(&self, epoch: u32) {
        self.epoch.set(epoch);
        if let Some(block) = &self.block {
            block.set_epoch(epoch);
        }
    }
}

/// MXCSR status flags (the sticky exception bits).
const MXCSR_FLAGS: u32 = 0x3f;
const DEFAULT_MXCSR: u32 = 0x1f80;

fn read_mxcsr() -> u32 {
    let mut mxcsr = 0u32;
    // SAFETY: stores MXCSR into a local.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack)) };
    mxcsr
}

/// Clears the sticky FP exception flags (the default control bits).
fn reset_mxcsr() {
    // SAFETY: loads the default MXCSR (what Rust code runs with).
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &DEFAULT_MXCSR, options(nostack)) };
}

/// The most entries the block table holds (about 200 bytes each, with
/// the code they name); a guest that runs through more distinct (PC,
/// page, mode) keys — say, memory full of instructions nothing can
/// translate, or one page mapped at many addresses — empties it, as a
/// full arena does, instead of growing host memory without limit.
#[cfg(not(test))]
const MAX_SLOTS: usize = 1 << 18;
#[cfg(test)]
const MAX_SLOTS: usize = 256;

/// The indirect-jump cache of one address space: guest PCs to blocks, as
/// translated code looks them up (see [`emit::jump_index`]).
struct JumpCache {
    entries: Box<[JumpEntry]>,
    /// The soft-TLB set's stamp the entries were filled under, and the
    /// hart's count of page flushes they have caught up with.
    stamp: u64,
    page_flushes: u64,
}

impl JumpCache {
    fn new() -> JumpCache {
        JumpCache {
            entries: vec![JumpEntry::EMPTY; JUMP_CACHE_ENTRIES].into_boxed_slice(),
            stamp: u64::MAX,
            page_flushes: 0,
        }
    }

    fn clear(&mut self) {
        self.entries.fill(JumpEntry::EMPTY);
    }

    /// Drops the entries of virtual page `page`.
    fn forget_page(&mut self, page: u64) {
        // A page's PCs (even ones) fill one aligned run of indices.
        const RUN: usize = PAGE_SIZE as usize / 2;
        const _: () = assert!(JUMP_CACHE_ENTRIES.is_multiple_of(RUN));
        let first = emit::jump_index(page << PAGE_SHIFT) & !(RUN - 1);
        for entry in &mut self.entries[first..first + RUN] {
            if entry.pc >> PAGE_SHIFT == page {
                *entry = JumpEntry::EMPTY;
            }
        }
    }
}

/// Where `key` sits in [`Jit::recent`]: blocks at the same offset of
/// different pages fall apart (the page's bits are folded in).
fn recent_index(key: Key) -> usize {
    ((key.0 >> 1) ^ (key.0 >> PAGE_SHIFT)) % RECENT_SLOTS
}

/// Translated blocks by key, kept until replaced, the arena fills or the
/// table reaches [`MAX_SLOTS`].
pub(crate) struct BlockTable {
    slots: HashMap<Key, Rc<Slot>, BuildHasherDefault<KeyHasher>>,
    /// Direct-mapped front for `slots`: the last block seen per index.
    recent: Vec<Option<(Key, Rc<Slot>)>>,
    /// Jump-cache misses translated code resolved here without leaving.
    code_lookups: u64,
}

impl BlockTable {
    /// The slot for `key`, if there is one (through the `recent` front).
    fn find(&mut self, key: Key) -> Option<&Rc<Slot>> {
        let index = recent_index(key);
        let hit = matches!(&self.recent[index], Some((k, _)) if *k == key);
        if !hit {
            let slot = self.slots.get(&key)?;
            self.recent[index] = Some((key, slot.clone()));
        }
        self.recent[index].as_ref().map(|(_, slot)| slot)
    }

    /// For translated code whose jump-cache lookup for guest `pc` missed:
    /// the entry of the block there when it can run as it is (mapped in
    /// the execute TLB, translated for `mode`, checked in code `epoch`,
    /// inside its page), entered in `jump_cache`; else null (the
    /// dispatcher translates, checks or maps it).
    pub(crate) fn lookup_from_code(
        &mut self,
        hart: &Hart,
        pc: u64,
        mode: u64,
        epoch: u64,
        jump_cache: &mut [JumpEntry],
    ) -> *const u8 {
        let Some(code) = hart.code_at(pc) else {
            return std::ptr::null();
        };
        let key = (code.as_ptr() as usize, mode);
        let Some(slot) = self.find(key) else {
            return std::ptr::null();
        };
        let entry = match &slot.block {
            Some(block) if slot.next_page.is_none() && slot.epoch.get() as u64 == epoch => {
                block.entry
            }
            _ => return std::ptr::null(),
        };
        self.code_lookups += 1;
        jump_cache[emit::jump_index(pc)] = JumpEntry::new(pc, mode, entry);
        entry
    }
}

/// The translation engine for one hart.
pub struct Jit {
    options: JitOptions,
    /// Blocks by key (boxed: translated code reaches it, see
    /// [`ExitState::blocks`]).
    blocks: Box<BlockTable>,
    arena: arena::CodeArena,
    runtime: Runtime,
    /// Arena resets so far (jump sites from before one are gone).
    resets: u64,
    /// One jump cache per soft-TLB set (address space), by set id, made
    /// as sets come into use; translated code uses `jump_space`'s.
    jump_caches: Vec<JumpCache>,
    jump_space: usize,
    state: Box<ExitState>,
    host_fma: bool,
    /// `perf`'s map of JIT symbols (/tmp/perf-PID.map), when VISOR_PERF_MAP is set.
    perf_map: Option<std::fs::File>,
    divergence: Option<Divergence>,
    pub stats: JitStats,
}

impl riscv_hart::Engine for Jit {
    fn run(&mut self, hart: &mut Hart, platform: &mut dyn Platform, budget: u64) -> (RunExit, u64) {
        Jit::run(self, hart, platform, budget)
    }

    fn divergence(&self) -> Option<String> {
        Jit::divergence(self).map(|d| d.to_string())
    }

    fn translation_stats(&self) -> Option<JitStats> {
        Some(self.stats)
    }
}

impl Jit {
    pub fn new(options: JitOptions) -> Jit {
        let mut arena = arena::CodeArena::new();
        let runtime = Runtime::emit(&mut arena).expect("an empty arena holds the runtime");
        let mut jump_cache = JumpCache::new();
        let state = Box::new(ExitState {
            pc: 0,
            count: 0,
            patch: 0,
            jump_cache: jump_cache.entries.as_mut_ptr(),
            blocks: std::ptr::null_mut(),
            epoch: 0,
            mxcsr: 0,
            fflags: std::ptr::null_mut(),
            hart: std::ptr::null_mut(),
            platform: None,
            vpage: 0,
        });
        Jit {
            options,
            blocks: Box::new(BlockTable {
                slots: HashMap::default(),
                recent: vec![None; RECENT_SLOTS],
                code_lookups: 0,
            }),
            arena,
            runtime,
            resets: 0,
            jump_caches: vec![jump_cache],
            jump_space: 0,
            state,
            host_fma: std::arch::is_x86_feature_detected!("fma"),
            perf_map: std::env::var_os("VISOR_PERF_MAP").and_then(|_| {
                open_perf_map(Path::new(&format!("/tmp/perf-{}.map", std::process::id())))
            }),
            divergence: None,
            stats: JitStats::default(),
        }
    }

    /// The first lock-step mismatch, once found (the engine then stops translating).
    pub fn divergence(&self) -> Option<&Divergence> {
        self.divergence.as_ref()
    }

    /// Like [`Hart::run`]: `budget` instructions (translated code may run
    /// past it to the end of the block it is in: fewer than
    /// `translate::MAX_BLOCK` more), translated blocks where possible, the
    /// interpreter elsewhere and at every boundary where interrupts must be
    /// re-evaluated.
    pub fn run(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        budget: u64,
    ) -> (RunExit, u64) {
        hart.sync_code_protections();
        let mut executed = 0;
        // Like the interpreter, re-evaluate interrupts at the start of every run.
        hart.request_interrupt_check();
        // The jump that led out of translated code, if it may be chained.
        let mut patch = 0;
        while executed < budget {
            if hart.boundary_pending() {
                // An interrupt taken here moves the PC: no chaining across.
                patch = 0;
                if let Some(exit) = hart.interrupt_boundary(platform) {
                    return (exit, executed);
                }
            }
            if self.divergence.is_none() {
                // Zero: the block's first instruction needs the interpreter
                // (a fault, a device, a store over translated code); it
                // runs below.
                if let Some(n) = self
                    .run_translated(hart, platform, budget - executed, patch)
                    .filter(|&n| n > 0)
                {
                    executed += n;
                    patch = self.state.patch;
                    continue;
                }
            }
            patch = 0;
            let (exit, n) = hart.continue_run(platform, 1);
            executed += n;
            if exit != RunExit::Budget {
                return (exit, executed);
            }
        }
        (RunExit::Budget, executed)
    }

    /// Runs translated code from the hart's PC (translating first if
    /// needed) and returns the instructions it completed; `None` when the
    /// code there is not translatable or not mapped yet. `patch` is the
    /// jump that led here, to chain to this block.
    fn run_translated(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        budget: u64,
        patch: u64,
    ) -> Option<u64> {
        let pc = hart.pc;
        let tlb = hart.data_tlb();
        let fp = hart.fp_ready();
        let mode = block_mode(hart.fetch_mode().tag_bits(), tlb.mode, fp);
        self.sync_jump_cache(hart);
        self.stats.dispatches += 1;
        let epoch = hart.code_epoch();
        if hart.code_at(pc).is_none() && !hart.fill_code_tlb(pc) {
            return None;
        }
        let key = (hart.code_at(pc)?.as_ptr() as usize, mode);
        let next_page_start = (pc & !(PAGE_SIZE - 1)).wrapping_add(PAGE_SIZE);
        let known = self.blocks.find(key).cloned();
        let may_straddle = known.as_ref().is_none_or(|s| s.next_page.is_some());
        if may_straddle && hart.code_at(next_page_start).is_none() {
            // About to translate, or about to run a block that reaches
            // into the next page: map that page too (after a TLB flush).
            hart.fill_code_tlb(next_page_start);
        }
        let code = hart.code_at(pc)?;
        let host = code.as_ptr();
        let next = NextPage::of(hart.code_at(next_page_start));
        let resets = self.resets;
        let (slot, checked) = self.lookup(key, known, pc, code, next, epoch, tlb)?;
        if checked {
            // Stores to the code now invalidate it.
            hart.protect_code(host, slot.bytes.len());
            if let Some(next) = slot.next_page {
                hart.protect_code(next.host as *const u8, PARCEL);
            }
        }
        let block = slot.block.as_ref()?;
        self.state.epoch = epoch as u64;
        self.state.vpage = pc & !(PAGE_SIZE - 1);
        if self.options.lockstep {
            return self.check_block(hart, platform, block, tlb);
        }
        // A block reaching into the next page is entered through lookups
        // only, which check that page too.
        if patch != 0 && resets == self.resets && slot.next_page.is_none() {
            emit::chain(&self.arena, patch, block);
        }
        self.jump_caches[self.jump_space].entries[emit::jump_index(pc)] =
            JumpEntry::new(pc, mode, block.entry);
        let flags_before = fp && read_mxcsr() & MXCSR_FLAGS != 0;
        if flags_before {
            reset_mxcsr();
        }
        // Translated code reaches the hart only through pointers derived
        // from this one (its registers, `fflags`, and the hart itself in
        // the TLB-fill callback), so no two live references alias.
        let raw: *mut Hart = hart;
        // SAFETY: `raw` is valid (from `hart`) and nothing else uses the
        // hart until `enter` returns.
        unsafe {
            self.state.fflags = std::ptr::addr_of_mut!((*raw).csr.fflags);
            self.state.hart = raw;
            // Translated code looks blocks up through it until `enter`
            // returns; nothing else touches the table meanwhile.
            self.state.blocks = &mut *self.blocks;
            // Only for this entry (cleared below): the lifetime is erased.
            self.state.platform = Some(std::mem::transmute::<
                std::ptr::NonNull<dyn Platform + '_>,
                std::ptr::NonNull<dyn Platform + 'static>,
            >(std::ptr::NonNull::from(&mut *platform)));
            let (x, f) = (
                std::ptr::addr_of_mut!((*raw).x),
                std::ptr::addr_of_mut!((*raw).f),
            );
            self.runtime
                .enter(x, f, block, budget, tlb, &mut self.state);
        }
        self.state.platform = None;
        self.stats.code_lookups = self.blocks.code_lookups;
        if fp {
            let mxcsr = read_mxcsr();
            if mxcsr & MXCSR_FLAGS != 0 {
                hart.accrue_host_fp_flags(mxcsr);
                reset_mxcsr();
            }
        }
        let count = self.state.count;
        hart.pc = self.state.pc;
        hart.instret += count;
        self.stats.translated_instructions += count;
        Some(count)
    }

    /// The slot for `key` (`known`, when [`Jit::find`] found one) whose
    /// bytes are those in `code` now, translating anew when there is none
    /// or the code changed; the flag is true when the bytes were checked
    /// (or translated) just now.
    #[allow(clippy::too_many_arguments)]
    fn lookup(
        &mut self,
        key: Key,
        known: Option<Rc<Slot>>,
        pc: u64,
        code: &[u8],
        next: Option<NextPage>,
        epoch: u32,
        tlb: DataTlb,
    ) -> Option<(Rc<Slot>, bool)> {
        let index = recent_index(key);
        let Some(slot) = known else {
            let slot = self.translate(key, pc, code, next, epoch, tlb)?;
            self.blocks.recent[index] = Some((key, slot.clone()));
            return Some((slot, true));
        };
        // The next page (mapped or written anew) is checked whatever the epoch.
        let next_same = slot.next_page.is_none() || slot.next_page == next;
        if slot.epoch.get() == epoch && next_same {
            return Some((slot, false));
        }
        if code.starts_with(&slot.bytes) && next_same {
            slot.set_epoch(epoch);
            self.stats.revalidations += 1;
            return Some((slot, true));
        }
        self.stats.retranslations += 1;
        let resets = self.resets;
        let fresh = self.translate(key, pc, code, next, epoch, tlb)?;
        if let (Some(old), Some(new), true) = (&slot.block, &fresh.block, resets == self.resets) {
            if fresh.next_page.is_none() {
                old.redirect(new);
            } else {
                // Chains into the old block must not reach a block that
                // needs its next page checked: an epoch that never occurs
                // sends them to the dispatcher instead.
                old.set_epoch(STALE_EPOCH);
            }
        }
        self.blocks.recent[index] = Some((key, fresh.clone()));
        Some((fresh, true))
    }

    /// Translates the code at `key`, mapped at `pc` now (whose bytes to
    /// the end of the page are `code`, and `next` the next page's start
    /// when it is mapped) into a new slot, replacing any earlier one.
    fn translate(
        &mut self,
        key: Key,
        pc: u64,
        code: &[u8],
        next: Option<NextPage>,
        epoch: u32,
        tlb: DataTlb,
    ) -> Option<Rc<Slot>> {
        let (_, mode) = key;
        if self.blocks.slots.len() >= MAX_SLOTS {
            self.reset();
            self.stats.table_flushes += 1;
        }
        let features = translate::Features {
            // Lock-step replays blocks, so their side effects stay interpreted.
            side_effects: !self.options.lockstep,
            fp: mode & MODE_FP != 0,
            fma: self.host_fma,
        };
        let started = std::time::Instant::now();
        // The block may end with an instruction that straddles the page.
        let with_next: Vec<u8>;
        let extended = match next {
            Some(next) => {
                with_next = [code, &next.parcel].concat();
                &with_next[..]
            }
            None => code,
        };
        let translation = translate::translate(extended, features)?;
        let bytes = code[..translation.bytes.min(code.len())].to_vec();
        let next_page = next.filter(|_| translation.bytes > code.len());
        let block = if translation.instructions.is_empty() {
            None
        } else {
            let emit = |jit: &mut Jit| {
                emit::emit_block(
                    emit::Target {
                        arena: &mut jit.arena,
                        runtime: &jit.runtime,
                        tlb,
                        mode,
                        inject_bug: jit.options.injects_bug(),
                    },
                    pc,
                    &translation.instructions,
                )
            };
            match emit(self) {
                Some(block) => Some(block),
                None => {
                    self.reset();
                    Some(emit(self)?)
                }
            }
        };
        if let Some(block) = &block {
            self.stats.blocks += 1;
            self.stats.block_instructions += block.len;
            self.stats.code_bytes += block.size as u64;
        }
        self.stats.translation_nanos += started.elapsed().as_nanos() as u64;
        if let (Some(map), Some(block)) = (&mut self.perf_map, &block) {
            use std::io::Write;
            let _ = writeln!(
                map,
                "{:x} {:x} guest_{pc:x}",
                block.entry as usize, block.size
            );
        }
        let slot = Rc::new(Slot {
            block,
            bytes,
            next_page,
            epoch: Cell::new(0),
        });
        slot.set_epoch(epoch);
        self.blocks.slots.insert(key, slot.clone());
        Some(slot)
    }

    /// Makes the jump cache of the hart's address space the one
    /// translated code uses, and brings it up to date: emptied when the
    /// soft-TLB set was, without the pages `sfence.vma` flushed one by one
    /// since it last caught up (emptied when too far behind): only those
    /// pages' mappings may have changed.
    fn sync_jump_cache(&mut self, hart: &Hart) {
        let space = hart.address_space();
        if space.id != self.jump_space {
            if self.jump_caches.len() <= space.id {
                self.jump_caches.resize_with(space.id + 1, JumpCache::new);
            }
            self.jump_space = space.id;
            self.state.jump_cache = self.jump_caches[space.id].entries.as_mut_ptr();
        }
        let page_flushes = hart.page_flushes();
        let cache = &mut self.jump_caches[space.id];
        if cache.stamp != space.stamp {
            cache.clear();
            cache.stamp = space.stamp;
            self.stats.jump_cache_clears += 1;
        } else if cache.page_flushes != page_flushes {
            match hart.pages_flushed_since(cache.page_flushes) {
                Some(pages) => pages.for_each(|page| cache.forget_page(page)),
                None => {
                    cache.clear();
                    self.stats.jump_cache_clears += 1;
                }
            }
        }
        cache.page_flushes = page_flushes;
    }

    /// The arena is full: drops every block and starts over.
    fn reset(&mut self) {
        self.blocks.slots.clear();
        self.blocks.recent.iter_mut().for_each(|r| *r = None);
        self.jump_caches.iter_mut().for_each(JumpCache::clear);
        self.arena.reset();
        self.runtime = Runtime::emit(&mut self.arena).expect("an empty arena holds the runtime");
        self.resets += 1;
    }

    /// Lock-step: runs the block translated (alone: the budget is its
    /// length, so it cannot chain on), then the same instructions in the
    /// interpreter from the same state, and compares.
    fn check_block(
        &mut self,
        hart: &mut Hart,
        platform: &mut dyn Platform,
        block: &Block,
        tlb: DataTlb,
    ) -> Option<u64> {
        let (start_pc, start_traps) = (hart.pc, hart.traps);
        let (mut x, mut f) = (hart.x, hart.f);
        // Lock-step blocks leave memory and `fflags` to the interpreter,
        // so they never reach the hart: they run on copies of its registers.
        self.state.hart = std::ptr::null_mut();
        self.state.fflags = std::ptr::null_mut();
        // The block runs alone: a jump out of it exits.
        self.state.blocks = std::ptr::null_mut();
        // SAFETY: `x` and `f` are locals nothing else touches meanwhile.
        unsafe {
            self.runtime
                .enter(&mut x, &mut f, block, block.len, tlb, &mut self.state)
        };
        // The interpreter accrues the flags itself.
        reset_mxcsr();
        let (translated_pc, count) = (self.state.pc, self.state.count);
        self.state.patch = 0;
        let (_, ran) = hart.run(platform, count);
        // An interrupt that arrived meanwhile is not a translation bug.
        let comparable = ran == count && hart.traps == start_traps;
        if comparable && (x != hart.x || f != hart.f || translated_pc != hart.pc) {
            let differ = |t: &[u64; 32], i: &[u64; 32]| -> Vec<(usize, u64, u64)> {
                (0..32)
                    .filter(|&r| t[r] != i[r])
                    .map(|r| (r, t[r], i[r]))
                    .collect()
            };
            self.divergence = Some(Divergence {
                block_pc: start_pc,
                instructions: count,
                pc: (translated_pc, hart.pc),
                registers: differ(&x, &hart.x),
                fp_registers: differ(&f, &hart.f),
            });
        }
        self.stats.translated_instructions += count;
        Some(ran)
    }
}

/// Opens (creating it, private to this user) `perf`'s map file for
/// appending; never through a symlink, which someone else may have put
/// in /tmp to make visor write where they choose.
fn open_perf_map(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()
}

#[cfg(test)]
mod tests;
