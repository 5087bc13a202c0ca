//! The virtio-mmio transport, version 2 (virtio 1.x §4.2.2): the register
//! window Linux's `virtio_mmio` driver programs, wrapping one [`VirtioDevice`].

use crate::{Queue, QueueT, VirtioDevice};
use std::sync::Arc;
use virtio_bindings::virtio_config::*;
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_device::{check, BusDevice, GuestMemoryMmap, IrqLine, Persist, RestoreError};

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

    /// Completes what the device still has in flight (see
    /// [`VirtioDevice::settle`]), then [`VirtioDevice::flush`]es it.
    pub fn flush_device(&mut self) -> std::io::Result<()> {
        if self.running() {
            self.service(|dev, queues, mem| dev.settle(queues, mem));
        } else {
            // A device that needs a reset: its requests still end before a
            // snapshot, in rings the driver must reset anyway.
            let _ = self.device.settle(&mut self.queues, &self.mem);
        }
        self.device.flush()
    }

    /// See [`VirtioDevice::release`].
    pub fn release_device(&mut self) -> std::io::Result<()> {
        self.device.release()
    }

    /// See [`VirtioDevice::reacquire`].
    pub fn reacquire_device(&mut self) -> std::io::Result<()> {
        self.device.reacquire()
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

/// What a snapshot keeps of a transport: its registers and every queue's
/// configuration and ring positions. The device behind it is re-created
/// from the machine's configuration (its host side: a file, a TAP) and
/// keeps no state between requests; those in flight complete first (see
/// [`MmioTransport::flush_device`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MmioState {
    pub device_type: u32,
    pub status: u32,
    pub interrupt_status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub queues: Vec<QueueState>,
}

/// virtio-queue's `QueueState`, which does not serialize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl Persist for MmioTransport {
    type State = MmioState;

    fn save(&self) -> MmioState {
        MmioState {
            device_type: self.device.device_type(),
            status: self.status,
            interrupt_status: self.interrupt_status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            queues: self
                .queues
                .iter()
                .map(|q| {
                    let s = q.state();
                    QueueState {
                        max_size: s.max_size,
                        next_avail: s.next_avail,
                        next_used: s.next_used,
                        event_idx_enabled: s.event_idx_enabled,
                        size: s.size,
                        ready: s.ready,
                        desc_table: s.desc_table,
                        avail_ring: s.avail_ring,
                        used_ring: s.used_ring,
                    }
                })
                .collect(),
        }
    }

    fn restore(&mut self, s: &MmioState) -> Result<(), RestoreError> {
        const NAME: &str = "virtio-mmio";
        check(
            s.device_type == self.device.device_type(),
            NAME,
            &format!(
                "a device of type {}, this slot has type {}",
                s.device_type,
                self.device.device_type()
            ),
        )?;
        check(
            s.queues.len() == self.queues.len(),
            NAME,
            "another number of queues",
        )?;
        check(
            s.driver_features & !self.offered_features() == 0,
            NAME,
            "features the device does not offer",
        )?;
        let mut queues = Vec::with_capacity(s.queues.len());
        for (saved, max) in s.queues.iter().zip(self.device.queue_max_sizes()) {
            check(saved.max_size == *max, NAME, "another queue size")?;
            let state = virtio_queue::QueueState {
                max_size: saved.max_size,
                next_avail: saved.next_avail,
                next_used: saved.next_used,
                event_idx_enabled: saved.event_idx_enabled,
                size: saved.size,
                ready: saved.ready,
                desc_table: saved.desc_table,
                avail_ring: saved.avail_ring,
                used_ring: saved.used_ring,
            };
            let queue = Queue::try_from(state)
                .map_err(|e| RestoreError::new(NAME, format!("a queue it cannot take: {e}")))?;
            queues.push(queue);
        }
        self.queues = queues;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.irq.set_level(self.interrupt_status != 0);
        Ok(())
    }
}

#[cfg(test)]
mod persist_tests {
    use super::*;
    use crate::harness::{QueueHarness, AVAIL_RING, DESC_TABLE, USED_RING};
    use vm_device::{DeviceStats, LevelIrq};

    fn write(t: &mut MmioTransport, reg: u32, value: u32) {
        t.write(reg as u64, &value.to_le_bytes());
    }

    /// An rng transport over `h`'s memory, driven up to DRIVER_OK.
    fn driven(h: &QueueHarness) -> (MmioTransport, Arc<LevelIrq>) {
        let stats = Arc::new(DeviceStats::default());
        let irq = LevelIrq::new(stats.clone());
        let mut t = MmioTransport::new(
            Box::new(crate::rng::Rng::new(stats)),
            h.mem.clone(),
            irq.clone(),
        );
        write(
            &mut t,
            VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, 1); // VERSION_1
        let features_ok =
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
        write(&mut t, VIRTIO_MMIO_STATUS, features_ok);
        write(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
        write(&mut t, VIRTIO_MMIO_QUEUE_NUM, 8);
        write(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC_TABLE as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL_RING as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, USED_RING as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
        write(
            &mut t,
            VIRTIO_MMIO_STATUS,
            features_ok | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        (t, irq)
    }

    #[test]
    fn a_restored_transport_goes_on_from_the_same_ring_positions() {
        let mut h = QueueHarness::new(8);
        let (mut original, _) = driven(&h);
        let buffer = h.buffer(&[0; 16]);
        h.add_chain(&[(buffer, 16, true)]);
        write(&mut original, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(h.used_idx(), 1);

        let text = serde_json::to_string(&original.save()).unwrap();
        let saved: MmioState = serde_json::from_str(&text).unwrap();
        let stats = Arc::new(DeviceStats::default());
        let irq = LevelIrq::new(stats.clone());
        let mut restored = MmioTransport::new(
            Box::new(crate::rng::Rng::new(stats)),
            h.mem.clone(),
            irq.clone(),
        );
        restored.restore(&saved).unwrap();
        assert_eq!(restored.save(), original.save());
        assert!(irq.level(), "the used buffer's interrupt is still raised");

        // The next request is served by the restored transport, in the next slot.
        let buffer = h.buffer(&[0; 16]);
        h.add_chain(&[(buffer, 16, true)]);
        write(&mut restored, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(h.used_idx(), 2);
    }

    #[test]
    fn impossible_transport_states_are_refused_and_change_nothing() {
        let h = QueueHarness::new(8);
        let (original, _) = driven(&h);
        let saved = original.save();
        let (mut target, _) = driven(&h);
        let before = target.save();
        let mut other_type = saved.clone();
        other_type.device_type = 2;
        let mut bad_queue = saved.clone();
        bad_queue.queues[0].size = 3; // not a power of two
        let mut no_queues = saved.clone();
        no_queues.queues.clear();
        let mut features = saved.clone();
        features.driver_features |= 1 << 50;
        for state in [other_type, bad_queue, no_queues, features] {
            assert!(target.restore(&state).is_err(), "{state:?}");
            assert_eq!(target.save(), before);
        }
    }
}
