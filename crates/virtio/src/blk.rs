//! virtio-blk on a raw image file: read, write, flush (fdatasync before the
//! request completes), discard (punches holes), get-id, read-only disks.
//!
//! Each descriptor chain is turned into a typed [`Request`] at the boundary
//! (Firecracker's pattern): the header must be readable, the status byte the
//! last writable byte, transfers whole sectors inside the disk, with
//! overflow-checked arithmetic. Anything else completes with
//! `VIRTIO_BLK_S_IOERR` or `VIRTIO_BLK_S_UNSUPP`.
//!
//! Requests run on a worker thread of the disk's own, so a large or slow
//! one never stalls the harts, a vCPU or the console: the thread that runs
//! the guest only takes chains off the queue and hands them over, and puts
//! the finished ones in the used ring (raising the interrupt) when the
//! worker rings the machine's [`Doorbell`]. One worker per disk runs
//! requests in the order the driver made them available, so a flush
//! follows the writes before it; on the project's 2-core hosts a second
//! worker would only compete with the hart for a core. (io_uring, Cloud
//! Hypervisor's choice, would avoid the thread hop, but its crate pulls in
//! a ring per disk to set up, register and tear down around snapshots; a
//! thread and two channels are enough at these rates.) Before a snapshot,
//! a migration's last copy, a reset or handing the image's lock over,
//! the device waits for every request in flight.

use crate::mmio::read_config_bytes;
use crate::{serve_queue, Queue, QueueT, VirtioDevice};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_device::{DeviceStats, Doorbell, GuestMemoryMmap};

/// The readable and writable parts of a chain over guest memory (whose
/// writes set its dirty bitmap).
type ChainReader<'a> = Reader<'a, vm_memory::bitmap::BS<'a, vm_memory::bitmap::AtomicBitmap>>;
type ChainWriter<'a> = Writer<'a, vm_memory::bitmap::BS<'a, vm_memory::bitmap::AtomicBitmap>>;

pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Most request queues a disk offers (KVM's vCPU limit).
const MAX_QUEUES: usize = 32;
/// Largest piece copied between the image and guest memory at a time.
const CHUNK: usize = 128 << 10;
/// Discard ranges are aligned to (and at most) this many sectors each.
const DISCARD_ALIGNMENT: u32 = 8;
const MAX_DISCARD_SECTORS: u32 = u32::MAX / SECTOR_SIZE as u32;
const ID_BYTES: usize = VIRTIO_BLK_ID_BYTES as usize;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk image {}: {cause}", path.display())]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("disk image {}: in use by another VM (locked); an image several VMs share must be readonly in all of them", path.display())]
    Locked { path: PathBuf },
    #[error("disk image {} is given twice", path.display())]
    Twice { path: PathBuf },
    #[error("disk image {}: cannot start its I/O thread: {cause}", path.display())]
    Worker {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Why a request failed; each maps to a status byte.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The chain has no writable byte for the status.
    NoStatus,
    /// The header is short or not device-readable.
    BadHeader,
    /// A transfer that is not whole sectors or reaches past the disk.
    OutOfRange,
    /// A write or discard to a read-only disk.
    ReadOnly,
    /// A malformed discard segment.
    BadDiscard,
    Unsupported(u32),
    /// The host file failed.
    Io,
}

impl RequestError {
    fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) | RequestError::BadDiscard => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Read { sector: u64, len: usize },
    Write { sector: u64, len: usize },
    Flush,
    GetId,
    Discard,
}

impl Request {
    /// Parses the 16-byte `virtio_blk_outhdr` and checks the transfer against
    /// a disk of `capacity` sectors, given the payload sizes the chain offers.
    pub fn parse(
        header: &[u8; 16],
        readable_payload: usize,
        writable_payload: usize,
        capacity: u64,
    ) -> Result<Request, RequestError> {
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        let in_range = |len: usize| {
            let whole = (len as u64).is_multiple_of(SECTOR_SIZE);
            let end = sector.checked_add(len as u64 / SECTOR_SIZE);
            if whole && end.is_some_and(|end| end <= capacity) {
                Ok(len)
            } else {
                Err(RequestError::OutOfRange)
            }
        };
        match kind {
            VIRTIO_BLK_T_IN => Ok(Request::Read {
                sector,
                len: in_range(writable_payload)?,
            }),
            VIRTIO_BLK_T_OUT => Ok(Request::Write {
                sector,
                len: in_range(readable_payload)?,
            }),
            VIRTIO_BLK_T_FLUSH => Ok(Request::Flush),
            VIRTIO_BLK_T_GET_ID => Ok(Request::GetId),
            VIRTIO_BLK_T_DISCARD => Ok(Request::Discard),
            other => Err(RequestError::Unsupported(other)),
        }
    }
}

