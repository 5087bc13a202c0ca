//! Control and status registers: storage, WARL legalisation, access checks.

use crate::trap::Exception;
use crate::{Hart, Platform, Privilege};

pub const MSTATUS_SIE: u64 = 1 << 1;
pub const MSTATUS_MIE: u64 = 1 << 3;
pub const MSTATUS_SPIE: u64 = 1 << 5;
pub const MSTATUS_MPIE: u64 = 1 << 7;
pub const MSTATUS_SPP: u64 = 1 << 8;
pub const MSTATUS_MPP_SHIFT: u32 = 11;
pub const MSTATUS_MPP: u64 = 3 << MSTATUS_MPP_SHIFT;
pub const MSTATUS_FS: u64 = 3 << 13;
pub const MSTATUS_MPRV: u64 = 1 << 17;
pub const MSTATUS_SUM: u64 = 1 << 18;
pub const MSTATUS_MXR: u64 = 1 << 19;
pub const MSTATUS_TVM: u64 = 1 << 20;
pub const MSTATUS_TW: u64 = 1 << 21;
pub const MSTATUS_TSR: u64 = 1 << 22;
const MSTATUS_UXL_SXL: u64 = (2 << 32) | (2 << 34);
/// mstatus.GVA: the trap into M wrote a guest virtual address to mtval.
pub const MSTATUS_GVA: u64 = 1 << 38;
/// mstatus.MPV: the virtualization mode before the trap into M.
pub const MSTATUS_MPV: u64 = 1 << 39;
const MSTATUS_SD: u64 = 1 << 63;

const MSTATUS_WRITABLE: u64 = MSTATUS_SIE
    | MSTATUS_MIE
    | MSTATUS_SPIE
    | MSTATUS_MPIE
    | MSTATUS_SPP
    | MSTATUS_MPP
    | MSTATUS_FS
    | MSTATUS_MPRV
    | MSTATUS_SUM
    | MSTATUS_MXR
    | MSTATUS_TVM
    | MSTATUS_TW
    | MSTATUS_TSR
    | MSTATUS_GVA
    | MSTATUS_MPV;
const SSTATUS_VISIBLE: u64 = MSTATUS_SIE
    | MSTATUS_SPIE
    | MSTATUS_SPP
    | MSTATUS_FS
    | MSTATUS_SUM
    | MSTATUS_MXR
    | MSTATUS_UXL_SXL & (3 << 32)
    | MSTATUS_SD;
const SSTATUS_WRITABLE: u64 =
    MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR;

pub const MIP_SSIP: u64 = 1 << 1;
pub const MIP_MSIP: u64 = 1 << 3;
pub const MIP_STIP: u64 = 1 << 5;
pub const MIP_MTIP: u64 = 1 << 7;
pub const MIP_SEIP: u64 = 1 << 9;
pub const MIP_MEIP: u64 = 1 << 11;
/// The VS-level interrupts (H extension) and the HS-level guest external one.
pub const MIP_VSSIP: u64 = 1 << 2;
pub const MIP_VSTIP: u64 = 1 << 6;
pub const MIP_VSEIP: u64 = 1 << 10;
pub const MIP_SGEIP: u64 = 1 << 12;
const S_INTERRUPTS: u64 = MIP_SSIP | MIP_STIP | MIP_SEIP;
pub(crate) const VS_INTERRUPTS: u64 = MIP_VSSIP | MIP_VSTIP | MIP_VSEIP;
/// Interrupts always delegated to HS when the H extension is present:
/// `mideleg` reads them as one.
const HS_INTERRUPTS_FORCED: u64 = VS_INTERRUPTS | MIP_SGEIP;
const ALL_INTERRUPTS: u64 =
    S_INTERRUPTS | MIP_MSIP | MIP_MTIP | MIP_MEIP | VS_INTERRUPTS | MIP_SGEIP;

/// Exceptions that may be delegated to HS-mode: all but ecall from M
/// (0-10, 12, 13, 15 and the guest-page faults and virtual instruction, 20-23).
const DELEGABLE_EXCEPTIONS: u64 = 0xb7ff | 0xf << 20;
/// Exceptions that may be delegated on to VS-mode: 0-8, 12, 13, 15 (not
/// the ecalls from HS/VS/M, nor the guest-page faults and virtual instruction).
const VS_DELEGABLE_EXCEPTIONS: u64 = 0xb1ff;

