//! visor's paravirtual devices: virtio 1.x over the virtio-mmio (version 2)
//! transport, shared by every engine.
//!
//! Split virtqueues come from rust-vmm's `virtio-queue` crate rather than a
//! walker of our own: it implements the whole split-ring contract (indirect
//! descriptors, EVENT_IDX suppression, wrap-around), bounds every chain by
//! the queue size, checks each guest address against vm-memory's regions,
//! and is fuzzed upstream — exactly the hostile-input surface we would
//! otherwise have to rebuild. What it does not do is decide what a chain
//! *means*; each device here turns a chain into a typed request at the
//! boundary (`blk::Request::parse`), and any chain it cannot understand is
//! completed with an error status, never a panic. A queue the driver breaks
//! beyond repair (an available index that runs past the ring) puts the
//! device in DEVICE_NEEDS_RESET until the driver resets it.

pub mod blk;
pub mod console;
pub mod devices;
pub mod harness;
pub mod mmio;
pub mod net;
pub mod rng;
mod tap;

pub use mmio::MmioTransport;
use std::ops::Deref;
pub use virtio_queue::{Queue, QueueT};
use vm_device::GuestMemoryMmap;

/// Size of one virtio-mmio register window (QEMU's `virt` spacing).
pub const MMIO_SLOT_SIZE: u64 = 0x1000;

/// A virtio device model behind a transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (1 net, 2 block, 3 console, 4 entropy).
    fn device_type(&self) -> u32;
    /// Device-specific feature bits; the transport adds VERSION_1,
    /// INDIRECT_DESC and EVENT_IDX.
    fn features(&self) -> u64;
    /// Maximum size of each of the device's queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver kicked queue `index`. Returns true when buffers were used.
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error>;
    /// Whether the device receives host-side input that [`VirtioDevice::poll`] delivers.
    fn has_host_input(&self) -> bool {
        false
    }
    /// Host-side input (received packets, console keystrokes). Returns true when buffers were used.
    fn poll(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        Ok(false)
    }
    /// Waits for the requests host threads still run for the device and
    /// completes them (before a snapshot saves the queues). Returns true
    /// when buffers were used.
    fn settle(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        Ok(false)
    }
    /// The driver reset the device: drop any in-flight host state (waiting
    /// for requests host threads still run).
    fn reset(&mut self) {}
    /// Makes what the guest wrote durable on the host (before a snapshot
    /// refers to a disk by its path).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Lets another process take what the device holds on the host (a
    /// disk image's lock): a migration's source, its guest stopped.
    fn release(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Takes back what [`VirtioDevice::release`] let go.
    fn reacquire(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Completes every available chain of `queue` with `handle`, which returns
/// the number of bytes it wrote into the chain.
pub fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    mut handle: impl FnMut(virtio_queue::DescriptorChain<&GuestMemoryMmap>) -> u32,
) -> Result<bool, virtio_queue::Error> {
    serve_queue(queue, mem, |chain| Some(handle(chain)))
}

/// Hands every available chain of `queue` to `handle`, which returns the
/// number of bytes it wrote into the chain, or `None` when a host thread
/// completes the chain later. With EVENT_IDX, re-checks after re-enabling
/// notifications so no kick is lost. `mem` is what the chains keep to reach
/// guest memory: a reference, or a shared handle a chain can travel with.
/// True when buffers were used.
pub fn serve_queue<M>(
    queue: &mut Queue,
    mem: M,
    mut handle: impl FnMut(virtio_queue::DescriptorChain<M>) -> Option<u32>,
) -> Result<bool, virtio_queue::Error>
where
    M: Deref<Target = GuestMemoryMmap> + Clone,
{
    let mut used = false;
    loop {
        queue.disable_notification(&*mem)?;
        while let Some(chain) = next_chain(queue, mem.clone())? {
            let head = chain.head_index();
            if let Some(len) = handle(chain) {
                queue.add_used(&*mem, head, len)?;
                used = true;
            }
        }
        if !queue.enable_notification(&*mem)? {
            return Ok(used);
        }
    }
}

/// The next available chain, surfacing a broken available ring as an error
/// (where `pop_descriptor_chain` would only log it).
pub fn next_chain<M>(
    queue: &mut Queue,
    mem: M,
) -> Result<Option<virtio_queue::DescriptorChain<M>>, virtio_queue::Error>
where
    M: Deref<Target = GuestMemoryMmap> + Clone,
{
    use virtio_queue::QueueOwnedT;
    Ok(queue.iter(mem)?.next())
}
