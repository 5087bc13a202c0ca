//! The machine as its device tree describes it: RAM, harts, the ISA, and
//! the devices the hypervisor uses or hands to VMs.

use fdt::Fdt;

/// The most harts the hypervisor runs on (it has a stack for each).
pub const MAX_HARTS: usize = 8;
/// The most virtio-mmio slots the hypervisor looks at (QEMU virt has 8).
pub const MAX_VIRTIO: usize = 8;
/// The supervisor external interrupt, as a PLIC context's target names it.
const SUPERVISOR_EXTERNAL: u32 = 9;

/// A device's MMIO window and its PLIC interrupt.
#[derive(Clone, Copy, Default)]
pub struct Device {
    pub base: usize,
    pub size: usize,
    pub irq: usize,
}

pub struct Machine {
    pub ram_base: usize,
    pub ram_size: usize,
    pub harts: usize,
    /// Their ids (the first MAX_HARTS).
    pub hart_ids: [usize; MAX_HARTS],
    /// Every hart has the H extension (`h` in its ISA).
    pub has_h: bool,
    pub uart: Option<usize>,
    pub plic: Option<usize>,
    /// The PLIC context of the boot hart's S-mode (where the hypervisor
    /// takes the interrupts of devices it passes through).
    pub plic_context: Option<usize>,
    /// The virtio-mmio slots (VMs may own them), in address order.
    pub virtio: [Device; MAX_VIRTIO],
    pub virtio_slots: usize,
    /// Ticks per second of the `time` CSR.
    pub timebase: usize,
}

impl Machine {
    pub fn from_fdt(address: usize, hart: usize) -> Result<Machine, &'static str> {
        // SAFETY: OpenSBI passes the device tree's physical address in a1;
        // the hypervisor runs untranslated, and from_ptr checks the header.
        let fdt =
            unsafe { Fdt::from_ptr(address as *const u8) }.map_err(|_| "not a device tree")?;
        let memory = fdt.memory();
        let region = memory.regions().next().ok_or("no memory node")?;
        let ram_base = region.starting_address as usize;
        let ram_size = region.size.ok_or("memory without a size")?;
        let timebase = fdt
            .find_node("/cpus")
            .and_then(|n| n.property("timebase-frequency"))
            .and_then(|p| p.as_usize())
            .ok_or("no timebase-frequency")?;
        let mut harts = 0;
        let mut hart_ids = [0; MAX_HARTS];
        let mut has_h = true;
        for cpu in fdt.cpus() {
            if harts < MAX_HARTS {
                hart_ids[harts] = cpu.ids().first();
            }
            harts += 1;
            let isa = cpu
                .property("riscv,isa")
                .and_then(|p| p.as_str())
                .unwrap_or("");
            // The single-letter extensions come first: rv64imafdch_...
            let letters = isa
                .strip_prefix("rv64")
                .unwrap_or("")
                .split('_')
                .next()
                .unwrap_or("");
            has_h &= letters.contains('h');
        }
        let first_reg = |compatible: &str| {
            fdt.find_compatible(&[compatible])
                .and_then(|n| n.reg()?.next())
                .map(|r| r.starting_address as usize)
        };
        let mut virtio = [Device::default(); MAX_VIRTIO];
        let mut virtio_slots = 0;
        let virtio_nodes = fdt.all_nodes().filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
        });
        for node in virtio_nodes.take(MAX_VIRTIO) {
            let reg = node
                .reg()
                .and_then(|mut r| r.next())
                .ok_or("virtio-mmio without reg")?;
            let irq = node.interrupts().and_then(|mut i| i.next()).unwrap_or(0);
            virtio[virtio_slots] = Device {
                base: reg.starting_address as usize,
                size: reg.size.unwrap_or(0),
                irq,
            };
            virtio_slots += 1;
        }
        virtio[..virtio_slots].sort_unstable_by_key(|d| d.base);
        let plic_node = fdt
            .find_compatible(&["sifive,plic-1.0.0"])
            .or_else(|| fdt.find_compatible(&["riscv,plic0"]));
        let plic_context = plic_node.and_then(|plic| {
            let hart_intc = boot_hart_intc(&fdt, hart)?;
            // interrupts-extended: a (phandle, interrupt) pair per context.
            let cells = plic.property("interrupts-extended")?.value;
            cells
                .chunks_exact(8)
                .map(|c| {
                    let cell = |i: usize| u32::from_be_bytes(c[i..i + 4].try_into().unwrap());
                    (cell(0), cell(4))
                })
                .position(|pair| pair == (hart_intc, SUPERVISOR_EXTERNAL))
        });
        Ok(Machine {
            ram_base,
            ram_size,
            harts,
            hart_ids,
            has_h: harts > 0 && has_h,
            timebase,
            uart: first_reg("ns16550a"),
            plic: plic_node
                .and_then(|n| n.reg()?.next())
                .map(|r| r.starting_address as usize),
            plic_context,
            virtio,
            virtio_slots,
        })
    }

    /// The virtio-mmio slot at `base`, if the machine has one there.
    pub fn virtio_at(&self, base: usize) -> Option<Device> {
        self.virtio[..self.virtio_slots]
            .iter()
            .copied()
            .find(|d| d.base == base)
    }

    pub fn print(&self) {
        crate::println!(
            "visor-hv: {} MiB of RAM at {:#x}, {} hart(s){}, uart {:#x}, plic {:#x}, {} virtio-mmio slots",
            self.ram_size >> 20,
            self.ram_base,
            self.harts,
            if self.has_h { " with the H extension" } else { "" },
            self.uart.unwrap_or(0),
            self.plic.unwrap_or(0),
            self.virtio_slots
        );
    }
}

/// The phandle of hart `hart`'s interrupt controller (its cpu node's child).
fn boot_hart_intc(fdt: &Fdt, hart: usize) -> Option<u32> {
    let cpus = fdt.find_node("/cpus")?;
    let cpu = cpus
        .children()
        .find(|c| c.property("reg").and_then(|r| r.as_usize()) == Some(hart))?;
    let intc = cpu
        .children()
        .find(|c| c.property("interrupt-controller").is_some())?;
    intc.property("phandle")
        .and_then(|p| p.as_usize())
        .map(|p| p as u32)
}
