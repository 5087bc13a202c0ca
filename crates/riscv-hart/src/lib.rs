//! One RV64GCH hart: architectural state, CSRs, privilege levels and the
//! virtualization mode of the H extension (M, HS, U, VS, VU), traps, the
//! Sv39/Sv48 MMU with the G-stage (Sv39x4/Sv48x4) behind it and its
//! soft-TLB, PMP, and the interpreter loop.
//!
//! The hart knows nothing about devices: guest RAM is reached directly through
//! [`GuestRam`], everything else through the [`Platform`] the board supplies.

mod csr;
mod engine;
mod exec;
mod fpu;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod isa;
mod mmu;
mod ram;
mod state;
mod trap;

/// A platform with no devices and a stopped clock, for the unit tests.
#[cfg(test)]
mod test_platform {
    pub struct NoDevices;

    impl crate::Platform for NoDevices {
        fn load(&mut self, _: usize, _: u64, _: u8) -> Option<u64> {
            None
        }
        fn store(&mut self, _: usize, _: u64, _: u8, _: u64) -> bool {
            false
        }
        fn watched_store(&mut self, _: usize, _: u64, _: u8, _: u64) {}
        fn mtime(&mut self) -> u64 {
            0
        }
    }
}

pub use csr::{Csrs, MIP_MEIP, MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_SSIP, MIP_STIP};

/// `sstatus`/`vsstatus` on a trap into that level: SPP records whether the
/// trap came from (V)S-mode, SPIE the old SIE, and SIE is cleared.
fn enter_status(status: u64, from_supervisor: bool) -> u64 {
    let mut s = status & !(csr::MSTATUS_SPP | csr::MSTATUS_SPIE | csr::MSTATUS_SIE);
    if status & csr::MSTATUS_SIE != 0 {
        s |= csr::MSTATUS_SPIE;
    }
    if from_supervisor {
        s |= csr::MSTATUS_SPP;
    }
    s
}
pub use engine::{Engine, Interpreter, TranslationStats};
pub use mmu::{
    tlb_tag, AccessMode, AddressSpace, DataTlb, TlbStats, TLB_ENTRIES, TLB_ENTRY_ADDEND,
    TLB_ENTRY_SHIFT, TLB_SETS, TLB_TAG_MODE_BITS,
};
pub use ram::{CodeStats, GuestRam, RamAllocError};
pub use state::{HartState, StateError};
pub use trap::{cause_name, Exception, ExceptionCause, TrapCounts, TrapValues};

/// Privilege levels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum Privilege {
    User = 0,
    Supervisor = 1,
    Machine = 3,
}

impl Privilege {
    pub fn from_bits(bits: u64) -> Privilege {
        match bits & 3 {
            0 => Privilege::User,
            1 => Privilege::Supervisor,
            _ => Privilege::Machine,
        }
    }
}

/// What a hart needs from the machine around it: physical accesses outside
/// RAM (device registers) and the platform timer.
pub trait Platform {
    /// Reads `size` bytes at physical `addr` outside RAM; `None` is an access fault.
    fn load(&mut self, hart: usize, addr: u64, size: u8) -> Option<u64>;
    /// Writes `size` bytes at physical `addr` outside RAM; `false` is an access fault.
    fn store(&mut self, hart: usize, addr: u64, size: u8, value: u64) -> bool;
    /// Called after a store that hit the watched RAM page (see [`Hart::watch_page`]).
    fn watched_store(&mut self, hart: usize, addr: u64, size: u8, value: u64);
    /// The platform timer (`mtime`), in ticks of the advertised timebase.
    fn mtime(&mut self) -> u64;
}

/// Why [`Hart::run`] returned before its budget was spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The budget of instructions was executed.
    Budget,
    /// The hart executed WFI and no interrupt is pending.
    Wfi,
    /// A device register was written; interrupt lines may have changed.
    DeviceAccess,
}

/// The architectural and micro-architectural state of one hart.
pub struct Hart {
    pub id: usize,
    /// Integer registers; x[0] is kept zero.
    pub x: [u64; 32],
    /// Floating-point registers, raw bits (single values are NaN-boxed).
    pub f: [u64; 32],
    pub pc: u64,
    /// The nominal privilege: VS-mode is Supervisor with `virt`, VU User with `virt`.
    pub privilege: Privilege,
    /// The virtualization mode V of the H extension.
    pub virt: bool,
    pub csr: Csrs,
    /// Set by WFI; cleared when an interrupt becomes pending.
    pub waiting: bool,
    /// LR reservation: physical address and the value loaded.
    reservation: Option<(u64, u64)>,
    ram: GuestRam,
    tlb: mmu::Tlb,
    /// Physical page whose stores are reported to the platform (HTIF tohost).
    watched_page: u64,
    /// Set when the next instruction boundary must re-evaluate interrupts.
    interrupt_check: bool,
    /// Set when the current run must end after this instruction.
    stop: Option<RunExit>,
    /// Instructions retired.
    pub instret: u64,
    /// Traps taken (exceptions and interrupts), for engines that compare runs.
    pub traps: u64,
    /// The same by cause, for `--stats`.
    trap_counts: TrapCounts,
    /// [`GuestRam::code_protections`] when the write TLB was last cleared.
    seen_protections: u64,
}

