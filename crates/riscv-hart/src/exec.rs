//! The interpreter: fetch, decode, execute one instruction.

use crate::csr::{
    HSTATUS_HU, HSTATUS_SPV, HSTATUS_VTSR, HSTATUS_VTVM, HSTATUS_VTW, MSTATUS_MPV, MSTATUS_TSR,
    MSTATUS_TVM, MSTATUS_TW,
};
use crate::csr::{
    MSTATUS_MIE, MSTATUS_MPIE, MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_SIE,
    MSTATUS_SPIE, MSTATUS_SPP,
};
use crate::fpu;
use crate::mmu::Access;
use crate::trap::{self, Exception, ExceptionCause};
use crate::{Hart, Platform, Privilege, RunExit};
use riscv_isa::{decode, AluOp, AmoOp, BranchCond, CsrOp, FpFormat, FpOp, Instruction, LoadWidth};

/// A loaded value sign- or zero-extended as the load's width says.
fn extend_load(width: LoadWidth, v: u64) -> u64 {
    match width {
        LoadWidth::B => v as i8 as i64 as u64,
        LoadWidth::H => v as i16 as i64 as u64,
        LoadWidth::W => v as i32 as i64 as u64,
        _ => v,
    }
}

/// `sstatus`/`vsstatus` after SRET: SIE from SPIE, SPIE set, SPP cleared;
/// and the privilege SPP named.
fn leave_status(status: u64) -> (u64, Privilege) {
    let target = if status & MSTATUS_SPP != 0 {
        Privilege::Supervisor
    } else {
        Privilege::User
    };
    let mut new = status & !(MSTATUS_SIE | MSTATUS_SPP);
    if status & MSTATUS_SPIE != 0 {
        new |= MSTATUS_SIE;
    }
    (new | MSTATUS_SPIE, target)
}

impl Hart {
    #[inline]
    fn set_x(&mut self, rd: u8, value: u64) {
        if rd != 0 {
            self.x[rd as usize] = value;
        }
    }

    #[inline]
    fn set_f(&mut self, rd: u8, value: u64) {
        self.f[rd as usize] = value;
        self.csr.set_fp_dirty(self.virt);
    }

    /// Writes an FP result and accrues its exception flags.
    #[inline]
    fn set_f_flags(&mut self, rd: u8, (value, flags): fpu::FpResult) {
        self.set_f(rd, value);
        self.csr.fflags |= flags as u64;
    }

    #[inline]
    fn set_x_flags(&mut self, rd: u8, (value, flags): (u64, u8)) {
        self.set_x(rd, value);
        self.csr.fflags |= flags as u64;
        self.csr.set_fp_dirty(self.virt);
    }

    /// The static rounding mode for an instruction's `rm` field (7 = dynamic).
    fn rounding_mode(&self, rm: u8, raw: u32) -> Result<u8, Exception> {
        let rm = if rm == 7 { self.csr.frm as u8 } else { rm };
        if rm > fpu::RM_RMM {
            return Err(Exception::illegal(raw));
        }
        Ok(rm)
    }

    /// Executes one instruction at `pc`.
    #[inline]
    pub(crate) fn step(&mut self, platform: &mut dyn Platform) -> Result<(), Exception> {
        let fetched = self.fetch(platform)?;
        let (inst, len) = decode(fetched);
        let raw = if len == 2 { fetched & 0xffff } else { fetched };
        let next = self.pc.wrapping_add(len as u64);
        self.execute(inst, raw, next, platform)
            .map_err(|e| self.with_transformed_instruction(e, inst, raw, len == 2))
    }