pub const HSTATUS_GVA: u64 = 1 << 6;
pub const HSTATUS_SPV: u64 = 1 << 7;
pub const HSTATUS_SPVP: u64 = 1 << 8;
pub const HSTATUS_HU: u64 = 1 << 9;
pub const HSTATUS_VTVM: u64 = 1 << 20;
pub const HSTATUS_VTW: u64 = 1 << 21;
pub const HSTATUS_VTSR: u64 = 1 << 22;
/// hstatus.VSXL: VS-mode is RV64 (read-only).
const HSTATUS_VSXL_64: u64 = 2 << 32;
/// hstatus bits software may write. VGEIN stays zero: GEILEN is 0 (no
/// guest external interrupt lines until an IMSIC exists), so hgeie and
/// hgeip are zero too.
const HSTATUS_WRITABLE: u64 = HSTATUS_GVA
    | HSTATUS_SPV
    | HSTATUS_SPVP
    | HSTATUS_HU
    | HSTATUS_VTVM
    | HSTATUS_VTW
    | HSTATUS_VTSR;
/// vsstatus bits software may write (the sstatus layout).
const VSSTATUS_WRITABLE: u64 = SSTATUS_WRITABLE;
/// hgatp: MODE (63:60), VMID (57:44, VMIDLEN = 14), PPN (43:0) of a
/// 16 KiB-aligned root, whose two low bits read as zero.
pub(crate) const HGATP_VMID: u64 = 0x3fff << 44;
const HGATP_PPN: u64 = ((1 << 44) - 1) & !3;

/// menvcfg.STCE: enables the Sstc `stimecmp` timer.
const MENVCFG_STCE: u64 = 1 << 63;
/// menvcfg bits we implement: FIOM (0) and STCE; henvcfg has the same
/// (its STCE only while menvcfg.STCE is set).
const MENVCFG_WRITABLE: u64 = 1 | MENVCFG_STCE;

pub const PMP_ENTRIES: usize = 16;

/// CSR numbers this hart implements.
pub mod addr {
    pub const FFLAGS: u16 = 0x001;
    pub const FRM: u16 = 0x002;
    pub const FCSR: u16 = 0x003;
    pub const CYCLE: u16 = 0xc00;
    pub const TIME: u16 = 0xc01;
    pub const INSTRET: u16 = 0xc02;
    pub const SSTATUS: u16 = 0x100;
    pub const SIE: u16 = 0x104;
    pub const STVEC: u16 = 0x105;
    pub const SCOUNTEREN: u16 = 0x106;
    pub const SENVCFG: u16 = 0x10a;
    pub const SSCRATCH: u16 = 0x140;
    pub const SEPC: u16 = 0x141;
    pub const SCAUSE: u16 = 0x142;
    pub const STVAL: u16 = 0x143;
    pub const SIP: u16 = 0x144;
    pub const STIMECMP: u16 = 0x14d;
    pub const SATP: u16 = 0x180;
    pub const MVENDORID: u16 = 0xf11;
    pub const MARCHID: u16 = 0xf12;
    pub const MIMPID: u16 = 0xf13;
    pub const MHARTID: u16 = 0xf14;
    pub const MCONFIGPTR: u16 = 0xf15;
    pub const MSTATUS: u16 = 0x300;
    pub const MISA: u16 = 0x301;
    pub const MEDELEG: u16 = 0x302;
    pub const MIDELEG: u16 = 0x303;
    pub const MIE: u16 = 0x304;
    pub const MTVEC: u16 = 0x305;
    pub const MCOUNTEREN: u16 = 0x306;
    pub const MENVCFG: u16 = 0x30a;
    pub const MCOUNTINHIBIT: u16 = 0x320;
    pub const MSCRATCH: u16 = 0x340;
    pub const MEPC: u16 = 0x341;
    pub const MCAUSE: u16 = 0x342;
    pub const MTVAL: u16 = 0x343;
    pub const MIP: u16 = 0x344;
    pub const PMPCFG0: u16 = 0x3a0;
    pub const PMPADDR0: u16 = 0x3b0;
    pub const MCYCLE: u16 = 0xb00;
    pub const MINSTRET: u16 = 0xb02;
    pub const MTINST: u16 = 0x34a;
    pub const MTVAL2: u16 = 0x34b;
    pub const HSTATUS: u16 = 0x600;
    pub const HEDELEG: u16 = 0x602;
    pub const HIDELEG: u16 = 0x603;
    pub const HIE: u16 = 0x604;
    pub const HTIMEDELTA: u16 = 0x605;
    pub const HCOUNTEREN: u16 = 0x606;
    pub const HGEIE: u16 = 0x607;
    pub const HENVCFG: u16 = 0x60a;
    pub const HTVAL: u16 = 0x643;
    pub const HIP: u16 = 0x644;
    pub const HVIP: u16 = 0x645;
    pub const HTINST: u16 = 0x64a;
    pub const HGATP: u16 = 0x680;
    pub const HGEIP: u16 = 0xe12;
    pub const VSSTATUS: u16 = 0x200;
    pub const VSIE: u16 = 0x204;
    pub const VSTVEC: u16 = 0x205;
    pub const VSSCRATCH: u16 = 0x240;
    pub const VSEPC: u16 = 0x241;
    pub const VSCAUSE: u16 = 0x242;
    pub const VSTVAL: u16 = 0x243;
    pub const VSIP: u16 = 0x244;
    pub const VSTIMECMP: u16 = 0x24d;
    pub const VSATP: u16 = 0x280;

