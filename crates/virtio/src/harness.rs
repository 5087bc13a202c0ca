//! A driver's-eye view of one split virtqueue in a small guest memory, for
//! the unit tests and the fuzz targets: lay out descriptors and rings the way
//! a driver would — or fill the memory with arbitrary bytes — and run a
//! device over it.
//!
//! Layout (guest physical): descriptor table at 0, available ring at
//! 0x1000, used ring at 0x2000, buffers from 0x3000 to [`MEMORY_SIZE`].

use crate::{Queue, QueueT};
use vm_device::vm_memory::{Address, Bytes, GuestAddress};
use vm_device::GuestMemoryMmap;

pub const MEMORY_SIZE: usize = 0x10000;
pub const DESC_TABLE: u64 = 0;
pub const AVAIL_RING: u64 = 0x1000;
pub const USED_RING: u64 = 0x2000;
pub const BUFFERS: u64 = 0x3000;
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

pub struct QueueHarness {
    pub mem: GuestMemoryMmap,
    pub queue: Queue,
    size: u16,
    next_desc: u16,
    next_buffer: u64,
    avail_idx: u16,
}

impl QueueHarness {
    /// An empty, ready queue of `size` entries.
    pub fn new(size: u16) -> QueueHarness {
        QueueHarness::with_memory(&[], size)
    }

    /// A ready queue over memory whose first bytes are `contents` (fuzz input).
    pub fn with_memory(contents: &[u8], size: u16) -> QueueHarness {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)])
            .expect("small test memory");
        let n = contents.len().min(MEMORY_SIZE);
        mem.write_slice(&contents[..n], GuestAddress(0)).unwrap();
        QueueHarness {
            mem,
            queue: ready_queue(size),
            size,
            next_desc: 0,
            next_buffer: BUFFERS,
            avail_idx: 0,
        }
    }

    /// Copies `data` into a fresh buffer and returns its guest address.
    pub fn buffer(&mut self, data: &[u8]) -> u64 {
        let addr = self.next_buffer;
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
        self.next_buffer += (data.len() as u64 + 15) & !15;
        addr
    }

    /// Writes raw descriptor `index` = (addr, len, flags, next).
    pub fn set_descriptor(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC_TABLE + 16 * index as u64);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Adds a chain of (addr, len, writable) buffers and publishes it; returns its head.
    pub fn add_chain(&mut self, parts: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in parts.iter().enumerate() {
            let index = head + i as u16;
            let last = i + 1 == parts.len();
            let flags = if writable { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.set_descriptor(index, addr, len, flags, index + 1);
        }
        self.next_desc += parts.len() as u16;
        self.publish(head);
        head
    }

    /// Puts `head` in the available ring and bumps its index.
    pub fn publish(&mut self, head: u16) {
        let slot = self.avail_idx % self.size;
        self.mem
            .write_obj(head, GuestAddress(AVAIL_RING + 4 + 2 * slot as u64))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    /// Sets the available ring's index directly (hostile drivers do).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem
            .write_obj(idx, GuestAddress(AVAIL_RING + 2))
            .unwrap();
    }

    /// Lets `device` process the queue as if the driver had kicked it.
    pub fn kick(
        &mut self,
        device: &mut dyn crate::VirtioDevice,
    ) -> Result<bool, virtio_queue::Error> {
        device.process_queue(0, std::slice::from_mut(&mut self.queue), &self.mem)
    }

    /// Kicks `device` and waits for what it runs on host threads to complete.
    pub fn kick_and_settle(
        &mut self,
        device: &mut dyn crate::VirtioDevice,
    ) -> Result<bool, virtio_queue::Error> {
        let kicked = self.kick(device)?;
        let settled = device.settle(std::slice::from_mut(&mut self.queue), &self.mem)?;
        Ok(kicked || settled)
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED_RING + 2)).unwrap()
    }

    /// The `n`th used element: (descriptor head, bytes written).
    pub fn used(&self, n: u16) -> (u32, u32) {
        let at = USED_RING + 4 + 8 * (n % self.size) as u64;
        (
            self.mem.read_obj(GuestAddress(at)).unwrap(),
            self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
        )
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.mem.read_slice(&mut out, GuestAddress(addr)).unwrap();
        out
    }
}

