//! A machine snapshot on disk: a directory holding a state file (every
//! hart and device, guest time, the machine's configuration with its
//! disks by path) and a memory file
//! (guest RAM, sparse: only pages holding something are written, the rest
//! are holes). A restore maps the memory file copy-on-write, so it does
//! not read RAM first. A diff snapshot's memory file holds only the pages
//! written since the snapshot it names as its base; a restore maps the
//! full snapshot at the chain's start and copies each diff's pages over it.
//!
//! The state file is `MAGIC`, the format version (u32), the payload's
//! length (u64), the payload (JSON), and the payload's CRC-32 (all
//! little-endian). Both files are untrusted input: every length, the CRC,
//! the version and the machine's configuration are checked before anything is
//! restored.

use crate::clint::ClintState;
use crate::plic::PlicState;
use crate::uart::UartState;
use riscv_hart::{GuestRam, HartState};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state";
pub const MEMORY_FILE: &str = "memory";
const MAGIC: &[u8; 8] = b"VISORSNP";
pub const FORMAT_VERSION: u32 = 2;
/// Magic, version, payload length.
const HEADER_LEN: usize = 8 + 4 + 8;
const CRC_LEN: usize = 4;
/// A state larger than this is not one of ours (a few harts' and
/// devices' registers take kilobytes).
pub(crate) const MAX_PAYLOAD: u64 = 16 << 20;
const PAGE: usize = 4096;

/// Everything but RAM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// The machine it was taken of, which a restore builds again: RAM
    /// size, harts, the disks by path (flushed when the snapshot was
    /// taken), a TAP by name, which console takes input.
    pub config: crate::MachineConfig,
    /// Guest time (`mtime`) when the machine paused.
    pub mtime: u64,
    pub harts: Vec<HartState>,
    pub clint: ClintState,
    pub plic: PlicState,
    pub uart: UartState,
    /// The virtio-mmio transports, in slot order.
    pub virtio: Vec<virtio::mmio::MmioState>,
    pub pata: Option<pata::PataState>,
    /// Host console input the guest had not taken yet.
    pub console_input: Vec<u8>,
    /// The program's HTIF `tohost`, when it has one.
    pub tohost: Option<u64>,
    /// A diff snapshot's: the snapshot it builds on (which holds every
    /// other page) and the pages its memory file holds, a bit per page.
    pub diff: Option<Diff>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub base: PathBuf,
    pub pages: Vec<u64>,
}

/// Whether page `page` is set in a bitmap of pages.
pub fn page_set(bits: &[u64], page: usize) -> bool {
    bits.get(page / 64)
        .is_some_and(|w| w >> (page % 64) & 1 != 0)
}