/// Options of one disk, as given with `--disk PATH[,readonly]` (and as a
/// snapshot refers to its disks: by path).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A virtio block device backed by a raw image (see the module doc).
pub struct Block {
    disk: Arc<Mutex<Disk>>,
    read_only: bool,
    capacity: u64,
    /// One request queue per hart or vCPU (`VIRTIO_BLK_F_MQ`), as QEMU offers.
    queue_sizes: Vec<u16>,
    /// Hands chains to the worker; `None` once the device is dropped.
    jobs: Option<Sender<Job>>,
    finished: Receiver<Finished>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// Chains handed to the worker and not taken back yet.
    in_flight: usize,
    /// Chains taken back (waiting for the worker) but not in the used ring yet.
    done: Vec<Finished>,
    doorbell: Doorbell,
}

/// The image and what runs requests on it, on the worker's thread.
struct Disk {
    file: File,
    read_only: bool,
    capacity: u64,
    id: [u8; ID_BYTES],
    stats: Arc<DeviceStats>,
    buffer: Vec<u8>,
    /// Once a write-back failed, every write, discard and flush fails.
    write_back: vm_device::image::WriteBack,
}

/// A chain the worker runs, with the guest memory it reaches.
struct Job {
    queue: usize,
    mem: Arc<GuestMemoryMmap>,
    chain: DescriptorChain<Arc<GuestMemoryMmap>>,
}

/// A chain the worker ran: its head and the bytes it wrote into it.
struct Finished {
    queue: usize,
    head: u16,
    len: u32,
}

impl DiskConfig {
    /// Opens and locks the image (read-only disks read-only, under a
    /// shared lock; see [`vm_device::image`]) and returns it with its size.
    pub fn open(&self) -> Result<(File, u64), DiskError> {
        let open_error = |cause| DiskError::Open {
            path: self.path.clone(),
            cause,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .open(&self.path)
            .map_err(open_error)?;
        // A host block device's metadata says 0 bytes; its end says its size.
        let len = (&file).seek(SeekFrom::End(0)).map_err(open_error)?;
        vm_device::image::lock(&file, self.read_only).map_err(|cause| {
            match cause.raw_os_error() {
                Some(libc::EAGAIN | libc::EACCES) => DiskError::Locked {
                    path: self.path.clone(),
                },
                _ => open_error(cause),
            }
        })?;
        Ok((file, len))
    }
}

/// Refuses a machine given the same image twice (by any path to it):
/// it would mount one file system as two disks.
pub fn check_distinct<'a>(
    disks: impl IntoIterator<Item = &'a DiskConfig>,
) -> Result<(), DiskError> {
    let mut seen = Vec::new();
    for disk in disks {
        // A path that does not resolve fails to open, with its own message.
        let Ok(real) = std::fs::canonicalize(&disk.path) else {
            continue;
        };
        if seen.contains(&real) {
            return Err(DiskError::Twice {
                path: disk.path.clone(),
            });
        }
        seen.push(real);
    }
    Ok(())
}

impl Block {
    /// Opens the image `config` names, with `queues` request queues (at
    /// least one); the worker rings `doorbell` as requests finish.
    pub fn open(
        config: &DiskConfig,
        queues: usize,
        stats: Arc<DeviceStats>,
        doorbell: Doorbell,
    ) -> Result<Block, DiskError> {
        let (file, len) = config.open()?;
        let mut block = Block::new(file, len, config.read_only, &config.path, stats, doorbell)?;
        block.queue_sizes = vec![QUEUE_SIZE; queues.clamp(1, MAX_QUEUES)];
        Ok(block)
    }

