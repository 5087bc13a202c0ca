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
    | MSTATUS_TSR;
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
const S_INTERRUPTS: u64 = MIP_SSIP | MIP_STIP | MIP_SEIP;
const ALL_INTERRUPTS: u64 = S_INTERRUPTS | MIP_MSIP | MIP_MTIP | MIP_MEIP;

/// Exceptions that may be delegated to S-mode (all but ecall from M).
const DELEGABLE_EXCEPTIONS: u64 = 0xb3ff;

/// menvcfg.STCE: enables the Sstc `stimecmp` timer.
const MENVCFG_STCE: u64 = 1 << 63;
/// menvcfg bits we implement: FIOM (0) and STCE.
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
}

/// The CSR file of one hart.
#[derive(Clone, Debug)]
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
}

impl Csrs {
    pub fn new(hartid: u64) -> Csrs {
        Csrs {
            mhartid: hartid,
            mstatus: MSTATUS_UXL_SXL,
            medeleg: 0,
            mideleg: 0,
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
        }
    }

    /// True when the Sstc timer drives STIP.
    pub fn sstc_enabled(&self) -> bool {
        self.menvcfg & MENVCFG_STCE != 0
    }

    /// The full `mip` value at time `mtime`.
    pub fn mip(&self, mtime: u64) -> u64 {
        let mut mip = self.mip_soft | self.external_lines;
        if self.sstc_enabled() {
            mip &= !MIP_STIP;
            if mtime >= self.stimecmp {
                mip |= MIP_STIP;
            }
        }
        mip
    }

    pub fn mstatus_read(&self) -> u64 {
        let s = self.mstatus | MSTATUS_UXL_SXL;
        if s & MSTATUS_FS == MSTATUS_FS {
            s | MSTATUS_SD
        } else {
            s
        }
    }

    /// Floating-point unit enabled (mstatus.FS != Off).
    #[inline]
    pub fn fp_enabled(&self) -> bool {
        self.mstatus & MSTATUS_FS != 0
    }

    #[inline]
    pub fn set_fp_dirty(&mut self) {
        self.mstatus |= MSTATUS_FS;
    }
}

impl Hart {
    /// Checks that the current privilege may access `csr` (and write it, if `write`).
    fn csr_access_check(&self, csr: u16, write: bool, raw: u32) -> Result<(), Exception> {
        let min_priv = (csr >> 8) & 3;
        let read_only = csr >> 10 == 3;
        if (self.privilege as u16) < min_priv || (write && read_only) {
            return Err(Exception::illegal(raw));
        }
        Ok(())
    }

    /// Counter access from S/U is gated by mcounteren/scounteren.
    fn counter_allowed(&self, index: u16) -> bool {
        let bit = 1u64 << index;
        match self.privilege {
            Privilege::Machine => true,
            Privilege::Supervisor => self.csr.mcounteren & bit != 0,
            Privilege::User => self.csr.mcounteren & self.csr.scounteren & bit != 0,
        }
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
        let old = self.csr_read(csr, platform, raw)?;
        if let Some((kind, operand)) = write {
            // mip/sip read-modify-writes act on the software-writable bits
            // only, never on the lines devices drive (e.g. the PLIC's SEIP).
            let base = if matches!(csr, addr::MIP | addr::SIP) {
                self.csr.mip_soft
            } else {
                old
            };
            let new = match kind {
                riscv_isa::CsrOp::Write => operand,
                riscv_isa::CsrOp::Set => base | operand,
                riscv_isa::CsrOp::Clear => base & !operand,
            };
            self.csr_write(csr, new, raw)?;
        }
        Ok(old)
    }

    fn csr_read(
        &mut self,
        csr: u16,
        platform: &mut dyn Platform,
        raw: u32,
    ) -> Result<u64, Exception> {
        use addr::*;
        let c = &self.csr;
        let illegal = Err(Exception::illegal(raw));
        Ok(match csr {
            FFLAGS | FRM | FCSR if !c.fp_enabled() => return illegal,
            FFLAGS => c.fflags,
            FRM => c.frm,
            FCSR => c.frm << 5 | c.fflags,
            CYCLE | TIME | INSTRET | 0xc03..=0xc1f => {
                if !self.counter_allowed(csr - CYCLE) {
                    return illegal;
                }
                match csr {
                    CYCLE => self.instret.wrapping_add(c.cycle_offset),
                    TIME => platform.mtime(),
                    INSTRET => self.instret.wrapping_add(c.instret_offset),
                    _ => 0,
                }
            }
            SSTATUS => c.mstatus_read() & SSTATUS_VISIBLE,
            SIE => c.mie & c.mideleg,
            SIP => c.mip(platform.mtime()) & c.mideleg,
            STVEC => c.stvec,
            SCOUNTEREN => c.scounteren,
            SENVCFG => c.senvcfg,
            SSCRATCH => c.sscratch,
            SEPC => c.sepc,
            SCAUSE => c.scause,
            STVAL => c.stval,
            STIMECMP => {
                if self.privilege == Privilege::Supervisor
                    && (c.mcounteren >> 1 & 1 == 0 || !c.sstc_enabled())
                {
                    return illegal;
                }
                c.stimecmp
            }
            SATP => {
                if self.privilege == Privilege::Supervisor && c.mstatus & MSTATUS_TVM != 0 {
                    return illegal;
                }
                c.satp
            }
            MVENDORID | MARCHID | MIMPID | MCONFIGPTR => 0,
            MHARTID => c.mhartid,
            MSTATUS => c.mstatus_read(),
            addr::MISA => crate::isa::MISA,
            MEDELEG => c.medeleg,
            MIDELEG => c.mideleg,
            MIE => c.mie,
            MIP => c.mip(platform.mtime()),
            MTVEC => c.mtvec,
            MCOUNTEREN => c.mcounteren,
            MENVCFG => c.menvcfg,
            MCOUNTINHIBIT => c.mcountinhibit,
            MSCRATCH => c.mscratch,
            MEPC => c.mepc,
            MCAUSE => c.mcause,
            MTVAL => c.mtval,
            PMPCFG0..=0x3af => {
                let n = (csr - PMPCFG0) as usize;
                if n % 2 == 1 {
                    return illegal; // odd pmpcfg CSRs do not exist on RV64
                }
                let first = n * 4;
                (0..8).fold(0u64, |acc, i| {
                    acc | (c.pmpcfg.get(first + i).copied().unwrap_or(0) as u64) << (8 * i)
                })
            }
            PMPADDR0..=0x3ef => {
                let n = (csr - PMPADDR0) as usize;
                self.pmpaddr_read(n)
            }
            MCYCLE => self.instret.wrapping_add(c.cycle_offset),
            MINSTRET => self.instret.wrapping_add(c.instret_offset),
            0xb03..=0xb1f | 0x323..=0x33f => 0, // hpmcounters and their event selectors: hard-wired zero
            _ => return illegal,
        })
    }