/// How many snapshots a chain of diffs may hold (a longer one, or a
/// cycle, is refused).
pub const MAX_CHAIN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not a visor snapshot state file", path.display())]
    NotASnapshot { path: PathBuf },
    #[error("{}: snapshot format version {found}, this visor reads version {FORMAT_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{}: truncated ({found} bytes, the header says {expected})", path.display())]
    Truncated {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("{}: CRC mismatch (the file is corrupted)", path.display())]
    BadCrc { path: PathBuf },
    #[error("{}: malformed state: {cause}", path.display())]
    Malformed { path: PathBuf, cause: String },
    #[error("{}: {found} bytes, but the snapshot's RAM is {expected}", path.display())]
    MemorySize {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("the snapshot is of a machine with {0}")]
    Shape(String),
    #[error(transparent)]
    Restore(#[from] vm_device::RestoreError),
    #[error("restoring hart {hart}: {cause}")]
    Hart {
        hart: usize,
        cause: riscv_hart::StateError,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |cause| SnapshotError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Writes `state` and `ram` into `dir` (created if needed), each file
/// written whole under a temporary name and then renamed, memory first and
/// the state last, so a failed snapshot never leaves a half-written file
/// or a mismatched pair under the final names. A full snapshot reads only
/// the pages set in `written` (the others are known to be zero); a diff,
/// the pages it names.
pub fn write(
    dir: &Path,
    state: &MachineState,
    ram: &GuestRam,
    written: &[u64],
) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let memory = dir.join(MEMORY_FILE);
    let partial = dir.join(format!("{MEMORY_FILE}.partial"));
    match &state.diff {
        Some(diff) => write_memory(&partial, ram, &diff.pages, false)?,
        None => write_memory(&partial, ram, written, true)?,
    }
    // An older snapshot here loses its state file first: the directory
    // never pairs one snapshot's state with another's memory.
    match std::fs::remove_file(dir.join(STATE_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&dir.join(STATE_FILE))(e))
        }
        _ => {}
    }
    std::fs::rename(&partial, &memory).map_err(io_error(&memory))?;

    let (payload, crc) = encode_payload(state).map_err(|cause| SnapshotError::Malformed {
        path: dir.join(STATE_FILE),
        cause,
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let path = dir.join(STATE_FILE);
    let partial = dir.join(format!("{STATE_FILE}.partial"));
    let mut file = File::create(&partial).map_err(io_error(&partial))?;
    file.write_all(&bytes)
        .and_then(|_| file.sync_all())
        .map_err(io_error(&partial))?;
    std::fs::rename(&partial, &path).map_err(io_error(&path))
}

/// RAM into `path`: the file has RAM's length, and only the pages in
/// `pages` are written (with `skip_zero`, only those not all zero).
fn write_memory(
    path: &Path,
    ram: &GuestRam,
    pages: &[u64],
    skip_zero: bool,
) -> Result<(), SnapshotError> {
    let file = File::create(path).map_err(io_error(path))?;
    file.set_len(ram.len()).map_err(io_error(path))?;
    let mut page = vec![0u8; PAGE];
    for offset in (0..ram.len()).step_by(PAGE) {
        if !page_set(pages, offset as usize / PAGE) {
            continue;
        }
        let len = PAGE.min((ram.len() - offset) as usize);
        ram.read_bytes(ram.base() + offset, &mut page[..len]);
        if !skip_zero || page[..len].iter().fold(0, |any, &b| any | b) != 0 {
            file.write_all_at(&page[..len], offset)
                .map_err(io_error(path))?;
        }
    }
    file.sync_all().map_err(io_error(path))
}

/// Reads and checks the state file in `dir`.
pub fn read_state(dir: &Path) -> Result<MachineState, SnapshotError> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    parse_state(&path, &bytes)
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<MachineState, SnapshotError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let length = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    if length > MAX_PAYLOAD {
        return Err(SnapshotError::Malformed {
            path: path.to_owned(),
            cause: format!("a payload of {length} bytes"),
        });
    }
    let expected = HEADER_LEN as u64 + length + CRC_LEN as u64;
    if bytes.len() as u64 != expected {
        return Err(SnapshotError::Truncated {
            path: path.to_owned(),
            found: bytes.len() as u64,
            expected,
        });
    }
    let payload = &bytes[HEADER_LEN..HEADER_LEN + length as usize];
    let crc = u32::from_le_bytes(bytes[bytes.len() - CRC_LEN..].try_into().unwrap());
    decode_payload(payload, crc).map_err(|e| match e {
        PayloadError::BadCrc => SnapshotError::BadCrc {
            path: path.to_owned(),
        },
        PayloadError::Malformed(cause) => SnapshotError::Malformed {
            path: path.to_owned(),
            cause,
        },
    })
}

/// A state as the state file and the migration stream carry it: JSON,
/// and its CRC-32 (an error for a path that is not UTF-8).
pub(crate) fn encode_payload(state: &MachineState) -> Result<(Vec<u8>, u32), String> {
    let payload = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    let crc = crc32fast::hash(&payload);
    Ok((payload, crc))
}

/// Why a carried state's payload is refused.
pub(crate) enum PayloadError {
    BadCrc,
    Malformed(String),
}

/// The state in `payload`, whose CRC-32 must be `crc`.
pub(crate) fn decode_payload(payload: &[u8], crc: u32) -> Result<MachineState, PayloadError> {
    if crc32fast::hash(payload) != crc {
        return Err(PayloadError::BadCrc);
    }
    serde_json::from_slice(payload).map_err(|e| PayloadError::Malformed(e.to_string()))
}