impl Hart {
    pub fn new(id: usize, ram: GuestRam) -> Hart {
        Hart {
            id,
            x: [0; 32],
            f: [0; 32],
            pc: 0,
            privilege: Privilege::Machine,
            virt: false,
            csr: Csrs::new(id as u64),
            waiting: false,
            reservation: None,
            ram,
            tlb: mmu::Tlb::new(),
            watched_page: u64::MAX,
            interrupt_check: true,
            stop: None,
            instret: 0,
            traps: 0,
            trap_counts: TrapCounts::default(),
            seen_protections: 0,
        }
    }

    /// Reports stores to the 4 KiB physical page holding `addr` through
    /// [`Platform::watched_store`].
    pub fn watch_page(&mut self, addr: u64) {
        self.watched_page = addr >> 12;
        self.tlb.flush();
    }

    /// Updates the interrupt lines the platform drives (MSIP, MTIP, MEIP, SEIP).
    pub fn set_external_interrupts(&mut self, lines: u64) {
        if self.csr.external_lines != lines {
            self.csr.external_lines = lines;
            self.interrupt_check = true;
        }
    }

    /// True when an interrupt is pending and enabled in `mie`, whatever the
    /// global enables: the condition that ends WFI.
    pub fn wakeup_pending(&self, mtime: u64) -> bool {
        self.csr.mip(mtime) & self.csr.mie != 0
    }

    /// Executes up to `budget` instructions (or until WFI or a device write).
    pub fn run(&mut self, platform: &mut dyn Platform, budget: u64) -> (RunExit, u64) {
        self.interrupt_check = true;
        self.continue_run(platform, budget)
    }

    /// Like [`Hart::run`], but re-evaluates interrupts at the first boundary
    /// only if something flagged it (engines call this between translated
    /// blocks, having started the slice with `run`).
    pub fn continue_run(&mut self, platform: &mut dyn Platform, budget: u64) -> (RunExit, u64) {
        self.stop = None;
        let mut executed = 0;
        while executed < budget {
            if let Some(exit) = self.interrupt_boundary(platform) {
                return (exit, executed);
            }
            executed += 1;
            self.instret += 1;
            if let Err(e) = self.step(platform) {
                self.take_trap(e.cause as u64, &e.values);
            }
            if let Some(exit) = self.stop.take() {
                return (exit, executed);
            }
        }
        (RunExit::Budget, executed)
    }

    /// The instruction boundary, when something flagged that interrupts
    /// must be re-evaluated there: takes the highest-priority one pending
    /// and enabled (the hart is then at its handler), or returns
    /// [`RunExit::Wfi`] while WFI still waits. Engines running translated
    /// code call it before each block while [`Hart::boundary_pending`].
    pub fn interrupt_boundary(&mut self, platform: &mut dyn Platform) -> Option<RunExit> {
        if !self.interrupt_check {
            return None;
        }
        self.interrupt_check = false;
        let now = platform.mtime();
        if let Some(cause) = self.pending_interrupt(now) {
            self.waiting = false;
            self.take_trap(cause | trap::INTERRUPT_BIT, &TrapValues::default());
        } else if self.waiting {
            if !self.wakeup_pending(now) {
                return Some(RunExit::Wfi);
            }
            self.waiting = false;
        }
        None
    }

    /// Executes the instruction at the PC exactly as the interpreter does
    /// (a trap included), for an engine's translated code that hands it one
    /// instruction it does not translate. `retired`: the instructions the
    /// engine completed but has not added to `instret` yet, this one
    /// included, so that the counters read what the interpreter's would.
    pub fn step_handed(&mut self, platform: &mut dyn Platform, retired: u64) {
        self.instret = self.instret.wrapping_add(retired);
        if let Err(e) = self.step(platform) {
            self.take_trap(e.cause as u64, &e.values);
        }
        self.instret = self.instret.wrapping_sub(retired);
    }

    /// Flags the next boundary to re-evaluate interrupts (as every run of
    /// the interpreter starts).
    pub fn request_interrupt_check(&mut self) {
        self.interrupt_check = true;
    }

    /// True when the next boundary must re-evaluate interrupts; engines
    /// running translated code hand such a boundary to
    /// [`Hart::interrupt_boundary`].
    #[inline]
    pub fn boundary_pending(&self) -> bool {
        self.interrupt_check
    }

