//! A virtual machine: its memory (carved out of the machine's RAM, mapped
//! at guest physical 0x8000_0000 by its own G-stage), its VMID, its vCPU
//! with the VS-level state that is switched with it, and the SBI it
//! answers.

use crate::console::Console;
use crate::csr::{self, csr_read, csr_write};
use crate::gstage::{self, GStage};
use crate::sbi;
use crate::vcpu::{self, FpRegs, GuestRegs};
use core::fmt;
use hv_image::{OnCrash, VmDescriptor, GUEST_RAM_BASE, NAME_BYTES};

/// visor-hv's SBI implementation ID (`get_impl_id`), 'visr'.
const IMPL_ID: usize = 0x7669_7372;
/// The interrupt bit of scause, and the supervisor timer's code.
const INTERRUPT: usize = 1 << 63;
const SUPERVISOR_TIMER: usize = 5;

/// Why a VM's slice ended.
pub enum Slice {
    /// The hypervisor's timer: its time is up.
    Preempted,
    /// It executed WFI: nothing to do until its timer (`vstimecmp`) fires.
    Idle {
        until: u64,
    },
    Ended(End),
}

/// WFI's encoding (trapped by hstatus.VTW).
const WFI: usize = 0x1050_0073;

/// How a VM ended.
#[derive(Clone, Copy)]
pub enum End {
    /// It asked to (SBI SRST).
    Shutdown,
    /// It did something no VM may.
    Crashed {
        cause: usize,
        pc: usize,
        address: usize,
    },
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            End::Shutdown => write!(f, "shut down"),
            End::Crashed { cause, pc, address } => write!(
                f,
                "faulted: exception {cause} at pc {pc:#x} (address {address:#x})"
            ),
        }
    }
}

/// The VS CSRs a vCPU owns (hardware holds the running one's).
#[derive(Default)]
struct VsCsrs {
    vsstatus: usize,
    vsie: usize,
    vstvec: usize,
    vsscratch: usize,
    vsepc: usize,
    vscause: usize,
    vstval: usize,
    vsatp: usize,
    hvip: usize,
    /// The VM's timer (Sstc), compared with time + htimedelta (0).
    vstimecmp: usize,
}

pub struct Vm {
    name: [u8; NAME_BYTES],
    vmid: usize,
    gstage: GStage,
    /// Machine physical address and size of the VM's RAM.
    host_base: usize,
    size: usize,
    /// The kernel, copied to the start of RAM at every (re)start.
    kernel: &'static [u8],
    pub on_crash: OnCrash,
    /// Share of the hart relative to the other VMs, and the most of it
    /// the VM may use (percent; 0 for no cap).
    pub weight: u32,
    pub cap: u32,
    regs: GuestRegs,
    fp: FpRegs,
    vs: VsCsrs,
    console: Console,
    line_start: bool,
    pub restarts: u32,
}

