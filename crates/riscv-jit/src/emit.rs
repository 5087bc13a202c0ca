//! x86-64 code for blocks, and the small runtime they run in.
//!
//! The runtime's `enter` saves the host's callee-saved registers, pins the
//! engine's state in registers and jumps to a block; blocks jump to each
//! other (chaining) until one jumps to `exit`, which records where guest
//! execution stopped and returns to Rust. Pinned registers:
//!
//! | register | holds |
//! |---|---|
//! | RDI | the hart's `x` array |
//! | RBX | the hart's `f` array (raw bits) |
//! | R12 | guest instructions completed since `enter` |
//! | R14 | the budget: blocks start only while R12 is below it |
//! | R15 | the hart's data TLB (read table, then write table) |
//! | RBP | the [`ExitState`]: exit record, jump cache, code epoch |
//!
//! RAX, RCX and RDX are scratch. RSI, R8-R11 and R13 cache the guest
//! registers a block uses most: loaded at block entry, written back to `x`
//! (those the block writes) at every exit from the block, so between
//! blocks `x` is always current. Other guest registers live in `x`.
//!
//! Every block starts with an 8-byte epoch cell and, at its entry, checks
//! that the cell holds the current epoch (else its guest code may have
//! changed) and that the budget is not spent yet; otherwise it exits with
//! its own PC. (So an entry completes at most one block's worth of
//! instructions more than its budget.) Exits to a constant PC in the
//! block's own guest page go through a patchable exit sequence whose
//! address travels to the dispatcher, which turns it into a jump straight
//! to the target block once that exists (direct chaining). JALR, and jumps
//! to other pages, look the target up in the jump cache inline.
//!
//! Loads, stores and AMOs look up the hart's data soft-TLB inline, exactly
//! as the interpreter's fast path does; on a miss they ask the hart to fill
//! the entry ([`fill_tlb`]) and look again. What cannot be filled (faults,
//! devices, stores over translated code) and page-crossing accesses exit
//! the block at that instruction, which the interpreter then executes,
//! faults and all. FP arithmetic runs on SSE/FMA under the host's default
//! MXCSR (round to nearest even, exceptions masked); the status flags it
//! accumulates are the guest's `fflags`. Anything whose result the host
//! would shape differently from RISC-V — a NaN result (RISC-V wants the
//! canonical NaN), an improperly NaN-boxed single, an out-of-range
//! conversion — exits before writing and leaves the instruction to the
//! interpreter.

use crate::arena::CodeArena;
use crate::{translate, PAGE_SHIFT, PAGE_SIZE};
use dynasmrt::{dynasm, x64::X64Relocation, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use riscv_hart::{DataTlb, TLB_ENTRIES, TLB_TAG_MODE_BITS};
use riscv_isa::{
    AluOp, AmoOp, BranchCond, CsrOp, FmaOp, FpCmp, FpFormat, FpOp, Instruction, IntFormat,
    LoadWidth,
};

/// MXCSR as Rust code runs: round to nearest even, all exceptions masked,
/// no flags.
const DEFAULT_MXCSR: u32 = 0x1f80;

type Assembler = VecAssembler<X64Relocation>;

/// Entries in the indirect-jump cache (a power of two).
pub const JUMP_CACHE_ENTRIES: usize = 4096;

/// One indirect-jump cache entry: a guest PC in a mode, and the host code
/// of the block there.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct JumpEntry {
    pub pc: u64,
    pub mode: u64,
    pub entry: u64,
    _pad: u64,
}

impl JumpEntry {
    pub const EMPTY: JumpEntry = JumpEntry {
        pc: u64::MAX,
        mode: u64::MAX,
        entry: 0,
        _pad: 0,
    };

    pub fn new(pc: u64, mode: u64, entry: *const u8) -> JumpEntry {
        JumpEntry {
            pc,
            mode,
            entry: entry as u64,
            _pad: 0,
        }
    }
}

/// The jump-cache index of a guest PC.
pub fn jump_index(pc: u64) -> usize {
    ((pc >> 1) ^ (pc >> JUMP_INDEX_PAGE_SHIFT)) as usize & (JUMP_CACHE_ENTRIES - 1)
}

/// Where [`jump_index`] folds in the page number, so that PCs at the same
/// offset of different pages mostly fall apart: a constant within a page,
/// so each page's PCs still fill one aligned run of `PAGE_SIZE / 2` indices.
const JUMP_INDEX_PAGE_SHIFT: u32 = PAGE_SHIFT + 1;

/// Where translated code finds [`ExitState`]'s fields (rbp points at it).
const EXIT_PC: i32 = std::mem::offset_of!(ExitState, pc) as i32;
const EXIT_COUNT: i32 = std::mem::offset_of!(ExitState, count) as i32;
const EXIT_PATCH: i32 = std::mem::offset_of!(ExitState, patch) as i32;
const EXIT_JUMP_CACHE: i32 = std::mem::offset_of!(ExitState, jump_cache) as i32;
const EXIT_EPOCH: i32 = std::mem::offset_of!(ExitState, epoch) as i32;
const EXIT_MXCSR: i32 = std::mem::offset_of!(ExitState, mxcsr) as i32;
const EXIT_FFLAGS: i32 = std::mem::offset_of!(ExitState, fflags) as i32;
const EXIT_HART: i32 = std::mem::offset_of!(ExitState, hart) as i32;
const EXIT_VPAGE: i32 = std::mem::offset_of!(ExitState, vpage) as i32;
/// log2 of a jump-cache entry's size, and where its fields are.
const JUMP_ENTRY_SHIFT: i8 = 5;
const JUMP_ENTRY_MODE: i32 = std::mem::offset_of!(JumpEntry, mode) as i32;
const JUMP_ENTRY_CODE: i32 = std::mem::offset_of!(JumpEntry, entry) as i32;
const _: () = assert!(std::mem::size_of::<JumpEntry>() == 1 << JUMP_ENTRY_SHIFT);
const _: () = assert!(std::mem::offset_of!(JumpEntry, pc) == 0);
const _: () = assert!(std::mem::size_of::<ExitState>() < 128, "rbp-relative disp8");
/// The byte offset of a soft-TLB entry's addend.
const TLB_ADDEND: i32 = riscv_hart::TLB_ENTRY_ADDEND as i32;

/// What `exit` records, plus the jump cache `enter` pins.
#[repr(C)]
pub struct ExitState {
    /// The guest PC to continue at.
    pub pc: u64,
    /// Guest instructions completed since `enter`.
    pub count: u64,
    /// Address of the `jmp rel32` that led to the exit when it may be
    /// chained to the block at `pc`; zero otherwise.
    pub patch: u64,
    pub jump_cache: *mut JumpEntry,
    /// The engine's blocks, for [`lookup_block`]; null when a block must
    /// not go on to another (lock-step runs blocks alone).
    pub blocks: *mut crate::BlockTable,
    /// The code epoch blocks must carry to run.
    pub epoch: u64,
    /// Scratch for MXCSR.
    pub mxcsr: u64,
    /// The hart's `fflags` (flags accrued before this entry).
    pub fflags: *mut u64,
    /// The hart, for [`fill_tlb`] and [`run_handed`].
    pub hart: *mut riscv_hart::Hart,
    /// The virtual address of the guest page the running block's code is
    /// mapped at now. Blocks hold their PCs as offsets from it, so one
    /// translation serves every address space mapping the same code
    /// (processes whose libraries sit at randomised addresses).
    pub vpage: u64,
    /// The platform, for [`run_handed`]; `None` outside an entry.
    pub platform: Option<std::ptr::NonNull<dyn riscv_hart::Platform>>,
}

/// Called from translated code whose inline TLB lookup missed: fills the
/// entry if the access can take the fast path (see
/// `Hart::fill_data_tlb`); `request` is the size, plus 256 for a store.
extern "sysv64" fn fill_tlb(hart: *mut riscv_hart::Hart, vaddr: u64, request: u64) -> u64 {
    // SAFETY: `hart` is the hart whose registers the calling block runs on
    // (ExitState::hart, set by the engine for this entry); translated code
    // holds no reference into it across the call.
    let hart = unsafe { &mut *hart };
    hart.fill_data_tlb(vaddr, request as u8, request & 256 != 0) as u64
}

/// Called from translated code whose jump-cache lookup of guest `pc` (in
/// the block's `mode`) missed: the entry of the block to go on with, now
/// in the jump cache, or null to exit to the dispatcher (see
/// `BlockTable::lookup_from_code`).
extern "sysv64" fn lookup_block(state: *mut ExitState, pc: u64, mode: u64) -> u64 {
    // SAFETY: `state` is the engine's ExitState for this entry; its hart,
    // block table and jump cache (JUMP_CACHE_ENTRIES entries) are the
    // engine's, which no Rust code uses until `enter` returns.
    let state = unsafe { &mut *state };
    if state.blocks.is_null() {
        return 0;
    }
    let (hart, blocks, cache) = unsafe {
        (
            &*state.hart,
            &mut *state.blocks,
            std::slice::from_raw_parts_mut(state.jump_cache, JUMP_CACHE_ENTRIES),
        )
    };
    blocks.lookup_from_code(hart, pc, mode, state.epoch, cache) as u64
}

