//! A vCPU: its registers, FP and VS CSRs (which the hart holds while it
//! runs and the vCPU keeps while it does not), and entering a guest and
//! coming back: the switch between HS-mode and VS-mode. `run_guest` saves the hypervisor's
//! callee-saved registers, loads the guest's and SRETs into VS-mode; the
//! next trap into HS-mode lands in `guest_exit`, which saves the guest's
//! registers and returns from `run_guest`.

use crate::csr::{self, csr_read, csr_write};
use core::mem::offset_of;

/// hvip.VSSIP: the guest's supervisor software interrupt (an IPI).
pub const VSSIP: usize = 1 << 2;
/// hvip.VSEIP: the guest's supervisor external interrupt (its PLIC's).
pub const VSEIP: usize = 1 << 10;

/// The VS CSRs a vCPU owns (the hart holds the running one's).
pub struct VsCsrs {
    pub vsstatus: usize,
    pub vsie: usize,
    pub vstvec: usize,
    pub vsscratch: usize,
    pub vsepc: usize,
    pub vscause: usize,
    pub vstval: usize,
    pub vsatp: usize,
    pub hvip: usize,
    /// Its timer (Sstc), compared with time + htimedelta (0).
    pub vstimecmp: usize,
}

/// One virtual hart of a VM.
pub struct Vcpu {
    pub regs: GuestRegs,
    pub fp: FpRegs,
    pub vs: VsCsrs,
    /// Started (SBI HSM): it runs when scheduled; else it waits for a
    /// hart_start.
    pub started: bool,
    /// The hart it last ran on since it started (its VS-stage
    /// translations and fetched instructions may be cached there).
    pub last_hart: Option<usize>,
}

impl Vcpu {
    pub const fn stopped() -> Vcpu {
        Vcpu {
            regs: GuestRegs::new(0),
            fp: FpRegs {
                f: [0; 32],
                fcsr: 0,
            },
            vs: VsCsrs {
                vsstatus: 0,
                vsie: 0,
                vstvec: 0,
                vsscratch: 0,
                vsepc: 0,
                vscause: 0,
                vstval: 0,
                vsatp: 0,
                hvip: 0,
                vstimecmp: usize::MAX,
            },
            started: false,
            last_hart: None,
        }
    }

    /// Starts it afresh at `pc` in VS-mode with a0 and a1 as given (the
    /// state SBI HSM's hart_start promises: translation and interrupts off).
    pub fn start(&mut self, pc: usize, a0: usize, a1: usize) {
        *self = Vcpu::stopped();
        self.regs = GuestRegs::new(pc);
        self.regs.x[10] = a0;
        self.regs.x[11] = a1;
        self.vs.vsstatus = csr::SSTATUS_FS_INITIAL;
        self.started = true;
    }

    /// Puts its VS CSRs and FP into the hart, VSEIP as `external` says.
    pub fn switch_in(&self, external: bool) {
        let vs = &self.vs;
        csr_write!("vsstatus", vs.vsstatus);
        csr_write!("vsie", vs.vsie);
        csr_write!("vstvec", vs.vstvec);
        csr_write!("vsscratch", vs.vsscratch);
        csr_write!("vsepc", vs.vsepc);
        csr_write!("vscause", vs.vscause);
        csr_write!("vstval", vs.vstval);
        csr_write!("vsatp", vs.vsatp);
        csr_write!("hvip", with_external(vs.hvip, external));
        csr_write!("vstimecmp", vs.vstimecmp);
        restore_fp(&self.fp);
    }

    /// Takes its state out of the hart.
    pub fn switch_out(&mut self) {
        self.vs = VsCsrs {
            vsstatus: csr_read!("vsstatus"),
            vsie: csr_read!("vsie"),
            vstvec: csr_read!("vstvec"),
            vsscratch: csr_read!("vsscratch"),
            vsepc: csr_read!("vsepc"),
            vscause: csr_read!("vscause"),
            vstval: csr_read!("vstval"),
            vsatp: csr_read!("vsatp"),
            hvip: csr_read!("hvip"),
            vstimecmp: csr_read!("vstimecmp"),
        };
        save_fp(&mut self.fp);
    }

    /// Whether (switched out) it has an enabled interrupt to take, which
    /// ends its WFI: an injected one, or its timer due.
    pub fn interrupt_pending(&self, now: usize) -> bool {
        const VSTIP: usize = 1 << 6;
        let timer = if now >= self.vs.vstimecmp { VSTIP } else { 0 };
        // vsie's bits are hvip's, one place lower.
        (self.vs.hvip | timer) & self.vs.vsie << 1 & csr::VS_INTERRUPTS != 0
    }
}