    /// The host bytes of the code at `pc` up to the end of its page, when
    /// the execute TLB maps that page for the current privilege (no walk,
    /// no side effects). Engines compare them with what they translated.
    #[inline]
    pub fn code_at(&self, pc: u64) -> Option<&[u8]> {
        self.tlb.code_at(pc, self.fetch_mode())
    }

    /// Protects `len` bytes of code at `code` (a host address from
    /// [`Hart::code_at`]) for an engine that translated them: stores to
    /// them then advance the code epoch. See [`GuestRam::protect_code`].
    pub fn protect_code(&mut self, code: *const u8, len: usize) {
        if self.ram.protect_code(code, len) {
            self.tlb.flush_writes();
            self.seen_protections = self.ram.code_protections();
        }
    }

    /// Forgets its cached write translations, so the next store to each
    /// page takes the slow path (see [`GuestRam::set_dirty_tracking`]).
    pub fn drop_write_translations(&mut self) {
        self.tlb.flush_writes();
    }

    /// Drops cached write translations when any hart protected a page since
    /// this hart last looked; engines call it before running translated code.
    #[inline]
    pub fn sync_code_protections(&mut self) {
        if self.seen_protections != self.ram.code_protections() {
            self.tlb.flush_writes();
            self.seen_protections = self.ram.code_protections();
        }
    }

    /// The code epoch of this hart's RAM (see [`GuestRam::code_epoch`]).
    #[inline]
    pub fn code_epoch(&self) -> u32 {
        self.ram.code_epoch()
    }

    /// The soft-TLB's counters so far (its flushes are
    /// [`Hart::translation_generation`]).
    pub fn tlb_stats(&self) -> TlbStats {
        self.tlb.stats()
    }

    /// Traps taken so far, by cause.
    pub fn trap_counts(&self) -> TrapCounts {
        self.trap_counts
    }

    /// How many times the TLB was flushed whole (privilege-affecting
    /// CSRs, `sfence.vma` of everything): every address space's cached
    /// virtual-to-host mappings went.
    #[inline]
    pub fn translation_generation(&self) -> u64 {
        self.tlb.generation()
    }

    /// The address space whose soft-TLB set is in use, and a stamp that
    /// changes whenever that set is emptied: an engine caching virtual-to-
    /// host mappings of its own keeps them per set, valid while the stamp
    /// stays (and [`Hart::page_flushes`] tells which pages to drop).
    #[inline]
    pub fn address_space(&self) -> mmu::AddressSpace {
        self.tlb.address_space()
    }

    /// How many times `sfence.vma` dropped one page's translations (not a
    /// full flush, so [`Hart::translation_generation`] stays).
    #[inline]
    pub fn page_flushes(&self) -> u64 {
        self.tlb.stats().page_flushes
    }