/// Called from translated code for an instruction it hands to the
/// interpreter ([`Emitter::hand_over`]: CSR accesses, LR/SC) at guest `pc`,
/// `len` bytes long; `retired` as [`riscv_hart::Hart::step_handed`] takes
/// it, and `mode` the block's mode key. Returns 1 when the block may go on
/// with the next instruction: nothing it depends on changed (no trap or
/// interrupt moved the PC, same mode, soft-TLB set and code epoch). Else
/// 0, with [`ExitState::pc`] where the hart goes on.
extern "sysv64" fn run_handed(
    state: *mut ExitState,
    pc: u64,
    len: u64,
    retired: u64,
    mode: u64,
) -> u64 {
    // SAFETY: `state` is the engine's ExitState for this entry, whose
    // `hart` and `platform` the engine set from the references it holds
    // for the entry; translated code holds no reference into either
    // across the call.
    let state = unsafe { &mut *state };
    let hart = unsafe { &mut *state.hart };
    let platform = unsafe { state.platform.expect("set for every entry").as_mut() };
    hart.pc = pc;
    let space = hart.address_space();
    hart.step_handed(platform, retired);
    if hart.boundary_pending() && !hart.waiting {
        // An interrupt the instruction enabled is taken at the next
        // boundary, here (moving the PC); none pending clears the flag.
        hart.interrupt_boundary(platform);
    }
    let go_on = hart.pc == pc.wrapping_add(len)
        && !hart.boundary_pending()
        && hart.address_space() == space
        && crate::current_mode(hart) == mode
        && hart.code_epoch() as u64 == state.epoch;
    if !go_on {
        state.pc = hart.pc;
    }
    go_on as u64
}

/// RISC-V `fflags` bits for each combination of MXCSR's six status bits
/// (invalid, denormal, divide-by-zero, overflow, underflow, precision).
static MXCSR_TO_FFLAGS: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let mut flags = 0;
        if i & 0x01 != 0 {
            flags |= 0x10; // NV
        }
        if i & 0x04 != 0 {
            flags |= 0x08; // DZ
        }
        if i & 0x08 != 0 {
            flags |= 0x04; // OF
        }
        if i & 0x10 != 0 {
            flags |= 0x02; // UF
        }
        if i & 0x20 != 0 {
            flags |= 0x01; // NX
        }
        table[i] = flags;
        i += 1;
    }
    table
};

/// RDI = x, RSI = f, RDX = block entry, RCX = budget, R8 = data TLB, R9 = state.
type EnterFn = extern "sysv64" fn(*mut u64, *mut u64, *const u8, u64, *const u8, *mut ExitState);

/// Host registers that cache guest registers (by x86 register number):
/// RSI, R8, R9, R10, R11, R13.
const CACHE_REGISTERS: [u8; 6] = [6, 8, 9, 10, 11, 13];

/// `enter` and `exit`, placed at the start of the arena.
pub struct Runtime {
    enter: EnterFn,
    exit: usize,
}

impl Runtime {
    pub fn emit(arena: &mut CodeArena) -> Option<Runtime> {
        let base = arena.next_address();
        let mut ops = Assembler::new(base);
        let exit = ops.new_dynamic_label();
        dynasm!(ops ; .arch x64
            ; push rbx ; push rbp ; push r12 ; push r13 ; push r14 ; push r15
            ; sub rsp, 8
            ; mov rbx, rsi
            ; mov r14, rcx
            ; mov r15, r8
            ; mov rbp, r9
            ; xor r12d, r12d
            ; jmp rdx
            ; .align 16
            ; =>exit
            ; mov QWORD [rbp + EXIT_PC], rax
            ; mov QWORD [rbp + EXIT_COUNT], r12
            ; mov QWORD [rbp + EXIT_PATCH], rdx
            ; add rsp, 8
            ; pop r15 ; pop r14 ; pop r13 ; pop r12 ; pop rbp ; pop rbx
            ; ret
        );
        let exit_offset = ops.labels().resolve_dynamic(exit).ok()?.0;
        let code = ops
            .finalize()
            .expect("the runtime's labels are all defined");
        let start = arena.place(&code)?;
        debug_assert_eq!(start as usize, base);
        Some(Runtime {
            // SAFETY: the code just placed starts with `enter`, written for
            // exactly this signature.
            enter: unsafe { std::mem::transmute::<*mut u8, EnterFn>(start) },
            exit: base + exit_offset,
        })
    }

    /// Runs translated code from `block` until it exits; see [`ExitState`].
    ///
    /// # Safety
    /// `x` and `f` must be valid for 32 registers each, and nothing may use
    /// them, or the hart `state.hart` names, through another pointer or
    /// reference until this returns (derive them all from one pointer).
    pub unsafe fn enter(
        &self,
        x: *mut [u64; 32],
        f: *mut [u64; 32],
        block: &Block,
        budget: u64,
        tlb: DataTlb,
        state: &mut ExitState,
    ) {
        // Blocks read and write x[0..32] and f[0..32] through RDI and RBX,
        // the TLB through R15, guest RAM only through host addresses the
        // TLB vouches for, and the jump cache and `state` through RBP.
        (self.enter)(x.cast(), f.cast(), block.entry, budget, tlb.read, state)
    }
}

/// A translated block in the arena.
pub struct Block {
    /// Where it runs (the arena's executable view).
    pub entry: *mut u8,
    /// The same bytes in the arena's writable view.
    write: *mut u8,
    /// Guest instructions in one pass.
    pub len: u64,
    /// Bytes of host code.
    pub size: usize,
}

impl Block {
    /// The epoch this block was last checked in (its code must match the
    /// guest's to run in another).
    pub fn set_epoch(&self, epoch: u32) {
        // SAFETY: every block is placed right after its 8-byte cell.
        unsafe { (self.write.sub(8) as *mut u32).write(epoch) };
    }

    /// Sends everything that still jumps here (chains, jump-cache entries)
    /// on to `to`, this block's replacement.
    pub fn redirect(&self, to: &Block) {
        write_jump(self.write, self.entry, to.entry);
    }
}

/// Makes the exit sequence at `site` (an executable address in `arena`)
/// jump straight to `target` (direct chaining).
pub fn chain(arena: &CodeArena, site: u64, target: &Block) {
    let site = site as *const u8;
    write_jump(arena.writable(site), site, target.entry);
}

/// Writes `jmp target` at `at`, the writable alias of `site`.
fn write_jump(at: *mut u8, site: *const u8, target: *const u8) {
    let rel = (target as i64 - (site as i64 + 5)) as i32;
    // SAFETY: `at` is the writable view of a jump site (or a dead block's
    // entry) with at least 5 bytes, and no translated code is running.
    unsafe {
        at.write(0xe9);
        (at.add(1) as *mut i32).write_unaligned(rel);
    }
}

/// How a block is emitted.
pub struct Target<'a> {
    pub arena: &'a mut CodeArena,
    pub runtime: &'a Runtime,
    pub tlb: DataTlb,
    /// The engine's mode key the block is valid in (for the jump cache).
    pub mode: u64,
    pub inject_bug: bool,
}

/// Emits one block: `instructions` (the translator's output) from guest
/// `pc`; `None` when the arena is full.
pub fn emit_block(target: Target, pc: u64, instructions: &[(Instruction, u8)]) -> Option<Block> {
    let base = target.arena.next_address();
    let write_table = target.tlb.write as i64 - target.tlb.read as i64;
    assert_eq!(
        write_table,
        (TLB_ENTRIES << riscv_hart::TLB_ENTRY_SHIFT) as i64,
        "the write table follows the read table"
    );
    // Room for a long block, so assembling rarely reallocates.
    let mut ops = Assembler::new_with_capacity(base, 8192, 0, 0, 256, 0, 256);
    let body = ops.new_dynamic_label();
    let (cached, written) = allocate(instructions);
    let mut emitter = Emitter {
        ops,
        exit: target.runtime.exit,
        data_mode: target.tlb.mode,
        mode: target.mode,
        inject_bug: target.inject_bug,
        page: pc >> PAGE_SHIFT,
        slow: Vec::new(),
        side_exits: Vec::new(),
        handed: Vec::new(),
        misses: Vec::new(),
        cached,
        written,
        start: pc,
        body,
    };
    emitter.block(pc, instructions);
    let code = emitter
        .ops
        .finalize()
        .expect("blocks define every label they use");
    let start = target.arena.place(&code)?;
    debug_assert_eq!(start as usize, base);
    Some(Block {
        // SAFETY: the code starts with the 8-byte epoch cell.
        entry: unsafe { start.add(8) },
        // SAFETY: the same, in the writable view.
        write: unsafe { target.arena.writable(start).add(8) },
        len: instructions.len() as u64,
        size: code.len() - 8,
    })
}