    /// The VS CSR an S CSR number reaches while V=1.
    pub fn vs_alias(csr: u16) -> u16 {
        match csr {
            SSTATUS => VSSTATUS,
            SIE => VSIE,
            STVEC => VSTVEC,
            SSCRATCH => VSSCRATCH,
            SEPC => VSEPC,
            SCAUSE => VSCAUSE,
            STVAL => VSTVAL,
            SIP => VSIP,
            STIMECMP => VSTIMECMP,
            SATP => VSATP,
            other => other,
        }
    }
}

/// The CSR file of one hart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Csrs {
    pub mhartid: u64,
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable pending bits (SSIP, STIP, SEIP).
    pub mip_soft: u64,
    /// Pending bits driven by the platform (MSIP, MTIP, MEIP, SEIP).
    pub external_lines: u64,
    pub mtvec: u64,
    pub mcounteren: u64,
    pub mcountinhibit: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub menvcfg: u64,
    pub stvec: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub satp: u64,
    pub stimecmp: u64,
    /// Accrued exception flags (NX, UF, OF, DZ, NV).
    pub fflags: u64,
    pub frm: u64,
    pub pmpcfg: [u8; PMP_ENTRIES],
    pub pmpaddr: [u64; PMP_ENTRIES],
    /// Offsets so that mcycle/minstret read back what was written.
    pub cycle_offset: u64,
    pub instret_offset: u64,
    // The H extension's state.
    pub mtval2: u64,
    pub mtinst: u64,
    pub hstatus: u64,
    pub hedeleg: u64,
    pub hideleg: u64,
    /// The software-written VS interrupt bits (VSSIP, VSTIP, VSEIP).
    pub hvip: u64,
    pub hcounteren: u64,
    pub henvcfg: u64,
    pub htimedelta: u64,
    pub htval: u64,
    pub htinst: u64,
    pub hgatp: u64,
    pub vsstatus: u64,
    pub vstvec: u64,
    pub vsscratch: u64,
    pub vsepc: u64,
    pub vscause: u64,
    pub vstval: u64,
    pub vsatp: u64,
    pub vstimecmp: u64,
}

impl Csrs {
    pub fn new(hartid: u64) -> Csrs {
        Csrs {
            mhartid: hartid,
            mstatus: MSTATUS_UXL_SXL,
            medeleg: 0,
            mideleg: HS_INTERRUPTS_FORCED,
            mie: 0,
            mip_soft: 0,
            external_lines: 0,
            mtvec: 0,
            mcounteren: 0,
            mcountinhibit: 0,
            mscratch: 0,
            mepc: 0,
            mcause: 0,
            mtval: 0,
            menvcfg: 0,
            stvec: 0,
            scounteren: 0,
            senvcfg: 0,
            sscratch: 0,
            sepc: 0,
            scause: 0,
            stval: 0,
            satp: 0,
            stimecmp: u64::MAX,
            fflags: 0,
            frm: 0,
            pmpcfg: [0; PMP_ENTRIES],
            pmpaddr: [0; PMP_ENTRIES],
            cycle_offset: 0,
            instret_offset: 0,
            mtval2: 0,
            mtinst: 0,
            hstatus: HSTATUS_VSXL_64,
            hedeleg: 0,
            hideleg: 0,
            hvip: 0,
            hcounteren: 0,
            henvcfg: 0,
            htimedelta: 0,
            htval: 0,
            htinst: 0,
            hgatp: 0,
            vsstatus: MSTATUS_UXL_SXL & (3 << 32),
            vstvec: 0,
            vsscratch: 0,
            vsepc: 0,
            vscause: 0,
            vstval: 0,
            vsatp: 0,
            vstimecmp: u64::MAX,
        }
    }

    /// True when the Sstc timer drives STIP.
    pub fn sstc_enabled(&self) -> bool {
        self.menvcfg & MENVCFG_STCE != 0
    }

    /// True when the Sstc timer of VS-mode (`vstimecmp`) drives VSTIP.
    pub fn vs_sstc_enabled(&self) -> bool {
        self.sstc_enabled() && self.henvcfg & MENVCFG_STCE != 0
    }

    /// VS-mode's view of time: `mtime + htimedelta` (wrapping, as the spec says).
    pub fn guest_time(&self, mtime: u64) -> u64 {
        mtime.wrapping_add(self.htimedelta)
    }

    /// The full `mip` value at time `mtime`.
    pub fn mip(&self, mtime: u64) -> u64 {
        let mut mip = self.mip_soft | self.external_lines | self.hvip & VS_INTERRUPTS;
        if self.sstc_enabled() {
            mip &= !MIP_STIP;
            if mtime >= self.stimecmp {
                mip |= MIP_STIP;
            }
        }
        // hip.VSTIP: hvip.VSTIP or the VS timer.
        if self.vs_sstc_enabled() && self.guest_time(mtime) >= self.vstimecmp {
            mip |= MIP_VSTIP;
        }
        mip
    }