    /// A device with one request queue over an already open file of `len` bytes.
    pub fn new(
        file: File,
        len: u64,
        read_only: bool,
        path: &Path,
        stats: Arc<DeviceStats>,
        doorbell: Doorbell,
    ) -> Result<Block, DiskError> {
        let mut id = [0; ID_BYTES];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = name.len().min(ID_BYTES);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        let capacity = len / SECTOR_SIZE;
        let disk = Arc::new(Mutex::new(Disk {
            file,
            read_only,
            capacity,
            id,
            stats,
            buffer: vec![0; CHUNK],
            write_back: Default::default(),
        }));
        let (jobs, jobs_rx) = mpsc::channel();
        let (finished_tx, finished) = mpsc::channel();
        let worker = {
            let (disk, doorbell) = (disk.clone(), doorbell.clone());
            std::thread::Builder::new()
                .name("virtio-blk".into())
                .spawn(move || serve(&disk, &jobs_rx, &finished_tx, &doorbell))
                .map_err(|cause| DiskError::Worker {
                    path: path.to_owned(),
                    cause,
                })?
        };
        Ok(Block {
            disk,
            read_only,
            capacity,
            queue_sizes: vec![QUEUE_SIZE],
            jobs: Some(jobs),
            finished,
            worker: Some(worker),
            in_flight: 0,
            done: Vec::new(),
            doorbell,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Takes back what the worker finished: everything in flight when
    /// `wait`, else what is ready now.
    fn take_finished(&mut self, wait: bool) {
        while self.in_flight > 0 {
            let next = if wait {
                self.finished.recv().ok()
            } else {
                match self.finished.try_recv() {
                    Ok(done) => Some(done),
                    Err(mpsc::TryRecvError::Empty) => return,
                    Err(mpsc::TryRecvError::Disconnected) => None,
                }
            };
            let Some(done) = next else {
                self.in_flight = 0; // the worker is gone: nothing more comes
                return;
            };
            self.in_flight -= 1;
            self.done.push(done);
        }
    }

    /// Puts the finished chains in their used rings.
    fn complete(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        let used = !self.done.is_empty();
        let mut first_error = None;
        for done in self.done.drain(..) {
            if let Some(queue) = queues.get_mut(done.queue) {
                // The others still complete; the first error is reported.
                if let Err(e) = queue.add_used(mem, done.head, done.len) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(used), Err)
    }

    /// The image, once the worker is idle.
    fn idle_disk(&mut self) -> MutexGuard<'_, Disk> {
        self.take_finished(true);
        lock(&self.disk)
    }
}

impl Drop for Block {
    /// Lets the worker finish what it was given, so writes land before the
    /// image's descriptor (and lock) goes.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The worker: runs each chain it is given, hands it back and rings.
fn serve(
    disk: &Mutex<Disk>,
    jobs: &Receiver<Job>,
    finished: &Sender<Finished>,
    doorbell: &Doorbell,
) {
    while let Ok(job) = jobs.recv() {
        // Before touching the guest's request (by then the VM runs and
        // visor has registered its policy).
        vm_device::sandbox::enter(vm_device::sandbox::ThreadRole::DiskIo);
        let head = job.chain.head_index();
        let len = lock(disk).handle_chain(&job.mem, job.chain);
        let done = Finished {
            queue: job.queue,
            head,
            len,
        };
        if finished.send(done).is_err() {
            return;
        }
        doorbell.ring();
    }
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(|e| e.into_inner())
}

impl Disk {
    /// Runs one chain; returns the bytes written into it (data + status).
    fn handle_chain<M: Deref<Target = GuestMemoryMmap> + Clone>(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: DescriptorChain<M>,
    ) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem))
        else {
            return 0; // addresses outside RAM: nothing can be written back
        };
        let Some(data_len) = writer.available_bytes().checked_sub(1) else {
            return 0; // no status byte
        };
        let Ok(mut status_writer) = writer.split_at(data_len) else {
            return 0;
        };
        let status = match self.execute(&mut reader, &mut writer) {
            Ok(()) => VIRTIO_BLK_S_OK as u8,
            Err(e) => e.status(),
        };
        let written = writer.bytes_written();
        if status_writer.write_all(&[status]).is_err() {
            return written as u32;
        }
        written as u32 + 1
    }

    fn execute(
        &mut self,
        reader: &mut ChainReader,
        writer: &mut ChainWriter,
    ) -> Result<(), RequestError> {
        let mut header = [0u8; 16];
        reader
            .read_exact(&mut header)
            .map_err(|_| RequestError::BadHeader)?;
        let request = Request::parse(
            &header,
            reader.available_bytes(),
            writer.available_bytes(),
            self.capacity,
        )?;
        let changes = matches!(
            request,
            Request::Write { .. } | Request::Flush | Request::Discard
        );
        if changes && self.write_back.lost() {
            return Err(RequestError::Io);
        }
        match request {
            Request::Read { sector, len } => self.read(sector, len, writer),
            Request::Write { sector, len } => self.write(sector, len, reader),
            Request::Flush => self
                .write_back
                .sync(&self.file)
                .map_err(|_| RequestError::Io),
            Request::GetId => {
                let n = ID_BYTES.min(writer.available_bytes());
                writer
                    .write_all(&self.id[..n])
                    .map_err(|_| RequestError::Io)
            }
            Request::Discard => self.discard(reader),
        }
    }

    fn read(
        &mut self,
        sector: u64,
        len: usize,
        writer: &mut ChainWriter,
    ) -> Result<(), RequestError> {
        let mut offset = sector * SECTOR_SIZE;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            let buf = &mut self.buffer[..n];
            self.file
                .read_exact_at(buf, offset)
                .map_err(|_| RequestError::Io)?;
            writer.write_all(buf).map_err(|_| RequestError::Io)?;
            offset += n as u64;
            left -= n;
        }
        self.stats.to_guest(len);
        Ok(())
    }