    fn csr_write(&mut self, csr: u16, value: u64, raw: u32) -> Result<(), Exception> {
        use addr::*;
        let illegal = Err(Exception::illegal(raw));
        let privilege = self.privilege;
        let c = &mut self.csr;
        match csr {
            FFLAGS => {
                c.fflags = value & 0x1f;
                c.set_fp_dirty();
            }
            FRM => {
                c.frm = value & 7;
                c.set_fp_dirty();
            }
            FCSR => {
                c.fflags = value & 0x1f;
                c.frm = (value >> 5) & 7;
                c.set_fp_dirty();
            }
            SSTATUS => {
                let new = (c.mstatus & !SSTATUS_WRITABLE) | (value & SSTATUS_WRITABLE);
                self.write_mstatus(new);
            }
            SIE => {
                c.mie = (c.mie & !c.mideleg) | (value & c.mideleg);
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
                if privilege == Privilege::Supervisor
                    && (c.mcounteren >> 1 & 1 == 0 || !c.sstc_enabled())
                {
                    return illegal;
                }
                c.stimecmp = value;
                self.interrupt_check = true;
            }
            SATP => {
                if privilege == Privilege::Supervisor && c.mstatus & MSTATUS_TVM != 0 {
                    return illegal;
                }
                // Bare, Sv39 and Sv48; a write of any other mode has no effect.
                if matches!(
                    value >> 60,
                    mmu::ATP_MODE_BARE | mmu::ATP_MODE_SV39 | mmu::ATP_MODE_SV48
                ) {
                    // MODE, a 16-bit ASID and a 44-bit PPN: every bit is kept.
                    c.satp = value;
                    self.tlb.flush();
                }
            }
            MSTATUS => self.write_mstatus(value),
            addr::MISA => {} // fixed extension set; writes are ignored (WARL)
            MEDELEG => c.medeleg = value & DELEGABLE_EXCEPTIONS,
            MIDELEG => {
                c.mideleg = value & S_INTERRUPTS;
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
                self.interrupt_check = true;
            }
            MTVEC => c.mtvec = legal_tvec(value),
            MCOUNTEREN => c.mcounteren = value & 0xffff_ffff,
            MENVCFG => {
                c.menvcfg = value & MENVCFG_WRITABLE;
                self.interrupt_check = true;
            }
            MCOUNTINHIBIT => c.mcountinhibit = value & 0xffff_fffd,
            MSCRATCH => c.mscratch = value,
            MEPC => c.mepc = value & !1,
            MCAUSE => c.mcause = value,
            MTVAL => c.mtval = value,
            PMPCFG0..=0x3af => {
                let n = (csr - PMPCFG0) as usize;
                if n % 2 == 1 {
                    return illegal;
                }
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
            0xb03..=0xb1f | 0x323..=0x33f => {}
            _ => return illegal,
        }
        Ok(())
    }

    fn write_mstatus(&mut self, value: u64) {
        let c = &mut self.csr;
        let mut new = (c.mstatus & !MSTATUS_WRITABLE) | (value & MSTATUS_WRITABLE);
        // MPP is WARL over {U, S, M}: the reserved value 2 keeps the old one.
        if (new & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT == 2 {
            new = (new & !MSTATUS_MPP) | (c.mstatus & MSTATUS_MPP);
        }
        let translation_bits = MSTATUS_MPRV | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_MPP;
        if (new ^ c.mstatus) & translation_bits != 0 {
            self.tlb.flush();
        }
        self.csr.mstatus = new;
        self.interrupt_check = true;
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

/// mtvec/stvec: modes 0 (direct) and 1 (vectored); reserved modes fall back to direct.
fn legal_tvec(value: u64) -> u64 {
    if value & 3 >= 2 {
        value & !3
    } else {
        value
    }
}
