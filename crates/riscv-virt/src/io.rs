//! The board's devices beyond CLINT, PLIC and UART: virtio-mmio slots
//! (block, net, console, rng) and the emulated PATA disk, placed where
//! QEMU's `virt` machine puts virtio-mmio and wired to PLIC sources.

use crate::BootError;
use std::io::Write;
use std::sync::{Arc, Mutex};
use virtio::blk::Block;
use virtio::console::{Console, ConsoleInput};
use virtio::net::Net;
use virtio::rng::Rng;
use virtio::{MmioTransport, VirtioDevice, MMIO_SLOT_SIZE};
use vm_device::{Bus, DeviceStats, GuestMemoryMmap, LevelIrq, StatsTable};

/// First virtio-mmio slot and its PLIC source; slots follow at 4 KiB steps.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_IRQ: usize = 1;
pub const VIRTIO_SLOTS: usize = 8;
/// The emulated PATA controller (after the virtio slots).
pub const PATA_BASE: u64 = 0x1000_a000;
pub const PATA_IRQ: usize = 11;

/// A host writer several devices print to (the UART and virtio-console share stdout).
#[derive(Clone)]
pub struct SharedWriter(pub Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// What the board built: the bus, the PLIC sources it drives, and what the
/// device tree must describe.
pub struct IoDevices {
    pub bus: Bus,
    pub lines: Vec<(usize, Arc<LevelIrq>)>,
    /// Host keystrokes bound for virtio-console.
    pub console_input: ConsoleInput,
    /// Number of virtio-mmio slots in use.
    pub virtio_slots: usize,
    pub pata: bool,
    /// A device receives host input on its own (a TAP), so idle sleeps must stay short.
    pub needs_polling: bool,
    /// The virtio transports, in slot order (also on the bus), for snapshots.
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// Devices whose state snapshots do not keep yet (disks, a NIC, PATA).
    pub not_snapshotable: Vec<&'static str>,
}

pub fn build(
    config: &crate::MachineConfig,
    mem: &GuestMemoryMmap,
    output: SharedWriter,
    stats: &mut StatsTable,
) -> Result<IoDevices, BootError> {
    let mut io = IoDevices {
        bus: Bus::new(),
        lines: Vec::new(),
        console_input: ConsoleInput::default(),
        virtio_slots: 0,
        pata: false,
        needs_polling: config.net.is_some(),
        transports: Vec::new(),
        not_snapshotable: Vec::new(),
    };
    if config.net.is_some() {
        io.not_snapshotable.push("virtio-net");
    }
    if config.ide_disk.is_some() {
        io.not_snapshotable.push("PATA");
    }
    let mut devices: Vec<(Box<dyn VirtioDevice>, Arc<DeviceStats>)> = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        let device_stats = stats.register(format!("virtio-blk{i}"));
        let device = Block::open(disk, device_stats.clone())?;
        devices.push((Box::new(device), device_stats));
    }
    if let Some(net) = &config.net {
        let device_stats = stats.register("virtio-net");
        let device = Net::open(net, device_stats.clone())?;
        devices.push((Box::new(device), device_stats));
    }
    let device_stats = stats.register("virtio-console");
    let console = Console::new(
        Box::new(output),
        io.console_input.clone(),
        device_stats.clone(),
    );
    devices.push((Box::new(console), device_stats));
    let device_stats = stats.register("virtio-rng");
    devices.push((Box::new(Rng::new(device_stats.clone())), device_stats));
    if devices.len() > VIRTIO_SLOTS {
        return Err(BootError::TooManyDevices(VIRTIO_SLOTS));
    }
    for (slot, (device, device_stats)) in devices.into_iter().enumerate() {
        let line = LevelIrq::new(device_stats.clone());
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            mem.clone(),
            line.clone(),
        )));
        let base = VIRTIO_BASE + slot as u64 * MMIO_SLOT_SIZE;
        io.bus
            .insert(base, MMIO_SLOT_SIZE, transport.clone(), device_stats)
            .expect("virtio slots do not overlap");
        io.transports.push(transport);
        io.lines.push((VIRTIO_IRQ + slot, line));
        io.virtio_slots += 1;
    }
    if let Some(disk) = &config.ide_disk {
        let (file, len) = disk.open()?;
        let pata_stats = stats.register("pata");
        let line = LevelIrq::new(pata_stats.clone());
        let device = pata::Pata::new(file, len, disk.read_only, line.clone(), pata_stats.clone());
        io.bus
            .insert(
                PATA_BASE,
                pata::WINDOW,
                Arc::new(Mutex::new(device)),
                pata_stats,
            )
            .expect("the PATA window is free");
        io.lines.push((PATA_IRQ, line));
        io.pata = true;
    }
    Ok(io)
}