    fn write(
        &mut self,
        sector: u64,
        len: usize,
        reader: &mut ChainReader,
    ) -> Result<(), RequestError> {
        if self.read_only {
            return Err(RequestError::ReadOnly);
        }
        let mut offset = sector * SECTOR_SIZE;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            let buf = &mut self.buffer[..n];
            reader.read_exact(buf).map_err(|_| RequestError::Io)?;
            self.file
                .write_all_at(buf, offset)
                .map_err(|_| RequestError::Io)?;
            offset += n as u64;
            left -= n;
        }
        self.stats.from_guest(len);
        Ok(())
    }

    /// Each 16-byte segment: sector (u64), sector count (u32), flags (u32).
    fn discard(&mut self, reader: &mut ChainReader) -> Result<(), RequestError> {
        if self.read_only {
            return Err(RequestError::ReadOnly);
        }
        if reader.available_bytes() == 0 || !reader.available_bytes().is_multiple_of(16) {
            return Err(RequestError::BadDiscard);
        }
        while reader.available_bytes() > 0 {
            let mut segment = [0u8; 16];
            reader
                .read_exact(&mut segment)
                .map_err(|_| RequestError::BadDiscard)?;
            let sector = u64::from_le_bytes(segment[0..8].try_into().unwrap());
            let count = u32::from_le_bytes(segment[8..12].try_into().unwrap());
            let flags = u32::from_le_bytes(segment[12..16].try_into().unwrap());
            let end = sector.checked_add(count as u64);
            if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || count > MAX_DISCARD_SECTORS {
                return Err(RequestError::BadDiscard);
            }
            if end.is_none_or(|end| end > self.capacity) {
                return Err(RequestError::OutOfRange);
            }
            punch_hole(&self.file, sector * SECTOR_SIZE, count as u64 * SECTOR_SIZE)?;
        }
        Ok(())
    }
}

