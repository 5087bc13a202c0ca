//! Live migration's wire format and its two ends' bookkeeping: pre-copy,
//! as QEMU and Xen do it. The source sends every page while the guest
//! runs, then in rounds the pages written meanwhile (dirty tracking, see
//! `Machine::take_dirty_pages`), until what is left would take less than
//! the downtime budget at the bandwidth the last round achieved, or a
//! round limit is reached; then it pauses the guest, sends the last pages
//! and the machine state, and waits for the destination to say it runs.
//! Only then does the source stop; if the link or the destination fails
//! before, the source resumes and nothing is lost.
//!
//! The stream (TCP; little-endian): `MAGIC`, the format version (u32),
//! the RAM size (u64), hart count (u32) and flags (u32: bit 0, report
//! RAM's CRC-32); then records, each a tag byte:
//! `PAGE` + page index (u64) + 4096 bytes, `ZERO` + page index (a page of
//! zeros), `STATE` + length (u64) + a snapshot state file's payload
//! (JSON) + its CRC-32. The destination answers `RUNNING` once the state
//! is in place. Everything the destination reads is checked: the header,
//! every index, the length and CRC of the state.

use crate::snapshot::{self, MachineState};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vm_device::vm_memory::{Bytes, GuestAddress};
use vm_device::GuestMemoryMmap;

const MAGIC: &[u8; 8] = b"VISORMIG";
pub const FORMAT_VERSION: u32 = 2;
pub const PAGE: usize = 4096;
const TAG_PAGE: u8 = 1;
const TAG_ZERO: u8 = 2;
const TAG_STATE: u8 = 3;
/// The destination's answer: the VM runs there now.
const RUNNING: u8 = b'R';
/// How long either end waits for the other before giving up.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a migration goes: the downtime budget, and the number of dirty
/// rounds after which the source stops the guest whatever is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationParams {
    pub downtime: Duration,
    pub max_rounds: u32,
    /// Both ends compute a CRC-32 of all of RAM, the source at the pause
    /// and the destination before it runs the VM (a check; it lengthens
    /// the downtime).
    pub verify: bool,
}

impl Default for MigrationParams {
    /// QEMU's default downtime budget, 300 ms.
    fn default() -> MigrationParams {
        MigrationParams {
            downtime: Duration::from_millis(300),
            max_rounds: 30,
            verify: false,
        }
    }
}

/// What a finished migration did.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationReport {
    /// Dirty rounds after the full pass.
    pub rounds: u32,
    pub pages_sent: u64,
    /// From the request to the destination's answer.
    pub total: Duration,
    /// The guest paused: from the stop to the destination's answer.
    pub downtime: Duration,
    /// The stop came from the round limit, not from convergence.
    pub forced: bool,
}

/// The source's sending end, on a thread of its own so the guest runs on
/// while its pages go out (as QEMU's migration thread does). The machine
/// hands it sets of pages (a bit per page) and, at the stop, the last set
/// and the state. It reads RAM while the harts write it; for pre-copy
/// that is sound: a page written meanwhile is marked dirty again and goes
/// in a later set, and the last set is taken with every hart stopped.
pub struct Outbound {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
}

enum Job {
    Pages(Vec<u64>),
    Finish {
        pages: Vec<u64>,
        state: Box<MachineState>,
    },
}

/// A set of pages that went out: how many, the bytes they took on the
/// wire, and how long sending them took.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub pages: u64,
    pub bytes: u64,
    pub busy: Duration,
}

/// What the sending thread reports.
pub enum Done {
    Pages(Sent),
    /// The last pages and the state went out, and the destination runs the VM.
    Running(Sent),
    /// The link or the destination failed (the thread has ended).
    Failed(String),
}