/// `hvip` with VSEIP set or clear.
pub fn with_external(hvip: usize, external: bool) -> usize {
    if external {
        hvip | VSEIP
    } else {
        hvip & !VSEIP
    }
}

/// A vCPU's general registers and pc, as the switch code lays them out.
#[repr(C)]
pub struct GuestRegs {
    /// x0..x31 (x0 unused).
    pub x: [usize; 32],
    pub pc: usize,
    /// The hypervisor's stack pointer while the guest runs.
    host_sp: usize,
    /// The guest runs in VS-mode (else VU-mode).
    pub supervisor: bool,
}

const X_OFFSET: usize = 0;
const PC_OFFSET: usize = 32 * 8;
const HOST_SP_OFFSET: usize = 33 * 8;
const _: () = assert!(offset_of!(GuestRegs, x) == X_OFFSET);
const _: () = assert!(offset_of!(GuestRegs, pc) == PC_OFFSET);
const _: () = assert!(offset_of!(GuestRegs, host_sp) == HOST_SP_OFFSET);

impl GuestRegs {
    pub const fn new(pc: usize) -> GuestRegs {
        GuestRegs {
            x: [0; 32],
            pc,
            host_sp: 0,
            supervisor: true,
        }
    }
}

core::arch::global_asm!(
    ".balign 4",
    ".globl run_guest",
    "run_guest:",
    "  addi sp, sp, -14*8",
    "  sd ra, 0*8(sp)",
    "  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11",
    "  sd s\\r, (\\r+1)*8(sp)",
    "  .endr",
    "  sd sp, {host_sp}(a0)",
    "  csrw sscratch, a0",
    "  la t0, guest_exit",
    "  csrw stvec, t0",
    "  ld t0, {pc}(a0)",
    "  csrw sepc, t0",
    "  .irp r, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "  ld x\\r, \\r*8(a0)",
    "  .endr",
    "  ld a0, 10*8(a0)",
    "  sret",
    ".balign 4",
    "guest_exit:",
    "  csrrw a0, sscratch, a0",
    "  .irp r, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "  sd x\\r, \\r*8(a0)",
    "  .endr",
    "  csrr t0, sscratch",
    "  sd t0, 10*8(a0)",
    "  csrr t0, sepc",
    "  sd t0, {pc}(a0)",
    "  ld sp, {host_sp}(a0)",
    "  la t0, hs_trap",
    "  csrw stvec, t0",
    "  ld ra, 0*8(sp)",
    "  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11",
    "  ld s\\r, (\\r+1)*8(sp)",
    "  .endr",
    "  addi sp, sp, 14*8",
    "  ret",
    // A trap taken in HS-mode itself: a hypervisor bug.
    ".balign 4",
    ".globl hs_trap",
    "hs_trap:",
    "  csrr a0, scause",
    "  csrr a1, sepc",
    "  csrr a2, stval",
    "  j hs_fault",
    host_sp = const HOST_SP_OFFSET,
    pc = const PC_OFFSET,
);

extern "C" {
    fn run_guest(regs: *mut GuestRegs);
    fn hs_trap();
}

/// Why a guest came back to the hypervisor.
pub struct Exit {
    pub cause: usize,
    pub stval: usize,
    /// Guest physical address >> 2 of a guest-page fault.
    pub htval: usize,
    /// The transformed trapping instruction, or 0.
    pub htinst: usize,
}

/// Runs the guest whose registers are `regs` (with the VM's hgatp and VS
/// state already in place) until it traps into HS-mode.
///
/// `regs` is the vCPU's, which no other hart touches while it runs.
pub fn enter_raw(regs: *mut GuestRegs) -> Exit {
    // SAFETY: the scheduler gives each running vCPU to one hart only.
    let regs = unsafe { &mut *regs };
    use crate::csr::{HSTATUS_SPV, HSTATUS_SPVP, SSTATUS_SPP};
    // Return into the guest's mode: VS, or VU where it was interrupted.
    let (hstatus, sstatus) = (csr_read!("hstatus"), csr_read!("sstatus"));
    if regs.supervisor {
        csr_write!("hstatus", hstatus | HSTATUS_SPV | HSTATUS_SPVP);
        csr_write!("sstatus", sstatus | SSTATUS_SPP);
    } else {
        csr_write!("hstatus", (hstatus | HSTATUS_SPV) & !HSTATUS_SPVP);
        csr_write!("sstatus", sstatus & !SSTATUS_SPP);
    }
    // SAFETY: run_guest saves and restores every register the Rust ABI
    // expects preserved, and returns here on the guest's next trap.
    unsafe { run_guest(regs) };
    // The trap recorded the mode it came from in SPP.
    regs.supervisor = csr_read!("sstatus") & SSTATUS_SPP != 0;
    Exit {
        cause: csr_read!("scause"),
        stval: csr_read!("stval"),
        htval: csr_read!("htval"),
        htinst: csr_read!("htinst"),
    }
}