/// The device's configuration space for a disk of `capacity` sectors with
/// `queues` request queues.
fn config_space(capacity: u64, queues: u16) -> [u8; 60] {
    let mut config = [0u8; 60];
    config[0..8].copy_from_slice(&capacity.to_le_bytes());
    config[34..36].copy_from_slice(&queues.to_le_bytes()); // num_queues
    config[12..16].copy_from_slice(&(QUEUE_SIZE as u32 - 2).to_le_bytes()); // seg_max
    config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
    config[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
    config[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
    config[44..48].copy_from_slice(&DISCARD_ALIGNMENT.to_le_bytes());
    config
}

fn punch_hole(file: &File, offset: u64, len: u64) -> Result<(), RequestError> {
    if len == 0 {
        return Ok(());
    }
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on an owned descriptor with plain integer arguments.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
    if rc == 0 {
        Ok(())
    } else {
        Err(RequestError::Io)
    }
}

impl VirtioDevice for Block {
    fn flush(&mut self) -> std::io::Result<()> {
        // Read-only too: a read in flight still writes guest RAM.
        let disk = &mut *self.idle_disk();
        if disk.read_only {
            return Ok(());
        }
        disk.write_back.sync(&disk.file)
    }

    fn release(&mut self) -> std::io::Result<()> {
        vm_device::image::unlock(&self.idle_disk().file)
    }

    fn reacquire(&mut self) -> std::io::Result<()> {
        let read_only = self.read_only;
        vm_device::image::lock(&self.idle_disk().file, read_only)
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut features = 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_DISCARD;
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        if self.queue_sizes.len() > 1 {
            features |= 1 << VIRTIO_BLK_F_MQ;
        }
        features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(
            &config_space(self.capacity, self.queue_sizes.len() as u16),
            offset,
            data,
        );
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        let shared = Arc::new(mem.clone());
        let (jobs, disk, doorbell) = (&self.jobs, &self.disk, &self.doorbell);
        let mut handed = 0;
        let served = serve_queue(&mut queues[index], shared.clone(), |chain| {
            let job = Job {
                queue: index,
                mem: shared.clone(),
                chain,
            };
            doorbell.expect();
            match jobs.as_ref().map(|jobs| jobs.send(job)) {
                Some(Ok(())) => {
                    handed += 1;
                    None
                }
                // No worker (it cannot end while the device lives, but
                // should it): the request runs here.
                Some(Err(mpsc::SendError(job))) => {
                    doorbell.ring();
                    Some(lock(disk).handle_chain(&job.mem, job.chain))
                }
                None => {
                    doorbell.ring();
                    Some(0)
                }
            }
        });
        // Counted before a broken ring's error returns: what the worker
        // has is in flight either way.
        self.in_flight += handed;
        let served = served?;
        self.take_finished(false);
        Ok(self.complete(queues, mem)? || served)
    }

    fn has_host_input(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        self.take_finished(false);
        self.complete(queues, mem)
    }

    fn settle(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        self.take_finished(true);
        self.complete(queues, mem)
    }

    fn reset(&mut self) {
        self.take_finished(true);
        self.done.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{memory_file, QueueHarness, F_INDIRECT};

    const DISK: u64 = 64 << 10;

    fn device(read_only: bool) -> (Block, Arc<DeviceStats>) {
        let stats = Arc::new(DeviceStats::default());
        let file = memory_file(DISK);
        file.write_all_at(b"sector-three", 3 * SECTOR_SIZE).unwrap();
        let block = Block::new(
            file,
            DISK,
            read_only,
            Path::new("/images/disk0.img"),
            stats.clone(),
            Doorbell::new(),
        )
        .unwrap();
        (block, stats)
    }

    /// A second handle on the device's image (the worker idle).
    fn image(block: &Block) -> File {
        lock(&block.disk).file.try_clone().unwrap()
    }

    fn header(kind: u32, sector: u64) -> Vec<u8> {
        let mut h = kind.to_le_bytes().to_vec();
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&sector.to_le_bytes());
        h
    }

    /// Submits header + optional data + status; returns (used length, status byte, data as the guest sees it after).
    fn run(
        block: &mut Block,
        kind: u32,
        sector: u64,
        data: &[u8],
        data_writable: bool,
    ) -> (u32, u8, Vec<u8>) {
        let mut h = QueueHarness::new(16);
        let hdr = h.buffer(&header(kind, sector));
        let buf = h.buffer(data);
        let status = h.buffer(&[0xff]);
        let mut parts = vec![(hdr, 16, false)];
        if !data.is_empty() {
            parts.push((buf, data.len() as u32, data_writable));
        }
        parts.push((status, 1, true));
        h.add_chain(&parts);
        assert!(h.kick_and_settle(block).unwrap());
        let (_, len) = h.used(0);
        (len, h.read(status, 1)[0], h.read(buf, data.len()))
    }

    #[test]
    fn reads_writes_and_flushes() {
        let (mut block, stats) = device(false);
        let mut h = QueueHarness::new(16);
        let hdr = h.buffer(&header(VIRTIO_BLK_T_IN, 3));
        let data = h.buffer(&[0; 1024]);
        let status = h.buffer(&[0xff]);
        h.add_chain(&[(hdr, 16, false), (data, 1024, true), (status, 1, true)]);
        h.kick_and_settle(&mut block).unwrap();
        assert_eq!(h.used(0), (0, 1025));
        assert_eq!(h.read(status, 1), [VIRTIO_BLK_S_OK as u8]);
        assert_eq!(&h.read(data, 12), b"sector-three");

        let (len, status, _) = run(&mut block, VIRTIO_BLK_T_OUT, 5, &[7; 512], false);
        assert_eq!((len, status), (1, VIRTIO_BLK_S_OK as u8));
        let mut back = [0u8; 512];
        image(&block).read_exact_at(&mut back, 5 * 512).unwrap();
        assert_eq!(back, [7; 512]);
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_FLUSH, 0, &[], false).1,
            VIRTIO_BLK_S_OK as u8
        );
        let [traps, _, from_guest, to_guest] = stats.snapshot();
        assert_eq!((traps, from_guest, to_guest), (0, 512, 1024));
    }

    #[test]
    fn a_failed_write_back_fails_every_later_write_and_flush() {
        let (mut block, _) = device(false);
        let image = std::mem::replace(&mut lock(&block.disk).file, pipe());
        // fdatasync on a pipe fails (EINVAL), as on a disk that lost data.
        let flush = |block: &mut Block| run(block, VIRTIO_BLK_T_FLUSH, 0, &[], false).1;
        assert_eq!(flush(&mut block), VIRTIO_BLK_S_IOERR as u8);
        lock(&block.disk).file = image; // the image would write back fine now
        assert_eq!(flush(&mut block), VIRTIO_BLK_S_IOERR as u8, "sticky");
        let (_, status, _) = run(&mut block, VIRTIO_BLK_T_OUT, 5, &[7; 512], false);
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8, "writes fail too");
        let (_, status, data) = run(&mut block, VIRTIO_BLK_T_IN, 3, &[0; 512], true);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8, "reads go on");
        assert_eq!(&data[..12], b"sector-three");
        assert!(
            VirtioDevice::flush(&mut block).is_err(),
            "a snapshot's flush fails"
        );
    }

    /// Whether the test runs as root; if not, says it skips what `needs` it.
    fn root(needs: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("SKIPPED: {needs} needs root");
        }
        root
    }

    #[test]
    fn a_full_host_file_system_gives_the_guest_io_errors() {
        if !root("mounting a tiny tmpfs") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("visor-enospc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED: this machine does not let the test mount a tmpfs");
            return;
        }
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _unmount = Unmount(dir.clone());
        // A 1 MiB sparse image on 64 KiB of space.
        let path = dir.join("disk.img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let config = DiskConfig {
            path,
            read_only: false,
        };
        let mut block = Block::open(&config, 1, Default::default(), Doorbell::new()).unwrap();
        let statuses: Vec<u8> = (0..32)
            .map(|i| {
                run(
                    &mut block,
                    VIRTIO_BLK_T_OUT,
                    i * 64,
                    &[0xa5; 32 << 10],
                    false,
                )
                .1
            })
            .collect();
        assert_eq!(statuses[0], VIRTIO_BLK_S_OK as u8, "the first writes fit");
        assert!(
            statuses.contains(&(VIRTIO_BLK_S_IOERR as u8)),
            "a full file system is an I/O error: {statuses:?}"
        );
        let (_, status, data) = run(&mut block, VIRTIO_BLK_T_IN, 0, &[0; 512], true);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8, "what was written reads back");
        assert_eq!(data, [0xa5; 512]);
    }

    #[test]
    fn a_host_block_device_is_a_disk_of_its_size() {
        if !root("a loop device") {
            return;
        }
        let backing = std::env::temp_dir().join(format!("visor-loop-{}.img", std::process::id()));
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let attached = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output();
        let _ = std::fs::remove_file(&backing); // the loop device holds it
        let Some(device) = attached
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        else {
            eprintln!("SKIPPED: this machine has no free loop device");
            return;
        };
        struct Detach(String);
        impl Drop for Detach {
            fn drop(&mut self) {
                let _ = std::process::Command::new("losetup")
                    .args(["--detach", &self.0])
                    .status();
            }
        }
        let device = Detach(device);
        let config = DiskConfig {
            path: device.0.clone().into(),
            read_only: true,
        };
        let (_, len) = config.open().unwrap();
        assert_eq!(len, 1 << 20, "its size, not its inode's (0)");
    }

    /// The read end of a fresh pipe, as a File.
    fn pipe() -> File {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[0] is a new descriptor this File now owns.
        let file = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fds[0]) };
        // SAFETY: fds[1] is ours and not used again.
        unsafe { libc::close(fds[1]) };
        file
    }

    /// A write of 512 bytes of `fill` to `sector`, submitted; returns its status buffer.
    fn submit_write(h: &mut QueueHarness, sector: u64, fill: u8) -> u64 {
        let hdr = h.buffer(&header(VIRTIO_BLK_T_OUT, sector));
        let data = h.buffer(&[fill; 512]);
        let status = h.buffer(&[0xff]);
        h.add_chain(&[(hdr, 16, false), (data, 512, false), (status, 1, true)]);
        status
    }

    /// Kicks `block` while its image is busy (as a slow disk is), so what
    /// the kick submits stays in flight; the kick must not wait for it.
    fn kick_while_busy(h: &mut QueueHarness, block: &mut Block) {
        let disk = block.disk.clone();
        let bell = block.doorbell.clone();
        let busy = lock(&disk);
        let (kicked, handed) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || tx.send(h.kick(block).unwrap()).unwrap());
            let kicked = rx.recv_timeout(std::time::Duration::from_secs(10));
            let handed = bell.expecting();
            drop(busy); // before any assertion, so the kick's thread can end
            (kicked, handed)
        });
        assert!(handed, "handed to the worker");
        assert_eq!(
            kicked,
            Ok(false),
            "the kick returns before the request is done"
        );
    }

    #[test]
    fn a_request_runs_on_the_worker_while_the_guest_thread_goes_on() {
        let (mut block, _) = device(false);
        let bell = block.doorbell.clone();
        let mut h = QueueHarness::new(16);
        let status = submit_write(&mut h, 5, 7);
        kick_while_busy(&mut h, &mut block);
        bell.wait(std::time::Duration::from_secs(10));
        assert!(bell.answer(), "the worker rang");
        assert_eq!(h.used_idx(), 0, "completed only when polled");
        let queues = std::slice::from_mut(&mut h.queue);
        assert!(block.poll(queues, &h.mem).unwrap());
        assert_eq!(h.used_idx(), 1);
        assert_eq!(h.read(status, 1), [VIRTIO_BLK_S_OK as u8]);
        let mut back = [0u8; 512];
        image(&block).read_exact_at(&mut back, 5 * 512).unwrap();
        assert_eq!(back, [7; 512]);
    }

    #[test]
    fn flush_reset_and_release_wait_for_requests_in_flight() {
        let (mut block, _) = device(false);
        let mut h = QueueHarness::new(16);
        let mut back = [0u8; 512];
        submit_write(&mut h, 6, 1);
        kick_while_busy(&mut h, &mut block);
        VirtioDevice::flush(&mut block).unwrap();
        image(&block).read_exact_at(&mut back, 6 * 512).unwrap();
        assert_eq!(back, [1; 512], "flushed after the write landed");
        // What finished before the flush still reaches the used ring.
        let queues = std::slice::from_mut(&mut h.queue);
        assert!(block.poll(queues, &h.mem).unwrap());
        assert_eq!(h.used_idx(), 1);

        submit_write(&mut h, 7, 2);
        kick_while_busy(&mut h, &mut block);
        block.release().unwrap();
        image(&block).read_exact_at(&mut back, 7 * 512).unwrap();
        assert_eq!(back, [2; 512], "the lock goes only after the write");
        block.reacquire().unwrap();
        let queues = std::slice::from_mut(&mut h.queue);
        assert!(block.poll(queues, &h.mem).unwrap());
        assert_eq!(h.used_idx(), 2);

        submit_write(&mut h, 8, 3);
        kick_while_busy(&mut h, &mut block);
        block.reset();
        let queues = std::slice::from_mut(&mut h.queue);
        assert!(
            !block.poll(queues, &h.mem).unwrap(),
            "a reset drops completions"
        );
        assert_eq!(h.used_idx(), 2);
    }

    #[test]
    fn a_disk_offers_the_queues_it_is_opened_with() {
        let path = std::env::temp_dir().join(format!("visor-mq-{}.img", std::process::id()));
        std::fs::File::create(&path).unwrap().set_len(DISK).unwrap();
        let config = DiskConfig {
            path: path.clone(),
            read_only: false,
        };
        let block = Block::open(&config, 4, Default::default(), Doorbell::new()).unwrap();
        assert_eq!(block.queue_max_sizes(), [QUEUE_SIZE; 4]);
        assert_ne!(block.features() & 1 << VIRTIO_BLK_F_MQ, 0);
        let mut num_queues = [0u8; 2];
        block.read_config(34, &mut num_queues);
        assert_eq!(u16::from_le_bytes(num_queues), 4);
        let (single, _) = device(false);
        assert_eq!(
            single.features() & 1 << VIRTIO_BLK_F_MQ,
            0,
            "one queue: no MQ"
        );
        drop(block);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn get_id_reports_the_image_name() {
        let (mut block, _) = device(false);
        let (len, status, id) = run(&mut block, VIRTIO_BLK_T_GET_ID, 0, &[0; 20], true);
        assert_eq!((len, status), (21, VIRTIO_BLK_S_OK as u8));
        assert_eq!(&id[..10], b"disk0.img\0");
    }

    #[test]
    fn out_of_range_and_partial_sectors_are_io_errors() {
        let (mut block, _) = device(false);
        let last = DISK / SECTOR_SIZE;
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_IN, last, &[0; 512], true).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_IN, last - 1, &[0; 1024], true).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_IN, u64::MAX, &[0; 512], true).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_OUT, 0, &[0; 100], false).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        assert_eq!(
            run(&mut block, 77, 0, &[], false).1,
            VIRTIO_BLK_S_UNSUPP as u8
        );
    }

    #[test]
    fn read_only_disks_refuse_writes_and_discards() {
        let (mut block, _) = device(true);
        assert_ne!(block.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_OUT, 0, &[1; 512], false).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        let segment = [0u8; 16];
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_DISCARD, 0, &segment, false).1,
            VIRTIO_BLK_S_IOERR as u8
        );
        let mut first = [1u8; 512];
        image(&block).read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first, [0; 512]);
    }

    #[test]
    fn discard_zeroes_the_range_and_checks_segments() {
        let (mut block, _) = device(false);
        let mut segment = 3u64.to_le_bytes().to_vec();
        segment.extend_from_slice(&1u32.to_le_bytes());
        segment.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_DISCARD, 0, &segment, false).1,
            VIRTIO_BLK_S_OK as u8
        );
        let mut back = [1u8; 512];
        image(&block).read_exact_at(&mut back, 3 * 512).unwrap();
        assert_eq!(back, [0; 512]);
        segment[12] = 0x80; // reserved flag
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_DISCARD, 0, &segment, false).1,
            VIRTIO_BLK_S_UNSUPP as u8
        );
        assert_eq!(
            run(&mut block, VIRTIO_BLK_T_DISCARD, 0, &segment[..10], false).1,
            VIRTIO_BLK_S_UNSUPP as u8
        );
    }

    #[test]
    fn chains_without_status_or_with_bad_addresses_complete_empty() {
        let (mut block, _) = device(false);
        let mut h = QueueHarness::new(16);
        let hdr = h.buffer(&header(VIRTIO_BLK_T_IN, 0));
        // No writable byte at all.
        h.add_chain(&[(hdr, 16, false)]);
        // Data outside guest memory.
        let status = h.buffer(&[0xff]);
        h.add_chain(&[(hdr, 16, false), (1 << 40, 512, true), (status, 1, true)]);
        // A length that wraps the address space.
        h.add_chain(&[(hdr, 16, false), (status, u32::MAX, true)]);
        // A loop: two descriptors pointing at each other.
        h.set_descriptor(10, hdr, 16, crate::harness::F_NEXT, 11);
        h.set_descriptor(11, hdr, 16, crate::harness::F_NEXT, 10);
        h.publish(10);
        // A ragged indirect table.
        h.set_descriptor(12, hdr, 20, F_INDIRECT, 0);
        h.publish(12);
        h.kick_and_settle(&mut block).unwrap();
        assert_eq!(h.used_idx(), 5);
        for n in 0..5 {
            assert_eq!(h.used(n).1, 0, "chain {n} wrote nothing");
        }
        assert_eq!(h.read(status, 1), [0xff]);
    }

    #[test]
    fn a_runaway_available_index_is_an_error_not_a_hang() {
        let (mut block, _) = device(false);
        let mut h = QueueHarness::new(16);
        h.set_avail_idx(1000);
        assert!(h.kick_and_settle(&mut block).is_err());
    }

    #[test]
    fn request_parse_checks_bounds_with_overflow() {
        let h = |kind: u32, sector: u64| -> [u8; 16] { header(kind, sector).try_into().unwrap() };
        assert_eq!(
            Request::parse(&h(VIRTIO_BLK_T_IN, 2), 0, 1024, 4),
            Ok(Request::Read {
                sector: 2,
                len: 1024
            })
        );
        assert_eq!(
            Request::parse(&h(VIRTIO_BLK_T_IN, 3), 0, 1024, 4),
            Err(RequestError::OutOfRange)
        );
        assert_eq!(
            Request::parse(&h(VIRTIO_BLK_T_OUT, u64::MAX), 512, 0, u64::MAX),
            Err(RequestError::OutOfRange)
        );
        assert_eq!(
            Request::parse(&h(9, 0), 0, 0, 4),
            Err(RequestError::Unsupported(9))
        );
    }

    #[test]
    fn fuzz_body_survives_pseudo_random_memory() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..300 {
            let len = 64 + (round * 97) % 0x4000;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly small values, so indices and lengths are often plausible.
                    if state.is_multiple_of(4) {
                        state as u8
                    } else {
                        (state % 24) as u8
                    }
                })
                .collect();
            crate::harness::fuzz_block(&bytes);
            crate::harness::fuzz_transport(&bytes);
            crate::harness::fuzz_net_and_console(&bytes);
        }
    }
}
