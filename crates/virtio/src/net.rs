//! virtio-net on a host frame backend (a TAP interface in visor). No
//! offloads are offered, so every frame carries a zeroed 12-byte
//! `virtio_net_hdr_v1` which the device strips on transmit and prepends on
//! receive.

use crate::mmio::read_config_bytes;
use crate::tap::Tap;
use crate::{drain_queue, next_chain, Queue, QueueT, VirtioDevice};
use std::io::{Read, Write};
use std::sync::Arc;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use vm_device::{DeviceStats, GuestMemoryMmap};

const RECEIVE: usize = 0;
const TRANSMIT: usize = 1;
const QUEUE_SIZE: u16 = 256;
const HEADER: usize = 12;
/// Largest frame the device moves (no offloads: 1514 plus VLAN slack).
const MAX_FRAME: usize = 65535;
/// Frames delivered per poll, so one busy interface cannot starve the harts.
const RECEIVE_BUDGET: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("TAP interface {name}: {cause}")]
pub struct NetError {
    name: String,
    cause: std::io::Error,
}

/// `--net tap=NAME[,mac=..]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    pub tap: String,
    pub mac: [u8; 6],
}

/// QEMU's default guest MAC address.
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Where frames go and come from: one Ethernet frame per call.
pub trait FrameBackend: Send {
    /// Reads one frame into `buf`; `Ok(None)` when none is waiting.
    fn receive(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;
    /// Sends one frame; a full host queue may drop it, as a NIC would.
    fn send(&mut self, frame: &[u8]);
}

impl FrameBackend for Tap {
    fn receive(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Tap::receive(self, buf)
    }
    fn send(&mut self, frame: &[u8]) {
        Tap::send(self, frame)
    }
}

/// What a released NIC is attached to: nothing (frames sent are
/// dropped, none arrive), as a cable pulled for a moment.
struct Detached;

impl FrameBackend for Detached {
    fn receive(&mut self, _buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Ok(None)
    }
    fn send(&mut self, _frame: &[u8]) {}
}

pub struct Net {
    backend: Box<dyn FrameBackend>,
    /// The TAP's name, when the backend is one (to let it go and take it
    /// again: a single-queue TAP has one user at a time).
    tap: Option<String>,
    /// The TAP was let go (see [`VirtioDevice::release`]).
    released: bool,
    mac: [u8; 6],
    stats: Arc<DeviceStats>,
    /// Header plus frame as read from the TAP.
    frame: Vec<u8>,
    /// Length of a frame in `frame` that found no receive buffer yet.
    pending: Option<usize>,
    buffer: Vec<u8>,
}

impl Net {
    pub fn open(config: &NetConfig, stats: Arc<DeviceStats>) -> Result<Net, NetError> {
        let tap = Tap::open(&config.tap).map_err(|cause| NetError {
            name: config.tap.clone(),
            cause,
        })?;
        let mut net = Net::with_backend(Box::new(tap), config.mac, stats);
        net.tap = Some(config.tap.clone());
        Ok(net)
    }

    pub fn with_backend(
        backend: Box<dyn FrameBackend>,
        mac: [u8; 6],
        stats: Arc<DeviceStats>,
    ) -> Net {
        Net {
            backend,
            tap: None,
            released: false,
            mac,
            stats,
            frame: vec![0; HEADER + MAX_FRAME],
            pending: None,
            buffer: Vec::with_capacity(HEADER + MAX_FRAME),
        }
    }

    fn transmit(
        &mut self,
        mem: &GuestMemoryMmap,
        queue: &mut Queue,
    ) -> Result<bool, virtio_queue::Error> {
        drain_queue(queue, mem, |chain| {
            let Ok(reader) = chain.reader(mem) else {
                return 0;
            };
            self.buffer.clear();
            let frame_ok = reader
                .take((HEADER + MAX_FRAME) as u64 + 1)
                .read_to_end(&mut self.buffer)
                .is_ok();
            if frame_ok && self.buffer.len() > HEADER && self.buffer.len() <= HEADER + MAX_FRAME {
                self.backend.send(&self.buffer[HEADER..]);
                self.stats.from_guest(self.buffer.len() - HEADER);
            }
            0
        })
    }

