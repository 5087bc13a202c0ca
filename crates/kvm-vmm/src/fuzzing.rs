//! Fuzz bodies for the hosted VMM (`fuzz/fuzz_targets/kvm_exits.rs` and
//! `loaders.rs`; seeded pseudo-random inputs in the unit tests), neither
//! needing /dev/kvm:
//!
//! - [`exits`]: the VM's port and MMIO buses — COM1, isa-debug-exit, the
//!   i8042, the POST port and the virtio-mmio slots (a block device and
//!   rng) — built as [`Vm::new`](crate::Vm::new) builds them but with
//!   plain eventfds for interrupts, take synthetic exits through
//!   [`dispatch`]: port I/O of 1, 2 or 4 bytes with a `rep` count, MMIO
//!   of 1, 2, 4 or 8 bytes, at device and random addresses;
//! - [`kernel_images`]: fuzzer-chosen kernel (PVH ELF of either class, or
//!   bzImage), initrd and command line through the boot loader: an error
//!   or a loaded kernel, never a panic.

use crate::devices::{self, ExitRequest};
use crate::vcpu::{dispatch, Access};
use crate::{boot, Buses, VmConfig, MIN_RAM};
use arbitrary::Unstructured;
use std::os::fd::AsRawFd;
use vm_device::{GuestMemoryMmap, StatsTable};
use vm_memory::GuestAddress;

/// Ports the exits aim at, and the first virtio-mmio slot.
const PORTS: &[u64] = &[
    devices::COM1,
    devices::DEBUG_EXIT,
    devices::I8042_COMMAND,
    devices::POST_CODE,
];
const EXITS: usize = 512;
/// Most elements of one string port access.
const MAX_REP: usize = 64;
const DISK_BYTES: u64 = 64 * 512;

/// Fuzz body: see the module documentation.
pub fn exits(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("1 MiB of guest memory");
    let disk = virtio::harness::memory_file(DISK_BYTES);
    let disks = [virtio::blk::DiskConfig {
        path: format!("/proc/self/fd/{}", disk.as_raw_fd()).into(),
        read_only: false,
    }];
    let mut stats = StatsTable::default();
    let exit = ExitRequest::default();
    let plain = |_gsi| devices::eventfd();
    let doorbell = vm_device::Doorbell::new();
    let (pio, _com1) = devices::port_bus(&plain, Box::new(std::io::sink()), &exit, &mut stats)
        .expect("the port bus");
    let (mmio, _) = devices::virtio_bus(&plain, &memory, &disks, None, &doorbell, 2, &mut stats)
        .expect("the virtio bus");
    let buses = Buses { pio, mmio };
    let mut buffer = [0u8; 8 * MAX_REP];
    for _ in 0..EXITS {
        if u.is_empty() {
            break;
        }
        let kind = u.int_in_range(0..=3u8).unwrap_or(0);
        let (size, count) = if kind < 2 {
            (
                [1, 2, 4][u.choose_index(3).unwrap_or(0)],
                u.int_in_range(1..=MAX_REP).unwrap_or(1),
            )
        } else {
            ([1, 2, 4, 8][u.choose_index(4).unwrap_or(0)], 1)
        };
        let data = &mut buffer[..size * count];
        u.fill_buffer(data).unwrap_or(());
        let port = if u.ratio(7, 8).unwrap_or(true) {
            PORTS[u.choose_index(PORTS.len()).unwrap_or(0)] + u.int_in_range(0..=7).unwrap_or(0)
        } else {
            u.arbitrary::<u16>().unwrap_or(0) as u64
        } as u16;
        let addr = if u.ratio(7, 8).unwrap_or(true) {
            let slot = u
                .int_in_range(0..=devices::VIRTIO_SLOTS as u64 - 1)
                .unwrap_or(0);
            devices::VIRTIO_BASE + 0x1000 * slot + u.int_in_range(0..=0x1ff).unwrap_or(0)
        } else {
            u.arbitrary().unwrap_or(0)
        };
        let access = match kind {
            0 => Access::PortOut { port, size, data },
            1 => Access::PortIn { port, size, data },
            2 => Access::MmioWrite { addr, data },
            _ => Access::MmioRead { addr, data },
        };
        dispatch(&buses, access);
        exit.take();
    }
}

/// Fuzz body: see the module documentation.
pub fn kernel_images(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let parts = vm_device::fuzzing::parts(&mut u, 2);
    let file = |name, bytes: &[u8]| vm_device::fuzzing::scratch_file("kernel", name, bytes);
    let config = VmConfig {
        ram_size: MIN_RAM,
        vcpus: 1,
        kernel: file("kernel", &parts[0]),
        initrd: u
            .arbitrary()
            .unwrap_or(false)
            .then(|| file("initrd", &parts[1])),
        cmdline: String::from_utf8_lossy(u.take_rest()).into_owned(),
        disks: Vec::new(),
        net: None,
    };
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MIN_RAM as usize)]).expect("guest memory");
    let _ = boot::load_kernel(&memory, &config, &config.cmdline);
}

#[cfg(test)]
mod tests {
    use vm_device::fuzzing::pseudo_random;

    #[test]
    fn buses_survive_pseudo_random_exits() {
        let mut state = 0xa409_3822_299f_31d0;
        for round in 0..40 {
            super::exits(&pseudo_random(&mut state, 2048 + 101 * round));
        }
    }

    /// Random bytes, and ELF headers of both classes with random program
    /// headers behind them.
    #[test]
    fn kernel_loader_survives_pseudo_random_images() {
        let mut state = 0x082e_fa98_ec4e_6c89;
        for round in 0..60 {
            let mut data = pseudo_random(&mut state, 1024 + 31 * round);
            let header: &[u8] = match round % 3 {
                0 => b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0",
                1 => b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x03\0",
                _ => b"",
            };
            let length = header.len() + 400;
            data[..2].copy_from_slice(&(length as u16).to_le_bytes());
            data[2..2 + header.len()].copy_from_slice(header);
            super::kernel_images(&data);
        }
    }
}
