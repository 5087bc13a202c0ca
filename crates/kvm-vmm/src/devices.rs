//! The VM's port-I/O devices: COM1 (vm-superio's 16550 with an irqfd on
//! IRQ 4), QEMU's isa-debug-exit at 0xf4, the i8042 reset at 0x64 and the
//! POST-code port 0x80 (written by firmware and kernels as an I/O delay).

use crate::{kvm_error, Shared, VmExit, VmmError};
use kvm_ioctls::VmFd;
use std::io::Write;
use std::sync::{Arc, Mutex};
use virtio::devices::{self, Slots, Wanted};
use vm_device::{Bus, BusDevice, DeviceStats, IrqLine, StatsTable};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

pub const COM1: u64 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const DEBUG_EXIT: u64 = 0xf4;
pub const I8042_COMMAND: u64 = 0x64;
pub const POST_CODE: u64 = 0x80;
const I8042_RESET: u8 = 0xfe;

/// Set by a device that ends the VM; the run loop takes it after each exit.
#[derive(Clone, Default)]
pub struct ExitRequest(Shared<Option<VmExit>>);

impl ExitRequest {
    fn set(&self, exit: VmExit) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit);
    }

    pub fn take(&self) -> Option<VmExit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Raises an interrupt through a KVM irqfd, counting it.
struct IrqFdTrigger {
    event: EventFd,
    stats: Arc<DeviceStats>,
}

impl Trigger for IrqFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.stats.interrupt();
        self.event.write(1)
    }
}

pub struct Com1 {
    serial: Serial<IrqFdTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
    stats: Arc<DeviceStats>,
}

impl Com1 {
    /// Moves as much of `pending` into the receive FIFO as fits (raising
    /// the receive interrupt if the driver enabled it).
    pub fn receive(&mut self, pending: &mut std::collections::VecDeque<u8>) {
        let room = self.serial.fifo_capacity();
        let take = room.min(pending.len());
        if take == 0 {
            return;
        }
        let bytes: Vec<u8> = pending.drain(..take).collect();
        if let Ok(n) = self.serial.enqueue_raw_bytes(&bytes) {
            self.stats.to_guest(n);
        }
    }
}

impl BusDevice for Com1 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = self.serial.read(offset as u8);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            self.stats.from_guest(1);
        }
        let _ = self.serial.write(offset as u8, data[0]);
    }
}

/// isa-debug-exit: a write of v ends visor with status (v << 1) | 1, as QEMU does.
struct DebugExit(ExitRequest);

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.0.set(VmExit::DebugExit(data[0]));
    }
}

/// The i8042 controller's command port: only "pulse reset" (0xfe) matters.
struct I8042(ExitRequest);

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0); // status: nothing to read, ready for input
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if data[0] == I8042_RESET {
            self.0.set(VmExit::Reset);
        }
    }
}

/// Port 0x80: accepts and remembers the last POST code.
#[derive(Default)]
struct PostCode(u8);

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.0 = data[0];
    }
}

/// Makes the eventfd that raises a GSI: [`irqfd`] on a VM, a plain
/// eventfd in the fuzz body.
pub type IrqEvents<'a> = &'a dyn Fn(u32) -> Result<EventFd, VmmError>;

/// The port-I/O bus, and COM1 (for feeding it host input).
pub fn port_bus(
    irq_events: IrqEvents,
    console: Box<dyn Write + Send>,
    exit: &ExitRequest,
    stats: &mut StatsTable,
) -> Result<(Bus, Arc<Mutex<Com1>>), VmmError> {
    let mut bus = Bus::new();
    let com1_stats = stats.register("com1");
    let trigger = IrqFdTrigger {
        event: irq_events(COM1_IRQ)?,
        stats: com1_stats.clone(),
    };
    let com1 = Com1 {
        serial: Serial::new(trigger, console),
        stats: com1_stats.clone(),
    };
    let com1 = Arc::new(Mutex::new(com1));
    let placed = [
        (COM1, 8, com1.clone() as vm_device::SharedDevice, com1_stats),
        (
            DEBUG_EXIT,
            4,
            Arc::new(Mutex::new(DebugExit(exit.clone()))),
            stats.register("isa-debug-exit"),
        ),
        (
            I8042_COMMAND,
            1,
            Arc::new(Mutex::new(I8042(exit.clone()))),
            stats.register("i8042"),
        ),
        (
            POST_CODE,
            1,
            Arc::new(Mutex::new(PostCode::default())),
            stats.register("post-code"),
        ),
    ];
    for (base, size, device, device_stats) in placed {
        bus.insert(base, size, device, device_stats)
            .expect("fixed ports do not overlap");
    }
    Ok((bus, com1))
}

/// First virtio-mmio slot (in the 32-bit MMIO hole) and its GSI; slots
/// follow at 4 KiB steps and consecutive GSIs.
pub const VIRTIO_BASE: u64 = 0xd000_0000;
pub const VIRTIO_GSI: u32 = 5;
pub const VIRTIO_SLOTS: usize = 8;

/// A device interrupt delivered through a KVM irqfd: every raise is an edge.
struct IrqFdLine {
    event: EventFd,
    stats: Arc<DeviceStats>,
}

impl IrqLine for IrqFdLine {
    fn set_level(&self, high: bool) {
        if high {
            self.stats.interrupt();
            let _ = self.event.write(1);
        }
    }
}

/// A new non-blocking eventfd.
pub fn eventfd() -> Result<EventFd, VmmError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(|cause| VmmError::Host {
        what: "creating an eventfd",
        cause,
    })
}

/// An eventfd that raises `gsi` in `vm`.
pub fn irqfd(vm: &VmFd, gsi: u32) -> Result<EventFd, VmmError> {
    let event = eventfd()?;
    vm.register_irqfd(&event, gsi)
        .map_err(kvm_error("registering an irqfd"))?;
    Ok(event)
}

/// The virtio-mmio bus — one virtio-blk per disk, virtio-net when asked
/// for, and virtio-rng — and the `virtio_mmio.device=` arguments that
/// announce them to Linux. The disks, with `disk_queues` request queues
/// each, ring `doorbell` as requests finish.
pub fn virtio_bus(
    irq_events: IrqEvents,
    memory: &vm_device::GuestMemoryMmap,
    disks: &[virtio::blk::DiskConfig],
    net: Option<&virtio::net::NetConfig>,
    doorbell: &vm_device::Doorbell,
    disk_queues: usize,
    stats: &mut StatsTable,
) -> Result<(Bus, Vec<String>), VmmError> {
    virtio::blk::check_distinct(disks).map_err(virtio::devices::DeviceError::from)?;
    let mut bus = Bus::new();
    let wanted = Wanted {
        disks,
        net,
        console: None,
        doorbell,
        disk_queues,
    };
    let slots = Slots {
        base: VIRTIO_BASE,
        count: VIRTIO_SLOTS,
    };
    let placed = devices::place(
        wanted,
        slots,
        memory,
        &mut bus,
        stats,
        |slot, device_stats| {
            Ok::<_, VmmError>(Arc::new(IrqFdLine {
                event: irq_events(VIRTIO_GSI + slot as u32)?,
                stats: device_stats.clone(),
            }) as Arc<dyn IrqLine>)
        },
    )?;
    let announce = placed
        .iter()
        .map(|p| {
            let gsi = VIRTIO_GSI + p.slot as u32;
            format!("virtio_mmio.device=4K@{:#x}:{gsi}", p.base)
        })
        .collect();
    Ok((bus, announce))
}
