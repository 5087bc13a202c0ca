//! virtio-rng: fills the guest's buffers from the host's `getrandom`.

use crate::{drain_queue, Queue, VirtioDevice};
use std::io::Write;
use std::sync::Arc;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use vm_device::{DeviceStats, GuestMemoryMmap};

const QUEUE_SIZE: u16 = 64;
/// Most entropy handed out per request.
const MAX_REQUEST: usize = 64 << 10;

pub struct Rng {
    stats: Arc<DeviceStats>,
    buffer: Vec<u8>,
}

impl Rng {
    pub fn new(stats: Arc<DeviceStats>) -> Rng {
        Rng {
            stats,
            buffer: vec![0; MAX_REQUEST],
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        drain_queue(&mut queues[index], mem, |chain| {
            let Ok(mut writer) = chain.writer(mem) else {
                return 0;
            };
            let n = writer.available_bytes().min(MAX_REQUEST);
            let buf = &mut self.buffer[..n];
            if !vm_device::host_random(buf) || writer.write_all(buf).is_err() {
                return 0;
            }
            self.stats.to_guest(n);
            n as u32
        })
    }
}