    /// The earliest `mtime` at which a supervisor-level timer (`stimecmp`,
    /// `vstimecmp`) fires, or `u64::MAX`: what a sleeping board waits for
    /// besides the CLINT.
    pub fn timer_deadline(&self) -> u64 {
        let mut deadline = u64::MAX;
        if self.sstc_enabled() {
            deadline = self.stimecmp;
        }
        if self.vs_sstc_enabled() {
            // vstimecmp is compared with mtime + htimedelta.
            deadline = deadline.min(self.vstimecmp.wrapping_sub(self.htimedelta));
        }
        deadline
    }

    pub fn mstatus_read(&self) -> u64 {
        let s = self.mstatus | MSTATUS_UXL_SXL;
        if s & MSTATUS_FS == MSTATUS_FS {
            s | MSTATUS_SD
        } else {
            s
        }
    }

    /// Floating-point unit enabled: mstatus.FS != Off and, in V=1,
    /// vsstatus.FS != Off too.
    #[inline]
    pub fn fp_enabled(&self, virt: bool) -> bool {
        self.mstatus & MSTATUS_FS != 0 && (!virt || self.vsstatus & MSTATUS_FS != 0)
    }

    /// FP state changed: mstatus.FS (and in V=1 vsstatus.FS) become Dirty.
    #[inline]
    pub fn set_fp_dirty(&mut self, virt: bool) {
        self.mstatus |= MSTATUS_FS;
        if virt {
            self.vsstatus |= MSTATUS_FS;
        }
    }

    /// FP state is enabled and already Dirty (in V=1 at both levels), so
    /// FP instructions change no status bits.
    #[inline]
    pub fn fp_dirty(&self, virt: bool) -> bool {
        self.mstatus & MSTATUS_FS == MSTATUS_FS
            && (!virt || self.vsstatus & MSTATUS_FS == MSTATUS_FS)
    }

    /// vsstatus as read: its SD bit summarises its FS.
    pub fn vsstatus_read(&self) -> u64 {
        let s = self.vsstatus | MSTATUS_UXL_SXL & (3 << 32);
        if s & MSTATUS_FS == MSTATUS_FS {
            s | MSTATUS_SD
        } else {
            s
        }
    }
}

/// Whether this hart implements the CSR numbered `csr`.
fn implemented(csr: u16) -> bool {
    use addr::*;
    matches!(
        csr,
        FFLAGS
            | FRM
            | FCSR
            | CYCLE..=0xc1f
            | SSTATUS
            | SIE
            | STVEC
            | SCOUNTEREN
            | SENVCFG
            | SSCRATCH
            | SEPC
            | SCAUSE
            | STVAL
            | SIP
            | STIMECMP
            | SATP
            | MVENDORID
            | MARCHID
            | MIMPID
            | MHARTID
            | MCONFIGPTR
            | MSTATUS
            | MISA
            | MEDELEG
            | MIDELEG
            | MIE
            | MTVEC
            | MCOUNTEREN
            | MENVCFG
            | MCOUNTINHIBIT
            | 0x323..=0x33f
            | MSCRATCH
            | MEPC
            | MCAUSE
            | MTVAL
            | MIP
            | MTINST
            | MTVAL2
            | PMPADDR0..=0x3ef
            | MCYCLE..=0xb1f
            | HSTATUS
            | HEDELEG
            | HIDELEG
            | HIE
            | HTIMEDELTA
            | HCOUNTEREN
            | HGEIE
            | HENVCFG
            | HTVAL
            | HIP
            | HVIP
            | HTINST
            | HGATP
            | HGEIP
            | VSSTATUS
            | VSIE
            | VSTVEC
            | VSSCRATCH
            | VSEPC
            | VSCAUSE
            | VSTVAL
            | VSIP
            | VSTIMECMP
            | VSATP
    ) || (PMPCFG0..=0x3af).contains(&csr) && csr.is_multiple_of(2) // no odd pmpcfg on RV64
}