/// The second operand of an ALU operation.
#[derive(Clone, Copy)]
enum Source {
    Immediate(i32),
    Register(u8),
}

struct Emitter {
    ops: Assembler,
    exit: usize,
    /// Mode bits of the TLB tags loads and stores compare with.
    data_mode: u64,
    mode: u64,
    inject_bug: bool,
    /// The guest page of the block (chaining stays inside it).
    page: u64,
    /// Exits that hand an instruction to the interpreter: (label, its pc,
    /// instructions of the block completed before it).
    slow: Vec<(DynamicLabel, u64, u64)>,
    /// Taken conditional branches in the middle of the block: (label,
    /// target, instructions completed with the branch).
    side_exits: Vec<(DynamicLabel, u64, u64)>,
    /// Instructions handed to the interpreter that end the block: (label,
    /// instructions completed with it).
    handed: Vec<(DynamicLabel, u64)>,
    /// TLB misses: (label, where to retry the lookup, where to give up,
    /// the access: size, plus 256 for a store).
    misses: Vec<(DynamicLabel, DynamicLabel, DynamicLabel, u64)>,
    /// The host register caching each guest register, if any.
    cached: [Option<u8>; 32],
    /// Cached guest registers the block writes (bit per register): every
    /// exit stores them back (a self-loop may have written any of them).
    written: u32,
    /// The block's guest PC, and where its body starts (after the entry
    /// checks and register loads): a branch back to the start loops there.
    start: u64,
    body: DynamicLabel,
}

/// The guest registers a block uses most (at least twice), each given one
/// of the [`CACHE_REGISTERS`], and the mask of those the block writes.
fn allocate(instructions: &[(Instruction, u8)]) -> ([Option<u8>; 32], u32) {
    let mut uses = [0u32; 32];
    let mut writes = 0u32;
    for (inst, _) in instructions {
        let (names, count) = registers(inst);
        if count > 0 && writes_first(inst) {
            writes |= 1 << names[0];
        }
        for &r in &names[..count] {
            uses[r as usize] += 1;
        }
    }
    uses[0] = 0;
    let mut order: Vec<usize> = (1..32).filter(|&r| uses[r] >= 2).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(uses[r]));
    let mut cached = [None; 32];
    let mut written = 0;
    for (&r, &host) in order.iter().zip(CACHE_REGISTERS.iter()) {
        cached[r] = Some(host);
        written |= writes & 1 << r;
    }
    (cached, written)
}

/// True when the first register [`registers`] names is one the instruction writes.
fn writes_first(inst: &Instruction) -> bool {
    use Instruction as I;
    !matches!(
        inst,
        I::Store { .. }
            | I::Branch { .. }
            | I::FpLoad { .. }
            | I::FpStore { .. }
            | I::IntToFp { .. }
            | I::FpMoveFromInt { .. }
    )
}

/// The integer registers an instruction names (read or written), as many
/// as the count says.
fn registers(inst: &Instruction) -> ([u8; 3], usize) {
    use Instruction as I;
    match *inst {
        I::Lui { rd, .. } | I::Auipc { rd, .. } | I::Jal { rd, .. } => ([rd, 0, 0], 1),
        I::Jalr { rd, rs1, .. }
        | I::Load { rd, rs1, .. }
        | I::OpImm { rd, rs1, .. }
        | I::OpImm32 { rd, rs1, .. } => ([rd, rs1, 0], 2),
        I::Op { rd, rs1, rs2, .. } | I::Op32 { rd, rs1, rs2, .. } => ([rd, rs1, rs2], 3),
        I::Store { rs1, rs2, .. } | I::Branch { rs1, rs2, .. } => ([rs1, rs2, 0], 2),
        I::FpLoad { rs1, .. }
        | I::FpStore { rs1, .. }
        | I::IntToFp { rs1, .. }
        | I::FpMoveFromInt { rs1, .. } => ([rs1, 0, 0], 1),
        I::FpCompare { rd, .. } | I::FpToInt { rd, .. } | I::FpMoveToInt { rd, .. } => {
            ([rd, 0, 0], 1)
        }
        I::Csr { rd, src, .. } => ([rd, src, 0], 2),
        I::Amo { rd, rs1, rs2, .. } => ([rd, rs1, rs2], 3),
        _ => ([0; 3], 0),
    }
}

fn xs(r: u8) -> i32 {
    r as i32 * 8
}

impl Emitter {
    fn block(&mut self, start: u64, instructions: &[(Instruction, u8)]) {
        let total = instructions.len() as i32;
        let cell = self.ops.new_dynamic_label();
        let stale = self.ops.new_dynamic_label();
        dynasm!(self.ops ; .arch x64
            ; =>cell
            ; .u32 0
            ; .u32 0
            ; mov eax, DWORD [rbp + EXIT_EPOCH]
            ; cmp DWORD [=>cell], eax
            ; jne =>stale
            ; cmp r12, r14
            ; jae =>stale
        );
        for r in 1..32u8 {
            if let Some(h) = self.cached[r as usize] {
                dynasm!(self.ops ; .arch x64 ; mov Rq(h), QWORD [rdi + xs(r)]);
            }
        }
        dynasm!(self.ops ; .arch x64 ; =>self.body);
        let mut pc = start;
        let mut resolved = false;
        for (done, &(inst, len)) in instructions.iter().enumerate() {
            let next = pc.wrapping_add(len as u64);
            resolved = self.instruction(inst, pc, next, done as u64, total);
            pc = next;
        }
        if !resolved {
            self.write_back();
            dynasm!(self.ops ; .arch x64 ; lea r12, [r12 + total]);
            self.jump_to(pc);
        }
        dynasm!(self.ops ; .arch x64 ; =>stale);
        self.leave(start);
        // A TLB miss asks the hart to fill the entry and retries, keeping
        // the block running; what cannot be filled goes to the interpreter.
        let misses = std::mem::take(&mut self.misses);
        if !misses.is_empty() {
            let fill = self.ops.new_dynamic_label();
            for (label, retry, slow, request) in misses {
                dynasm!(self.ops ; .arch x64
                    ; =>label
                    ; mov edx, request as i32
                    ; call =>fill
                    ; test eax, eax
                    ; jnz =>retry
                    ; jmp =>slow
                );
            }
            // RAX = address, EDX = request. The cached registers the call
            // may clobber are saved around it; with the return address,
            // seven pushes keep the stack 16-byte aligned.
            let helper = fill_tlb as *const u8 as i64;
            dynasm!(self.ops ; .arch x64
                ; =>fill
                ; push rdi ; push rsi ; push r8 ; push r9 ; push r10 ; push r11 ; push rax
                ; mov rdi, QWORD [rbp + EXIT_HART]
                ; mov rsi, rax
                ; mov rax, QWORD helper
                ; call rax
                ; add rsp, 8
                ; pop r11 ; pop r10 ; pop r9 ; pop r8 ; pop rsi ; pop rdi
                ; ret
            );
        }
        // The hart is where the handed-over instruction left it, and `x`
        // current (the cached registers were just reloaded from it).
        for (label, count) in std::mem::take(&mut self.handed) {
            dynasm!(self.ops ; .arch x64
                ; =>label
                ; lea r12, [r12 + count as i32]
                ; mov rax, QWORD [rbp + EXIT_PC]
                ; xor edx, edx
                ; jmp extern self.exit
            );
        }
        for (label, target, count) in std::mem::take(&mut self.side_exits) {
            dynasm!(self.ops ; .arch x64 ; =>label ; lea r12, [r12 + count as i32]);
            self.branch_taken(target);
        }
        // Exits to the interpreter share one write-back tail.
        let slow = std::mem::take(&mut self.slow);
        if !slow.is_empty() {
            let tail = self.ops.new_dynamic_label();
            for (label, at, done) in slow {
                dynasm!(self.ops ; .arch x64
                    ; =>label
                    ; lea r12, [r12 + done as i32]
                );
                self.load_pc(at);
                dynasm!(self.ops ; .arch x64 ; jmp =>tail);
            }
            dynasm!(self.ops ; .arch x64 ; =>tail);
            self.write_back();
            dynasm!(self.ops ; .arch x64 ; xor edx, edx ; jmp extern self.exit);
        }
    }

    /// Continues at a taken branch's `target` (R12 already counts the
    /// branch): round again for a loop on the block's own start while the
    /// budget lasts, registers staying cached; elsewhere through a
    /// chainable exit.
    fn branch_taken(&mut self, target: u64) {
        if target == self.start {
            let stop = self.ops.new_dynamic_label();
            dynasm!(self.ops ; .arch x64
                ; cmp r12, r14
                ; jae =>stop
                ; jmp =>self.body
                ; =>stop
            );
            self.write_back();
            self.leave(target);
        } else {
            self.write_back();
            self.jump_to(target);
        }
    }

