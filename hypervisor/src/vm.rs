//! A virtual machine: its memory (carved out of the machine's RAM, mapped
//! at guest physical 0x8000_0000 by its own G-stage), its VMID, one vCPU,
//! and the SBI it answers.

use crate::console::Console;
use crate::csr::{self, csr_write};
use crate::gstage::{self, GStage};
use crate::machine::Machine;
use crate::sbi;
use crate::vcpu::{self, GuestRegs};
use core::fmt;

/// Where a guest finds its RAM, as on QEMU's virt machine.
const GUEST_RAM_BASE: usize = 0x8000_0000;
const DEMO_RAM: usize = 2 << 20;
/// visor-hv's SBI implementation ID (`get_impl_id`), 'visr'.
const IMPL_ID: usize = 0x7669_7372;

core::arch::global_asm!(include_str!("guest_demo.S"));

extern "C" {
    static guest_demo_start: u8;
    static guest_demo_end: u8;
    static hv_end: u8;
}

/// How a VM ended.
pub enum End {
    /// It asked to (SBI SRST).
    Shutdown,
    /// It did something no VM may; the VM is stopped.
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
                "stopped: exception {cause} at pc {pc:#x} (address {address:#x})"
            ),
        }
    }
}

pub struct Vm {
    pub name: &'static str,
    vmid: usize,
    gstage: GStage,
    /// Machine physical address of the VM's RAM.
    host_base: usize,
    size: usize,
    regs: GuestRegs,
    console: Console,
    line_start: bool,
}

impl Vm {
    /// The built-in demo VM, in the first RAM past the hypervisor.
    pub fn demo(machine: &Machine) -> Result<Vm, &'static str> {
        // SAFETY: linker symbols; only their addresses are used.
        let (start, end, host_base) = unsafe {
            (
                &guest_demo_start as *const u8,
                &guest_demo_end as *const u8,
                &hv_end as *const u8 as usize,
            )
        };
        if host_base + DEMO_RAM > machine.ram_base + machine.ram_size {
            return Err("not enough RAM for the VM");
        }
        let len = end as usize - start as usize;
        // SAFETY: the VM's memory lies past the hypervisor's image and
        // stacks, inside RAM (checked above); the demo is `len` bytes.
        unsafe {
            core::ptr::write_bytes(host_base as *mut u8, 0, DEMO_RAM);
            core::ptr::copy_nonoverlapping(start, host_base as *mut u8, len);
        }
        let mut gstage = GStage::new()?;
        gstage.map(GUEST_RAM_BASE, host_base, DEMO_RAM, gstage::RAM)?;
        Ok(Vm {
            name: "demo",
            vmid: 1,
            gstage,
            host_base,
            size: DEMO_RAM,
            regs: GuestRegs::new(GUEST_RAM_BASE),
            console: Console::new(),
            line_start: true,
        })
    }

    /// Runs the VM's vCPU until the VM ends.
    pub fn run(&mut self) -> End {
        csr_write!(
            "hgatp",
            csr::HGATP_MODE_SV39X4 | self.vmid << csr::HGATP_VMID_SHIFT | self.gstage.root() >> 12
        );
        // SAFETY: orders the new G-stage tables before the guest uses them.
        unsafe {
            core::arch::asm!(
                ".option push",
                ".option arch, +h",
                "hfence.gvma",
                ".option pop"
            )
        };
        csr_write!("vsatp", 0);
        csr_write!("vsstatus", csr::SSTATUS_FS_INITIAL);
        csr_write!("hedeleg", csr::GUEST_EXCEPTIONS);
        csr_write!("hideleg", 0);
        csr_write!("hcounteren", usize::MAX);
        loop {
            let exit = vcpu::enter(&mut self.regs);
            match exit.cause {
                csr::CAUSE_ECALL_FROM_VS => {
                    let (error, value, stop) = self.sbi_call();
                    self.regs.x[10] = error as usize;
                    self.regs.x[11] = value;
                    self.regs.pc += 4;
                    if stop {
                        return End::Shutdown;
                    }
                }
                cause => {
                    let address = match cause {
                        csr::CAUSE_INSTRUCTION_GUEST_PAGE_FAULT
                        | csr::CAUSE_LOAD_GUEST_PAGE_FAULT
                        | csr::CAUSE_STORE_GUEST_PAGE_FAULT => exit.htval << 2,
                        _ => exit.stval,
                    };
                    return End::Crashed {
                        cause,
                        pc: self.regs.pc,
                        address,
                    };
                }
            }
        }
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
        let offset = lo.checked_sub(GUEST_RAM_BASE)?;
        (hi == 0 && offset.checked_add(len)? <= self.size).then(|| (self.host_base + offset, len))
    }

    /// One byte of the VM's console output, each line prefixed with its name.
    fn put(&mut self, b: u8) {
        if self.line_start {
            self.console.push(b'[');
            self.name.bytes().for_each(|c| self.console.push(c));
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