/// Copies the pages a diff snapshot in `dir` holds into `ram`.
pub fn apply_diff(dir: &Path, pages: &[u64], ram: &GuestRam) -> Result<(), SnapshotError> {
    let file = open_memory(dir, ram.len())?;
    let path = dir.join(MEMORY_FILE);
    let mut page = vec![0u8; PAGE];
    for offset in (0..ram.len()).step_by(PAGE) {
        if page_set(pages, offset as usize / PAGE) {
            let len = PAGE.min((ram.len() - offset) as usize);
            file.read_exact_at(&mut page[..len], offset)
                .map_err(io_error(&path))?;
            ram.write_bytes(ram.base() + offset, &page[..len]);
        }
    }
    Ok(())
}

/// Opens the memory file in `dir`, checking it is `ram_size` bytes.
pub fn open_memory(dir: &Path, ram_size: u64) -> Result<File, SnapshotError> {
    let path = dir.join(MEMORY_FILE);
    let file = File::open(&path).map_err(io_error(&path))?;
    let found = file.metadata().map_err(io_error(&path))?.len();
    if found != ram_size {
        return Err(SnapshotError::MemorySize {
            path,
            found,
            expected: ram_size,
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> MachineState {
        let ram = GuestRam::new(0x8000_0000, 1 << 20).unwrap();
        let harts = vec![riscv_hart::Hart::new(0, ram).save_state()];
        use vm_device::Persist;
        MachineState {
            config: crate::MachineConfig::new(1 << 20),
            mtime: 1234,
            harts,
            clint: crate::clint::Clint::new(1).save(),
            plic: crate::plic::Plic::new(1).save(),
            uart: crate::uart::Uart::new(Box::new(std::io::sink()), Default::default()).save(),
            virtio: Vec::new(),
            pata: None,
            console_input: b"typed ahead".to_vec(),
            tohost: None,
            diff: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("visor-snapshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_snapshot_reads_back_and_its_memory_is_sparse() {
        let dir = scratch("roundtrip");
        let ram = GuestRam::new(0x8000_0000, 1 << 20).unwrap();
        ram.write(0x8000_0000 + 5 * PAGE as u64 + 8, 8, 0x1122_3344);
        write(&dir, &state(), &ram, &[u64::MAX; 4]).unwrap();
        assert_eq!(read_state(&dir).unwrap(), state());
        let memory = open_memory(&dir, 1 << 20).unwrap();
        let mut word = [0u8; 8];
        memory
            .read_exact_at(&mut word, 5 * PAGE as u64 + 8)
            .unwrap();
        assert_eq!(u64::from_le_bytes(word), 0x1122_3344);
        use std::os::unix::fs::MetadataExt;
        let blocks = memory.metadata().unwrap().blocks();
        assert!(blocks * 512 < 64 << 10, "{blocks} blocks: not sparse");
        assert!(matches!(
            open_memory(&dir, 2 << 20),
            Err(SnapshotError::MemorySize { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_state_files_are_refused_with_the_reason() {
        let dir = scratch("damaged");
        let ram = GuestRam::new(0x8000_0000, 1 << 20).unwrap();
        write(&dir, &state(), &ram, &[u64::MAX; 4]).unwrap();
        let good = std::fs::read(dir.join(STATE_FILE)).unwrap();
        let path = Path::new("state");
        let reason = |bytes: &[u8]| parse_state(path, bytes).unwrap_err().to_string();

        assert_eq!(reason(b"hello"), "state: not a visor snapshot state file");
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(
            reason(&version),
            "state: snapshot format version 9, this visor reads version 2"
        );
        let truncated = &good[..good.len() - 10];
        assert!(
            reason(truncated).starts_with("state: truncated"),
            "{}",
            reason(truncated)
        );
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 3] ^= 1;
        assert_eq!(
            reason(&flipped),
            "state: CRC mismatch (the file is corrupted)"
        );
        let mut huge = good.clone();
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(reason(&huge).starts_with("state: malformed state"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
