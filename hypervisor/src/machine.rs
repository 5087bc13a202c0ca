//! The machine as its device tree describes it: RAM, harts, the ISA, and
//! the devices the hypervisor uses or hands to VMs.

use fdt::Fdt;

pub struct Machine {
    pub ram_base: usize,
    pub ram_size: usize,
    pub harts: usize,
    /// Every hart has the H extension (`h` in its ISA).
    pub has_h: bool,
    pub uart: Option<usize>,
    pub plic: Option<usize>,
    pub virtio_slots: usize,
    /// Ticks per second of the `time` CSR.
    pub timebase: usize,
}

impl Machine {
    pub fn from_fdt(address: usize) -> Result<Machine, &'static str> {
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
        let mut has_h = true;
        for cpu in fdt.cpus() {
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
        Ok(Machine {
            ram_base,
            ram_size,
            harts,
            has_h: harts > 0 && has_h,
            timebase,
            uart: first_reg("ns16550a"),
            plic: first_reg("sifive,plic-1.0.0").or_else(|| first_reg("riscv,plic0")),
            virtio_slots: fdt
                .all_nodes()
                .filter(|n| {
                    n.compatible()
                        .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
                })
                .count(),
        })
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
