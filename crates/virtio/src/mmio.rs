//! The virtio-mmio transport, version 2 (virtio 1.x §4.2.2): the register
//! window Linux's `virtio_mmio` driver programs, wrapping one [`VirtioDevice`].

use crate::{Queue, QueueT, VirtioDevice};
use std::sync::Arc;
use virtio_bindings::virtio_config::*;
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_device::{BusDevice, GuestMemoryMmap, IrqLine};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// Vendor ID reported to the driver ("VISR").
const VENDOR_ID: u32 = 0x5253_4956;

/// Features every device gets from the transport.
const TRANSPORT_FEATURES: u64 =
    1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX;

/// One virtio device as seen through its MMIO register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    irq: Arc<dyn IrqLine>,
    queues: Vec<Queue>,
    status: u32,
    interrupt_status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: Arc<dyn IrqLine>,
    ) -> MmioTransport {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("device queue sizes are powers of two"))
            .collect();
        MmioTransport {
            device,
            mem,
            irq,
            queues,
            status: 0,
            interrupt_status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        }
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | TRANSPORT_FEATURES
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn running(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0
            && self.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.interrupt_status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.irq.set_level(false);
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value & !VIRTIO_CONFIG_S_NEEDS_RESET;
        let newly = value & !self.status;
        if newly & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let unknown = self.driver_features & !self.offered_features();
            if unknown != 0 || self.driver_features & (1 << VIRTIO_F_VERSION_1) == 0 {
                value &= !VIRTIO_CONFIG_S_FEATURES_OK; // the driver reads this back and gives up
            }
        }
        if newly & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            let event_idx = self.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
            for q in &mut self.queues {
                q.set_event_idx(event_idx);
            }
        }
        self.status = value | (self.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    }

    /// Runs `work` on the device's queues and raises the interrupt when the
    /// driver asked to hear about the buffers it used.
    fn service(
        &mut self,
        work: impl FnOnce(
            &mut dyn VirtioDevice,
            &mut [Queue],
            &GuestMemoryMmap,
        ) -> Result<bool, virtio_queue::Error>,
    ) {
        if !self.running() {
            return;
        }
        match work(self.device.as_mut(), &mut self.queues, &self.mem) {
            Ok(false) => {}
            Ok(true) => {
                let mut notify = false;
                for q in self.queues.iter_mut().filter(|q| q.ready()) {
                    // An unreadable used-event field: notify rather than lose a completion.
                    notify |= q.needs_notification(&self.mem).unwrap_or(true);
                }
                if notify {
                    self.raise(VIRTIO_MMIO_INT_VRING);
                }
            }
            Err(_) => {
                self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
                self.raise(VIRTIO_MMIO_INT_CONFIG);
            }
        }
    }

    fn raise(&mut self, bits: u32) {
        self.interrupt_status |= bits;
        self.irq.set_level(true);
    }

    fn read_register(&mut self, offset: u32) -> u32 {
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size() as u32),
            VIRTIO_MMIO_QUEUE_READY => self.selected_queue().is_some_and(|q| q.ready()) as u32,
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        let mem = self.mem.clone();
        let configurable = self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | value as u64
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (value as u64) << 32
                    }
                    _ => {}
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM if configurable => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value.min(u16::MAX as u32) as u16);
                }
            }
            VIRTIO_MMIO_QUEUE_READY if configurable => {
                if let Some(q) = self.selected_queue() {
                    // A queue whose rings are misaligned or outside RAM never becomes ready.
                    q.set_ready(value == 1);
                    if q.ready() && !q.is_valid(&mem) {
                        q.set_ready(false);
                    }
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                let index = value as usize;
                if self.queues.get(index).is_some_and(|q| q.ready()) {
                    self.service(|dev, queues, mem| dev.process_queue(index, queues, mem));
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.interrupt_status &= !value;
                if self.interrupt_status == 0 {
                    self.irq.set_level(false);
                }
            }
            VIRTIO_MMIO_STATUS => self.set_status(value),
            VIRTIO_MMIO_QUEUE_DESC_LOW..=VIRTIO_MMIO_QUEUE_USED_HIGH if configurable => {
                let (low, high) = if offset.is_multiple_of(8) {
                    (Some(value), None)
                } else {
                    (None, Some(value))
                };
                if let Some(q) = self.selected_queue() {
                    match offset & !4 {
                        VIRTIO_MMIO_QUEUE_DESC_LOW => q.set_desc_table_address(low, high),
                        VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.set_avail_ring_address(low, high),
                        VIRTIO_MMIO_QUEUE_USED_LOW => q.set_used_ring_address(low, high),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            self.device
                .read_config(offset - VIRTIO_MMIO_CONFIG as u64, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_register(offset as u32).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            self.device
                .write_config(offset - VIRTIO_MMIO_CONFIG as u64, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            let value = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            self.write_register(offset as u32, value);
        }
    }

    fn poll(&mut self) {
        self.service(|dev, queues, mem| dev.poll(queues, mem));
    }

    fn needs_poll(&self) -> bool {
        self.device.has_host_input()
    }
}

/// Copies the part of `config` that `[offset, offset + data.len())` covers;
/// the rest of `data` is left as is (zero).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
