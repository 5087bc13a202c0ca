//! visor-hv: visor's Type 1 (bare-metal) hypervisor. OpenSBI's next stage:
//! entered in HS-mode with a0 = hart id and a1 = the machine's device tree,
//! it owns the machine and runs guests in VS-mode, each behind its own
//! G-stage page tables (Sv39x4) and VMID, answering their SBI calls.
//!
//! Today: one built-in demo VM (guest_demo.S) on the boot hart; the packed
//! image with several VMs, the scheduler and virtual devices follow.
#![no_std]
#![no_main]

mod console;
mod csr;
mod gstage;
mod machine;
mod sbi;
mod vcpu;
mod vm;

use core::panic::PanicInfo;

core::arch::global_asm!(
    ".section .text.entry",
    ".globl _start",
    "_start:",
    // A stack per hart, 16 KiB each, from stacks_start.
    "  la sp, stacks_start",
    "  addi t0, a0, 1",
    "  slli t0, t0, 14",
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
);

#[no_mangle]
extern "C" fn hv_main(hart: usize, fdt: usize) -> ! {
    println!("visor-hv: hart {hart}, device tree at {fdt:#x}");
    let machine = match machine::Machine::from_fdt(fdt) {
        Ok(m) => m,
        Err(e) => stop(format_args!("cannot read the device tree: {e}")),
    };
    machine.print();
    if !machine.has_h {
        stop(format_args!(
            "the harts lack the H extension (riscv,isa has no 'h')"
        ));
    }
    vcpu::install_trap_handler();
    let mut vm = match vm::Vm::demo(&machine) {
        Ok(vm) => vm,
        Err(e) => stop(format_args!("cannot create the demo VM: {e}")),
    };
    let end = vm.run();
    println!("visor-hv: VM {} {end}", vm.name);
    println!("visor-hv: all VMs stopped");
    sbi::shutdown()
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