/// A ready queue of `size` entries at the harness's ring addresses.
pub fn ready_queue(size: u16) -> Queue {
    let mut queue = Queue::new(size).expect("power-of-two queue size");
    queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
    queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
    queue.set_ready(true);
    queue
}

/// A memory-backed file (memfd) of `len` bytes, for disks in tests and fuzzing.
pub fn memory_file(len: u64) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a valid C string; the descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"visor-disk".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is not owned elsewhere.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(len).unwrap();
    file
}

/// Fuzz body: a virtio-blk device over a 64 KiB disk processes a queue whose
/// memory (descriptors, rings, buffers) is `data`. Must never panic; a
/// result of Err means the device would ask for a reset.
pub fn fuzz_block(data: &[u8]) {
    use crate::blk::Block;
    let (size, read_only, contents) = match data {
        [a, b, rest @ ..] => (1u16 << (a % 9), b & 1 == 1, rest),
        _ => return,
    };
    let mut h = QueueHarness::with_memory(contents, size);
    let stats = std::sync::Arc::new(vm_device::DeviceStats::default());
    let path = std::path::Path::new("fuzz.img");
    let doorbell = vm_device::Doorbell::new();
    let mut device = Block::new(
        memory_file(0x10000),
        0x10000,
        read_only,
        path,
        stats,
        doorbell,
    )
    .expect("a thread for the disk");
    let _ = h.kick(&mut device);
    let _ = h.kick_and_settle(&mut device);
}

/// Fuzz body: the virtio-mmio transport around a virtio-rng device, driven
/// by register writes taken from `data` (offset, value pairs) over guest
/// memory that is also `data`.
pub fn fuzz_transport(data: &[u8]) {
    use crate::mmio::MmioTransport;
    use vm_device::BusDevice;
    let h = QueueHarness::with_memory(data, 8);
    let stats = std::sync::Arc::new(vm_device::DeviceStats::default());
    let irq = vm_device::LevelIrq::new(stats.clone());
    let rng = crate::rng::Rng::new(stats);
    let mut transport = MmioTransport::new(Box::new(rng), h.mem.clone(), irq);
    for op in data.chunks_exact(5) {
        let offset = (op[0] as u64) << 2;
        let value = u32::from_le_bytes([op[1], op[2], op[3], op[4]]);
        if op[1] & 0x80 != 0 {
            let mut out = [0u8; 4];
            transport.read(offset, &mut out);
        } else {
            transport.write(offset, &value.to_le_bytes());
        }
    }
    transport.poll();
}

/// A frame backend that hands every transmitted frame back as received.
pub struct Loopback(pub std::collections::VecDeque<Vec<u8>>);

impl crate::net::FrameBackend for Loopback {
    fn receive(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Ok(self.0.pop_front().map(|frame| {
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            n
        }))
    }
    fn send(&mut self, frame: &[u8]) {
        self.0.push_back(frame.to_vec());
    }
}

/// Fuzz body: virtio-net with a loopback backend over fuzzer-chosen memory
/// used as both queues (transmit, then receive what was sent), and
/// virtio-console transmitting and receiving over the same memory.
pub fn fuzz_net_and_console(data: &[u8]) {
    use crate::VirtioDevice;
    let Some((&shape, contents)) = data.split_first() else {
        return;
    };
    let size = 1u16 << (shape % 9);
    let stats = std::sync::Arc::new(vm_device::DeviceStats::default());
    let backend = Box::new(Loopback(contents.chunks(97).map(<[u8]>::to_vec).collect()));
    let mut net = crate::net::Net::with_backend(backend, crate::net::DEFAULT_MAC, stats.clone());
    let h = QueueHarness::with_memory(contents, size);
    let mut queues = [ready_queue(size), ready_queue(size)];
    let _ = net.process_queue(1, &mut queues, &h.mem);
    let _ = net.process_queue(0, &mut queues, &h.mem);
    let _ = net.poll(&mut queues, &h.mem);

    let input = crate::console::ConsoleInput::default();
    input.lock().unwrap().extend(contents.iter().take(300));
    let mut console = crate::console::Console::new(Box::new(std::io::sink()), input, stats);
    let h = QueueHarness::with_memory(contents, size);
    let mut queues = [ready_queue(size), ready_queue(size)];
    let _ = console.process_queue(1, &mut queues, &h.mem);
    let _ = console.poll(&mut queues, &h.mem);
}