    /// A data fault with no `tinst` yet (not an implicit page-table access)
    /// gets the transformed trapping instruction.
    #[cold]
    fn with_transformed_instruction(
        &self,
        mut e: Exception,
        inst: Instruction,
        raw: u32,
        compressed: bool,
    ) -> Exception {
        if trap::is_data_fault(e.cause) && e.values.tinst == 0 {
            let effective = match inst {
                Instruction::Load { rs1, offset, .. }
                | Instruction::Store { rs1, offset, .. }
                | Instruction::FpLoad { rs1, offset, .. }
                | Instruction::FpStore { rs1, offset, .. } => {
                    self.x[rs1 as usize].wrapping_add(offset as i64 as u64)
                }
                Instruction::Lr { rs1, .. }
                | Instruction::Sc { rs1, .. }
                | Instruction::Amo { rs1, .. }
                | Instruction::HypervisorLoad { rs1, .. }
                | Instruction::HypervisorStore { rs1, .. } => self.x[rs1 as usize],
                _ => return e,
            };
            let offset = e.values.tval.wrapping_sub(effective);
            e.values.tinst = trap::transformed_instruction(inst, raw, compressed, offset);
        }
        e
    }

    fn execute(
        &mut self,
        inst: Instruction,
        raw: u32,
        next: u64,
        platform: &mut dyn Platform,
    ) -> Result<(), Exception> {
        use Instruction as I;
        let pc = self.pc;
        match inst {
            I::Lui { rd, imm } => self.set_x(rd, imm as i64 as u64),
            I::Auipc { rd, imm } => self.set_x(rd, pc.wrapping_add(imm as i64 as u64)),
            I::Jal { rd, offset } => {
                self.set_x(rd, next);
                self.pc = pc.wrapping_add(offset as i64 as u64);
                return Ok(());
            }
            I::Jalr { rd, rs1, offset } => {
                let target = self.x[rs1 as usize].wrapping_add(offset as i64 as u64) & !1;
                self.set_x(rd, next);
                self.pc = target;
                return Ok(());
            }
            I::Branch {
                cond,
                rs1,
                rs2,
                offset,
            } => {
                let (a, b) = (self.x[rs1 as usize], self.x[rs2 as usize]);
                let taken = match cond {
                    BranchCond::Eq => a == b,
                    BranchCond::Ne => a != b,
                    BranchCond::Lt => (a as i64) < (b as i64),
                    BranchCond::Ge => (a as i64) >= (b as i64),
                    BranchCond::Ltu => a < b,
                    BranchCond::Geu => a >= b,
                };
                if taken {
                    self.pc = pc.wrapping_add(offset as i64 as u64);
                    return Ok(());
                }
            }
            I::Load {
                width,
                rd,
                rs1,
                offset,
            } => {
                let addr = self.x[rs1 as usize].wrapping_add(offset as i64 as u64);
                let v = self.load(addr, width.bytes(), platform)?;
                self.set_x(rd, extend_load(width, v));
            }
            I::Store {
                bytes,
                rs1,
                rs2,
                offset,
            } => {
                let addr = self.x[rs1 as usize].wrapping_add(offset as i64 as u64);
                self.store(addr, bytes, self.x[rs2 as usize], platform)?;
            }
            I::OpImm { op, rd, rs1, imm } => {
                self.set_x(rd, alu(op, self.x[rs1 as usize], imm as i64 as u64))
            }
            I::OpImm32 { op, rd, rs1, imm } => {
                self.set_x(rd, alu32(op, self.x[rs1 as usize], imm as i64 as u64))
            }
            I::Op { op, rd, rs1, rs2 } => {
                self.set_x(rd, alu(op, self.x[rs1 as usize], self.x[rs2 as usize]))
            }
            I::Op32 { op, rd, rs1, rs2 } => {
                self.set_x(rd, alu32(op, self.x[rs1 as usize], self.x[rs2 as usize]))
            }
            I::Fence => {}
            // Translated code made before this point must be re-checked.
            I::FenceI => self.ram.fence_code(),
            I::Ecall => {
                let cause = match (self.privilege, self.virt) {
                    (Privilege::User, _) => ExceptionCause::EcallFromU,
                    (Privilege::Supervisor, false) => ExceptionCause::EcallFromS,
                    (Privilege::Supervisor, true) => ExceptionCause::EcallFromVS,
                    (Privilege::Machine, _) => ExceptionCause::EcallFromM,
                };
                return Err(Exception::new(cause, 0));
            }
            I::Ebreak => {
                let mut e = Exception::new(ExceptionCause::Breakpoint, pc);
                // In V=1 the pc in tval is a guest virtual address.
                e.values.gva = self.virt;
                return Err(e);
            }
            I::Mret => {
                if self.privilege != Privilege::Machine {
                    return Err(Exception::illegal(raw));
                }
                let ms = self.csr.mstatus;
                let target = Privilege::from_bits((ms & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
                let virt = target != Privilege::Machine && ms & MSTATUS_MPV != 0;
                let mut new = ms & !(MSTATUS_MIE | MSTATUS_MPP | MSTATUS_MPV);
                if ms & MSTATUS_MPIE != 0 {
                    new |= MSTATUS_MIE;
                }
                new |= MSTATUS_MPIE;
                if target != Privilege::Machine {
                    new &= !MSTATUS_MPRV;
                }
                self.csr.mstatus = new;
                self.return_to(target, virt, self.csr.mepc);
                return Ok(());
            }
            I::Sret => {
                self.check_supervisor_instruction(self.csr.hstatus & HSTATUS_VTSR != 0, raw)?;
                if self.privilege == Privilege::Supervisor
                    && !self.virt
                    && self.csr.mstatus & MSTATUS_TSR != 0
                {
                    return Err(Exception::illegal(raw));
                }
                if self.virt {
                    // VS-mode returns within the guest, through vsstatus.
                    let (status, target) = leave_status(self.csr.vsstatus);
                    self.csr.vsstatus = status;
                    self.return_to(target, true, self.csr.vsepc);
                } else {
                    let (status, target) = leave_status(self.csr.mstatus);
                    self.csr.mstatus = status & !MSTATUS_MPRV;
                    let virt = self.csr.hstatus & HSTATUS_SPV != 0;
                    self.csr.hstatus &= !HSTATUS_SPV;
                    self.return_to(target, virt, self.csr.sepc);
                }
                return Ok(());
            }
            I::Wfi => {
                // mstatus.TW binds every mode below M; hstatus.VTW VS-mode.
                if self.privilege != Privilege::Machine && self.csr.mstatus & MSTATUS_TW != 0 {
                    return Err(Exception::illegal(raw));
                }
                self.check_supervisor_instruction(self.csr.hstatus & HSTATUS_VTW != 0, raw)?;
                self.waiting = true;
                self.interrupt_check = true;
                self.request_stop(RunExit::Wfi);
            }
            I::SfenceVma { rs1, rs2 } => {
                if self.privilege == Privilege::Supervisor
                    && !self.virt
                    && self.csr.mstatus & MSTATUS_TVM != 0
                {
                    return Err(Exception::illegal(raw));
                }
                self.check_supervisor_instruction(self.csr.hstatus & HSTATUS_VTVM != 0, raw)?;
                // rs1's page in every address space when there is one;
                // else rs2's ASID's address spaces, or all of them. (A
                // guest's ASIDs are vsatp's, which the sets are not kept
                // by: its fence of one ASID drops everything.)
                match (rs1, rs2) {
                    (0, 0) => self.tlb.flush(),
                    (0, _) if self.virt => self.tlb.flush(),
                    (0, _) => self.tlb.flush_asid(self.x[rs2 as usize], self.csr.satp),
                    _ => self.tlb.flush_page(self.x[rs1 as usize]),
                }
            }
            I::HfenceVvma { .. } | I::HfenceGvma { .. } => {
                // Unlike HLV/HSV, hstatus.HU never opens HFENCE to U-mode.
                self.check_hypervisor_instruction(raw)?;
                if self.privilege == Privilege::User {
                    return Err(Exception::illegal(raw));
                }
                let gvma = matches!(inst, I::HfenceGvma { .. });
                if gvma
                    && self.privilege == Privilege::Supervisor
                    && self.csr.mstatus & MSTATUS_TVM != 0
                {
                    return Err(Exception::illegal(raw));
                }
                self.tlb.flush();
            }
            I::HypervisorLoad {
                width,
                execute,
                rd,
                rs1,
            } => {
                self.check_hypervisor_instruction(raw)?;
                let addr = self.x[rs1 as usize];
                let v = self.guest_access(addr, width.bytes(), None, execute, platform)?;
                self.set_x(rd, extend_load(width, v));
            }
            I::HypervisorStore { bytes, rs1, rs2 } => {
                self.check_hypervisor_instruction(raw)?;
                let (addr, value) = (self.x[rs1 as usize], self.x[rs2 as usize]);
                self.guest_access(addr, bytes, Some(value), false, platform)?;
            }
            I::Csr {
                op,
                rd,
                src,
                imm,
                csr,
            } => {
                let operand = if imm {
                    src as u64
                } else {
                    self.x[src as usize]
                };
                let writes = op == CsrOp::Write || src != 0;
                let old = self.csr_rmw(csr, writes.then_some((op, operand)), platform, raw)?;
                self.set_x(rd, old);
            }
            I::Lr { double, rd, rs1 } => {
                let size = if double { 8 } else { 4 };
                let paddr = self.atomic_address(self.x[rs1 as usize], size, Access::Read)?;
                let v = self.ram.read(paddr, size).unwrap_or(0);
                self.reservation = Some((paddr, v));
                self.set_x(rd, if double { v } else { v as i32 as i64 as u64 });
            }
            I::Sc {
                double,
                rd,
                rs1,
                rs2,
            } => {
                let size = if double { 8 } else { 4 };
                let paddr = self.atomic_address(self.x[rs1 as usize], size, Access::Write)?;
                let reserved = self.reservation.take();
                let success = reserved.is_some_and(|(at, value)| {
                    at == paddr && self.ram.read(paddr, size) == Some(value)
                });
                if success {
                    self.ram.write(paddr, size, self.x[rs2 as usize]);
                }
                self.set_x(rd, !success as u64);
            }
            I::Amo {
                op,
                double,
                rd,
                rs1,
                rs2,
            } => {
                let size = if double { 8 } else { 4 };
                let paddr = self.atomic_address(self.x[rs1 as usize], size, Access::Write)?;
                let old = self.ram.read(paddr, size).unwrap_or(0);
                let old = if double {
                    old
                } else {
                    old as i32 as i64 as u64
                };
                let new = amo(op, double, old, self.x[rs2 as usize]);
                self.ram.write(paddr, size, new);
                self.set_x(rd, old);
            }
            _ => return self.execute_fp(inst, raw, next, platform),
        }
        self.pc = next;
        Ok(())
    }

    /// Enters `target` privilege with virtualization mode `virt` at `epc`
    /// after MRET/SRET updated the status registers.
    fn return_to(&mut self, target: Privilege, virt: bool, epc: u64) {
        // The TLB stays: its tags hold the privilege and V each entry was
        // made for (the data mode, MPRV applied, for loads and stores).
        self.privilege = target;
        self.virt = virt;
        self.pc = epc;
        self.interrupt_check = true;
    }

    /// The rules for SRET, WFI and SFENCE.VMA below HS: U-mode may not
    /// execute them (illegal), VU-mode neither (virtual instruction), and
    /// VS-mode not while the hstatus trap bit `vs_trap` is set.
    fn check_supervisor_instruction(&self, vs_trap: bool, raw: u32) -> Result<(), Exception> {
        match (self.privilege, self.virt) {
            (Privilege::User, false) => Err(Exception::illegal(raw)),
            (Privilege::User, true) => Err(Exception::virtual_instruction(raw)),
            (Privilege::Supervisor, true) if vs_trap => Err(Exception::virtual_instruction(raw)),
            _ => Ok(()),
        }
    }

    /// HLV, HLVX, HSV and HFENCE run in M and HS, and in U with hstatus.HU;
    /// from V=1 they raise a virtual-instruction exception.
    fn check_hypervisor_instruction(&self, raw: u32) -> Result<(), Exception> {
        if self.virt {
            return Err(Exception::virtual_instruction(raw));
        }
        if self.privilege == Privilege::User && self.csr.hstatus & HSTATUS_HU == 0 {
            return Err(Exception::illegal(raw));
        }
        Ok(())
    }

    fn execute_fp(
        &mut self,
        inst: Instruction,
        raw: u32,
        next: u64,
        platform: &mut dyn Platform,
    ) -> Result<(), Exception> {
        use Instruction as I;
        if !self.csr.fp_enabled(self.virt) {
            return Err(Exception::illegal(raw));
        }
        let f = self.f;
        match inst {
            I::FpLoad {
                fmt,
                rd,
                rs1,
                offset,
            } => {
                let addr = self.x[rs1 as usize].wrapping_add(offset as i64 as u64);
                let v = match fmt {
                    FpFormat::S => fpu::box_s(self.load(addr, 4, platform)? as u32),
                    FpFormat::D => self.load(addr, 8, platform)?,
                };
                self.set_f(rd, v);
            }
            I::FpStore {
                fmt,
                rs1,
                rs2,
                offset,
            } => {
                let addr = self.x[rs1 as usize].wrapping_add(offset as i64 as u64);
                let size = if fmt == FpFormat::S { 4 } else { 8 };
                self.store(addr, size, f[rs2 as usize], platform)?;
            }
            I::FpFma {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rs3,
                rm,
            } => {
                let rm = self.rounding_mode(rm, raw)?;
                self.set_f_flags(
                    rd,
                    fpu::fma(
                        op,
                        fmt,
                        f[rs1 as usize],
                        f[rs2 as usize],
                        f[rs3 as usize],
                        rm,
                    ),
                );
            }
            I::FpArith {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rm,
            } => {
                let (a, b) = (f[rs1 as usize], f[rs2 as usize]);
                let binary = |op| -> Result<fpu::FpResult, Exception> {
                    let rm = self.rounding_mode(rm, raw)?;
                    Ok(fpu::binary(op, fmt, a, b, rm))
                };
                let r = match op {
                    FpOp::Add => binary(fpu::Binary::Add)?,
                    FpOp::Sub => binary(fpu::Binary::Sub)?,
                    FpOp::Mul => binary(fpu::Binary::Mul)?,
                    FpOp::Div => binary(fpu::Binary::Div)?,
                    FpOp::Min => fpu::min_max(false, fmt, a, b),
                    FpOp::Max => fpu::min_max(true, fmt, a, b),
                    FpOp::SgnJ | FpOp::SgnJn | FpOp::SgnJx => (fpu::sign_inject(op, fmt, a, b), 0),
                };
                self.set_f_flags(rd, r);
            }
            I::FpSqrt { fmt, rd, rs1, rm } => {
                let rm = self.rounding_mode(rm, raw)?;
                self.set_f_flags(rd, fpu::sqrt(fmt, f[rs1 as usize], rm));
            }
            I::FpCompare {
                cmp,
                fmt,
                rd,
                rs1,
                rs2,
            } => {
                self.set_x_flags(rd, fpu::compare(cmp, fmt, f[rs1 as usize], f[rs2 as usize]));
            }
            I::FpClass { fmt, rd, rs1 } => self.set_x(rd, fpu::classify(fmt, f[rs1 as usize])),
            I::FpToInt {
                fmt,
                int,
                rd,
                rs1,
                rm,
            } => {
                let rm = self.rounding_mode(rm, raw)?;
                self.set_x_flags(rd, fpu::to_int(fmt, int, f[rs1 as usize], rm));
            }
            I::IntToFp {
                fmt,
                int,
                rd,
                rs1,
                rm,
            } => {
                let rm = self.rounding_mode(rm, raw)?;
                self.set_f_flags(rd, fpu::from_int(fmt, int, self.x[rs1 as usize], rm));
            }
            I::FpConvert { to, rd, rs1, rm } => {
                let rm = self.rounding_mode(rm, raw)?;
                self.set_f_flags(rd, fpu::convert(to, f[rs1 as usize], rm));
            }
            I::FpMoveToInt { fmt, rd, rs1 } => {
                self.set_x(rd, fpu::move_to_int(fmt, f[rs1 as usize]))
            }
            I::FpMoveFromInt { fmt, rd, rs1 } => {
                self.set_f(rd, fpu::move_from_int(fmt, self.x[rs1 as usize]))
            }
            _ => return Err(Exception::illegal(raw)),
        }
        self.pc = next;
        Ok(())
    }
}

/// 64-bit integer ALU.
#[inline]
pub fn alu(op: AluOp, a: u64, b: u64) -> u64 {
    match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Sll => a << (b & 63),
        AluOp::Slt => ((a as i64) < (b as i64)) as u64,
        AluOp::Sltu => (a < b) as u64,
        AluOp::Xor => a ^ b,
        AluOp::Srl => a >> (b & 63),
        AluOp::Sra => ((a as i64) >> (b & 63)) as u64,
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Mulh => ((a as i64 as i128 * b as i64 as i128) >> 64) as u64,
        AluOp::Mulhsu => ((a as i64 as i128).wrapping_mul(b as i128) >> 64) as u64,
        AluOp::Mulhu => ((a as u128 * b as u128) >> 64) as u64,
        AluOp::Div if b == 0 => u64::MAX,
        AluOp::Div => (a as i64).wrapping_div(b as i64) as u64,
        AluOp::Divu if b == 0 => u64::MAX,
        AluOp::Divu => a / b,
        AluOp::Rem if b == 0 => a,
        AluOp::Rem => (a as i64).wrapping_rem(b as i64) as u64,
        AluOp::Remu if b == 0 => a,
        AluOp::Remu => a % b,
    }
}

/// 32-bit ("W") integer ALU; the result is sign-extended.
#[inline]
pub fn alu32(op: AluOp, a: u64, b: u64) -> u64 {
    let (a, b) = (a as u32, b as u32);
    let r = match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Sll => a << (b & 31),
        AluOp::Srl => a >> (b & 31),
        AluOp::Sra => ((a as i32) >> (b & 31)) as u32,
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Div if b == 0 => u32::MAX,
        AluOp::Div => (a as i32).wrapping_div(b as i32) as u32,
        AluOp::Divu if b == 0 => u32::MAX,
        AluOp::Divu => a / b,
        AluOp::Rem if b == 0 => a,
        AluOp::Rem => (a as i32).wrapping_rem(b as i32) as u32,
        AluOp::Remu if b == 0 => a,
        AluOp::Remu => a % b,
        // The decoder never produces other W operations.
        _ => 0,
    };
    r as i32 as i64 as u64
}

