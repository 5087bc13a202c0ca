//! The HS-mode and VS CSRs the hypervisor uses, and their bits.

macro_rules! csr_read {
    ($csr:literal) => {{
        let v: usize;
        // SAFETY: reading a CSR has no side effect the hypervisor relies on.
        unsafe { core::arch::asm!(concat!("csrr {0}, ", $csr), out(reg) v) };
        v
    }};
}

macro_rules! csr_write {
    ($csr:literal, $v:expr) => {{
        let v: usize = $v;
        // SAFETY: the hypervisor owns HS-mode; each write is one it means.
        unsafe { core::arch::asm!(concat!("csrw ", $csr, ", {0}"), in(reg) v) };
    }};
}

pub(crate) use {csr_read, csr_write};

pub const HSTATUS_SPV: usize = 1 << 7;
pub const HSTATUS_SPVP: usize = 1 << 8;
/// hstatus.VTW: a guest's WFI traps (so the hypervisor can run another VM).
pub const HSTATUS_VTW: usize = 1 << 21;
/// henvcfg.STCE: guests have their own Sstc timer, vstimecmp.
pub const HENVCFG_STCE: usize = 1 << 63;
/// The VS-level interrupts (software, timer, external), all delegated to guests.
pub const VS_INTERRUPTS: usize = 1 << 2 | 1 << 6 | 1 << 10;
/// hie.VSTIE: the guest has its timer interrupt enabled.
pub const VSTIE: usize = 1 << 6;
pub const SSTATUS_SPP: usize = 1 << 8;
/// sstatus.FS = Initial, so guests may use the FPU.
pub const SSTATUS_FS_INITIAL: usize = 1 << 13;
/// hgatp.MODE = Sv39x4.
pub const HGATP_MODE_SV39X4: usize = 8 << 60;
pub const HGATP_VMID_SHIFT: u32 = 44;

/// Exception causes a VS-mode guest's trap into HS-mode reports.
pub const CAUSE_ECALL_FROM_VS: usize = 10;
pub const CAUSE_INSTRUCTION_GUEST_PAGE_FAULT: usize = 20;
pub const CAUSE_LOAD_GUEST_PAGE_FAULT: usize = 21;
pub const CAUSE_VIRTUAL_INSTRUCTION: usize = 22;
pub const CAUSE_STORE_GUEST_PAGE_FAULT: usize = 23;
/// The exceptions a guest handles itself (hedeleg): misaligned accesses,
/// access faults, illegal instructions, breakpoints, ecalls from VU, and
/// page faults.
pub const GUEST_EXCEPTIONS: usize = 1 << 0
    | 1 << 1
    | 1 << 2
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 7
    | 1 << 8
    | 1 << 12
    | 1 << 13
    | 1 << 15;
