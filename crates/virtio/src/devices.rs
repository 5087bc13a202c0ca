//! The one place a machine's virtio devices are made and placed: a
//! virtio-blk per disk (in order: Linux's `vda`, `vdb`, …), virtio-net on a
//! TAP when asked for, virtio-console where the board has it, and
//! virtio-rng, each behind a virtio-mmio transport in consecutive slots.
//! Boards differ only in where the slots start and how a slot's interrupt
//! reaches the guest (a PLIC line, a KVM irqfd), which they pass in.

use crate::blk::{Block, DiskConfig, DiskError};
use crate::console::{Console, ConsoleInput};
use crate::net::{Net, NetConfig, NetError};
use crate::rng::Rng;
use crate::{MmioTransport, VirtioDevice, MMIO_SLOT_SIZE};
use std::io::Write;
use std::sync::{Arc, Mutex};
use vm_device::{Bus, DeviceStats, Doorbell, GuestMemoryMmap, IrqLine, StatsTable};

/// What the machine's configuration asks for.
pub struct Wanted<'a> {
    pub disks: &'a [DiskConfig],
    pub net: Option<&'a NetConfig>,
    /// virtio-console: where its output goes and where host input for it waits.
    pub console: Option<(Box<dyn Write + Send>, ConsoleInput)>,
    /// What the disks' I/O threads ring as requests finish.
    pub doorbell: &'a Doorbell,
    /// Request queues per disk: one per hart or vCPU.
    pub disk_queues: usize,
}

/// Where the slots are.
pub struct Slots {
    /// Guest-physical address of the first slot; slots follow at
    /// [`MMIO_SLOT_SIZE`] steps.
    pub base: u64,
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("too many virtio devices: the machine has {0} virtio-mmio slots")]
    TooMany(usize),
}

/// A placed device.
pub struct Placed {
    pub slot: usize,
    pub base: u64,
    pub transport: Arc<Mutex<MmioTransport>>,
}

/// Opens what `wanted` names and places each device in the next slot of
/// `bus`, with the interrupt `line` makes for its slot number.
pub fn place<E: From<DeviceError>>(
    wanted: Wanted<'_>,
    slots: Slots,
    memory: &GuestMemoryMmap,
    bus: &mut Bus,
    stats: &mut StatsTable,
    mut line: impl FnMut(usize, &Arc<DeviceStats>) -> Result<Arc<dyn IrqLine>, E>,
) -> Result<Vec<Placed>, E> {
    let mut devices: Vec<(Box<dyn VirtioDevice>, Arc<DeviceStats>)> = Vec::new();
    for (i, disk) in wanted.disks.iter().enumerate() {
        let device_stats = stats.register(format!("virtio-blk{i}"));
        let device = Block::open(
            disk,
            wanted.disk_queues,
            device_stats.clone(),
            wanted.doorbell.clone(),
        )
        .map_err(DeviceError::from)?;
        devices.push((Box::new(device), device_stats));
    }
    if let Some(net) = wanted.net {
        let device_stats = stats.register("virtio-net");
        let device = Net::open(net, device_stats.clone()).map_err(DeviceError::from)?;
        devices.push((Box::new(device), device_stats));
    }
    if let Some((output, input)) = wanted.console {
        let device_stats = stats.register("virtio-console");
        let console = Console::new(output, input, device_stats.clone());
        devices.push((Box::new(console), device_stats));
    }
    let device_stats = stats.register("virtio-rng");
    devices.push((Box::new(Rng::new(device_stats.clone())), device_stats));
    if devices.len() > slots.count {
        return Err(DeviceError::TooMany(slots.count).into());
    }
    let mut placed = Vec::new();
    for (slot, (device, device_stats)) in devices.into_iter().enumerate() {
        let irq = line(slot, &device_stats)?;
        let transport = Arc::new(Mutex::new(MmioTransport::new(device, memory.clone(), irq)));
        let base = slots.base + slot as u64 * MMIO_SLOT_SIZE;
        bus.insert(base, MMIO_SLOT_SIZE, transport.clone(), device_stats)
            .expect("virtio slots do not overlap");
        placed.push(Placed {
            slot,
            base,
            transport,
        });
    }
    Ok(placed)
}