impl Hart {
    /// Checks that the current mode may access `csr` (and write it, if
    /// `write`): an illegal-instruction exception where HS-mode could not
    /// make the access either, a virtual-instruction exception where only
    /// V=1 forbids it.
    fn csr_access_check(&self, csr: u16, write: bool, raw: u32) -> Result<(), Exception> {
        use addr::*;
        // Address bits 9:8 give the lowest level that may access a CSR: 0
        // U, 1 S, 2 HS (hypervisor and VS CSRs), 3 M; bits 11:10 == 3 mean
        // read-only.
        let level = (csr >> 8) & 3;
        let read_only = csr >> 10 == 3;
        let illegal = Err(Exception::illegal(raw));
        let virtual_instruction = Err(Exception::virtual_instruction(raw));
        if !implemented(csr) || (write && read_only) {
            return illegal;
        }
        let (privilege, virt) = (self.privilege, self.virt);
        let allowed_in_hs = match privilege {
            Privilege::Machine => true,
            Privilege::Supervisor => level <= 2,
            Privilege::User => level == 0,
        };
        if !virt && !allowed_in_hs || virt && level == 3 {
            return illegal;
        }
        let c = &self.csr;
        let tm = 1 << (TIME - CYCLE);
        // Sstc's timers: what HS-mode itself may not access is illegal in
        // every mode below M, before any virtual-instruction rule.
        if matches!(csr, STIMECMP | VSTIMECMP)
            && privilege != Privilege::Machine
            && (c.mcounteren & tm == 0 || !c.sstc_enabled())
        {
            return illegal;
        }
        if virt && (level == 2 || (level == 1 && privilege == Privilege::User)) {
            return virtual_instruction;
        }
        match csr {
            FFLAGS | FRM | FCSR if !c.fp_enabled(virt) => return illegal,
            CYCLE..=0xc1f => return self.counter_check(csr - CYCLE, raw),
            SATP if privilege == Privilege::Supervisor => {
                if !virt && c.mstatus & MSTATUS_TVM != 0 {
                    return illegal;
                }
                if virt && c.hstatus & HSTATUS_VTVM != 0 {
                    return virtual_instruction;
                }
            }
            HGATP if privilege == Privilege::Supervisor && c.mstatus & MSTATUS_TVM != 0 => {
                return illegal
            }
            STIMECMP if virt && (c.hcounteren & tm == 0 || !c.vs_sstc_enabled()) => {
                return virtual_instruction
            }
            _ => {}
        }
        Ok(())
    }

    /// Access to counter `index` (cycle, time, instret, hpmcounterN) from
    /// below M: gated by mcounteren, in V=1 also by hcounteren, and in U
    /// and VU by scounteren.
    fn counter_check(&self, index: u16, raw: u32) -> Result<(), Exception> {
        let bit = 1u64 << index;
        let c = &self.csr;
        let user = self.privilege == Privilege::User;
        if self.privilege == Privilege::Machine {
            return Ok(());
        }
        if c.mcounteren & bit == 0 || (!self.virt && user && c.scounteren & bit == 0) {
            return Err(Exception::illegal(raw));
        }
        if self.virt && (c.hcounteren & bit == 0 || (user && c.scounteren & bit == 0)) {
            return Err(Exception::virtual_instruction(raw));
        }
        Ok(())
    }

    /// Executes a CSR instruction's read-modify-write. `write` is None when the
    /// instruction does not write (csrrs/csrrc with x0/zero). Returns the old value.
    pub(crate) fn csr_rmw(
        &mut self,
        csr: u16,
        write: Option<(riscv_isa::CsrOp, u64)>,
        platform: &mut dyn Platform,
        raw: u32,
    ) -> Result<u64, Exception> {
        self.csr_access_check(csr, write.is_some(), raw)?;
        // In V=1 the S CSRs are the VS ones.
        let csr = if self.virt { addr::vs_alias(csr) } else { csr };
        let mtime = platform.mtime();
        let old = self.csr_read(csr, mtime);
        if let Some((kind, operand)) = write {
            // Interrupt-pending read-modify-writes act on the bits software
            // wrote only, never on the lines devices and timers drive
            // (e.g. the PLIC's SEIP).
            let c = &self.csr;
            let base = match csr {
                addr::MIP => c.mip_soft | c.hvip & MIP_VSSIP,
                addr::SIP => c.mip_soft,
                addr::HIP | addr::HVIP => c.hvip,
                addr::VSIP => (c.hvip & MIP_VSSIP) >> 1,
                _ => old,
            };
            let new = match kind {
                riscv_isa::CsrOp::Write => operand,
                riscv_isa::CsrOp::Set => base | operand,
                riscv_isa::CsrOp::Clear => base & !operand,
            };
            self.csr_write(csr, new);
        }
        Ok(old)
    }

