//! Fuzz bodies for the board (`fuzz/fuzz_targets/platform_devices.rs`
//! and `loaders.rs`; seeded pseudo-random inputs in the unit tests):
//!
//! - [`platform_accesses`]: a machine's [`Platform`] — CLINT, PLIC, UART,
//!   test device, every virtio-mmio slot (block, net-less console, rng)
//!   and the PATA window — takes fuzzer-chosen loads and stores of 1, 2, 4
//!   and 8 bytes, aligned or not, with any value, from any hart;
//! - [`boot_images`]: fuzzer-chosen kernel (ELF or Linux `Image`),
//!   firmware and initrd through the loaders, the placement checks and the
//!   device tree: an error or a machine, never a panic, and nothing
//!   written outside guest RAM.

use crate::{io, loader, ConsoleDevice, Machine, MachineConfig, MIN_RAM};
use arbitrary::Unstructured;
use riscv_hart::Platform;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Device windows the accesses aim at (base, size).
const WINDOWS: &[(u64, u64)] = &[
    (crate::clint::BASE, crate::clint::SIZE),
    (crate::plic::BASE, crate::plic::SIZE),
    (crate::uart::BASE, crate::uart::SIZE),
    (crate::TEST_BASE, crate::TEST_SIZE),
    (io::VIRTIO_BASE, 0x1000 * io::VIRTIO_SLOTS as u64),
    (io::PATA_BASE, 0x1000),
];
const ACCESSES: usize = 512;
const DISK_BYTES: u64 = 64 * 512;

/// A disk image in memory, named by a path the machine can open.
fn memory_disk() -> (std::fs::File, PathBuf) {
    let file = virtio::harness::memory_file(DISK_BYTES);
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    (file, path)
}

/// Fuzz body: see the module documentation.
pub fn platform_accesses(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (_virtio_disk, virtio_path) = memory_disk();
    let (_ide_disk, ide_path) = memory_disk();
    let mut config = MachineConfig::new(MIN_RAM);
    config.harts = u.int_in_range(1..=4).unwrap_or(1);
    config.disks = vec![virtio::blk::DiskConfig {
        path: virtio_path,
        read_only: false,
    }];
    config.ide_disk = Some(virtio::blk::DiskConfig {
        path: ide_path,
        read_only: u.arbitrary().unwrap_or(false),
    });
    if u.arbitrary().unwrap_or(false) {
        config.console = ConsoleDevice::Virtio;
    }
    let (ram, memory) = crate::allocate_ram(config.ram_size).expect("1 MiB of guest RAM");
    let (mut machine, _) = Machine::assemble(&config, ram, &memory, Box::new(std::io::sink()))
        .expect("a machine without images assembles");
    let devices = &mut machine.devices;
    for _ in 0..ACCESSES {
        if u.is_empty() {
            break;
        }
        let hart = u.int_in_range(0..=config.harts - 1).unwrap_or(0);
        let (base, size) = WINDOWS[u.choose_index(WINDOWS.len()).unwrap_or(0)];
        let offset = if u.ratio(3, 4).unwrap_or(true) {
            u.int_in_range(0..=0x1ff).unwrap_or(0)
        } else {
            u.int_in_range(0..=size - 1).unwrap_or(0)
        };
        let width = [1, 2, 4, 8][u.choose_index(4).unwrap_or(0)];
        let value: u64 = u.arbitrary().unwrap_or(0);
        if u.arbitrary().unwrap_or(false) {
            devices.store(hart, base + offset, width, value);
        } else {
            devices.load(hart, base + offset, width);
        }
        devices.exit = None;
    }
}

/// Fuzz body: see the module documentation.
pub fn boot_images(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let parts = vm_device::fuzzing::parts(&mut u, 3);
    let [kernel, firmware, initrd] = [&parts[0], &parts[1], &parts[2]];
    let file = |name, bytes: &[u8]| vm_device::fuzzing::scratch_file("boot", name, bytes);
    let mut config = MachineConfig::new(MIN_RAM << u.int_in_range(0..=3).unwrap_or(0));
    config.kernel = Some(file("kernel", kernel));
    if u.arbitrary().unwrap_or(false) {
        config.firmware = Some(file("firmware", firmware));
    }
    if u.arbitrary().unwrap_or(false) {
        config.initrd = Some(file("initrd", initrd));
    }
    config.cmdline = String::from_utf8_lossy(u.take_rest()).into_owned();
    // An error or a machine; either way RAM is the only memory written.
    let _ = Machine::new(&config, Box::new(std::io::sink()));
    let _ = loader::linux_image_size(kernel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_device::fuzzing::pseudo_random;

    #[test]
    fn platform_survives_pseudo_random_accesses() {
        let mut state = 0x243f_6a88_85a3_08d3;
        for round in 0..40 {
            platform_accesses(&pseudo_random(&mut state, 1024 + 97 * round));
        }
    }

    /// Random bytes, and a valid riscv64 ELF header with random program
    /// headers behind it (so segment checks are reached).
    #[test]
    fn loaders_survive_pseudo_random_images() {
        let mut state = 0x1319_8a2e_0370_7344;
        for round in 0..60 {
            let mut data = pseudo_random(&mut state, 512 + 31 * round);
            if round % 2 == 0 {
                let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xf3\0".to_vec();
                elf.extend_from_slice(&pseudo_random(&mut state, 300));
                data[..2].copy_from_slice(&(elf.len() as u16).to_le_bytes());
                data[2..2 + elf.len()].copy_from_slice(&elf);
            }
            boot_images(&data);
        }
    }
}
