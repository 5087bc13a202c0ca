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
/// The most one transmit request sends to the host; the rest of a longer
/// chain is consumed unsent (a driver writes a page or so at a time, and a
/// chain of descriptors all pointing at the same large buffer could
/// otherwise make the host copy gigabytes).
pub const MAX_TRANSMIT: usize = 1 << 20;
/// How much of a request is copied at a time.
const CHUNK: usize = 4096;

/// Bytes typed on the host, waiting for the guest to post receive buffers.
pub type ConsoleInput = Arc<Mutex<VecDeque<u8>>>;

pub struct Console {
    output: Box<dyn Write + Send>,
    input: ConsoleInput,
    stats: Arc<DeviceStats>,
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
        }
    }

    fn transmit(
        &mut self,
        mem: &GuestMemoryMmap,
        queue: &mut Queue,
    ) -> Result<bool, virtio_queue::Error> {
        let mut sent = 0;
        let mut chunk = [0u8; CHUNK];
        let used = drain_queue(queue, mem, |chain| {
            if let Ok(reader) = chain.reader(mem) {
                let mut request = reader.take(MAX_TRANSMIT as u64);
                while let Ok(n @ 1..) = request.read(&mut chunk) {
                    let _ = self.output.write_all(&chunk[..n]);
                    sent += n;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{QueueHarness, MEMORY_SIZE};

    /// A host writer that only counts.
    struct Counting(Arc<Mutex<usize>>);

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            *self.0.lock().unwrap() += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_chain_of_the_same_buffer_many_times_sends_at_most_the_cap() {
        let written = Arc::new(Mutex::new(0));
        let mut console = Console::new(
            Box::new(Counting(written.clone())),
            ConsoleInput::default(),
            Default::default(),
        );
        let mut h = QueueHarness::new(QUEUE_SIZE);
        // Every descriptor covers all of guest memory: 128 × 64 KiB = 8 MiB.
        let parts = vec![(0, MEMORY_SIZE as u32, false); QUEUE_SIZE as usize];
        h.add_chain(&parts);
        let queue = std::mem::replace(&mut h.queue, crate::harness::ready_queue(QUEUE_SIZE));
        let mut queues = [crate::harness::ready_queue(QUEUE_SIZE), queue];
        console
            .process_queue(TRANSMIT, &mut queues, &h.mem)
            .unwrap();
        assert_eq!(*written.lock().unwrap(), MAX_TRANSMIT);
        // A short request goes out whole.
        let mut h = QueueHarness::new(QUEUE_SIZE);
        let text = h.buffer(b"hello");
        h.add_chain(&[(text, 5, false)]);
        let queue = std::mem::replace(&mut h.queue, crate::harness::ready_queue(QUEUE_SIZE));
        let mut queues = [crate::harness::ready_queue(QUEUE_SIZE), queue];
        console
            .process_queue(TRANSMIT, &mut queues, &h.mem)
            .unwrap();
        assert_eq!(*written.lock().unwrap(), MAX_TRANSMIT + 5);
    }
}