    /// Moves frames from the TAP into receive buffers while both exist.
    fn receive(
        &mut self,
        mem: &GuestMemoryMmap,
        queue: &mut Queue,
    ) -> Result<bool, virtio_queue::Error> {
        let mut used = false;
        for _ in 0..RECEIVE_BUDGET {
            if !queue.ready() {
                break;
            }
            let len = match self.pending.take() {
                Some(len) => len,
                None => match self.backend.receive(&mut self.frame[HEADER..]) {
                    Ok(Some(n)) => {
                        self.frame[..HEADER].fill(0);
                        self.frame[10] = 1; // num_buffers
                        HEADER + n
                    }
                    _ => break,
                },
            };
            let Some(chain) = next_chain(queue, mem)? else {
                // Out of buffers: ask for a kick when the driver refills.
                self.pending = Some(len);
                if queue.enable_notification(mem)? {
                    continue;
                }
                break;
            };
            let frame = &self.frame[..len];
            let head = chain.head_index();
            let mut written = 0;
            if let Ok(mut writer) = chain.writer(mem) {
                // A frame larger than the buffer is dropped, not truncated.
                if writer.available_bytes() >= frame.len() && writer.write_all(frame).is_ok() {
                    written = frame.len();
                    self.stats.to_guest(frame.len() - HEADER);
                }
            }
            queue.add_used(mem, head, written as u32)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac, offset, data);
    }

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

    fn reset(&mut self) {
        self.pending = None;
    }

    /// Closes the TAP, so another process (a migration's destination, a
    /// loaded snapshot's machine) can attach to it.
    fn release(&mut self) -> std::io::Result<()> {
        if self.tap.is_some() && !self.released {
            self.backend = Box::new(Detached);
            self.pending = None;
            self.released = true;
        }
        Ok(())
    }

    /// Attaches to the TAP again.
    fn reacquire(&mut self) -> std::io::Result<()> {
        if let (Some(name), true) = (&self.tap, self.released) {
            self.backend = Box::new(Tap::open(name)?);
            self.released = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{ready_queue, Loopback, QueueHarness};

    #[test]
    fn transmit_strips_the_header_and_receive_prepends_it() {
        let stats = Arc::new(DeviceStats::default());
        let mut net = Net::with_backend(
            Box::new(Loopback(Default::default())),
            DEFAULT_MAC,
            stats.clone(),
        );
        let mut frame = vec![0u8; HEADER];
        frame.extend_from_slice(b"an ethernet frame of sorts");
        // Transmit queue: one frame. The loopback backend hands it back.
        let mut tx = QueueHarness::new(8);
        let at = tx.buffer(&frame);
        tx.add_chain(&[(at, frame.len() as u32, false)]);
        let mut queues = [ready_queue(8), ready_queue(8)];
        assert!(net.process_queue(TRANSMIT, &mut queues, &tx.mem).unwrap());
        assert_eq!(tx.used(0), (0, 0));
        // Receive queue: a buffer too small for the frame, then a big one.
        let mut rx = QueueHarness::new(8);
        let small = rx.buffer(&[0; 16]);
        let big = rx.buffer(&[0xee; 2048]);
        rx.add_chain(&[(small, 16, true)]);
        rx.add_chain(&[(big, 2048, true)]);
        let mut queues = [ready_queue(8), ready_queue(8)];
        assert!(net.poll(&mut queues, &rx.mem).unwrap());
        assert_eq!(
            rx.used(0),
            (0, 0),
            "a frame too big for its buffer is dropped, not truncated"
        );
        assert_eq!(rx.used_idx(), 1, "only one frame was sent");
        assert_eq!(rx.read(big, 1), [0xee]);
        let mut received = QueueHarness::new(8);
        let buf = received.buffer(&[0xee; 2048]);
        received.add_chain(&[(buf, 2048, true)]);
        let mut net = Net::with_backend(
            Box::new(Loopback([b"frame".to_vec()].into())),
            DEFAULT_MAC,
            stats.clone(),
        );
        let mut queues = [ready_queue(8), ready_queue(8)];
        assert!(net.poll(&mut queues, &received.mem).unwrap());
        assert_eq!(received.used(0), (0, (HEADER + 5) as u32));
        let bytes = received.read(buf, HEADER + 5);
        assert_eq!(&bytes[..10], &[0; 10]);
        assert_eq!(bytes[10], 1, "num_buffers");
        assert_eq!(&bytes[HEADER..], b"frame");
        let [_, _, from_guest, to_guest] = stats.snapshot();
        assert_eq!((from_guest, to_guest), (26, 5));
    }
}
