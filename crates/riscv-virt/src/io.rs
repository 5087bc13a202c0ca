//! The board's devices beyond CLINT, PLIC and UART: virtio-mmio slots
//! (block, net, console, rng) and the emulated PATA disk, placed where
//! QEMU's `virt` machine puts virtio-mmio and wired to PLIC sources.

use crate::BootError;
use std::io::Write;
use std::sync::{Arc, Mutex};
use virtio::console::ConsoleInput;
use virtio::devices::{self, Slots, Wanted};
use virtio::MmioTransport;
use vm_device::{Bus, Doorbell, GuestMemoryMmap, IrqLine, LevelIrq, StatsTable};

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
    /// A device receives host input on its own (a TAP), so idle sleeps must stay short.
    pub needs_polling: bool,
    /// Rung by the disks' I/O threads as requests finish.
    pub doorbell: Doorbell,
    /// The virtio transports, in slot order (also on the bus), for snapshots.
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// The PATA controller, when the machine has one (also on the bus).
    pub pata: Option<Arc<Mutex<pata::Pata>>>,
}

pub fn build(
    config: &crate::MachineConfig,
    mem: &GuestMemoryMmap,
    output: SharedWriter,
    stats: &mut StatsTable,
) -> Result<IoDevices, BootError> {
    virtio::blk::check_distinct(config.disks.iter().chain(&config.ide_disk))?;
    let console_input = ConsoleInput::default();
    let doorbell = Doorbell::new();
    let mut bus = Bus::new();
    let mut lines = Vec::new();
    let wanted = Wanted {
        disks: &config.disks,
        net: config.net.as_ref(),
        console: Some((Box::new(output), console_input.clone())),
        doorbell: &doorbell,
        disk_queues: config.harts,
    };
    let slots = Slots {
        base: VIRTIO_BASE,
        count: VIRTIO_SLOTS,
    };
    let placed = devices::place(wanted, slots, mem, &mut bus, stats, |slot, device_stats| {
        let line = LevelIrq::new(device_stats.clone());
        lines.push((VIRTIO_IRQ + slot, line.clone()));
        Ok::<_, BootError>(line as Arc<dyn IrqLine>)
    })?;
    let mut io = IoDevices {
        bus,
        lines,
        console_input,
        virtio_slots: placed.len(),
        needs_polling: config.net.is_some(),
        doorbell,
        transports: placed.into_iter().map(|p| p.transport).collect(),
        pata: None,
    };
    if let Some(disk) = &config.ide_disk {
        let (file, len) = disk.open()?;
        let pata_stats = stats.register("pata");
        let line = LevelIrq::new(pata_stats.clone());
        let device = pata::Pata::new(file, len, disk.read_only, line.clone(), pata_stats.clone());
        let device = Arc::new(Mutex::new(device));
        io.bus
            .insert(PATA_BASE, pata::WINDOW, device.clone(), pata_stats)
            .expect("the PATA window is free");
        io.lines.push((PATA_IRQ, line));
        io.pata = Some(device);
    }
    Ok(io)
}
