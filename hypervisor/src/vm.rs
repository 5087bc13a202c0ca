//! A virtual machine: its memory (carved out of the machine's RAM, mapped
//! at guest physical 0x8000_0000 by its own G-stage), its VMID, its vCPU
//! with the VS-level state that is switched with it, and the SBI it
//! answers.

use crate::console::Console;
use crate::csr::{self, csr_read, csr_write};
use crate::gstage::{self, GStage};
use crate::hypercall::{self, Mailbox};
use crate::machine::{Device, Machine};
use crate::plic::Plic;
use crate::sbi;
use crate::signals;
use crate::vcpu::{self, GuestRegs, Vcpu, VSSIP};
use crate::vplic::{self, Vplic};
use crate::vuart::{self, Vuart};
use core::fmt;
use hv_image::{OnCrash, VmDescriptor, BOOTARGS_BYTES, GUEST_RAM_BASE, MAX_DEVICES, NAME_BYTES};

/// The most bytes one console write takes (it runs under the scheduler's
/// lock); the caller learns how many were written.
pub const CONSOLE_WRITE_MAX: usize = 4096;
/// The most vCPUs a VM has: one virtual PLIC context each.
pub const MAX_VCPUS: usize = vplic::CONTEXTS;
/// virtio-mmio's Status register: writing 0 resets the device.
const VIRTIO_STATUS: usize = 0x70;

/// The vCPUs (of `count`) an SBI hart mask names, as a bit set: `mask`
/// of harts from `base`, or all of them for base -1. None if it names
/// one that does not exist.
fn hart_mask(mask: usize, base: usize, count: usize) -> Option<u32> {
    let all = (1usize << count) - 1;
    if base == usize::MAX {
        return Some(all as u32);
    }
    if mask == 0 {
        return Some(0);
    }
    let named = (base < count && mask.leading_zeros() as usize >= base).then(|| mask << base)?;
    (named & !all == 0).then_some(named as u32)
}

/// Guest RAM kept at its end for the device tree the VM boots with.
const DEVICE_TREE_ROOM: usize = 64 << 10;
const PAGE: usize = 4096;

/// visor-hv's SBI implementation ID (`get_impl_id`), 'visr'.
const IMPL_ID: usize = 0x7669_7372;
/// The interrupt bit of scause, and the supervisor timer's code.
const INTERRUPT: usize = 1 << 63;
const SUPERVISOR_TIMER: usize = 5;
const SUPERVISOR_EXTERNAL: usize = 9;
const SUPERVISOR_SOFTWARE: usize = 1;
/// SBI SRST reset types: shutdown, cold and warm reboot.
const SRST_SHUTDOWN: usize = 0;
const SRST_WARM_REBOOT: usize = 2;

/// Why a VM's slice ended.
pub enum Slice {
    /// The hypervisor's timer: its time is up.
    Preempted,
    /// A machine device interrupted (for this VM or another).
    External,
    /// It executed WFI: nothing to do until its timer (`vstimecmp`) fires.
    Idle {
        until: u64,
    },
    Ended(End),
}

/// WFI's encoding (trapped by hstatus.VTW).
const WFI: usize = 0x1050_0073;

/// Clears the hart's supervisor software interrupt (another hart's kick).
pub fn csr_clear_ssip() {
    // SAFETY: sip.SSIP is the hypervisor's own; clearing it only acknowledges.
    unsafe { core::arch::asm!("csrc sip, {0}", in(reg) 1usize << SUPERVISOR_SOFTWARE) };
}

/// Flushes the hart's VS-stage translations for the VMID in hgatp.
pub fn hfence_vvma() {
    // SAFETY: only drops cached translations of the running VM.
    unsafe {
        core::arch::asm!(
            ".option push",
            ".option arch, +h",
            "hfence.vvma",
            ".option pop"
        )
    };
}

/// A virtual device's register: its offset in the window.
#[derive(Clone, Copy)]
enum Mmio {
    Uart(usize),
    Plic(usize),
}