    /// Stores the cached guest registers the block writes back into `x`.
    fn write_back(&mut self) {
        for r in 1..32u8 {
            if let (Some(h), true) = (self.cached[r as usize], self.written >> r & 1 != 0) {
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rdi + xs(r)], Rq(h));
            }
        }
    }

    /// Hands the instruction at guest `pc` (`len` bytes, after `done` of
    /// the block's) to the interpreter through [`run_handed`], staying in
    /// the block unless that changed what the block depends on (then
    /// exits where the hart goes on, the instruction counted).
    fn hand_over(&mut self, pc: u64, len: u64, done: u64) {
        // The interpreter reads and writes `x`.
        self.write_back();
        self.load_pc(pc);
        let retired = done as i32 + 1;
        // RDI is pinned; with it (and 8 bytes of padding) pushed the stack
        // stays 16-byte aligned for the call.
        let helper = run_handed as *const u8 as i64;
        dynasm!(self.ops ; .arch x64
            ; push rdi
            ; sub rsp, 8
            ; mov rsi, rax
            ; mov rdi, rbp
            ; mov edx, len as i32
            ; lea rcx, [r12 + retired]
            ; mov r8, QWORD self.mode as i64
            ; mov rax, QWORD helper
            ; call rax
            ; add rsp, 8
            ; pop rdi
        );
        for r in 1..32u8 {
            if let Some(h) = self.cached[r as usize] {
                dynasm!(self.ops ; .arch x64 ; mov Rq(h), QWORD [rdi + xs(r)]);
            }
        }
        let leave = self.ops.new_dynamic_label();
        self.handed.push((leave, retired as u64));
        dynasm!(self.ops ; .arch x64 ; test eax, eax ; jz =>leave);
    }

    /// Exits to the dispatcher at guest `pc`, not chainable.
    fn leave(&mut self, pc: u64) {
        self.load_pc(pc);
        dynasm!(self.ops ; .arch x64
            ; xor edx, edx
            ; jmp extern self.exit
        );
    }

    /// Where the guest address `pc` of the code as translated is in the
    /// page the block runs from now, as an offset from its start.
    fn pc_offset(&self, pc: u64) -> i64 {
        pc.wrapping_sub(self.page << PAGE_SHIFT) as i64
    }

    /// RAX = the guest PC that `pc` (an address of the code as translated)
    /// is where the block runs now: [`ExitState::vpage`] plus its offset.
    fn load_pc(&mut self, pc: u64) {
        let offset = self.pc_offset(pc);
        dynasm!(self.ops ; .arch x64
            ; mov rax, QWORD offset
            ; add rax, QWORD [rbp + EXIT_VPAGE]
        );
    }

    /// Continues at the constant guest `pc`: a patchable exit when it lies
    /// in this block's page, else through the jump cache.
    fn jump_to(&mut self, pc: u64) {
        if pc >> PAGE_SHIFT != self.page {
            self.load_pc(pc);
            self.indirect_jump();
            return;
        }
        // Chaining overwrites the start of the 10-byte `mov` with a jump
        // to the target block (which runs from the same page), so a
        // chained exit costs one `lea` and a jump.
        let site = self.ops.new_dynamic_label();
        let offset = self.pc_offset(pc);
        dynasm!(self.ops ; .arch x64
            ; lea rdx, [=>site]
            ; =>site
            ; mov rax, QWORD offset
            ; add rax, QWORD [rbp + EXIT_VPAGE]
            ; jmp extern self.exit
        );
    }

    /// A new exit to the interpreter for the instruction at `pc`.
    fn slow_exit(&mut self, pc: u64, done: u64) -> DynamicLabel {
        let label = self.ops.new_dynamic_label();
        self.slow.push((label, pc, done));
        label
    }

    /// Host register number `dst` (RAX = 0, RCX = 1, RDX = 2) = x[r].
    fn load(&mut self, dst: u8, r: u8) {
        match (r, self.cached[r as usize]) {
            (0, _) => dynasm!(self.ops ; .arch x64 ; xor Rd(dst), Rd(dst)),
            (_, Some(h)) if h == dst => {}
            (_, Some(h)) => dynasm!(self.ops ; .arch x64 ; mov Rq(dst), Rq(h)),
            _ => dynasm!(self.ops ; .arch x64 ; mov Rq(dst), QWORD [rdi + xs(r)]),
        }
    }

    /// RAX = x[r].
    fn load_rax(&mut self, r: u8) {
        self.load(0, r);
    }

    /// RCX = x[r].
    fn load_rcx(&mut self, r: u8) {
        self.load(1, r);
    }

    /// x[rd] = host register `src` (x0 stays zero).
    fn store(&mut self, rd: u8, src: u8) {
        match (rd, self.cached[rd as usize]) {
            (0, _) => {}
            (_, Some(h)) => {
                if h != src {
                    dynasm!(self.ops ; .arch x64 ; mov Rq(h), Rq(src));
                }
            }
            _ => dynasm!(self.ops ; .arch x64 ; mov QWORD [rdi + xs(rd)], Rq(src)),
        }
    }

    /// x[rd] = RAX (x0 stays zero).
    fn store_rax(&mut self, rd: u8) {
        self.store(rd, 0);
    }

    /// Sets the flags for x[rs1] compared with x[rs2] (as `cmp`).
    fn compare(&mut self, rs1: u8, rs2: u8) {
        let left = match self.cached[rs1 as usize] {
            Some(h) if rs1 != 0 => h,
            _ => {
                self.load_rax(rs1);
                0
            }
        };
        match (rs2, self.cached[rs2 as usize]) {
            (0, _) => dynasm!(self.ops ; .arch x64 ; cmp Rq(left), 0),
            (_, Some(h)) => dynasm!(self.ops ; .arch x64 ; cmp Rq(left), Rq(h)),
            _ => dynasm!(self.ops ; .arch x64 ; cmp Rq(left), QWORD [rdi + xs(rs2)]),
        }
    }

    /// x[rd] = x[rs1] op `source` computed in place, in rd's cached host
    /// register when it has one, for the common operations whose second
    /// operand can be an immediate, a register or memory directly. False
    /// (nothing emitted) for everything else.
    fn alu_in_place(&mut self, op: AluOp, rd: u8, rs1: u8, source: Source, word: bool) -> bool {
        let shift = matches!(op, AluOp::Sll | AluOp::Srl | AluOp::Sra);
        let simple = matches!(op, AluOp::Add | AluOp::Xor | AluOp::Or | AluOp::And)
            || (op == AluOp::Sub && matches!(source, Source::Register(_)))
            || (shift && matches!(source, Source::Immediate(_)));
        let target = self.cached[rd as usize].unwrap_or(0);
        let clobbered =
            matches!(source, Source::Register(r) if r == 0 || (r == rd && r != rs1 && target != 0));
        if rd == 0
            || !simple
            || clobbered
            || (word && !matches!(op, AluOp::Add | AluOp::Sub) && !shift)
        {
            return false;
        }
        let t = target;
        let copy = matches!(op, AluOp::Add | AluOp::Or | AluOp::Xor) && !word;
        match source {
            // li: a constant.
            Source::Immediate(imm) if copy && rs1 == 0 => {
                dynasm!(self.ops ; .arch x64 ; mov Rq(t), imm)
            }
            // mv (addi rd, rs, 0; c.mv is add rd, x0, rs): a copy.
            Source::Immediate(0) if copy => self.load(t, rs1),
            Source::Register(r) if copy && rs1 == 0 => self.load(t, r),
            Source::Immediate(imm) => {
                self.load(t, rs1);
                let count = imm & if word { 31 } else { 63 };
                match (op, word) {
                    (AluOp::Add, false) => dynasm!(self.ops ; .arch x64 ; add Rq(t), imm),
                    (AluOp::Xor, _) => dynasm!(self.ops ; .arch x64 ; xor Rq(t), imm),
                    (AluOp::Or, _) => dynasm!(self.ops ; .arch x64 ; or Rq(t), imm),
                    (AluOp::And, _) => dynasm!(self.ops ; .arch x64 ; and Rq(t), imm),
                    (AluOp::Sll, false) => dynasm!(self.ops ; .arch x64 ; shl Rq(t), count as i8),
                    (AluOp::Srl, false) => dynasm!(self.ops ; .arch x64 ; shr Rq(t), count as i8),
                    (AluOp::Sra, false) => dynasm!(self.ops ; .arch x64 ; sar Rq(t), count as i8),
                    (AluOp::Add, true) => dynasm!(self.ops ; .arch x64 ; add Rd(t), imm),
                    (AluOp::Sll, true) => dynasm!(self.ops ; .arch x64 ; shl Rd(t), count as i8),
                    (AluOp::Srl, true) => dynasm!(self.ops ; .arch x64 ; shr Rd(t), count as i8),
                    _ => dynasm!(self.ops ; .arch x64 ; sar Rd(t), count as i8),
                }
            }
            Source::Register(r) => {
                self.load(t, rs1);
                self.alu_register(op, t, r, word);
            }
        }
        if word {
            dynasm!(self.ops ; .arch x64 ; movsxd Rq(t), Rd(t));
        }
        if target == 0 {
            dynasm!(self.ops ; .arch x64 ; mov QWORD [rdi + xs(rd)], rax);
        }
        true
    }

    /// Host register `t` op= x[r] (64-bit, or 32-bit when `word`).
    fn alu_register(&mut self, op: AluOp, t: u8, r: u8, word: bool) {
        match (self.cached[r as usize], word) {
            (Some(h), false) => match op {
                AluOp::Add => dynasm!(self.ops ; .arch x64 ; add Rq(t), Rq(h)),
                AluOp::Sub => dynasm!(self.ops ; .arch x64 ; sub Rq(t), Rq(h)),
                AluOp::Xor => dynasm!(self.ops ; .arch x64 ; xor Rq(t), Rq(h)),
                AluOp::Or => dynasm!(self.ops ; .arch x64 ; or Rq(t), Rq(h)),
                _ => dynasm!(self.ops ; .arch x64 ; and Rq(t), Rq(h)),
            },
            (None, false) => match op {
                AluOp::Add => dynasm!(self.ops ; .arch x64 ; add Rq(t), QWORD [rdi + xs(r)]),
                AluOp::Sub => dynasm!(self.ops ; .arch x64 ; sub Rq(t), QWORD [rdi + xs(r)]),
                AluOp::Xor => dynasm!(self.ops ; .arch x64 ; xor Rq(t), QWORD [rdi + xs(r)]),
                AluOp::Or => dynasm!(self.ops ; .arch x64 ; or Rq(t), QWORD [rdi + xs(r)]),
                _ => dynasm!(self.ops ; .arch x64 ; and Rq(t), QWORD [rdi + xs(r)]),
            },
            (Some(h), true) => match op {
                AluOp::Add => dynasm!(self.ops ; .arch x64 ; add Rd(t), Rd(h)),
                _ => dynasm!(self.ops ; .arch x64 ; sub Rd(t), Rd(h)),
            },
            (None, true) => match op {
                AluOp::Add => dynasm!(self.ops ; .arch x64 ; add Rd(t), DWORD [rdi + xs(r)]),
                _ => dynasm!(self.ops ; .arch x64 ; sub Rd(t), DWORD [rdi + xs(r)]),
            },
        }
    }

    fn load_const(&mut self, value: u64) {
        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD value as i64);
    }

    /// RAX = host address of x[rs1] + offset for a `size`-byte access
    /// through the read or write TLB (at R15); on a miss the hart fills the
    /// entry and the lookup runs again; jumps to `slow` when the access
    /// cannot take the fast path or would cross its page.
    fn translate_address(
        &mut self,
        rs1: u8,
        offset: i32,
        size: u8,
        write: bool,
        slow: DynamicLabel,
    ) {
        let table = if write {
            (TLB_ENTRIES << riscv_hart::TLB_ENTRY_SHIFT) as i32
        } else {
            0
        };
        let (retry, miss) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        self.misses
            .push((miss, retry, slow, size as u64 | (write as u64) << 8));
        dynasm!(self.ops ; .arch x64 ; =>retry);
        self.load_rax(rs1);
        if offset != 0 {
            dynasm!(self.ops ; .arch x64 ; add rax, offset);
        }
        dynasm!(self.ops ; .arch x64
            ; mov rdx, rax
            ; shr rdx, 12
            ; mov ecx, edx
            ; and ecx, (TLB_ENTRIES - 1) as i32
            ; shl ecx, riscv_hart::TLB_ENTRY_SHIFT as i8
            // riscv_hart::tlb_tag(vaddr, mode): vpn << TLB_TAG_MODE_BITS | mode
            ; shl rdx, TLB_TAG_MODE_BITS as i8
        );
        if self.data_mode != 0 {
            dynasm!(self.ops ; .arch x64 ; or rdx, self.data_mode as i32);
        }
        dynasm!(self.ops ; .arch x64
            ; cmp rdx, QWORD [r15 + rcx + table]
            ; jne =>miss
            ; mov edx, eax
            ; and edx, 0xfff
            ; cmp edx, (0x1000 - size as u32) as i32
            ; ja =>slow
            ; add rax, QWORD [r15 + rcx + table + TLB_ADDEND]
        );
    }

    /// Emits one instruction; true when it ended the block (it jumped).
    fn instruction(
        &mut self,
        inst: Instruction,
        pc: u64,
        next: u64,
        done: u64,
        total: i32,
    ) -> bool {
        use Instruction as I;
        match inst {
            I::Load {
                width,
                rd,
                rs1,
                offset,
            } => {
                let slow = self.slow_exit(pc, done);
                self.translate_address(rs1, offset, width.bytes(), false, slow);
                match width {
                    LoadWidth::B => dynasm!(self.ops ; .arch x64 ; movsx rax, BYTE [rax]),
                    LoadWidth::H => dynasm!(self.ops ; .arch x64 ; movsx rax, WORD [rax]),
                    LoadWidth::W => dynasm!(self.ops ; .arch x64 ; movsxd rax, DWORD [rax]),
                    LoadWidth::D => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rax]),
                    LoadWidth::Bu => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [rax]),
                    LoadWidth::Hu => dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [rax]),
                    LoadWidth::Wu => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rax]),
                }
                self.store_rax(rd);
            }
            I::Store {
                bytes,
                rs1,
                rs2,
                offset,
            } => {
                let slow = self.slow_exit(pc, done);
                self.translate_address(rs1, offset, bytes, true, slow);
                self.load_rcx(rs2);
                match bytes {
                    1 => dynasm!(self.ops ; .arch x64 ; mov BYTE [rax], cl),
                    2 => dynasm!(self.ops ; .arch x64 ; mov WORD [rax], cx),
                    4 => dynasm!(self.ops ; .arch x64 ; mov DWORD [rax], ecx),
                    _ => dynasm!(self.ops ; .arch x64 ; mov QWORD [rax], rcx),
                }
            }
            I::Lui { rd, imm } => {
                self.load_const(imm as i64 as u64);
                self.store_rax(rd);
            }
            I::Auipc { rd, imm } => {
                self.load_pc(pc.wrapping_add(imm as i64 as u64));
                self.store_rax(rd);
            }
            I::OpImm { op, rd, rs1, imm } => {
                let imm = if self.inject_bug && op == AluOp::Add {
                    imm.wrapping_add(1)
                } else {
                    imm
                };
                if self.alu_in_place(op, rd, rs1, Source::Immediate(imm), false) {
                    return false;
                }
                self.load_rax(rs1);
                let imm = match op {
                    AluOp::Sll | AluOp::Srl | AluOp::Sra => imm & 63,
                    _ => imm,
                };
                dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD imm as i64);
                self.alu64(op);
                self.store_rax(rd);
            }
            I::OpImm32 { op, rd, rs1, imm } => {
                if self.alu_in_place(op, rd, rs1, Source::Immediate(imm), true) {
                    return false;
                }
                self.load_rax(rs1);
                let imm = match op {
                    AluOp::Sll | AluOp::Srl | AluOp::Sra => imm & 31,
                    _ => imm,
                };
                dynasm!(self.ops ; .arch x64 ; mov ecx, imm);
                self.alu32(op);
                self.store_rax(rd);
            }
            I::Op { op, rd, rs1, rs2 } => {
                if self.alu_in_place(op, rd, rs1, Source::Register(rs2), false) {
                    return false;
                }
                self.load_rax(rs1);
                self.load_rcx(rs2);
                self.alu64(op);
                self.store_rax(rd);
            }
            I::Op32 { op, rd, rs1, rs2 } => {
                if self.alu_in_place(op, rd, rs1, Source::Register(rs2), true) {
                    return false;
                }
                self.load_rax(rs1);
                self.load_rcx(rs2);
                self.alu32(op);
                self.store_rax(rd);
            }
            I::Jal { rd, offset } => {
                self.load_pc(next);
                self.store_rax(rd);
                self.write_back();
                dynasm!(self.ops ; .arch x64 ; lea r12, [r12 + total]);
                self.jump_to(pc.wrapping_add(offset as i64 as u64));
                return true;
            }
            I::Jalr { rd, rs1, offset } => {
                // Target first: rd may be rs1. Bit 0 is cleared; with
                // compressed instructions no target can be misaligned.
                self.load_rax(rs1);
                let link = self.pc_offset(next);
                dynasm!(self.ops ; .arch x64
                    ; add rax, offset
                    ; and rax, -2
                    ; mov rcx, QWORD link
                    ; add rcx, QWORD [rbp + EXIT_VPAGE]
                );
                self.store(rd, 1);
                self.write_back();
                dynasm!(self.ops ; .arch x64 ; lea r12, [r12 + total]);
                self.indirect_jump();
                return true;
            }
            I::Branch {
                cond,
                rs1,
                rs2,
                offset,
            } => {
                let taken = self.ops.new_dynamic_label();
                let target = pc.wrapping_add(offset as i64 as u64);
                let last = done as i32 + 1 == total;
                self.compare(rs1, rs2);
                if last {
                    dynasm!(self.ops ; .arch x64 ; lea r12, [r12 + total]);
                }
                match cond {
                    BranchCond::Eq => dynasm!(self.ops ; .arch x64 ; je =>taken),
                    BranchCond::Ne => dynasm!(self.ops ; .arch x64 ; jne =>taken),
                    BranchCond::Lt => dynasm!(self.ops ; .arch x64 ; jl =>taken),
                    BranchCond::Ge => dynasm!(self.ops ; .arch x64 ; jge =>taken),
                    BranchCond::Ltu => dynasm!(self.ops ; .arch x64 ; jb =>taken),
                    BranchCond::Geu => dynasm!(self.ops ; .arch x64 ; jae =>taken),
                }
                if !last {
                    // A side exit: the block goes on with the fall-through path.
                    self.side_exits.push((taken, target, done + 1));
                    return false;
                }
                self.write_back();
                self.jump_to(next);
                dynasm!(self.ops ; .arch x64 ; =>taken);
                self.branch_taken(target);
                return true;
            }
            I::Fence => {}
            I::Amo {
                op,
                double,
                rd,
                rs1,
                rs2,
            } => {
                // Through the write TLB (a writable page is readable); a
                // misaligned address faults in the interpreter.
                let slow = self.slow_exit(pc, done);
                let size = if double { 8 } else { 4 };
                self.translate_address(rs1, 0, size, true, slow);
                dynasm!(self.ops ; .arch x64 ; test al, (size - 1) as i8 ; jnz =>slow);
                self.load(2, rs2);
                if double {
                    dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD [rax]);
                } else {
                    dynasm!(self.ops ; .arch x64 ; movsxd rcx, DWORD [rax]);
                }
                // RDX = the new value, from the old (RCX) and x[rs2] (RDX).
                match op {
                    AmoOp::Swap => {}
                    AmoOp::Add => dynasm!(self.ops ; .arch x64 ; add rdx, rcx),
                    AmoOp::Xor => dynasm!(self.ops ; .arch x64 ; xor rdx, rcx),
                    AmoOp::And => dynasm!(self.ops ; .arch x64 ; and rdx, rcx),
                    AmoOp::Or => dynasm!(self.ops ; .arch x64 ; or rdx, rcx),
                    _ if double => {
                        dynasm!(self.ops ; .arch x64 ; cmp rcx, rdx);
                        match op {
                            AmoOp::Min => dynasm!(self.ops ; .arch x64 ; cmovl rdx, rcx),
                            AmoOp::Max => dynasm!(self.ops ; .arch x64 ; cmovg rdx, rcx),
                            AmoOp::Minu => dynasm!(self.ops ; .arch x64 ; cmovb rdx, rcx),
                            _ => dynasm!(self.ops ; .arch x64 ; cmova rdx, rcx),
                        }
                    }
                    _ => {
                        dynasm!(self.ops ; .arch x64 ; cmp ecx, edx);
                        match op {
                            AmoOp::Min => dynasm!(self.ops ; .arch x64 ; cmovl edx, ecx),
                            AmoOp::Max => dynasm!(self.ops ; .arch x64 ; cmovg edx, ecx),
                            AmoOp::Minu => dynasm!(self.ops ; .arch x64 ; cmovb edx, ecx),
                            _ => dynasm!(self.ops ; .arch x64 ; cmova edx, ecx),
                        }
                    }
                }
                if double {
                    dynasm!(self.ops ; .arch x64 ; mov QWORD [rax], rdx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; mov DWORD [rax], edx);
                }
                self.store(rd, 1);
            }
            I::FpLoad {
                fmt,
                rd,
                rs1,
                offset,
            } => {
                let slow = self.slow_exit(pc, done);
                let size = if fmt == FpFormat::S { 4 } else { 8 };
                self.translate_address(rs1, offset, size, false, slow);
                match fmt {
                    FpFormat::D => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rax]),
                    FpFormat::S => {
                        dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rax]);
                        self.box_rax();
                    }
                }
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + xs(rd)], rax);
            }
            I::FpStore {
                fmt,
                rs1,
                rs2,
                offset,
            } => {
                let slow = self.slow_exit(pc, done);
                let size = if fmt == FpFormat::S { 4 } else { 8 };
                self.translate_address(rs1, offset, size, true, slow);
                dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD [rbx + xs(rs2)]);
                match fmt {
                    FpFormat::D => dynasm!(self.ops ; .arch x64 ; mov QWORD [rax], rcx),
                    FpFormat::S => dynasm!(self.ops ; .arch x64 ; mov DWORD [rax], ecx),
                }
            }
            I::FpArith {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                ..
            } => {
                let slow = self.slow_exit(pc, done);
                match op {
                    FpOp::SgnJ | FpOp::SgnJn | FpOp::SgnJx => {
                        self.sign_inject(op, fmt, rd, rs1, rs2, slow)
                    }
                    _ => {
                        self.fp_operand(0, fmt, rs1, slow);
                        self.fp_operand(1, fmt, rs2, slow);
                        match (op, fmt) {
                            (FpOp::Add, FpFormat::D) => {
                                dynasm!(self.ops ; .arch x64 ; addsd xmm0, xmm1)
                            }
                            (FpOp::Sub, FpFormat::D) => {
                                dynasm!(self.ops ; .arch x64 ; subsd xmm0, xmm1)
                            }
                            (FpOp::Mul, FpFormat::D) => {
                                dynasm!(self.ops ; .arch x64 ; mulsd xmm0, xmm1)
                            }
                            (FpOp::Div, FpFormat::D) => {
                                dynasm!(self.ops ; .arch x64 ; divsd xmm0, xmm1)
                            }
                            (FpOp::Add, FpFormat::S) => {
                                dynasm!(self.ops ; .arch x64 ; addss xmm0, xmm1)
                            }
                            (FpOp::Sub, FpFormat::S) => {
                                dynasm!(self.ops ; .arch x64 ; subss xmm0, xmm1)
                            }
                            (FpOp::Mul, FpFormat::S) => {
                                dynasm!(self.ops ; .arch x64 ; mulss xmm0, xmm1)
                            }
                            (FpOp::Div, FpFormat::S) => {
                                dynasm!(self.ops ; .arch x64 ; divss xmm0, xmm1)
                            }
                            _ => unreachable!("the translator passes no FP min/max"),
                        }
                        self.fp_result(fmt, rd, slow);
                    }
                }
            }
            I::FpFma {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rs3,
                ..
            } => {
                let slow = self.slow_exit(pc, done);
                self.fp_operand(0, fmt, rs1, slow);
                self.fp_operand(1, fmt, rs2, slow);
                self.fp_operand(2, fmt, rs3, slow);
                // xmm0 = ±(xmm0 * xmm1) ± xmm2, one rounding.
                match (op, fmt) {
                    (FmaOp::Madd, FpFormat::D) => {
                        dynasm!(self.ops ; .arch x64 ; vfmadd213sd xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Msub, FpFormat::D) => {
                        dynasm!(self.ops ; .arch x64 ; vfmsub213sd xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Nmsub, FpFormat::D) => {
                        dynasm!(self.ops ; .arch x64 ; vfnmadd213sd xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Nmadd, FpFormat::D) => {
                        dynasm!(self.ops ; .arch x64 ; vfnmsub213sd xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Madd, FpFormat::S) => {
                        dynasm!(self.ops ; .arch x64 ; vfmadd213ss xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Msub, FpFormat::S) => {
                        dynasm!(self.ops ; .arch x64 ; vfmsub213ss xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Nmsub, FpFormat::S) => {
                        dynasm!(self.ops ; .arch x64 ; vfnmadd213ss xmm0, xmm1, xmm2)
                    }
                    (FmaOp::Nmadd, FpFormat::S) => {
                        dynasm!(self.ops ; .arch x64 ; vfnmsub213ss xmm0, xmm1, xmm2)
                    }
                }
                self.fp_result(fmt, rd, slow);
            }
            I::FpSqrt { fmt, rd, rs1, .. } => {
                let slow = self.slow_exit(pc, done);
                self.fp_operand(0, fmt, rs1, slow);
                match fmt {
                    FpFormat::D => dynasm!(self.ops ; .arch x64 ; sqrtsd xmm0, xmm0),
                    FpFormat::S => dynasm!(self.ops ; .arch x64 ; sqrtss xmm0, xmm0),
                }
                self.fp_result(fmt, rd, slow);
            }
            I::FpCompare {
                cmp,
                fmt,
                rd,
                rs1,
                rs2,
            } => {
                let slow = self.slow_exit(pc, done);
                self.fp_operand(0, fmt, rs1, slow);
                self.fp_operand(1, fmt, rs2, slow);
                // feq is quiet (ucomi: invalid only for signalling NaNs);
                // flt/fle signal on any NaN (comi). Unordered sets ZF, PF, CF.
                match (cmp, fmt) {
                    (FpCmp::Eq, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; ucomisd xmm0, xmm1),
                    (FpCmp::Eq, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; ucomiss xmm0, xmm1),
                    (_, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; comisd xmm0, xmm1),
                    (_, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; comiss xmm0, xmm1),
                }
                match cmp {
                    FpCmp::Eq => dynasm!(self.ops ; .arch x64 ; sete al),
                    FpCmp::Lt => dynasm!(self.ops ; .arch x64 ; setb al),
                    FpCmp::Le => dynasm!(self.ops ; .arch x64 ; setbe al),
                }
                dynasm!(self.ops ; .arch x64
                    ; setnp cl
                    ; and al, cl
                    ; movzx eax, al
                );
                self.store_rax(rd);
            }
            I::FpToInt {
                fmt,
                int,
                rd,
                rs1,
                rm,
            } => {
                let slow = self.slow_exit(pc, done);
                self.fp_operand(0, fmt, rs1, slow);
                // The host returns its "integer indefinite" for NaN and out
                // of range (RISC-V saturates): leave those to the interpreter.
                let truncate = rm == crate::translate::RM_RTZ;
                match (int, fmt, truncate) {
                    (IntFormat::L, FpFormat::D, true) => {
                        dynasm!(self.ops ; .arch x64 ; cvttsd2si rax, xmm0)
                    }
                    (IntFormat::L, FpFormat::D, false) => {
                        dynasm!(self.ops ; .arch x64 ; cvtsd2si rax, xmm0)
                    }
                    (IntFormat::L, FpFormat::S, true) => {
                        dynasm!(self.ops ; .arch x64 ; cvttss2si rax, xmm0)
                    }
                    (IntFormat::L, FpFormat::S, false) => {
                        dynasm!(self.ops ; .arch x64 ; cvtss2si rax, xmm0)
                    }
                    (_, FpFormat::D, true) => dynasm!(self.ops ; .arch x64 ; cvttsd2si eax, xmm0),
                    (_, FpFormat::D, false) => dynasm!(self.ops ; .arch x64 ; cvtsd2si eax, xmm0),
                    (_, FpFormat::S, true) => dynasm!(self.ops ; .arch x64 ; cvttss2si eax, xmm0),
                    (_, FpFormat::S, false) => dynasm!(self.ops ; .arch x64 ; cvtss2si eax, xmm0),
                }
                if int == IntFormat::L {
                    dynasm!(self.ops ; .arch x64
                        ; mov rcx, QWORD i64::MIN
                        ; cmp rax, rcx
                        ; je =>slow
                    );
                } else {
                    dynasm!(self.ops ; .arch x64
                        ; cmp eax, i32::MIN
                        ; je =>slow
                        ; movsxd rax, eax
                    );
                }
                self.store_rax(rd);
            }
            I::IntToFp {
                fmt, int, rd, rs1, ..
            } => {
                self.load_rax(rs1);
                match (int, fmt) {
                    (IntFormat::L, FpFormat::D) => {
                        dynasm!(self.ops ; .arch x64 ; cvtsi2sd xmm0, rax)
                    }
                    (IntFormat::L, FpFormat::S) => {
                        dynasm!(self.ops ; .arch x64 ; cvtsi2ss xmm0, rax)
                    }
                    (_, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; cvtsi2sd xmm0, eax),
                    (_, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; cvtsi2ss xmm0, eax),
                }
                self.fp_store_xmm0(fmt, rd);
            }
            I::FpConvert { to, rd, rs1, .. } => {
                let slow = self.slow_exit(pc, done);
                match to {
                    FpFormat::D => {
                        self.fp_operand(0, FpFormat::S, rs1, slow);
                        dynasm!(self.ops ; .arch x64 ; cvtss2sd xmm0, xmm0);
                    }
                    FpFormat::S => {
                        self.fp_operand(0, FpFormat::D, rs1, slow);
                        dynasm!(self.ops ; .arch x64 ; cvtsd2ss xmm0, xmm0);
                    }
                }
                self.fp_result(to, rd, slow);
            }
            I::FpMoveToInt { fmt, rd, rs1 } => {
                match fmt {
                    FpFormat::D => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rbx + xs(rs1)]),
                    FpFormat::S => {
                        dynasm!(self.ops ; .arch x64 ; movsxd rax, DWORD [rbx + xs(rs1)])
                    }
                }
                self.store_rax(rd);
            }
            I::Csr { csr, .. } if csr != translate::FFLAGS => {
                self.hand_over(pc, next.wrapping_sub(pc), done)
            }
            I::Lr { .. } | I::Sc { .. } => self.hand_over(pc, next.wrapping_sub(pc), done),
            I::Csr { op, rd, src, .. } => {
                // rd = fflags as accrued so far: the hart's, plus what SSE
                // raised since the dispatcher last folded MXCSR in.
                let table = MXCSR_TO_FFLAGS.as_ptr() as i64;
                dynasm!(self.ops ; .arch x64
                    ; stmxcsr DWORD [rbp + EXIT_MXCSR]
                    ; mov eax, DWORD [rbp + EXIT_MXCSR]
                    ; and eax, 0x3f
                    ; mov rcx, QWORD table
                    ; movzx eax, BYTE [rcx + rax]
                    ; mov rcx, QWORD [rbp + EXIT_FFLAGS]
                    ; or rax, QWORD [rcx]
                );
                if op == CsrOp::Write {
                    // fflags = x[src]; the host's accrued flags start over.
                    dynasm!(self.ops ; .arch x64 ; mov rdx, rax);
                    self.load_rax(src);
                    dynasm!(self.ops ; .arch x64
                        ; and eax, 0x1f
                        ; mov QWORD [rcx], rax
                        ; mov DWORD [rbp + EXIT_MXCSR], DEFAULT_MXCSR as i32
                        ; ldmxcsr DWORD [rbp + EXIT_MXCSR]
                        ; mov rax, rdx
                    );
                }
                self.store_rax(rd);
            }
            I::FpMoveFromInt { fmt, rd, rs1 } => {
                self.load_rax(rs1);
                if fmt == FpFormat::S {
                    dynasm!(self.ops ; .arch x64 ; mov eax, eax);
                    self.box_rax();
                }
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + xs(rd)], rax);
            }
            _ => unreachable!("the translator only passes supported instructions"),
        }
        false
    }

    /// Leaves for the guest PC in RAX through the jump cache (the target's
    /// page mapping was current when the entry was made, and the cache is
    /// cleared whenever the TLB is flushed), or on a miss through the
    /// block table ([`lookup_block`]), or exits to the dispatcher. (Every
    /// exit path stores the cached registers back before this.)
    fn indirect_jump(&mut self) {
        let (miss, leave) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        let helper = lookup_block as *const u8 as i64;
        dynasm!(self.ops ; .arch x64
            ; mov rdx, rax
            ; shr rdx, JUMP_INDEX_PAGE_SHIFT as i8
            ; mov rcx, rax
            ; shr rcx, 1
            ; xor edx, ecx
            ; and edx, (JUMP_CACHE_ENTRIES - 1) as i32
            ; shl edx, JUMP_ENTRY_SHIFT
            ; add rdx, QWORD [rbp + EXIT_JUMP_CACHE]
            ; cmp rax, QWORD [rdx]
            ; jne =>miss
            ; cmp QWORD [rdx + JUMP_ENTRY_MODE], self.mode as i32
            ; jne =>miss
            ; mov rcx, rax
            ; and rcx, -(PAGE_SIZE as i32)
            ; mov QWORD [rbp + EXIT_VPAGE], rcx
            ; jmp QWORD [rdx + JUMP_ENTRY_CODE]
            ; =>miss
            // RDI is pinned, RAX the PC; two pushes keep the stack aligned.
            ; push rdi
            ; push rax
            ; mov rdi, rbp
            ; mov rsi, rax
            ; mov rdx, QWORD self.mode as i64
            ; mov rax, QWORD helper
            ; call rax
            ; mov rdx, rax
            ; pop rax
            ; pop rdi
            ; test rdx, rdx
            ; jz =>leave
            ; mov rcx, rax
            ; and rcx, -(PAGE_SIZE as i32)
            ; mov QWORD [rbp + EXIT_VPAGE], rcx
            ; jmp rdx
            ; =>leave
            ; xor edx, edx
            ; jmp extern self.exit
        );
    }

    /// RAX = RAX op RCX for the 64-bit operations.
    fn alu64(&mut self, op: AluOp) {
        match op {
            AluOp::Add => dynasm!(self.ops ; .arch x64 ; add rax, rcx),
            AluOp::Sub => dynasm!(self.ops ; .arch x64 ; sub rax, rcx),
            AluOp::Xor => dynasm!(self.ops ; .arch x64 ; xor rax, rcx),
            AluOp::Or => dynasm!(self.ops ; .arch x64 ; or rax, rcx),
            AluOp::And => dynasm!(self.ops ; .arch x64 ; and rax, rcx),
            AluOp::Sll => dynasm!(self.ops ; .arch x64 ; shl rax, cl),
            AluOp::Srl => dynasm!(self.ops ; .arch x64 ; shr rax, cl),
            AluOp::Sra => dynasm!(self.ops ; .arch x64 ; sar rax, cl),
            AluOp::Mul => dynasm!(self.ops ; .arch x64 ; imul rax, rcx),
            AluOp::Mulh => dynasm!(self.ops ; .arch x64 ; imul rcx ; mov rax, rdx),
            AluOp::Mulhu => dynasm!(self.ops ; .arch x64 ; mul rcx ; mov rax, rdx),
            AluOp::Slt => dynasm!(self.ops ; .arch x64
                ; xor edx, edx ; cmp rax, rcx ; setl dl ; mov rax, rdx),
            AluOp::Sltu => dynasm!(self.ops ; .arch x64
                ; xor edx, edx ; cmp rax, rcx ; setb dl ; mov rax, rdx),
            AluOp::Div | AluOp::Divu | AluOp::Rem | AluOp::Remu => self.divide(op, false),
            _ => unreachable!("the translator only passes supported 64-bit operations"),
        }
    }

    /// RAX = sign-extended (EAX op ECX) for the 32-bit ("W") operations.
    fn alu32(&mut self, op: AluOp) {
        match op {
            AluOp::Add => dynasm!(self.ops ; .arch x64 ; add eax, ecx),
            AluOp::Sub => dynasm!(self.ops ; .arch x64 ; sub eax, ecx),
            AluOp::Sll => dynasm!(self.ops ; .arch x64 ; shl eax, cl),
            AluOp::Srl => dynasm!(self.ops ; .arch x64 ; shr eax, cl),
            AluOp::Sra => dynasm!(self.ops ; .arch x64 ; sar eax, cl),
            AluOp::Mul => dynasm!(self.ops ; .arch x64 ; imul eax, ecx),
            AluOp::Div | AluOp::Divu | AluOp::Rem | AluOp::Remu => self.divide(op, true),
            _ => unreachable!("the translator only passes supported 32-bit operations"),
        }
        dynasm!(self.ops ; .arch x64 ; movsxd rax, eax);
    }

    /// RAX = RAX / RCX or RAX % RCX with RISC-V's results where x86 would
    /// fault: division by zero gives all ones (quotient) or the dividend
    /// (remainder); the signed overflow MIN / -1 gives MIN and 0.
    fn divide(&mut self, op: AluOp, word: bool) {
        let done = self.ops.new_dynamic_label();
        let zero = self.ops.new_dynamic_label();
        let signed = matches!(op, AluOp::Div | AluOp::Rem);
        let remainder = matches!(op, AluOp::Rem | AluOp::Remu);
        if word {
            dynasm!(self.ops ; .arch x64 ; test ecx, ecx ; jz =>zero);
        } else {
            dynasm!(self.ops ; .arch x64 ; test rcx, rcx ; jz =>zero);
        }
        if signed {
            // Divisor -1: the quotient is the negated dividend (wrapping,
            // which covers MIN / -1), the remainder zero.
            let normal = self.ops.new_dynamic_label();
            if word {
                dynasm!(self.ops ; .arch x64 ; cmp ecx, -1 ; jne =>normal);
            } else {
                dynasm!(self.ops ; .arch x64 ; cmp rcx, -1 ; jne =>normal);
            }
            match (remainder, word) {
                (true, _) => dynasm!(self.ops ; .arch x64 ; xor eax, eax),
                (false, true) => dynasm!(self.ops ; .arch x64 ; neg eax),
                (false, false) => dynasm!(self.ops ; .arch x64 ; neg rax),
            }
            dynasm!(self.ops ; .arch x64 ; jmp =>done ; =>normal);
            if word {
                dynasm!(self.ops ; .arch x64 ; cdq ; idiv ecx);
            } else {
                dynasm!(self.ops ; .arch x64 ; cqo ; idiv rcx);
            }
        } else if word {
            dynasm!(self.ops ; .arch x64 ; xor edx, edx ; div ecx);
        } else {
            dynasm!(self.ops ; .arch x64 ; xor edx, edx ; div rcx);
        }
        if remainder {
            dynasm!(self.ops ; .arch x64 ; mov rax, rdx);
        }
        dynasm!(self.ops ; .arch x64 ; jmp =>done ; =>zero);
        if !remainder {
            dynasm!(self.ops ; .arch x64 ; mov rax, -1);
        }
        dynasm!(self.ops ; .arch x64 ; =>done);
    }

    /// RAX = the NaN-boxed single in EAX (upper half all ones).
    fn box_rax(&mut self) {
        dynasm!(self.ops ; .arch x64
            ; mov rcx, QWORD -0x1_0000_0000
            ; or rax, rcx
        );
    }

    /// XMM`n` = operand f[r] of format `fmt`; a single that is not properly
    /// NaN-boxed goes to `slow` (RISC-V reads it as the canonical NaN).
    fn fp_operand(&mut self, n: u8, fmt: FpFormat, r: u8, slow: DynamicLabel) {
        if fmt == FpFormat::S {
            dynasm!(self.ops ; .arch x64
                ; mov rax, QWORD [rbx + xs(r)]
                ; mov rcx, rax
                ; shr rcx, 32
                ; cmp ecx, -1
                ; jne =>slow
            );
        }
        match (n, fmt) {
            (0, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; movq xmm0, QWORD [rbx + xs(r)]),
            (1, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; movq xmm1, QWORD [rbx + xs(r)]),
            (_, FpFormat::D) => dynasm!(self.ops ; .arch x64 ; movq xmm2, QWORD [rbx + xs(r)]),
            (0, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; movd xmm0, eax),
            (1, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; movd xmm1, eax),
            (_, FpFormat::S) => dynasm!(self.ops ; .arch x64 ; movd xmm2, eax),
        }
    }

    /// f[rd] = XMM0 of format `fmt`, unless it is a NaN (the host's NaN is
    /// not RISC-V's canonical one): then to `slow`.
    fn fp_result(&mut self, fmt: FpFormat, rd: u8, slow: DynamicLabel) {
        match fmt {
            FpFormat::D => dynasm!(self.ops ; .arch x64 ; ucomisd xmm0, xmm0 ; jp =>slow),
            FpFormat::S => dynasm!(self.ops ; .arch x64 ; ucomiss xmm0, xmm0 ; jp =>slow),
        }
        self.fp_store_xmm0(fmt, rd);
    }

    /// f[rd] = XMM0 of format `fmt` (singles NaN-boxed).
    fn fp_store_xmm0(&mut self, fmt: FpFormat, rd: u8) {
        match fmt {
            FpFormat::D => dynasm!(self.ops ; .arch x64 ; movq QWORD [rbx + xs(rd)], xmm0),
            FpFormat::S => {
                dynasm!(self.ops ; .arch x64 ; movd eax, xmm0);
                self.box_rax();
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + xs(rd)], rax);
            }
        }
    }

    /// fsgnj/fsgnjn/fsgnjx: sign bit from f[rs2] (as is, negated, xor-ed)
    /// onto f[rs1], as integer operations on the bits.
    fn sign_inject(
        &mut self,
        op: FpOp,
        fmt: FpFormat,
        rd: u8,
        rs1: u8,
        rs2: u8,
        slow: DynamicLabel,
    ) {
        let sign: i64 = match fmt {
            FpFormat::D => i64::MIN,
            FpFormat::S => 0x8000_0000,
        };
        if fmt == FpFormat::S {
            // Both operands must be boxed singles.
            for r in [rs1, rs2] {
                dynasm!(self.ops ; .arch x64
                    ; mov rax, QWORD [rbx + xs(r)]
                    ; shr rax, 32
                    ; cmp eax, -1
                    ; jne =>slow
                );
            }
        }
        dynasm!(self.ops ; .arch x64
            ; mov rax, QWORD [rbx + xs(rs1)]
            ; mov rcx, QWORD [rbx + xs(rs2)]
            ; mov rdx, QWORD sign
        );
        match op {
            FpOp::SgnJ => dynasm!(self.ops ; .arch x64
                ; and rcx, rdx ; not rdx ; and rax, rdx ; or rax, rcx),
            FpOp::SgnJn => dynasm!(self.ops ; .arch x64
                ; not rcx ; and rcx, rdx ; not rdx ; and rax, rdx ; or rax, rcx),
            _ => dynasm!(self.ops ; .arch x64 ; and rcx, rdx ; xor rax, rcx),
        }
        // Singles: the upper half of rs1 is all ones and stays so.
        dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + xs(rd)], rax);
    }
}
