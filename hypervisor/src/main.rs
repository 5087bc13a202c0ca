//! visor-hv: visor's Type 1 (bare-metal) hypervisor. OpenSBI's next stage:
//! entered in HS-mode with a0 = hart id and a1 = the machine's device tree,
//! it owns the machine and runs guests in VS-mode, each behind its own
//! G-stage page tables (Sv39x4) and VMID, answering their SBI calls.
//!
//! The VMs come from the package `visor hv pack` appends to the image
//! (hv-image), or, for a bare hypervisor, one built-in demo VM; they share
//! the boot hart in time slices. Several vCPUs and harts, weights and caps,
//! and virtual devices follow.
#![no_std]
#![no_main]

mod console;
mod csr;
mod fdt_writer;
mod gstage;
mod hypercall;
mod machine;
mod monitor;
mod plic;
mod sbi;
mod sched;
mod signals;
mod vcpu;
mod vm;
mod vm_tree;
mod vms;
mod vplic;
mod vuart;

use core::panic::PanicInfo;

core::arch::global_asm!(
    ".section .text.entry",
    ".globl _start",
    // A RISC-V Linux Image header, so firmware and `-kernel` load the
    // image at 0x8020_0000 (hv-image describes the format).
    "  .option push",
    "  .option norvc",
    "_start:",
    "  j 4f",
    "  .word 0",
    "  .dword 0x200000",        // text_offset from the start of RAM
    "  .dword hv_end - _start", // image_size: the whole footprint
    "  .dword 0",               // flags
    "  .word 2, 0",             // header version 0.2
    "  .dword 0",
    "  .ascii \"RISCV\\0\\0\\0\"",
    "  .ascii \"RSC\\x05\"",
    "  .word 0",
    "  .option pop",
    "4:",
    // A stack per hart, 64 KiB each, from stacks_start (harts 0 to 7).
    "  li t0, 8",
    "  bgeu a0, t0, 3f",
    "  la sp, stacks_start",
    "  addi t0, a0, 1",
    "  slli t0, t0, 16",
    "  add sp, sp, t0",
    // Clear .bss (only the boot hart comes here from OpenSBI).
    "  la t0, bss_start",
    "  la t1, bss_end",
    "1: bgeu t0, t1, 2f",
    "  sd zero, (t0)",
    "  addi t0, t0, 8",
    "  j 1b",
    "2: call hv_main",
    "3: wfi",
    "  j 3b",
    // Other harts, started by the boot hart (SBI HSM): a0 = hart id.
    ".globl secondary_start",
    "secondary_start:",
    "  li t0, 8",
    "  bgeu a0, t0, 3b",
    "  la sp, stacks_start",
    "  addi t0, a0, 1",
    "  slli t0, t0, 16",
    "  add sp, sp, t0",
    "  call hv_secondary",
);

#[no_mangle]
extern "C" fn hv_main(hart: usize, fdt: usize) -> ! {
    println!("visor-hv: hart {hart}, device tree at {fdt:#x}");
    let machine = match machine::Machine::from_fdt(fdt, hart) {
        Ok(m) => m,
        Err(e) => stop(format_args!("cannot read the device tree: {e}")),
    };
    machine.print();
    if !machine.has_h {
        stop(format_args!(
            "the harts lack the H extension (riscv,isa has no 'h')"
        ));
    }
    if !vcpu::configure_hs_mode() {
        stop(format_args!(
            "the machine lacks Sstc (guests need their own timer)"
        ));
    }
    // FP on in HS-mode too: the guests' FP state is switched with them.
    csr::csr_write!(
        "sstatus",
        csr::csr_read!("sstatus") | csr::SSTATUS_FS_INITIAL
    );
    let vms = match vms::from_image(&machine) {
        Ok(vms) => vms,
        Err(e) => stop(format_args!("{e}")),
    };
    sched::init(&machine, vms);
    sched::configure_hart();
    start_other_harts(&machine, hart);
    sched::run(hart, true);
    println!("visor-hv: all VMs stopped");
    sbi::shutdown()
}

extern "C" {
    fn secondary_start();
}

/// Starts the machine's other harts (SBI HSM) at `secondary_start`, each
/// on its own stack, to run vCPUs too.
fn start_other_harts(machine: &machine::Machine, boot: usize) {
    let others = machine.hart_ids[..machine.harts.min(machine::MAX_HARTS)]
        .iter()
        .filter(|&&h| h != boot && h < machine::MAX_HARTS);
    for &hart in others {
        if !sbi::hart_start(hart, secondary_start as *const () as usize, 0) {
            println!("visor-hv: hart {hart} did not start");
        }
    }
}

/// A secondary hart, once started: HS-mode set up as on the boot hart,
/// then vCPUs until every VM has stopped.
#[no_mangle]
extern "C" fn hv_secondary(hart: usize) -> ! {
    vcpu::configure_hs_mode();
    csr::csr_write!(
        "sstatus",
        csr::csr_read!("sstatus") | csr::SSTATUS_FS_INITIAL
    );
    sched::configure_hart();
    sched::run(hart, false);
    loop {
        // SAFETY: parks the hart; the boot hart powers the machine off.
        unsafe { core::arch::asm!("wfi") };
    }
}

/// Reports a fatal condition on the console and powers the machine off.
fn stop(why: core::fmt::Arguments) -> ! {
    println!("visor-hv: error: {why}");
    sbi::shutdown()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("visor-hv: panic: {info}");
    sbi::shutdown()
}