    /// The value of an implemented CSR whose access was checked (S CSRs
    /// already redirected to VS ones in V=1).
    fn csr_read(&self, csr: u16, mtime: u64) -> u64 {
        use addr::*;
        let c = &self.csr;
        let hs_local = VS_INTERRUPTS | MIP_SGEIP;
        match csr {
            FFLAGS => c.fflags,
            FRM => c.frm,
            FCSR => c.frm << 5 | c.fflags,
            CYCLE | MCYCLE => self.instret.wrapping_add(c.cycle_offset),
            TIME if self.virt => c.guest_time(mtime),
            TIME => mtime,
            INSTRET | MINSTRET => self.instret.wrapping_add(c.instret_offset),
            SSTATUS => c.mstatus_read() & SSTATUS_VISIBLE,
            SIE => c.mie & c.mideleg & S_INTERRUPTS,
            SIP => c.mip(mtime) & c.mideleg & S_INTERRUPTS,
            STVEC => c.stvec,
            SCOUNTEREN => c.scounteren,
            SENVCFG => c.senvcfg,
            SSCRATCH => c.sscratch,
            SEPC => c.sepc,
            SCAUSE => c.scause,
            STVAL => c.stval,
            STIMECMP => c.stimecmp,
            SATP => c.satp,
            MHARTID => c.mhartid,
            MSTATUS => c.mstatus_read(),
            MISA => crate::isa::MISA,
            MEDELEG => c.medeleg,
            MIDELEG => c.mideleg,
            MIE => c.mie,
            MIP => c.mip(mtime),
            MTVEC => c.mtvec,
            MCOUNTEREN => c.mcounteren,
            MENVCFG => c.menvcfg,
            MCOUNTINHIBIT => c.mcountinhibit,
            MSCRATCH => c.mscratch,
            MEPC => c.mepc,
            MCAUSE => c.mcause,
            MTVAL => c.mtval,
            MTVAL2 => c.mtval2,
            MTINST => c.mtinst,
            PMPCFG0..=0x3af => {
                let first = (csr - PMPCFG0) as usize * 4;
                (0..8).fold(0u64, |acc, i| {
                    acc | (c.pmpcfg.get(first + i).copied().unwrap_or(0) as u64) << (8 * i)
                })
            }
            PMPADDR0..=0x3ef => self.pmpaddr_read((csr - PMPADDR0) as usize),
            HSTATUS => c.hstatus | HSTATUS_VSXL_64,
            HEDELEG => c.hedeleg,
            HIDELEG => c.hideleg,
            HIE => c.mie & hs_local,
            HIP => c.mip(mtime) & hs_local,
            HVIP => c.hvip,
            HTIMEDELTA => c.htimedelta,
            HCOUNTEREN => c.hcounteren,
            HENVCFG => c.henvcfg,
            HTVAL => c.htval,
            HTINST => c.htinst,
            HGATP => c.hgatp,
            VSSTATUS => c.vsstatus_read(),
            VSIE => (c.mie & c.hideleg & VS_INTERRUPTS) >> 1,
            VSIP => (c.mip(mtime) & c.hideleg & VS_INTERRUPTS) >> 1,
            VSTVEC => c.vstvec,
            VSSCRATCH => c.vsscratch,
            VSEPC => c.vsepc,
            VSCAUSE => c.vscause,
            VSTVAL => c.vstval,
            VSATP => c.vsatp,
            VSTIMECMP => c.vstimecmp,
            // Hard-wired zero: the vendor and implementation IDs, the
            // hpmcounters and their event selectors, hgeie and hgeip
            // (GEILEN is 0).
            _ => 0,
        }
    }