    /// The virtual page numbers flushed one by one since
    /// [`Hart::page_flushes`] was `seen`, for an engine's own caches of
    /// translations; `None` when it must drop them all.
    pub fn pages_flushed_since(&self, seen: u64) -> Option<impl Iterator<Item = u64> + '_> {
        self.tlb.pages_flushed_since(seen)
    }

    /// The current FP state as translated FP code depends on it: true when
    /// FP is enabled and already dirty and the dynamic rounding mode is
    /// round-to-nearest-even (so `rm = dyn` means RNE).
    #[inline]
    pub fn fp_ready(&self) -> bool {
        self.csr.fp_dirty(self.virt) && self.csr.frm == 0
    }

    /// Accrues exception flags raised by host SSE arithmetic (MXCSR status
    /// bits) into `fflags`.
    pub fn accrue_host_fp_flags(&mut self, mxcsr: u32) {
        self.csr.fflags |= fpu::flags_from_mxcsr(mxcsr) as u64;
    }

    /// The data soft-TLB as translated code reads it: the tables of the
    /// current address space, which move only when `satp` is written.
    pub fn data_tlb(&self) -> mmu::DataTlb {
        self.tlb.data_tlb(self.data_mode())
    }

    /// The highest-priority interrupt that is pending and enabled in the
    /// current mode, if any (its cause as the target level sees it is
    /// worked out by [`Hart::take_trap`]).
    fn pending_interrupt(&self, mtime: u64) -> Option<u64> {
        let c = &self.csr;
        let pending = c.mip(mtime) & c.mie;
        if pending == 0 {
            return None;
        }
        let (privilege, virt) = (self.privilege, self.virt);
        let m_enabled = privilege < Privilege::Machine || c.mstatus & csr::MSTATUS_MIE != 0;
        let hs_enabled = virt
            || privilege == Privilege::User
            || (privilege == Privilege::Supervisor && c.mstatus & csr::MSTATUS_SIE != 0);
        let vs_enabled =
            virt && (privilege == Privilege::User || c.vsstatus & csr::MSTATUS_SIE != 0);
        let to_vs = c.mideleg & c.hideleg;
        let levels = [
            (m_enabled, pending & !c.mideleg),
            (hs_enabled, pending & c.mideleg & !to_vs),
            (vs_enabled, pending & to_vs),
        ];
        // The most privileged level with an interrupt wins; within a
        // level, the spec's order: MEI, MSI, MTI, SEI, SSI, STI, SGEI,
        // VSEI, VSSI, VSTI.
        let ready = levels
            .into_iter()
            .find(|&(enabled, bits)| enabled && bits != 0)?
            .1;
        [11u64, 3, 7, 9, 1, 5, 12, 10, 2, 6]
            .into_iter()
            .find(|&cause| ready & (1 << cause) != 0)
    }

    /// Enters the trap handler for `cause` (interrupt bit included) in M,
    /// HS or VS mode according to the delegation registers, recording
    /// `values`.
    pub(crate) fn take_trap(&mut self, cause: u64, values: &TrapValues) {
        self.traps += 1;
        let interrupt = cause & trap::INTERRUPT_BIT != 0;
        let code = cause & !trap::INTERRUPT_BIT;
        self.trap_counts.count(interrupt, code);
        let c = &self.csr;
        let (medeleg, hedeleg) = if interrupt {
            (c.mideleg, c.hideleg)
        } else {
            (c.medeleg, c.hedeleg)
        };
        let to_hs = self.privilege != Privilege::Machine && medeleg >> code & 1 != 0;
        let to_vs = to_hs && self.virt && hedeleg >> code & 1 != 0;
        let old = self.privilege;
        let was_virtual = self.virt;
        if to_vs {
            // VS-mode sees its interrupts as the S-level ones (VSSI 2 -> SSI 1, ...).
            let code = if interrupt { code - 1 } else { code };
            let c = &mut self.csr;
            c.vscause = code | cause & trap::INTERRUPT_BIT;
            c.vsepc = self.pc;
            c.vstval = values.tval;
            c.vsstatus = enter_status(c.vsstatus, old == Privilege::Supervisor);
            self.privilege = Privilege::Supervisor;
            self.pc = trap::vector(c.vstvec, interrupt, code);
        } else if to_hs {
            let c = &mut self.csr;
            c.scause = cause;
            c.sepc = self.pc;
            c.stval = values.tval;
            c.htval = values.tval2;
            c.htinst = values.tinst;
            let mut h = c.hstatus & !(csr::HSTATUS_SPV | csr::HSTATUS_GVA);
            if was_virtual {
                h |= csr::HSTATUS_SPV;
                h = h & !csr::HSTATUS_SPVP
                    | if old == Privilege::Supervisor {
                        csr::HSTATUS_SPVP
                    } else {
                        0
                    };
            }
            if values.gva {
                h |= csr::HSTATUS_GVA;
            }
            c.hstatus = h;
            c.mstatus = enter_status(c.mstatus, old == Privilege::Supervisor);
            self.privilege = Privilege::Supervisor;
            self.virt = false;
            self.pc = trap::vector(c.stvec, interrupt, code);
        } else {
            let c = &mut self.csr;
            c.mcause = cause;
            c.mepc = self.pc;
            c.mtval = values.tval;
            c.mtval2 = values.tval2;
            c.mtinst = values.tinst;
            let ms = c.mstatus;
            let mut m = ms
                & !(csr::MSTATUS_MPP
                    | csr::MSTATUS_MPIE
                    | csr::MSTATUS_MIE
                    | csr::MSTATUS_MPV
                    | csr::MSTATUS_GVA);
            if ms & csr::MSTATUS_MIE != 0 {
                m |= csr::MSTATUS_MPIE;
            }
            m |= (old as u64) << csr::MSTATUS_MPP_SHIFT;
            if was_virtual {
                m |= csr::MSTATUS_MPV;
            }
            if values.gva {
                m |= csr::MSTATUS_GVA;
            }
            c.mstatus = m;
            self.privilege = Privilege::Machine;
            self.virt = false;
            self.pc = trap::vector(c.mtvec, interrupt, code);
        }
        self.interrupt_check = true;
    }

    /// Requests that the current run end after this instruction.
    fn request_stop(&mut self, why: RunExit) {
        if self.stop.is_none() {
            self.stop = Some(why);
        }
    }

    /// Forgets all cached translations (TLB and decoded instructions stay
    /// coherent with page tables, PMP and privilege-affecting CSRs).
    pub fn flush_translations(&mut self) {
        self.tlb.flush();
    }
}