/// Sets HS-mode up for running guests: stvec at the handler for traps in
/// HS-mode itself; the exceptions and VS interrupts guests handle
/// themselves delegated to VS-mode; every counter readable; guests' WFI
/// trapped; guests' own Sstc timer on. False when the machine lacks Sstc
/// (henvcfg.STCE stays zero).
pub fn configure_hs_mode() -> bool {
    use crate::csr::{GUEST_EXCEPTIONS, HENVCFG_STCE, HSTATUS_VTW, VS_INTERRUPTS};
    csr_write!("stvec", hs_trap as *const () as usize);
    csr_write!("hedeleg", GUEST_EXCEPTIONS);
    csr_write!("hideleg", VS_INTERRUPTS);
    csr_write!("hcounteren", usize::MAX);
    csr_write!("hstatus", csr_read!("hstatus") | HSTATUS_VTW);
    csr_write!("henvcfg", csr_read!("henvcfg") | HENVCFG_STCE);
    csr_read!("henvcfg") & HENVCFG_STCE != 0
}

#[no_mangle]
extern "C" fn hs_fault(cause: usize, pc: usize, tval: usize) -> ! {
    crate::println!(
        "visor-hv: trap in the hypervisor: cause {cause:#x} at {pc:#x}, tval {tval:#x}"
    );
    crate::sbi::shutdown()
}

/// A vCPU's FP registers and fcsr, switched with it.
#[repr(C)]
pub struct FpRegs {
    f: [u64; 32],
    fcsr: u64,
}

const _: () = assert!(offset_of!(FpRegs, fcsr) == 32 * 8);

core::arch::global_asm!(
    ".option push",
    ".option arch, +d",
    ".balign 4",
    "fp_save:",
    "  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "  fsd f\\r, \\r*8(a0)",
    "  .endr",
    "  frcsr t0",
    "  sd t0, 32*8(a0)",
    "  ret",
    "fp_restore:",
    "  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "  fld f\\r, \\r*8(a0)",
    "  .endr",
    "  ld t0, 32*8(a0)",
    "  fscsr t0",
    "  ret",
    ".option pop",
);

extern "C" {
    fn fp_save(regs: *mut FpRegs);
    fn fp_restore(regs: *const FpRegs);
}

/// Saves the hart's FP registers (the running guest's) into `regs`.
fn save_fp(regs: &mut FpRegs) {
    // SAFETY: writes the 33 words of `regs`; sstatus.FS is on (main).
    unsafe { fp_save(regs) }
}

/// Loads `regs` into the hart's FP registers.
fn restore_fp(regs: &FpRegs) {
    // SAFETY: reads the 33 words of `regs`; sstatus.FS is on (main).
    unsafe { fp_restore(regs) }
}

core::arch::global_asm!(
    ".option push",
    ".option arch, +h",
    ".balign 4",
    // a0: a guest virtual address; returns the 16 bits there read as the
    // guest would fetch them (HLVX), or -1 if that faults.
    "guest_parcel:",
    "  la t0, 1f",
    "  csrrw t1, stvec, t0",
    "  hlvx.hu a0, (a0)",
    "  csrw stvec, t1",
    "  ret",
    ".balign 4",
    "1:",
    "  csrw stvec, t1",
    "  li a0, -1",
    "  ret",
    ".option pop",
);

extern "C" {
    fn guest_parcel(address: usize) -> isize;
}

/// The instruction parcel at the running guest's virtual `address` (its
/// translation, hstatus.SPVP's privilege), or `None` if it is not mapped.
pub fn guest_instruction_parcel(address: usize) -> Option<u32> {
    // SAFETY: HLVX reads guest memory only; a fault returns -1 through the
    // local handler, which restores stvec.
    let parcel = unsafe { guest_parcel(address) };
    (parcel >= 0).then_some(parcel as u32)
}
