//! virtio-console with one port (Linux `hvc0`): the transmit queue goes to a
//! host writer, host input fills the receive queue's buffers.

use crate::{drain_queue, next_chain, Queue, QueueT, VirtioDevice};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use vm_device::{DeviceStats, GuestMemoryMmap};

const RECEIVE: usize = 0;
const TRANSMIT: usize = 1;
const QUEUE_SIZE: u16 = 128;

/// Bytes typed on the host, waiting for the guest to post receive buffers.
pub type ConsoleInput = Arc<Mutex<VecDeque<u8>>>;

pub struct Console {
    output: Box<dyn Write + Send>,
    input: ConsoleInput,
    stats: Arc<DeviceStats>,
    buffer: Vec<u8>,
}

impl Console {
    pub fn new(
        output: Box<dyn Write + Send>,
        input: ConsoleInput,
        stats: Arc<DeviceStats>,
    ) -> Console {
        Console {
            output,
            input,
            stats,
            buffer: Vec::new(),
        }
    }

    fn transmit(
        &mut self,
        mem: &GuestMemoryMmap,
        queue: &mut Queue,
    ) -> Result<bool, virtio_queue::Error> {
        let mut sent = 0;
        let used = drain_queue(queue, mem, |chain| {
            if let Ok(mut reader) = chain.reader(mem) {
                self.buffer.clear();
                if reader.read_to_end(&mut self.buffer).is_ok() {
                    let _ = self.output.write_all(&self.buffer);
                    sent += self.buffer.len();
                }
            }
            0
        })?;
        let _ = self.output.flush();
        self.stats.from_guest(sent);
        Ok(used)
    }

    fn receive(
        &mut self,
        mem: &GuestMemoryMmap,
        queue: &mut Queue,
    ) -> Result<bool, virtio_queue::Error> {
        let mut input = self.input.lock().unwrap_or_else(|e| e.into_inner());
        let mut used = false;
        while !input.is_empty() && queue.ready() {
            let Some(chain) = next_chain(queue, mem)? else {
                break;
            };
            let head = chain.head_index();
            let mut written = 0;
            if let Ok(mut writer) = chain.writer(mem) {
                let n = writer.available_bytes().min(input.len());
                let bytes: Vec<u8> = input.drain(..n).collect();
                if writer.write_all(&bytes).is_ok() {
                    written = n;
                }
            }
            self.stats.to_guest(written);
            queue.add_used(mem, head, written as u32)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        match index {
            TRANSMIT => self.transmit(mem, &mut queues[TRANSMIT]),
            _ => self.receive(mem, &mut queues[RECEIVE]),
        }
    }

    fn has_host_input(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        self.receive(mem, &mut queues[RECEIVE])
    }
}
