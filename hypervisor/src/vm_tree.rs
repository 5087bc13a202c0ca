//! The device tree a VM boots with: its RAM, one hart with the ISA the
//! guest may use (the machine's, without H: no nested virtualization), the
//! timebase, its virtual UART and PLIC, the machine devices it owns (with
//! their machine addresses and interrupt numbers), its command line and
//! initrd.

use crate::fdt_writer::FdtWriter;
use crate::vm::Vm;
use crate::vplic;
use crate::vuart;
use core::fmt::Write;

/// The ISA a vCPU offers: what visor's and QEMU's harts have, minus H.
const GUEST_ISA: &str = "rv64imafdc_zicntr_zicsr_zifencei_sstc";
const GUEST_ISA_EXTENSIONS: &[&str] = &[
    "i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "sstc",
];
const PLIC_PHANDLE: u32 = 1;
/// vCPU v's interrupt controller: this plus v.
const CPU_INTC_PHANDLE: u32 = 2;
/// The S-mode external interrupt, which a PLIC context targets.
const SUPERVISOR_EXTERNAL: u32 = 9;
/// The 16550's input clock, as on QEMU's virt machine.
const UART_CLOCK: u32 = 3_686_400;

/// Writes the VM's tree into `buffer`; its size, or `None` if too large.
pub fn write(vm: &Vm, buffer: &mut [u8], initrd: Option<(usize, usize)>) -> Option<usize> {
    let mut fdt = FdtWriter::new(buffer);
    fdt.begin_node("");
    fdt.property_u32("#address-cells", 2);
    fdt.property_u32("#size-cells", 2);
    fdt.property_string("compatible", "visor-hv,vm");
    fdt.property_string("model", "visor-hv virtual machine");

    fdt.begin_node("chosen");
    fdt.property_string("bootargs", vm.bootargs());
    fdt.property_string("stdout-path", "/soc/serial@10000000");
    if let Some((start, end)) = initrd {
        fdt.property_u64s("linux,initrd-start", &[start as u64]);
        fdt.property_u64s("linux,initrd-end", &[end as u64]);
    }
    fdt.end_node();

    fdt.begin_node(node_name(&mut [0; 32], "memory", vm.memory_base()));
    fdt.property_string("device_type", "memory");
    fdt.property_u64s("reg", &[vm.memory_base() as u64, vm.memory_size() as u64]);
    fdt.end_node();

    fdt.begin_node("cpus");
    fdt.property_u32("#address-cells", 1);
    fdt.property_u32("#size-cells", 0);
    fdt.property_u32("timebase-frequency", vm.timebase() as u32);
    let mut list = [0u8; 64];
    let mut len = 0;
    for ext in GUEST_ISA_EXTENSIONS {
        list[len..len + ext.len()].copy_from_slice(ext.as_bytes());
        len += ext.len() + 1;
    }
    for v in 0..vm.vcpu_count() {
        fdt.begin_node(node_name(&mut [0; 32], "cpu", v));
        fdt.property_string("device_type", "cpu");
        fdt.property_u32("reg", v as u32);
        fdt.property_string("status", "okay");
        fdt.property_string("compatible", "riscv");
        fdt.property_string("riscv,isa", GUEST_ISA);
        fdt.property_string("riscv,isa-base", "rv64i");
        fdt.property("riscv,isa-extensions", &list[..len]);
        fdt.property_string("mmu-type", "riscv,sv48");
        fdt.begin_node("interrupt-controller");
        fdt.property_u32("#interrupt-cells", 1);
        fdt.property_null("interrupt-controller");
        fdt.property_string("compatible", "riscv,cpu-intc");
        fdt.property_u32("phandle", CPU_INTC_PHANDLE + v as u32);
        fdt.end_node();
        fdt.end_node();
    }
    fdt.end_node();

    fdt.begin_node("soc");
    fdt.property_u32("#address-cells", 2);
    fdt.property_u32("#size-cells", 2);
    fdt.property_string("compatible", "simple-bus");
    fdt.property_null("ranges");
    fdt.begin_node(node_name(&mut [0; 32], "plic", vplic::BASE));
    fdt.property_string("compatible", "sifive,plic-1.0.0");
    fdt.property_u32("#address-cells", 0);
    fdt.property_u32("#interrupt-cells", 1);
    fdt.property_null("interrupt-controller");
    fdt.property_u64s("reg", &[vplic::BASE as u64, vplic::SIZE as u64]);
    fdt.property_u32("riscv,ndev", vplic::SOURCES as u32 - 1);
    // A context per vCPU: its S-mode external interrupt.
    let mut contexts = [0u32; 2 * crate::vm::MAX_VCPUS];
    for v in 0..vm.vcpu_count() {
        contexts[2 * v] = CPU_INTC_PHANDLE + v as u32;
        contexts[2 * v + 1] = SUPERVISOR_EXTERNAL;
    }
    fdt.property_u32s("interrupts-extended", &contexts[..2 * vm.vcpu_count()]);
    fdt.property_u32("phandle", PLIC_PHANDLE);
    fdt.end_node();
    for device in vm.devices() {
        fdt.begin_node(node_name(&mut [0; 32], "virtio_mmio", device.base));
        fdt.property_string("compatible", "virtio,mmio");
        fdt.property_u64s("reg", &[device.base as u64, device.size as u64]);
        fdt.property_u32("interrupts", device.irq as u32);
        fdt.property_u32("interrupt-parent", PLIC_PHANDLE);
        fdt.end_node();
    }
    fdt.begin_node("serial@10000000");
    fdt.property_string("compatible", "ns16550a");
    fdt.property_u64s("reg", &[vuart::BASE as u64, vuart::SIZE as u64]);
    fdt.property_u32("clock-frequency", UART_CLOCK);
    fdt.property_u32("interrupts", vuart::IRQ as u32);
    fdt.property_u32("interrupt-parent", PLIC_PHANDLE);
    fdt.end_node();
    fdt.end_node();

    fdt.end_node();
    fdt.finish()
}

/// "name@address" in `buffer`.
fn node_name<'a>(buffer: &'a mut [u8; 32], name: &str, address: usize) -> &'a str {
    struct Cursor<'b>(&'b mut [u8], usize);
    impl Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut cursor = Cursor(buffer, 0);
    let _ = write!(cursor, "{name}@{address:x}");
    let len = cursor.1;
    core::str::from_utf8(&buffer[..len]).unwrap_or("")
}