/// Why a vCPU left the guest (counted per VM).
#[derive(Clone, Copy)]
enum Exit {
    Timer,
    Device,
    Kick,
    Sbi,
    Hypercall,
    Wfi,
    Uart,
    Plic,
    Other,
}
pub const EXIT_KINDS: usize = 9;
/// The exit reasons' names, in [`Exit`]'s order.
pub const EXIT_NAMES: [&str; EXIT_KINDS] = [
    "timer",
    "device",
    "kick",
    "sbi",
    "hypercall",
    "wfi",
    "uart",
    "plic",
    "other",
];

/// What follows a vCPU's exit.
pub enum Outcome {
    /// Enter it again.
    Resume,
    /// Enter it again once the other vCPUs in `targets` have the request
    /// (an IPI, a fence: `signals`).
    Signal { targets: u32, request: usize },
    /// Its turn ends.
    End(Slice),
    /// vCPU `n` was started (SBI HSM): it may run now.
    Started(usize),
    /// A call of the hypervisor's own extension (`hypercall`), which may
    /// reach other VMs: the scheduler answers it.
    Hypercall,
}

/// How a VM ended.
#[derive(Clone, Copy)]
pub enum End {
    /// It asked to (SBI SRST shutdown).
    Shutdown,
    /// It asked to start again (SBI SRST reboot).
    Reboot,
    /// The hypervisor console stopped it, or restarts it.
    Stopped,
    Restarted,
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
            End::Reboot => write!(f, "rebooting"),
            End::Stopped => write!(f, "stopped from the console"),
            End::Restarted => write!(f, "restarted from the console"),
            End::Crashed { cause, pc, address } => write!(
                f,
                "faulted: exception {cause} at pc {pc:#x} (address {address:#x})"
            ),
        }
    }
}