/// The value an AMO writes back, given the (sign-extended) old value.
fn amo(op: AmoOp, double: bool, old: u64, src: u64) -> u64 {
    let (a, b) = if double {
        (old, src)
    } else {
        (old as i32 as i64 as u64, src as i32 as i64 as u64)
    };
    let (ua, ub) = if double {
        (a, b)
    } else {
        (a as u32 as u64, b as u32 as u64)
    };
    match op {
        AmoOp::Swap => src,
        AmoOp::Add => a.wrapping_add(b),
        AmoOp::Xor => a ^ b,
        AmoOp::And => a & b,
        AmoOp::Or => a | b,
        AmoOp::Min => (a as i64).min(b as i64) as u64,
        AmoOp::Max => (a as i64).max(b as i64) as u64,
        AmoOp::Minu => ua.min(ub),
        AmoOp::Maxu => ua.max(ub),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_edge_cases_follow_the_spec() {
        assert_eq!(alu(AluOp::Div, 7, 0), u64::MAX);
        assert_eq!(alu(AluOp::Rem, 7, 0), 7);
        assert_eq!(alu(AluOp::Div, i64::MIN as u64, u64::MAX), i64::MIN as u64);
        assert_eq!(alu(AluOp::Rem, i64::MIN as u64, u64::MAX), 0);
        assert_eq!(
            alu32(AluOp::Div, i32::MIN as u32 as u64, u32::MAX as u64),
            i32::MIN as i64 as u64
        );
        assert_eq!(alu32(AluOp::Divu, 5, 0), u64::MAX);
        assert_eq!(
            alu32(AluOp::Remu, 0xffff_ffff_8000_0000, 0),
            0xffff_ffff_8000_0000
        );
    }

    #[test]
    fn multiply_high_variants() {
        assert_eq!(alu(AluOp::Mulh, u64::MAX, u64::MAX), 0);
        assert_eq!(alu(AluOp::Mulhu, u64::MAX, u64::MAX), u64::MAX - 1);
        assert_eq!(alu(AluOp::Mulhsu, u64::MAX, u64::MAX), u64::MAX);
    }
}