    /// Writes an implemented, writable CSR whose access was checked,
    /// legalising WARL fields.
    pub(crate) fn csr_write(&mut self, csr: u16, value: u64) {
        use addr::*;
        let c = &mut self.csr;
        let virt = self.virt;
        match csr {
            FFLAGS => {
                c.fflags = value & 0x1f;
                c.set_fp_dirty(virt);
            }
            FRM => {
                c.frm = value & 7;
                c.set_fp_dirty(virt);
            }
            FCSR => {
                c.fflags = value & 0x1f;
                c.frm = (value >> 5) & 7;
                c.set_fp_dirty(virt);
            }
            SSTATUS => {
                let new = (c.mstatus & !SSTATUS_WRITABLE) | (value & SSTATUS_WRITABLE);
                self.write_mstatus(new);
            }
            SIE => {
                let mask = c.mideleg & S_INTERRUPTS;
                c.mie = (c.mie & !mask) | (value & mask);
                self.interrupt_check = true;
            }
            SIP => {
                let mask = MIP_SSIP & c.mideleg;
                c.mip_soft = (c.mip_soft & !mask) | (value & mask);
                self.interrupt_check = true;
            }
            STVEC => c.stvec = legal_tvec(value),
            SCOUNTEREN => c.scounteren = value & 0xffff_ffff,
            SENVCFG => c.senvcfg = value & 1,
            SSCRATCH => c.sscratch = value,
            SEPC => c.sepc = value & !1,
            SCAUSE => c.scause = value,
            STVAL => c.stval = value,
            STIMECMP => {
                c.stimecmp = value;
                self.interrupt_check = true;
            }
            // MODE, a 16-bit ASID and a 44-bit PPN: every bit is kept.
            // The TLB keeps each recent value's entries apart, as ASID-
            // tagged hardware does (an unchanged value keeps them in use).
            SATP if legal_atp_mode(value) && value != c.satp => {
                self.tlb.switch_address_space(c.satp, value);
                c.satp = value;
            }
            MSTATUS => self.write_mstatus(value),
            MEDELEG => c.medeleg = value & DELEGABLE_EXCEPTIONS,
            MIDELEG => {
                c.mideleg = value & S_INTERRUPTS | HS_INTERRUPTS_FORCED;
                self.interrupt_check = true;
            }
            MIE => {
                c.mie = value & ALL_INTERRUPTS;
                self.interrupt_check = true;
            }
            MIP => {
                let mut mask = MIP_SSIP | MIP_SEIP;
                if !c.sstc_enabled() {
                    mask |= MIP_STIP;
                }
                c.mip_soft = (c.mip_soft & !mask) | (value & mask);
                // mip.VSSIP is hvip.VSSIP.
                c.hvip = (c.hvip & !MIP_VSSIP) | (value & MIP_VSSIP);
                self.interrupt_check = true;
            }
            MTVEC => c.mtvec = legal_tvec(value),
            MCOUNTEREN => c.mcounteren = value & 0xffff_ffff,
            MENVCFG => {
                c.menvcfg = value & MENVCFG_WRITABLE;
                c.henvcfg &= c.menvcfg | !MENVCFG_STCE;
                self.interrupt_check = true;
            }
            MCOUNTINHIBIT => c.mcountinhibit = value & 0xffff_fffd,
            MSCRATCH => c.mscratch = value,
            MEPC => c.mepc = value & !1,
            MCAUSE => c.mcause = value,
            MTVAL => c.mtval = value,
            MTVAL2 => c.mtval2 = value,
            MTINST => c.mtinst = value,
            PMPCFG0..=0x3af => {
                let n = (csr - PMPCFG0) as usize;
                for i in 0..8 {
                    let entry = n * 4 + i;
                    if entry < PMP_ENTRIES && c.pmpcfg[entry] & mmu::PMP_LOCK == 0 {
                        // W without R is reserved: keep R=0,W=0 (WARL).
                        let mut cfg = (value >> (8 * i)) as u8 & 0x9f;
                        if cfg & 3 == 2 {
                            cfg &= !3;
                        }
                        c.pmpcfg[entry] = cfg;
                    }
                }
                self.tlb.flush();
            }
            PMPADDR0..=0x3ef => {
                let n = (csr - PMPADDR0) as usize;
                if n < PMP_ENTRIES && !self.pmpaddr_locked(n) {
                    self.csr.pmpaddr[n] = value & ((1 << 54) - 1);
                    self.tlb.flush();
                }
            }
            MCYCLE => c.cycle_offset = value.wrapping_sub(self.instret),
            MINSTRET => c.instret_offset = value.wrapping_sub(self.instret),
            HSTATUS => {
                c.hstatus = (value & HSTATUS_WRITABLE) | HSTATUS_VSXL_64;
            }
            HEDELEG => c.hedeleg = value & VS_DELEGABLE_EXCEPTIONS,
            HIDELEG => {
                c.hideleg = value & VS_INTERRUPTS;
                self.interrupt_check = true;
            }
            HIE => {
                let mask = VS_INTERRUPTS | MIP_SGEIP;
                c.mie = (c.mie & !mask) | (value & mask);
                self.interrupt_check = true;
            }
            HIP => {
                c.hvip = (c.hvip & !MIP_VSSIP) | (value & MIP_VSSIP);
                self.interrupt_check = true;
            }
            HVIP => {
                c.hvip = value & VS_INTERRUPTS;
                self.interrupt_check = true;
            }
            HTIMEDELTA => {
                c.htimedelta = value;
                self.interrupt_check = true;
            }
            HCOUNTEREN => c.hcounteren = value & 0xffff_ffff,
            HENVCFG => {
                // henvcfg.STCE is read-only zero while menvcfg.STCE is clear.
                c.henvcfg = value & MENVCFG_WRITABLE & (c.menvcfg | !MENVCFG_STCE);
                self.interrupt_check = true;
            }
            HTVAL => c.htval = value,
            HTINST => c.htinst = value,
            HGATP if legal_atp_mode(value) => {
                let hgatp = value & (0xf << 60 | HGATP_VMID | HGATP_PPN);
                if hgatp != c.hgatp {
                    c.hgatp = hgatp;
                    self.tlb.flush();
                }
            }
            VSSTATUS => {
                let new = (c.vsstatus & !VSSTATUS_WRITABLE) | (value & VSSTATUS_WRITABLE);
                let old = c.vsstatus;
                self.status_changed(old, new);
                self.csr.vsstatus = new;
                self.interrupt_check = true;
            }
            VSIE => {
                let mask = c.hideleg & VS_INTERRUPTS;
                c.mie = (c.mie & !mask) | ((value << 1) & mask);
                self.interrupt_check = true;
            }
            VSIP => {
                let mask = c.hideleg & MIP_VSSIP;
                c.hvip = (c.hvip & !mask) | ((value << 1) & mask);
                self.interrupt_check = true;
            }
            VSTVEC => c.vstvec = legal_tvec(value),
            VSSCRATCH => c.vsscratch = value,
            VSEPC => c.vsepc = value & !1,
            VSCAUSE => c.vscause = value,
            VSTVAL => c.vstval = value,
            VSATP if legal_atp_mode(value) && value != c.vsatp => {
                c.vsatp = value;
                self.tlb.flush();
            }
            VSTIMECMP => {
                c.vstimecmp = value;
                self.interrupt_check = true;
            }
            // WARL or hard-wired: misa (a fixed extension set), the
            // hpmcounters and event selectors, hgeie (GEILEN is 0); and
            // *atp writes of a mode this hart lacks, which have no effect
            // (nor have those of the value already there).
            _ => {}
        }
    }