pub struct Vm {
    name: [u8; NAME_BYTES],
    vmid: usize,
    gstage: GStage,
    /// Machine physical address and size of the VM's RAM, and where the
    /// guest sees it: 0x8000_0000, or the same address (identity mapped)
    /// for a VM that owns devices, whose DMA uses guest physical addresses
    /// (there is no IOMMU).
    host_base: usize,
    guest_base: usize,
    size: usize,
    /// The machine devices passed through to it, and the machine's PLIC
    /// that their interrupts come from.
    devices: [Device; MAX_DEVICES],
    device_count: usize,
    plic: Option<Plic>,
    vplic: Vplic,
    /// The kernel, copied to `load_offset` in RAM at every (re)start, and
    /// the initrd, copied near its end.
    kernel: &'static [u8],
    load_offset: usize,
    initrd: &'static [u8],
    bootargs: [u8; BOOTARGS_BYTES],
    timebase: usize,
    uart: Vuart,
    pub on_crash: OnCrash,
    /// Share of the hart relative to the other VMs, and the most of it
    /// the VM may use (percent; 0 for no cap).
    pub weight: u32,
    pub cap: u32,
    vcpus: [Vcpu; MAX_VCPUS],
    vcpu_count: usize,
    /// The vCPU whose exit is being handled (vCPUs of a VM run on several
    /// harts; each hart's handling happens under the scheduler's lock).
    current: usize,
    console: Console,
    /// A virtual device's access changed the virtual PLIC: the other
    /// vCPUs must look at it again (`take_plic_changed`).
    plic_changed: bool,
    /// Since when an unfinished console line waits (the VM idle).
    partial_since: Option<u64>,
    mailbox: Mailbox,
    exits: [u64; EXIT_KINDS],
    pub restarts: u32,
    /// To be reset once no hart runs any of its vCPUs (a reboot or restart).
    pub reset_pending: bool,
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
        initrd: &'static [u8],
        machine: &Machine,
        plic: Option<Plic>,
    ) -> Result<Vm, &'static str> {
        let size = d.memory as usize;
        let contents = d.load_offset as usize + kernel.len() + initrd.len() + DEVICE_TREE_ROOM;
        if contents > size {
            return Err("the kernel, initrd and device tree do not fit in the VM's memory");
        }
        if kernel.len() > size {
            return Err("the kernel is larger than the VM's memory");
        }
        let mut gstage = GStage::new()?;
        let device_count = (d.device_count as usize).min(MAX_DEVICES);
        let mut devices = [Device::default(); MAX_DEVICES];
        for (slot, &base) in d.devices[..device_count].iter().enumerate() {
            let device = machine
                .virtio_at(base as usize)
                .ok_or("a device it owns is not on this machine")?;
            if plic.is_none() || device.irq == 0 || device.irq >= vplic::SOURCES {
                return Err("a device it owns has no interrupt the hypervisor can route");
            }
            gstage.map(
                device.base,
                device.base,
                device.size.max(PAGE),
                gstage::DEVICE,
            )?;
            devices[slot] = device;
        }
        let guest_base = if device_count > 0 {
            host_base
        } else {
            GUEST_RAM_BASE as usize
        };
        gstage.map(guest_base, host_base, size, gstage::RAM)?;
        let mut vm = Vm {
            name: d.name,
            vmid,
            gstage,
            host_base,
            guest_base,
            size,
            devices,
            device_count,
            plic,
            vplic: Vplic::default(),
            kernel,
            load_offset: d.load_offset as usize,
            initrd,
            bootargs: d.bootargs,
            timebase: machine.timebase,
            uart: Vuart::default(),
            on_crash: d.on_crash,
            weight: d.weight,
            cap: d.cap,
            vcpus: [const { Vcpu::stopped() }; MAX_VCPUS],
            vcpu_count: (d.vcpus as usize).clamp(1, MAX_VCPUS),
            current: 0,
            console: Console::new(),
            mailbox: Mailbox::new(),
            partial_since: None,
            plic_changed: false,
            exits: [0; EXIT_KINDS],
            restarts: 0,
            reset_pending: false,
        };
        vm.console = Console::for_vm(vmid, vm.name());
        vm.reset();
        Ok(vm)
    }

    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_BYTES);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }

    /// Back to the power-on state: zeroed RAM holding the kernel, the
    /// initrd and a device tree describing the VM; the vCPU at the kernel's
    /// first byte with a0 = its hart id (0) and a1 = the device tree.
    pub fn reset(&mut self) {
        self.release_devices();
        let ram = self.guest_base;
        let tree_at = self.size - DEVICE_TREE_ROOM;
        let initrd_at = (tree_at - self.initrd.len()) & !(PAGE - 1);
        // SAFETY: [host_base, host_base + size) is this VM's RAM alone, and
        // kernel, initrd and tree fit in it apart (checked in `new`).
        let tree = unsafe {
            let base = self.host_base as *mut u8;
            core::ptr::write_bytes(base, 0, self.size);
            let kernel = base.add(self.load_offset);
            core::ptr::copy_nonoverlapping(self.kernel.as_ptr(), kernel, self.kernel.len());
            let initrd = base.add(initrd_at);
            core::ptr::copy_nonoverlapping(self.initrd.as_ptr(), initrd, self.initrd.len());
            core::slice::from_raw_parts_mut(base.add(tree_at), DEVICE_TREE_ROOM)
        };
        let initrd = (!self.initrd.is_empty())
            .then(|| (ram + initrd_at, ram + initrd_at + self.initrd.len()));
        if crate::vm_tree::write(self, tree, initrd).is_none() {
            crate::println!("visor-hv: VM {}: its device tree does not fit", self.name());
        }
        // vCPU 0 starts; the others wait for SBI HSM.
        self.vcpus = [const { Vcpu::stopped() }; MAX_VCPUS];
        self.vcpus[0].start(ram + self.load_offset, 0, ram + tree_at);
        self.uart = Vuart::default();
        self.vplic = Vplic::default();
        self.console.reset();
        self.mailbox = Mailbox::new();
    }

    /// Stops the VM's devices (a virtio reset ends their DMA) and lets
    /// the machine interrupts it had not completed come again.
    pub fn release_devices(&mut self) {
        let outstanding = self.vplic.outstanding();
        for device in &self.devices[..self.device_count] {
            // SAFETY: the device's register window, which the hypervisor may
            // reach (it runs untranslated) and this VM alone owns.
            unsafe { core::ptr::write_volatile((device.base + VIRTIO_STATUS) as *mut u32, 0) };
            if outstanding & 1 << device.irq != 0 {
                self.plic.unwrap().complete(device.irq);
            }
        }
        self.vplic = Vplic::default();
    }

    /// Whether the machine interrupt `irq` belongs to one of its devices.
    pub fn owns_irq(&self, irq: usize) -> bool {
        self.devices[..self.device_count]
            .iter()
            .any(|d| d.irq == irq)
    }

    /// Whether the virtual PLIC changed since last asked.
    pub fn take_plic_changed(&mut self) -> bool {
        core::mem::take(&mut self.plic_changed)
    }

    /// Its device's machine interrupt `irq` (claimed at the machine's
    /// PLIC): pending in its virtual PLIC until the guest completes it.
    pub fn raise(&mut self, irq: usize) {
        self.vplic.raise(irq);
    }

    /// Marks every vCPU stopped (the VM ends): each leaves its hart at its
    /// next exit.
    pub fn stop_all_vcpus(&mut self) {
        self.vcpus.iter_mut().for_each(|v| v.started = false);
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpu_count
    }

    /// Whether vCPU `v` has been started (and not stopped).
    pub fn started(&self, v: usize) -> bool {
        self.vcpus[v].started
    }

    /// Whether vCPU `v` (switched out) has an interrupt to take, which
    /// ends its WFI.
    pub fn interrupt_pending(&self, v: usize, now: usize) -> bool {
        let vcpu = &self.vcpus[v];
        let external = vcpu::with_external(0, self.vplic.interrupting(v));
        vcpu.interrupt_pending(now) || external & vcpu.vs.vsie << 1 != 0
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.vcpus[self.current].regs
    }

    /// Starts vCPU `v`'s turn on `hart`: its state into the hart, with the
    /// VM's G-stage. The hart's VS-stage TLB entries for this VMID are
    /// flushed unless they can only be this vCPU's: it ran here last, and
    /// no other vCPU has had `hart` since (`hart_kept_it`), as KVM does.
    /// A vCPU that moved fetches its code afresh (its own FENCE.I was
    /// local to the hart it ran on).
    pub fn begin_turn(&mut self, v: usize, hart: usize, hart_kept_it: bool) {
        self.current = v;
        csr_write!(
            "hgatp",
            csr::HGATP_MODE_SV39X4 | self.vmid << csr::HGATP_VMID_SHIFT | self.gstage.root() >> 12
        );
        let vcpu = &mut self.vcpus[v];
        let moved = vcpu.last_hart != Some(hart);
        if moved || !hart_kept_it {
            hfence_vvma();
        }
        if moved {
            // SAFETY: orders this hart's instruction fetches after all stores.
            unsafe { core::arch::asm!("fence.i") };
        }
        vcpu.last_hart = Some(hart);
        vcpu.switch_in(self.vplic.interrupting(v));
    }

    /// Before the running vCPU is entered again: VSEIP as its virtual PLIC
    /// context has it now.
    pub fn refresh_external(&self, v: usize) {
        let external = self.vplic.interrupting(v);
        csr_write!("hvip", vcpu::with_external(csr_read!("hvip"), external));
    }

    /// Ends vCPU `v`'s turn (at time `now`): its state out of the hart;
    /// when it goes idle with part of a console line written, that part
    /// (a shell's prompt) is shown if the line is still unfinished a
    /// moment later (see [`Vm::show_waiting_line`]).
    pub fn end_turn(&mut self, v: usize, idle: bool, now: u64) {
        self.vcpus[v].switch_out();
        if idle && self.console.holds_partial_line() {
            self.partial_since.get_or_insert(now);
        }
    }

    /// Shows the unfinished console line the VM left waiting since before
    /// `before` (a driver that sends a line in pieces, between which it
    /// idles, keeps its line whole).
    pub fn show_waiting_line(&mut self, before: u64) {
        match self.partial_since {
            Some(_) if !self.console.holds_partial_line() => self.partial_since = None,
            Some(since) if since < before => {
                self.console.flush();
                self.partial_since = None;
            }
            _ => {}
        }
    }

    /// What the trap of vCPU `v` (running on this hart) into the
    /// hypervisor means.
    pub fn handle_exit(&mut self, v: usize, exit: &vcpu::Exit) -> Outcome {
        self.current = v;
        let reason = self.exit_reason(exit);
        self.exits[reason as usize] += 1;
        if !self.vcpus[self.current].started {
            return Outcome::End(Slice::Idle { until: u64::MAX });
        }
        match exit.cause {
            c if c == INTERRUPT | SUPERVISOR_TIMER => Outcome::End(Slice::Preempted),
            c if c == INTERRUPT | SUPERVISOR_EXTERNAL => Outcome::End(Slice::External),
            c if c == INTERRUPT | SUPERVISOR_SOFTWARE => {
                // Another hart's kick: its requests are applied before entry.
                csr_clear_ssip();
                Outcome::Resume
            }
            csr::CAUSE_ECALL_FROM_VS if self.regs().x[17] == hypercall::EID_VISOR => {
                Outcome::Hypercall
            }
            csr::CAUSE_ECALL_FROM_VS => {
                let (error, value, then) = self.sbi_call();
                let regs = self.regs();
                regs.x[10] = error as usize;
                regs.x[11] = value;
                regs.pc = regs.pc.wrapping_add(4);
                then
            }
            csr::CAUSE_VIRTUAL_INSTRUCTION if exit.stval == WFI => {
                self.regs().pc = self.regs().pc.wrapping_add(4);
                // Pending already (a timer that fired meanwhile): go on.
                let external = self.vplic.interrupting(self.current);
                let external_on = csr_read!("hie") & vcpu::VSEIP != 0;
                if csr_read!("hip") & csr_read!("hie") & csr::VS_INTERRUPTS == 0
                    && !(external && external_on)
                {
                    // Its timer wakes it only if it has the interrupt enabled.
                    let timer_on = csr_read!("hie") & csr::VSTIE != 0;
                    let until = if timer_on {
                        csr_read!("vstimecmp") as u64
                    } else {
                        u64::MAX
                    };
                    Outcome::End(Slice::Idle { until })
                } else {
                    Outcome::Resume
                }
            }
            csr::CAUSE_LOAD_GUEST_PAGE_FAULT | csr::CAUSE_STORE_GUEST_PAGE_FAULT
                if self.emulate_mmio(exit) =>
            {
                Outcome::Resume
            }
            cause => {
                let address = match cause {
                    csr::CAUSE_INSTRUCTION_GUEST_PAGE_FAULT
                    | csr::CAUSE_LOAD_GUEST_PAGE_FAULT
                    | csr::CAUSE_STORE_GUEST_PAGE_FAULT => exit.htval << 2,
                    _ => exit.stval,
                };
                self.flush_console();
                Outcome::End(Slice::Ended(End::Crashed {
                    cause,
                    pc: self.regs().pc,
                    address,
                }))
            }
        }
    }

    /// What an exit was, for the counts by reason.
    fn exit_reason(&mut self, exit: &vcpu::Exit) -> Exit {
        let gpa = exit.htval << 2;
        match exit.cause {
            c if c == INTERRUPT | SUPERVISOR_TIMER => Exit::Timer,
            c if c == INTERRUPT | SUPERVISOR_EXTERNAL => Exit::Device,
            c if c == INTERRUPT | SUPERVISOR_SOFTWARE => Exit::Kick,
            csr::CAUSE_ECALL_FROM_VS if self.regs().x[17] == hypercall::EID_VISOR => {
                Exit::Hypercall
            }
            csr::CAUSE_ECALL_FROM_VS => Exit::Sbi,
            csr::CAUSE_VIRTUAL_INSTRUCTION if exit.stval == WFI => Exit::Wfi,
            csr::CAUSE_LOAD_GUEST_PAGE_FAULT | csr::CAUSE_STORE_GUEST_PAGE_FAULT
                if (vuart::BASE..vuart::BASE + vuart::SIZE).contains(&gpa) =>
            {
                Exit::Uart
            }
            csr::CAUSE_LOAD_GUEST_PAGE_FAULT | csr::CAUSE_STORE_GUEST_PAGE_FAULT
                if (vplic::BASE..vplic::BASE + vplic::SIZE).contains(&gpa) =>
            {
                Exit::Plic
            }
            _ => Exit::Other,
        }
    }

    /// Its exits so far, by reason ([`EXIT_NAMES`] order).
    pub fn exits(&self) -> &[u64; EXIT_KINDS] {
        &self.exits
    }

    /// A load or store to one of the VM's virtual devices (UART, PLIC):
    /// emulated, the vCPU moved past the instruction. False when the
    /// address is no device of the VM's, or the instruction is not a load
    /// or store.
    fn emulate_mmio(&mut self, exit: &vcpu::Exit) -> bool {
        use riscv_isa::{decode, Instruction, LoadWidth};
        // htval has the address >> 2; the page offset's low bits are stval's.
        let gpa = exit.htval << 2 | exit.stval & 3;
        let device = if let Some(o) = gpa.checked_sub(vuart::BASE).filter(|&o| o < vuart::SIZE) {
            Mmio::Uart(o)
        } else if let Some(o) = gpa.checked_sub(vplic::BASE).filter(|&o| o < vplic::SIZE) {
            Mmio::Plic(o & !3)
        } else {
            return false;
        };
        let Some(raw) = self.trapped_instruction(exit.htinst) else {
            return false;
        };
        let (instruction, len) = decode(raw);
        // A transformed compressed instruction has bit 1 clear.
        let len = if exit.htinst != 0 && exit.htinst & 2 == 0 {
            2
        } else {
            len as usize
        };
        match instruction {
            Instruction::Load { width, rd, .. } => {
                let value = match device {
                    Mmio::Uart(o) => self.uart.read(o) as u32,
                    Mmio::Plic(o) => self.vplic.read(o),
                };
                let value = match width {
                    LoadWidth::B => value as i8 as i64 as u64,
                    LoadWidth::H => value as i16 as i64 as u64,
                    LoadWidth::W => value as i32 as i64 as u64,
                    _ => value as u64,
                };
                if rd != 0 {
                    self.regs().x[rd as usize] = value as usize;
                }
            }
            Instruction::Store { rs2, .. } => {
                let value = self.regs().x[rs2 as usize];
                match device {
                    Mmio::Uart(o) => {
                        if let Some(b) = self.uart.write(o, value as u8) {
                            self.put(b);
                        }
                    }
                    Mmio::Plic(o) => {
                        let completed = self.vplic.write(o, value as u32);
                        if let Some(irq) = completed.filter(|&irq| self.owns_irq(irq)) {
                            self.plic.unwrap().complete(irq);
                        }
                    }
                }
            }
            _ => return false,
        }
        // VSEIP follows before the vCPU is entered again (refresh_external).
        self.update_uart_line();
        self.plic_changed = true;
        self.regs().pc = self.regs().pc.wrapping_add(len);
        true
    }

    /// The trapping instruction's bits: htinst's transformation (as a
    /// 32-bit encoding) when the hart gave one, else read from the guest's
    /// memory with HLVX (QEMU may leave htinst zero).
    fn trapped_instruction(&mut self, htinst: usize) -> Option<u32> {
        if htinst != 0 {
            return Some(htinst as u32 | 2);
        }
        let pc = self.regs().pc;
        let low = vcpu::guest_instruction_parcel(pc)?;
        if low & 3 != 3 {
            return Some(low);
        }
        let high = vcpu::guest_instruction_parcel(pc.wrapping_add(2))?;
        Some(low | high << 16)
    }

    pub fn bootargs(&self) -> &str {
        let len = self
            .bootargs
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(BOOTARGS_BYTES);
        core::str::from_utf8(&self.bootargs[..len]).unwrap_or("")
    }

    pub fn memory_size(&self) -> usize {
        self.size
    }

    /// Where the guest sees its RAM.
    pub fn memory_base(&self) -> usize {
        self.guest_base
    }

    /// The machine devices it owns.
    pub fn devices(&self) -> &[Device] {
        &self.devices[..self.device_count]
    }

    pub fn timebase(&self) -> usize {
        self.timebase
    }

    /// Answers the guest's SBI call: (error, value, what follows).
    fn sbi_call(&mut self) -> (isize, usize, Outcome) {
        let x = &self.vcpus[self.current].regs.x;
        let (eid, fid, a0, a1, a2) = (x[17], x[16], x[10], x[11], x[12]);
        match (eid, fid) {
            (sbi::EID_BASE, 0) => (sbi::SUCCESS, sbi::SPEC_VERSION, Outcome::Resume),
            (sbi::EID_BASE, 1) => (sbi::SUCCESS, IMPL_ID, Outcome::Resume),
            (sbi::EID_BASE, 2) => (sbi::SUCCESS, 1, Outcome::Resume),
            (sbi::EID_BASE, 3) => {
                let known = [
                    sbi::EID_BASE,
                    sbi::EID_DBCN,
                    sbi::EID_SRST,
                    sbi::EID_TIME,
                    sbi::EID_IPI,
                    sbi::EID_RFENCE,
                    sbi::EID_HSM,
                    sbi::EID_LEGACY_PUTCHAR,
                    hypercall::EID_VISOR,
                ];
                (sbi::SUCCESS, known.contains(&a0) as usize, Outcome::Resume)
            }
            (sbi::EID_BASE, 4..=6) => (sbi::SUCCESS, 0, Outcome::Resume),
            (sbi::EID_DBCN, 0) => match self.guest_bytes(a1, a2, a0.min(CONSOLE_WRITE_MAX)) {
                Some((start, len)) => {
                    for i in 0..len {
                        // SAFETY: guest_bytes checked the range lies in the VM's RAM.
                        self.put(unsafe { *((start + i) as *const u8) });
                    }
                    (sbi::SUCCESS, len, Outcome::Resume)
                }
                None => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            },
            (sbi::EID_DBCN, 2) | (sbi::EID_LEGACY_PUTCHAR, _) => {
                self.put(a0 as u8);
                (sbi::SUCCESS, 0, Outcome::Resume)
            }
            (sbi::EID_TIME, 0) => {
                // The VM's own timer: vstimecmp, which raises its VSTIP.
                csr_write!("vstimecmp", a0);
                (sbi::SUCCESS, 0, Outcome::Resume)
            }
            // An IPI for the running vCPU is set here; for the others, and
            // the remote fences, the scheduler signals their harts.
            (sbi::EID_IPI, 0) => match hart_mask(a0, a1, self.vcpu_count) {
                Some(targets) => {
                    let me = 1 << self.current;
                    if targets & me != 0 {
                        csr_write!("hvip", csr_read!("hvip") | VSSIP);
                    }
                    let others = targets & !me;
                    (
                        sbi::SUCCESS,
                        0,
                        Outcome::Signal {
                            targets: others,
                            request: signals::INJECT_VSSIP,
                        },
                    )
                }
                None => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            },
            (sbi::EID_RFENCE, 0..=2) => match hart_mask(a0, a1, self.vcpu_count) {
                Some(targets) => {
                    let request = if fid == 0 {
                        // SAFETY: orders the guest's instruction fetches after its stores.
                        unsafe { core::arch::asm!("fence.i") };
                        signals::FENCE_I
                    } else {
                        hfence_vvma();
                        signals::FLUSH_VVMA
                    };
                    let others = targets & !(1 << self.current);
                    (
                        sbi::SUCCESS,
                        0,
                        Outcome::Signal {
                            targets: others,
                            request,
                        },
                    )
                }
                None => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            },
            (sbi::EID_HSM, sbi::HSM_HART_START) => match self.vcpus.get_mut(a0) {
                Some(vcpu) if a0 < self.vcpu_count => {
                    if vcpu.started {
                        (sbi::ERR_ALREADY_AVAILABLE, 0, Outcome::Resume)
                    } else {
                        // Not running anywhere: a stopped vCPU's turn ends
                        // in the call that stops it.
                        vcpu.start(a1, a0, a2);
                        (sbi::SUCCESS, 0, Outcome::Started(a0))
                    }
                }
                _ => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            },
            (sbi::EID_HSM, sbi::HSM_HART_STOP) => {
                // It does not return: the turn ends now, under the lock, so
                // no hart_start sees it stopped while it still runs.
                self.vcpus[self.current].started = false;
                (
                    sbi::SUCCESS,
                    0,
                    Outcome::End(Slice::Idle { until: u64::MAX }),
                )
            }
            (sbi::EID_HSM, sbi::HSM_HART_GET_STATUS) => match self.vcpus.get(a0) {
                Some(vcpu) if a0 < self.vcpu_count => {
                    let status = if vcpu.started {
                        sbi::HART_STARTED
                    } else {
                        sbi::HART_STOPPED
                    };
                    (sbi::SUCCESS, status, Outcome::Resume)
                }
                _ => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            },
            (sbi::EID_HSM, _) => (sbi::ERR_NOT_SUPPORTED, 0, Outcome::Resume),
            (sbi::EID_SRST, 0) if a0 <= SRST_WARM_REBOOT => {
                self.flush_console();
                let end = if a0 == SRST_SHUTDOWN {
                    End::Shutdown
                } else {
                    End::Reboot
                };
                (sbi::SUCCESS, 0, Outcome::End(Slice::Ended(end)))
            }
            (sbi::EID_SRST, 0) => (sbi::ERR_INVALID_PARAM, 0, Outcome::Resume),
            _ => (sbi::ERR_NOT_SUPPORTED, 0, Outcome::Resume),
        }
    }

    /// The machine physical range of `len` guest bytes at guest physical
    /// `lo | hi << 64`, if all of it is the VM's RAM.
    fn guest_bytes(&self, lo: usize, hi: usize, len: usize) -> Option<(usize, usize)> {
        let offset = lo.checked_sub(self.guest_base)?;
        (hi == 0 && offset.checked_add(len)? <= self.size).then(|| (self.host_base + offset, len))
    }

    /// vCPU `v`'s registers (while no hart runs it, or to enter it).
    pub fn regs_of_mut(&mut self, v: usize) -> &mut GuestRegs {
        &mut self.vcpus[v].regs
    }

    /// The `len` bytes of its RAM at guest physical `address`, if all of
    /// them are its RAM (they stay its RAM while the VM exists).
    pub fn guest_memory(&self, address: usize, len: usize) -> Option<&'static mut [u8]> {
        let (start, len) = self.guest_bytes(address, 0, len)?;
        // SAFETY: guest_bytes checked the range lies in the VM's RAM, which
        // the hypervisor never uses for anything else.
        Some(unsafe { core::slice::from_raw_parts_mut(start as *mut u8, len) })
    }

    /// Its mailbox of messages from other VMs (hypercalls).
    pub fn mailbox(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    /// Keyboard bytes waiting for it, into `into`; how many.
    pub fn take_input(&mut self, into: &mut [u8]) -> usize {
        let n = self.uart.take(into);
        self.update_uart_line();
        n
    }

    /// One byte of the VM's console output (each line prefixed with its
    /// name).
    pub fn put(&mut self, b: u8) {
        self.console.push(b);
    }

    /// How many keyboard bytes its UART can take now.
    pub fn input_room(&self) -> usize {
        self.uart.room()
    }

    /// A keyboard byte for the VM's UART.
    pub fn input(&mut self, byte: u8) {
        self.uart.receive(byte);
        self.update_uart_line();
    }

    /// The UART's interrupt line into the virtual PLIC.
    fn update_uart_line(&mut self) {
        self.vplic.set_level(vuart::IRQ, self.uart.interrupting());
    }

    fn flush_console(&mut self) {
        if !self.console.at_line_start() {
            self.put(b'\n');
        }
        self.console.flush();
    }
}