impl Outbound {
    /// Sends `header` on `stream` and starts the thread, which reads pages
    /// from `memory` (RAM at guest address `base`).
    pub fn start(
        stream: TcpStream,
        header: Header,
        memory: GuestMemoryMmap,
        base: u64,
    ) -> io::Result<Outbound> {
        let mut out = io::BufWriter::with_capacity(1 << 20, stream);
        write_header(&mut out, header)?;
        let (jobs, job_queue) = mpsc::channel();
        let (report, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("migration".into())
            .spawn(move || {
                for job in job_queue {
                    let outcome = match job {
                        Job::Pages(set) => send_set(&mut out, &memory, base, &set).map(Done::Pages),
                        Job::Finish { pages, state } => send_set(&mut out, &memory, base, &pages)
                            .and_then(|sent| {
                                write_state(&mut out, &state)?;
                                await_running(out.get_mut())?;
                                Ok(Done::Running(sent))
                            }),
                    };
                    let failed = outcome.is_err();
                    let _ = report.send(outcome.unwrap_or_else(|e| Done::Failed(e.to_string())));
                    if failed {
                        return;
                    }
                }
            })?;
        Ok(Outbound { jobs, done })
    }

    /// Queues the pages set in `pages` (a bit per page).
    pub fn send_pages(&self, pages: Vec<u64>) {
        let _ = self.jobs.send(Job::Pages(pages));
    }

    /// Queues the last pages and the state, after which the thread waits
    /// for the destination to run the VM.
    pub fn finish(&self, pages: Vec<u64>, state: MachineState) {
        let _ = self.jobs.send(Job::Finish {
            pages,
            state: Box::new(state),
        });
    }

    /// What the thread finished since the last look, if anything.
    pub fn poll(&self) -> Option<Done> {
        match self.done.try_recv() {
            Ok(done) => Some(done),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                Some(Done::Failed("the sending thread ended".into()))
            }
        }
    }

    /// Waits for what the thread does next.
    pub fn wait(&self) -> Done {
        self.done
            .recv()
            .unwrap_or_else(|_| Done::Failed("the sending thread ended".into()))
    }
}

/// Sends every page set in `set` and flushes.
fn send_set(
    out: &mut io::BufWriter<TcpStream>,
    memory: &GuestMemoryMmap,
    base: u64,
    set: &[u64],
) -> io::Result<Sent> {
    let began = Instant::now();
    let mut page = vec![0u8; PAGE];
    let mut pages = 0;
    let mut bytes = 0;
    for (w, &word) in set.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let index = (w * 64) as u64 + bits.trailing_zeros() as u64;
            bits &= bits - 1;
            let addr = GuestAddress(base + index * PAGE as u64);
            if memory.read_slice(&mut page, addr).is_err() {
                continue; // past the end of RAM (a set rounds up to 64 pages)
            }
            bytes += write_page(out, index, &page)? as u64;
            pages += 1;
        }
    }
    out.flush()?;
    Ok(Sent {
        pages,
        bytes,
        busy: began.elapsed(),
    })
}

/// The stream's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ram_size: u64,
    pub harts: u32,
    /// The destination is to report the CRC-32 of the RAM it received.
    pub verify: bool,
}

const FLAG_VERIFY: u32 = 1;

pub fn write_header(out: &mut impl Write, header: Header) -> io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    out.write_all(&header.ram_size.to_le_bytes())?;
    out.write_all(&header.harts.to_le_bytes())?;
    let flags = if header.verify { FLAG_VERIFY } else { 0 };
    out.write_all(&flags.to_le_bytes())
}

/// Page `index` with contents `data` (a zero page goes as its index
/// only); the bytes that took.
pub fn write_page(out: &mut impl Write, index: u64, data: &[u8]) -> io::Result<usize> {
    // An OR over the page (no early exit, so it vectorizes).
    if data.iter().fold(0, |any, &b| any | b) == 0 {
        out.write_all(&[TAG_ZERO])?;
        out.write_all(&index.to_le_bytes())?;
        return Ok(1 + 8);
    }
    out.write_all(&[TAG_PAGE])?;
    out.write_all(&index.to_le_bytes())?;
    out.write_all(data)?;
    Ok(1 + 8 + PAGE)
}

pub fn write_state(out: &mut impl Write, state: &MachineState) -> io::Result<()> {
    let (payload, crc) = snapshot::encode_payload(state).map_err(io::Error::other)?;
    out.write_all(&[TAG_STATE])?;
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(&payload)?;
    out.write_all(&crc.to_le_bytes())?;
    out.flush()
}

/// Waits for the destination's word that the VM runs there.
pub fn await_running(input: &mut impl Read) -> io::Result<()> {
    let mut answer = [0u8; 1];
    input.read_exact(&mut answer)?;
    if answer[0] != RUNNING {
        return Err(io::Error::other("the destination answered something else"));
    }
    Ok(())
}

pub fn send_running(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[RUNNING])?;
    out.flush()
}

/// Why an incoming migration failed.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error("the migration stream: {0}")]
    Io(#[from] io::Error),
    #[error("the migration stream is not a visor migration")]
    NotAMigration,
    #[error(
        "the migration stream has format version {0}, this visor reads version {FORMAT_VERSION}"
    )]
    Version(u32),
    #[error("the migration stream names page {index}, past RAM's {pages} pages")]
    BadPage { index: u64, pages: u64 },
    #[error("the migration stream has an unknown record (tag {0})")]
    BadTag(u8),
    #[error("the migration stream's state: {0}")]
    BadState(String),
    #[error("the migration stream ended before the VM's state")]
    Ended,
}

