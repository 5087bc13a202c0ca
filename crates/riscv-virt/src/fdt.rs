//! The flattened device tree handed to firmware in a1, laid out like QEMU's
//! `virt` machine so the same firmware and kernels boot on both.

use crate::io::{PATA_BASE, PATA_IRQ, VIRTIO_BASE, VIRTIO_IRQ};
use crate::{clint, plic, uart, TEST_BASE, TEST_SIZE, TIMEBASE_HZ};
use riscv_hart::isa;
use vm_fdt::{Error, FdtWriter};

/// What the device tree describes.
pub struct Layout<'a> {
    pub harts: usize,
    pub ram_base: u64,
    pub ram_size: u64,
    pub cmdline: &'a str,
    pub initrd: Option<(u64, u64)>,
    /// virtio-mmio slots in use, from the first.
    pub virtio_slots: usize,
    /// Whether the emulated PATA controller is present.
    pub pata: bool,
    /// Entropy for the kernel's random pool at boot (`/chosen/rng-seed`),
    /// as QEMU's `virt` passes it.
    pub rng_seed: [u8; RNG_SEED_BYTES],
}

/// Bytes of `/chosen/rng-seed` (QEMU's amount).
pub const RNG_SEED_BYTES: usize = 32;

const PHANDLE_PLIC: u32 = 0x100;
const PHANDLE_TEST: u32 = 0x101;

fn cpu_intc_phandle(hart: usize) -> u32 {
    1 + hart as u32
}

pub fn build(layout: &Layout) -> Result<Vec<u8>, Error> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", "riscv-virtio,qemu")?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", layout.cmdline)?;
    fdt.property_string("stdout-path", &format!("/soc/serial@{:x}", uart::BASE))?;
    if let Some((start, end)) = layout.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.property("rng-seed", &layout.rng_seed)?;
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&format!("memory@{:x}", layout.ram_base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[layout.ram_base, layout.ram_size])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ as u32)?;
    for hart in 0..layout.harts {
        let cpu = fdt.begin_node(&format!("cpu@{hart}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", hart as u32)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", &isa::isa_string())?;
        fdt.property_string("riscv,isa-base", isa::ISA_BASE)?;
        fdt.property_string_list(
            "riscv,isa-extensions",
            isa::ISA_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        )?;
        fdt.property_string("mmu-type", "riscv,sv48")?;
        let intc = fdt.begin_node("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_u32("phandle", cpu_intc_phandle(hart))?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let test = fdt.begin_node(&format!("test@{TEST_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec![
            "sifive,test1".into(),
            "sifive,test0".into(),
            "syscon".into(),
        ],
    )?;
    fdt.property_array_u64("reg", &[TEST_BASE, TEST_SIZE])?;
    fdt.property_u32("phandle", PHANDLE_TEST)?;
    fdt.end_node(test)?;

    let clint_node = fdt.begin_node(&format!("clint@{:x}", clint::BASE))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,clint0".into(), "riscv,clint0".into()],
    )?;
    fdt.property_array_u64("reg", &[clint::BASE, clint::SIZE])?;
    // Machine software (3) and machine timer (7) interrupts of every hart.
    let clint_irqs: Vec<u32> = (0..layout.harts)
        .flat_map(|h| [cpu_intc_phandle(h), 3, cpu_intc_phandle(h), 7])
        .collect();
    fdt.property_array_u32("interrupts-extended", &clint_irqs)?;
    fdt.end_node(clint_node)?;

    let plic_node = fdt.begin_node(&format!("plic@{:x}", plic::BASE))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_array_u64("reg", &[plic::BASE, plic::SIZE])?;
    fdt.property_u32("riscv,ndev", plic::SOURCES as u32)?;
    // Machine external (11) and supervisor external (9) of every hart.
    let plic_irqs: Vec<u32> = (0..layout.harts)
        .flat_map(|h| [cpu_intc_phandle(h), 11, cpu_intc_phandle(h), 9])
        .collect();
    fdt.property_array_u32("interrupts-extended", &plic_irqs)?;
    fdt.property_u32("phandle", PHANDLE_PLIC)?;
    fdt.end_node(plic_node)?;

    let serial = fdt.begin_node(&format!("serial@{:x}", uart::BASE))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[uart::BASE, uart::SIZE])?;
    fdt.property_u32("clock-frequency", uart::CLOCK_HZ)?;
    fdt.property_u32("interrupts", uart::IRQ as u32)?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.end_node(serial)?;

    for slot in 0..layout.virtio_slots {
        let base = VIRTIO_BASE + slot as u64 * virtio::MMIO_SLOT_SIZE;
        let node = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[base, virtio::MMIO_SLOT_SIZE])?;
        fdt.property_u32("interrupts", (VIRTIO_IRQ + slot) as u32)?;
        fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
        fdt.end_node(node)?;
    }

    if layout.pata {
        // Linux's pata_of_platform: command block, then control block.
        let node = fdt.begin_node(&format!("ata@{PATA_BASE:x}"))?;
        fdt.property_string("compatible", "ata-generic")?;
        fdt.property_array_u64("reg", &[PATA_BASE, 8, PATA_BASE + pata::CONTROL_OFFSET, 1])?;
        fdt.property_u32("reg-shift", 0)?;
        fdt.property_u32("pio-mode", 4)?;
        fdt.property_null("ata-generic,use16bit")?;
        fdt.property_u32("interrupts", PATA_IRQ as u32)?;
        fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
        fdt.end_node(node)?;
    }
    fdt.end_node(soc)?;

    let poweroff = fdt.begin_node("poweroff")?;
    fdt.property_string("compatible", "syscon-poweroff")?;
    fdt.property_u32("regmap", PHANDLE_TEST)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("value", crate::TEST_POWEROFF)?;
    fdt.end_node(poweroff)?;
    let reboot = fdt.begin_node("reboot")?;
    fdt.property_string("compatible", "syscon-reboot")?;
    fdt.property_u32("regmap", PHANDLE_TEST)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("value", crate::TEST_RESET)?;
    fdt.end_node(reboot)?;

    fdt.end_node(root)?;
    fdt.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a string-list property value: each string NUL-terminated.
    fn string_list(items: &[&str]) -> Vec<u8> {
        items.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn cpus_carry_the_isa_in_all_three_forms() {
        let blob = build(&Layout {
            harts: 2,
            ram_base: 0x8000_0000,
            ram_size: 128 << 20,
            cmdline: "",
            initrd: None,
            virtio_slots: 0,
            pata: false,
            rng_seed: [0x5a; RNG_SEED_BYTES],
        })
        .unwrap();
        assert!(contains(&blob, &string_list(&["rng-seed"])));
        assert!(contains(&blob, &[0x5a; RNG_SEED_BYTES]), "rng-seed's value");
        for name in ["riscv,isa", "riscv,isa-base", "riscv,isa-extensions"] {
            assert!(contains(&blob, &string_list(&[name])), "{name} missing");
        }
        assert!(contains(&blob, &string_list(&[&isa::isa_string()])));
        assert!(contains(&blob, &string_list(&["rv64i"])));
        assert!(contains(&blob, &string_list(isa::ISA_EXTENSIONS)));
        // misa's letters are exactly the single-letter extensions listed.
        for letter in b'a'..=b'z' {
            let listed = isa::ISA_EXTENSIONS.contains(&(letter as char).to_string().as_str());
            let in_misa = isa::MISA & (1 << (letter - b'a')) != 0;
            if letter != b's' && letter != b'u' {
                assert_eq!(listed, in_misa, "extension {}", letter as char);
            }
        }
    }
}