impl Vm {
    /// The VM `d` describes, with RAM at `[host_base, host_base +
    /// d.memory)` (2 MiB aligned, the caller's to give), started with
    /// `kernel` at its beginning.
    pub fn new(
        d: &VmDescriptor,
        vmid: usize,
        host_base: usize,
        kernel: &'static [u8],
    ) -> Result<Vm, &'static str> {
        let size = d.memory as usize;
        if kernel.len() > size {
            return Err("the kernel is larger than the VM's memory");
        }
        let mut gstage = GStage::new()?;
        gstage.map(GUEST_RAM_BASE as usize, host_base, size, gstage::RAM)?;
        let mut vm = Vm {
            name: d.name,
            vmid,
            gstage,
            host_base,
            size,
            kernel,
            on_crash: d.on_crash,
            weight: d.weight,
            cap: d.cap,
            regs: GuestRegs::new(0),
            fp: FpRegs::default(),
            vs: VsCsrs::default(),
            console: Console::new(),
            line_start: true,
            restarts: 0,
        };
        vm.reset();
        Ok(vm)
    }

    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_BYTES);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }

    /// Back to the power-on state: zeroed RAM holding the kernel, the vCPU
    /// at the kernel's first byte with a0 = its hart id (0).
    pub fn reset(&mut self) {
        // SAFETY: [host_base, host_base + size) is this VM's RAM alone,
        // and the kernel fits in it (checked in `new`).
        unsafe {
            core::ptr::write_bytes(self.host_base as *mut u8, 0, self.size);
            core::ptr::copy_nonoverlapping(
                self.kernel.as_ptr(),
                self.host_base as *mut u8,
                self.kernel.len(),
            );
        }
        self.regs = GuestRegs::new(GUEST_RAM_BASE as usize);
        self.fp = FpRegs::default();
        self.vs = VsCsrs {
            vsstatus: csr::SSTATUS_FS_INITIAL,
            vstimecmp: usize::MAX,
            ..VsCsrs::default()
        };
        self.line_start = true;
    }

    /// Puts this VM's state into the hart (G-stage, VS CSRs, FP).
    fn switch_in(&mut self) {
        csr_write!(
            "hgatp",
            csr::HGATP_MODE_SV39X4 | self.vmid << csr::HGATP_VMID_SHIFT | self.gstage.root() >> 12
        );
        let vs = &self.vs;
        csr_write!("vsstatus", vs.vsstatus);
        csr_write!("vsie", vs.vsie);
        csr_write!("vstvec", vs.vstvec);
        csr_write!("vsscratch", vs.vsscratch);
        csr_write!("vsepc", vs.vsepc);
        csr_write!("vscause", vs.vscause);
        csr_write!("vstval", vs.vstval);
        csr_write!("vsatp", vs.vsatp);
        csr_write!("hvip", vs.hvip);
        csr_write!("vstimecmp", vs.vstimecmp);
        vcpu::restore_fp(&self.fp);
    }

    /// Takes this VM's state out of the hart.
    fn switch_out(&mut self) {
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
        vcpu::save_fp(&mut self.fp);
    }

    /// Runs the VM until its slice ends: the hypervisor's timer, a WFI, or
    /// the VM's end.
    pub fn run_slice(&mut self) -> Slice {
        self.switch_in();
        let end = loop {
            let exit = vcpu::enter(&mut self.regs);
            match exit.cause {
                c if c == INTERRUPT | SUPERVISOR_TIMER => break Slice::Preempted,
                csr::CAUSE_ECALL_FROM_VS => {
                    let (error, value, stop) = self.sbi_call();
                    self.regs.x[10] = error as usize;
                    self.regs.x[11] = value;
                    self.regs.pc += 4;
                    if stop {
                        break Slice::Ended(End::Shutdown);
                    }
                }
                csr::CAUSE_VIRTUAL_INSTRUCTION if exit.stval == WFI => {
                    self.regs.pc += 4;
                    // Pending already (a timer that fired meanwhile): go on.
                    if csr_read!("hip") & csr_read!("hie") & csr::VS_INTERRUPTS == 0 {
                        break Slice::Idle {
                            until: csr_read!("vstimecmp") as u64,
                        };
                    }
                }
                cause => {
                    let address = match cause {
                        csr::CAUSE_INSTRUCTION_GUEST_PAGE_FAULT
                        | csr::CAUSE_LOAD_GUEST_PAGE_FAULT
                        | csr::CAUSE_STORE_GUEST_PAGE_FAULT => exit.htval << 2,
                        _ => exit.stval,
                    };
                    self.flush_console();
                    break Slice::Ended(End::Crashed {
                        cause,
                        pc: self.regs.pc,
                        address,
                    });
                }
            }
        };
        self.switch_out();
        end
    }

    /// Answers the guest's SBI call: (error, value, whether the VM stops).
    fn sbi_call(&mut self) -> (isize, usize, bool) {
        let x = &self.regs.x;
        let (eid, fid, a0, a1, a2) = (x[17], x[16], x[10], x[11], x[12]);
        match (eid, fid) {
            (sbi::EID_BASE, 0) => (sbi::SUCCESS, sbi::SPEC_VERSION, false),
            (sbi::EID_BASE, 1) => (sbi::SUCCESS, IMPL_ID, false),
            (sbi::EID_BASE, 2) => (sbi::SUCCESS, 1, false),
            (sbi::EID_BASE, 3) => {
                let known = [
                    sbi::EID_BASE,
                    sbi::EID_DBCN,
                    sbi::EID_SRST,
                    sbi::EID_TIME,
                    sbi::EID_LEGACY_PUTCHAR,
                ];
                (sbi::SUCCESS, known.contains(&a0) as usize, false)
            }
            (sbi::EID_BASE, 4..=6) => (sbi::SUCCESS, 0, false),
            (sbi::EID_DBCN, 0) => match self.guest_bytes(a1, a2, a0) {
                Some((start, len)) => {
                    for i in 0..len {
                        // SAFETY: guest_bytes checked the range lies in the VM's RAM.
                        self.put(unsafe { *((start + i) as *const u8) });
                    }
                    (sbi::SUCCESS, len, false)
                }
                None => (sbi::ERR_INVALID_PARAM, 0, false),
            },
            (sbi::EID_DBCN, 2) | (sbi::EID_LEGACY_PUTCHAR, _) => {
                self.put(a0 as u8);
                (sbi::SUCCESS, 0, false)
            }
            (sbi::EID_TIME, 0) => {
                // The VM's own timer: vstimecmp, which raises its VSTIP.
                csr_write!("vstimecmp", a0);
                (sbi::SUCCESS, 0, false)
            }
            (sbi::EID_SRST, 0) => {
                self.flush_console();
                (sbi::SUCCESS, 0, true)
            }
            _ => (sbi::ERR_NOT_SUPPORTED, 0, false),
        }
    }

    /// The machine physical range of `len` guest bytes at guest physical
    /// `lo | hi << 64`, if all of it is the VM's RAM.
    fn guest_bytes(&self, lo: usize, hi: usize, len: usize) -> Option<(usize, usize)> {
        let offset = lo.checked_sub(GUEST_RAM_BASE as usize)?;
        (hi == 0 && offset.checked_add(len)? <= self.size).then(|| (self.host_base + offset, len))
    }

    /// One byte of the VM's console output, each line prefixed with its name.
    fn put(&mut self, b: u8) {
        if self.line_start {
            self.console.push(b'[');
            for i in 0..NAME_BYTES {
                match self.name[i] {
                    0 => break,
                    c => self.console.push(c),
                }
            }
            self.console.push(b']');
            self.console.push(b' ');
        }
        self.console.push(b);
        self.line_start = b == b'\n';
    }

    fn flush_console(&mut self) {
        if !self.line_start {
            self.put(b'\n');
        }
        self.console.flush();
    }
}