pub fn read_header(input: &mut impl Read) -> Result<Header, IncomingError> {
    let mut header = [0u8; 8 + 4 + 8 + 4 + 4];
    input.read_exact(&mut header).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => IncomingError::NotAMigration,
        _ => IncomingError::Io(e),
    })?;
    if &header[..8] != MAGIC {
        return Err(IncomingError::NotAMigration);
    }
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(IncomingError::Version(version));
    }
    let ram_size = u64::from_le_bytes(header[12..20].try_into().unwrap());
    let harts = u32::from_le_bytes(header[20..24].try_into().unwrap());
    let flags = u32::from_le_bytes(header[24..28].try_into().unwrap());
    Ok(Header {
        ram_size,
        harts,
        verify: flags & FLAG_VERIFY != 0,
    })
}

/// One record of the stream.
pub enum Record {
    Page(u64, Box<[u8; PAGE]>),
    Zero(u64),
    State(Box<MachineState>),
}

/// The next record, its page index checked against `pages`.
pub fn read_record(input: &mut impl Read, pages: u64) -> Result<Record, IncomingError> {
    let mut tag = [0u8; 1];
    if let Err(e) = input.read_exact(&mut tag) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => IncomingError::Ended,
            _ => IncomingError::Io(e),
        });
    }
    let mut word = [0u8; 8];
    let eof = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => IncomingError::Ended,
        _ => IncomingError::Io(e),
    };
    match tag[0] {
        TAG_PAGE | TAG_ZERO => {
            input.read_exact(&mut word).map_err(eof)?;
            let index = u64::from_le_bytes(word);
            if index >= pages {
                return Err(IncomingError::BadPage { index, pages });
            }
            if tag[0] == TAG_ZERO {
                return Ok(Record::Zero(index));
            }
            let mut data = Box::new([0u8; PAGE]);
            input.read_exact(&mut data[..]).map_err(eof)?;
            Ok(Record::Page(index, data))
        }
        TAG_STATE => {
            input.read_exact(&mut word).map_err(eof)?;
            let len = u64::from_le_bytes(word);
            if len > snapshot::MAX_PAYLOAD {
                return Err(IncomingError::BadState(format!("{len} bytes")));
            }
            let mut payload = vec![0u8; len as usize];
            input.read_exact(&mut payload).map_err(eof)?;
            let mut crc = [0u8; 4];
            input.read_exact(&mut crc).map_err(eof)?;
            let state = snapshot::decode_payload(&payload, u32::from_le_bytes(crc)).map_err(
                |e| match e {
                    snapshot::PayloadError::BadCrc => {
                        IncomingError::BadState("CRC mismatch".into())
                    }
                    snapshot::PayloadError::Malformed(why) => IncomingError::BadState(why),
                },
            )?;
            Ok(Record::State(Box::new(state)))
        }
        other => Err(IncomingError::BadTag(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_bad_ones_are_refused() {
        let mut stream = Vec::new();
        let header = Header {
            ram_size: 8 * PAGE as u64,
            harts: 1,
            verify: true,
        };
        write_header(&mut stream, header).unwrap();
        write_page(&mut stream, 3, &[7u8; PAGE]).unwrap();
        write_page(&mut stream, 5, &[0u8; PAGE]).unwrap();
        let mut input = &stream[..];
        assert_eq!(read_header(&mut input).unwrap(), header);
        assert!(matches!(read_record(&mut input, 8), Ok(Record::Page(3, data)) if data[100] == 7));
        assert!(matches!(read_record(&mut input, 8), Ok(Record::Zero(5))));
        assert!(matches!(
            read_record(&mut input, 8),
            Err(IncomingError::Ended)
        ));

        let mut past = Vec::new();
        write_page(&mut past, 8, &[1u8; PAGE]).unwrap();
        assert!(matches!(
            read_record(&mut &past[..], 8),
            Err(IncomingError::BadPage { index: 8, pages: 8 })
        ));
        assert!(matches!(
            read_record(&mut &[9u8][..], 8),
            Err(IncomingError::BadTag(9))
        ));
        assert!(matches!(
            read_header(&mut &b"GET / HTTP/1.1\r\n\r\n..."[..]),
            Err(IncomingError::NotAMigration)
        ));
        let mut truncated = Vec::new();
        write_page(&mut truncated, 1, &[1u8; PAGE]).unwrap();
        truncated.truncate(100);
        assert!(matches!(
            read_record(&mut &truncated[..], 8),
            Err(IncomingError::Ended)
        ));
    }
}