    fn write_mstatus(&mut self, value: u64) {
        let c = &mut self.csr;
        let mut new = (c.mstatus & !MSTATUS_WRITABLE) | (value & MSTATUS_WRITABLE);
        // MPP is WARL over {U, S, M}: the reserved value 2 keeps the old one.
        if (new & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT == 2 {
            new = (new & !MSTATUS_MPP) | (c.mstatus & MSTATUS_MPP);
        }
        // MPRV, MPP and MPV choose the data accesses' mode, which tags
        // every soft-TLB entry: changing them needs no flush.
        let old = c.mstatus;
        self.status_changed(old, new);
        self.csr.mstatus = new;
        self.interrupt_check = true;
    }

    /// Keeps the soft-TLB right when a status register's SUM or MXR bit
    /// changes from `old` to `new`. Setting SUM only lets more through, so
    /// entries stay; clearing it drops the supervisor data entries filled
    /// while it was set (Linux toggles it around every copy to or from
    /// user memory). An MXR change flushes everything.
    fn status_changed(&mut self, old: u64, new: u64) {
        if (old ^ new) & MSTATUS_MXR != 0 {
            self.tlb.flush();
        } else if old & !new & MSTATUS_SUM != 0 {
            self.tlb.flush_sum_fills();
        }
    }

    fn pmpaddr_locked(&self, n: usize) -> bool {
        let locked = |i: usize| self.csr.pmpcfg[i] & mmu::PMP_LOCK != 0;
        let next_is_locked_tor = n + 1 < PMP_ENTRIES
            && locked(n + 1)
            && (self.csr.pmpcfg[n + 1] >> 3) & 3 == mmu::PMP_TOR;
        locked(n) || next_is_locked_tor
    }

    fn pmpaddr_read(&self, n: usize) -> u64 {
        self.csr.pmpaddr.get(n).copied().unwrap_or(0)
    }
}

use crate::mmu;

/// satp, vsatp and hgatp take Bare, Sv39(x4) and Sv48(x4); a write of any
/// other mode has no effect.
impl Csrs {
    /// Why these values could not have come from this hart (a state file
    /// to restore is untrusted): bits outside what the status registers
    /// hold, a reserved MPP, translation or trap-vector modes it lacks, a
    /// reserved PMP permission. `None` when they could.
    pub(crate) fn impossible_value(&self) -> Option<&'static str> {
        let status_fixed = MSTATUS_UXL_SXL | MSTATUS_SD;
        let checks = [
            (
                self.mstatus & !(MSTATUS_WRITABLE | status_fixed) != 0,
                "mstatus has bits this hart does not implement",
            ),
            (
                (self.mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT == 2,
                "mstatus.MPP is the reserved value 2",
            ),
            (
                self.vsstatus & !(VSSTATUS_WRITABLE | status_fixed) != 0,
                "vsstatus has bits this hart does not implement",
            ),
            (
                self.hstatus & !(HSTATUS_WRITABLE | HSTATUS_VSXL_64) != 0,
                "hstatus has bits this hart does not implement",
            ),
            (
                ![self.satp, self.vsatp, self.hgatp]
                    .into_iter()
                    .all(legal_atp_mode),
                "an address-translation mode this hart lacks",
            ),
            (
                [self.mtvec, self.stvec, self.vstvec]
                    .into_iter()
                    .any(|tvec| legal_tvec(tvec) != tvec),
                "a reserved trap-vector mode",
            ),
            (
                self.pmpcfg
                    .iter()
                    .any(|&cfg| cfg & 0x60 != 0 || cfg & 3 == 2),
                "a reserved PMP configuration",
            ),
        ];
        checks.into_iter().find(|(bad, _)| *bad).map(|(_, why)| why)
    }
}

fn legal_atp_mode(value: u64) -> bool {
    matches!(
        value >> 60,
        mmu::ATP_MODE_BARE | mmu::ATP_MODE_SV39 | mmu::ATP_MODE_SV48
    )
}

/// mtvec/stvec: modes 0 (direct) and 1 (vectored); reserved modes fall back to direct.
fn legal_tvec(value: u64) -> u64 {
    if value & 3 >= 2 {
        value & !3
    } else {
        value
    }
}
