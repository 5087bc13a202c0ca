//! A legacy PATA/IDE controller with one disk, in PIO mode, as Linux's
//! `pata_of_platform` (`compatible = "ata-generic"`) drives it with no
//! paravirtual knowledge at all. Every 16-bit word of every sector crosses
//! the data register, so every word is a trapped guest access: this is the
//! fully emulated baseline the virtio devices are measured against.
//!
//! Register window (reg-shift 0): the command block at offsets 0..8 (data,
//! error/features, sector count, LBA low/mid/high, device, status/command)
//! and the control block (alternate status / device control) at
//! [`CONTROL_OFFSET`]. Supported: IDENTIFY DEVICE, READ/WRITE SECTORS in
//! LBA28 and LBA48, FLUSH CACHE (EXT), SET FEATURES, the power-mode
//! commands, EXECUTE DEVICE DIAGNOSTIC, soft reset; anything else is aborted as the standard says.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use vm_device::{check, BusDevice, DeviceStats, IrqLine, Persist, RestoreError};

pub const SECTOR: usize = 512;
/// Offset of the control block inside the device's window.
pub const CONTROL_OFFSET: u64 = 0x100;
/// Size of the window the device occupies.
pub const WINDOW: u64 = 0x1000;

const REG_DATA: u64 = 0;
const REG_ERROR_FEATURES: u64 = 1;
const REG_COUNT: u64 = 2;
const REG_LBA_LOW: u64 = 3;
const REG_LBA_MID: u64 = 4;
const REG_LBA_HIGH: u64 = 5;
const REG_DEVICE: u64 = 6;
const REG_STATUS_COMMAND: u64 = 7;

const STATUS_ERR: u8 = 0x01;
const STATUS_DRQ: u8 = 0x08;
const STATUS_DSC: u8 = 0x10;
const STATUS_DRDY: u8 = 0x40;
const ERROR_ABRT: u8 = 0x04;
const ERROR_IDNF: u8 = 0x10;
const ERROR_UNC: u8 = 0x40;
const CONTROL_NIEN: u8 = 0x02;
const CONTROL_SRST: u8 = 0x04;
const CONTROL_HOB: u8 = 0x80;
const DEVICE_DEV1: u8 = 0x10;
const DEVICE_LBA: u8 = 0x40;

const LBA28_MAX: u64 = 0x0fff_ffff;

/// A taskfile register with its "high order byte" (the value written before it, for LBA48).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reg {
    current: u8,
    previous: u8,
}

impl Reg {
    fn write(&mut self, value: u8) {
        self.previous = self.current;
        self.current = value;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transfer {
    None,
    /// Sectors flowing to the host; `buffer` holds the current one.
    In {
        lba: u64,
        remaining: u32,
    },
    /// Sectors flowing from the host into `buffer`, written at `lba`.
    Out {
        lba: u64,
        remaining: u32,
    },
}

pub struct Pata {
    file: File,
    read_only: bool,
    sectors: u64,
    irq: Arc<dyn IrqLine>,
    stats: Arc<DeviceStats>,
    features: Reg,
    count: Reg,
    lba: [Reg; 3],
    device: u8,
    status: u8,
    error: u8,
    control: u8,
    /// INTRQ before the nIEN mask.
    interrupt: bool,
    transfer: Transfer,
    buffer: [u8; SECTOR],
    position: usize,
    /// Once a write-back failed, every write and FLUSH CACHE is aborted.
    write_back: vm_device::image::WriteBack,
}

impl Pata {
    /// A controller whose master disk is `file` (`len` bytes).
    pub fn new(
        file: File,
        len: u64,
        read_only: bool,
        irq: Arc<dyn IrqLine>,
        stats: Arc<DeviceStats>,
    ) -> Pata {
        let mut pata = Pata {
            file,
            read_only,
            sectors: len / SECTOR as u64,
            irq,
            stats,
            features: Reg::default(),
            count: Reg::default(),
            lba: [Reg::default(); 3],
            device: 0,
            status: 0,
            error: 0,
            control: 0,
            interrupt: false,
            transfer: Transfer::None,
            buffer: [0; SECTOR],
            position: 0,
            write_back: Default::default(),
        };
        pata.signature();
        pata
    }

    /// The state after reset or diagnostics: an ATA device, diagnostics passed.
    fn signature(&mut self) {
        self.count = Reg {
            current: 1,
            previous: 0,
        };
        self.lba = [
            Reg {
                current: 1,
                previous: 0,
            },
            Reg::default(),
            Reg::default(),
        ];
        self.device = 0;
        self.error = 0x01;
        self.status = STATUS_DRDY | STATUS_DSC;
        self.transfer = Transfer::None;
        self.position = 0;
    }

    fn selected(&self) -> bool {
        self.device & DEVICE_DEV1 == 0
    }

    fn set_interrupt(&mut self, pending: bool) {
        self.interrupt = pending;
        self.irq
            .set_level(pending && self.control & CONTROL_NIEN == 0);
    }

    fn hob(&self) -> bool {
        self.control & CONTROL_HOB != 0
    }

    fn read_register(&mut self, reg: u64) -> u8 {
        if !self.selected() {
            return 0; // no slave device: everything reads as zero
        }
        let pick = |r: Reg, hob: bool| if hob { r.previous } else { r.current };
        match reg {
            REG_ERROR_FEATURES => self.error,
            REG_COUNT => pick(self.count, self.hob()),
            REG_LBA_LOW => pick(self.lba[0], self.hob()),
            REG_LBA_MID => pick(self.lba[1], self.hob()),
            REG_LBA_HIGH => pick(self.lba[2], self.hob()),
            REG_DEVICE => self.device | 0xa0,
            REG_STATUS_COMMAND => {
                self.set_interrupt(false);
                self.status
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, reg: u64, value: u8) {
        self.control &= !CONTROL_HOB; // any taskfile write clears HOB
        match reg {
            REG_ERROR_FEATURES => self.features.write(value),
            REG_COUNT => self.count.write(value),
            REG_LBA_LOW => self.lba[0].write(value),
            REG_LBA_MID => self.lba[1].write(value),
            REG_LBA_HIGH => self.lba[2].write(value),
            REG_DEVICE => self.device = value,
            REG_STATUS_COMMAND if self.selected() => self.command(value),
            _ => {}
        }
    }

    fn write_control(&mut self, value: u8) {
        let releasing_reset = self.control & CONTROL_SRST != 0 && value & CONTROL_SRST == 0;
        self.control = value;
        if releasing_reset {
            self.signature();
            self.set_interrupt(false);
        } else {
            self.set_interrupt(self.interrupt);
        }
    }

    /// LBA and sector count of a READ/WRITE command, or None for CHS addressing.
    fn address(&self, lba48: bool) -> Option<(u64, u32)> {
        let [low, mid, high] = self.lba;
        if lba48 {
            let lba = [
                low.current,
                mid.current,
                high.current,
                low.previous,
                mid.previous,
                high.previous,
            ]
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, &b)| acc | (b as u64) << (8 * i));
            let count = (self.count.previous as u32) << 8 | self.count.current as u32;
            Some((lba, if count == 0 { 65536 } else { count }))
        } else if self.device & DEVICE_LBA != 0 {
            let lba = ((self.device & 0xf) as u64) << 24
                | (high.current as u64) << 16
                | (mid.current as u64) << 8
                | low.current as u64;
            let count = self.count.current as u32;
            Some((lba, if count == 0 { 256 } else { count }))
        } else {
            None
        }
    }

    fn command(&mut self, command: u8) {
        self.error = 0;
        self.transfer = Transfer::None;
        match command {
            0xec => {
                self.buffer = identify(self.sectors);
                self.position = 0;
                self.transfer = Transfer::In {
                    lba: 0,
                    remaining: 1,
                };
                self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
                self.set_interrupt(true);
            }
            0x20 | 0x21 | 0x24 => match self.address(command == 0x24) {
                Some((lba, count)) if self.in_range(lba, count) => {
                    self.transfer = Transfer::In {
                        lba,
                        remaining: count,
                    };
                    self.load_sector(lba);
                }
                Some(_) => self.fail(ERROR_IDNF),
                None => self.fail(ERROR_ABRT),
            },
            0x30 | 0x31 | 0x34 => match self.address(command == 0x34) {
                _ if self.read_only || self.write_back.lost() => self.fail(ERROR_ABRT),
                Some((lba, count)) if self.in_range(lba, count) => {
                    self.transfer = Transfer::Out {
                        lba,
                        remaining: count,
                    };
                    self.position = 0;
                    self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
                }
                Some(_) => self.fail(ERROR_IDNF),
                None => self.fail(ERROR_ABRT),
            },
            0xe7 | 0xea => match self.write_back.sync(&self.file) {
                Ok(()) => self.complete(),
                Err(_) => self.fail(ERROR_ABRT),
            },
            // SET FEATURES, INITIALIZE DEVICE PARAMETERS, STANDBY/IDLE (IMMEDIATE):
            // accepted, nothing to change for a disk that never spins.
            0xef | 0x91 | 0xe0..=0xe3 => self.complete(),
            0xe5 => {
                self.count.write(0xff); // CHECK POWER MODE: active
                self.complete();
            }
            0x90 => {
                self.signature();
                self.set_interrupt(true);
            }
            _ => self.fail(ERROR_ABRT),
        }
    }

    fn in_range(&self, lba: u64, count: u32) -> bool {
        lba.checked_add(count as u64)
            .is_some_and(|end| end <= self.sectors)
    }

    fn complete(&mut self) {
        self.status = STATUS_DRDY | STATUS_DSC;
        self.set_interrupt(true);
    }

    fn fail(&mut self, error: u8) {
        self.error = error;
        self.status = STATUS_DRDY | STATUS_ERR;
        self.transfer = Transfer::None;
        self.set_interrupt(true);
    }

    /// Reads sector `lba` into the buffer and asks the host to take it.
    fn load_sector(&mut self, lba: u64) {
        if self
            .file
            .read_exact_at(&mut self.buffer, lba * SECTOR as u64)
            .is_err()
        {
            return self.fail(ERROR_UNC);
        }
        self.stats.to_guest(SECTOR);
        self.position = 0;
        self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.set_interrupt(true);
    }

    fn read_data(&mut self, data: &mut [u8]) {
        let Transfer::In { lba, remaining } = self.transfer else {
            return;
        };
        let n = data.len().min(SECTOR - self.position);
        data[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
        self.position += n;
        if self.position < SECTOR {
            return;
        }
        if remaining > 1 {
            self.transfer = Transfer::In {
                lba: lba + 1,
                remaining: remaining - 1,
            };
            self.load_sector(lba + 1);
        } else {
            self.transfer = Transfer::None;
            self.status = STATUS_DRDY | STATUS_DSC;
        }
    }

    fn write_data(&mut self, data: &[u8]) {
        let Transfer::Out { lba, remaining } = self.transfer else {
            return;
        };
        let n = data.len().min(SECTOR - self.position);
        self.buffer[self.position..self.position + n].copy_from_slice(&data[..n]);
        self.position += n;
        if self.position < SECTOR {
            return;
        }
        if self
            .file
            .write_all_at(&self.buffer, lba * SECTOR as u64)
            .is_err()
        {
            return self.fail(ERROR_ABRT);
        }
        self.stats.from_guest(SECTOR);
        self.position = 0;
        if remaining > 1 {
            self.transfer = Transfer::Out {
                lba: lba + 1,
                remaining: remaining - 1,
            };
            self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
            self.set_interrupt(true);
        } else {
            self.transfer = Transfer::None;
            self.complete();
        }
    }
}

/// What the guest can observe of the controller: the taskfile, status,
/// the transfer in progress and the sector buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PataState {
    features: Reg,
    count: Reg,
    lba: [Reg; 3],
    device: u8,
    status: u8,
    error: u8,
    control: u8,
    interrupt: bool,
    transfer: Transfer,
    buffer: Vec<u8>,
    position: usize,
}

impl Pata {
    /// Makes what the guest wrote durable (before a snapshot names the
    /// disk by its path).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.write_back.sync(&self.file)
    }

    /// Drops the image's lock (a migration's source, its guest stopped).
    pub fn release(&self) -> std::io::Result<()> {
        vm_device::image::unlock(&self.file)
    }

    /// Takes the image's lock again.
    pub fn reacquire(&self) -> std::io::Result<()> {
        vm_device::image::lock(&self.file, self.read_only)
    }
}

impl Persist for Pata {
    type State = PataState;

    fn save(&self) -> PataState {
        PataState {
            features: self.features,
            count: self.count,
            lba: self.lba,
            device: self.device,
            status: self.status,
            error: self.error,
            control: self.control,
            interrupt: self.interrupt,
            transfer: self.transfer,
            buffer: self.buffer.to_vec(),
            position: self.position,
        }
    }

    fn restore(&mut self, s: &PataState) -> Result<(), RestoreError> {
        const NAME: &str = "PATA";
        let buffer: [u8; SECTOR] = s
            .buffer
            .as_slice()
            .try_into()
            .map_err(|_| RestoreError::new(NAME, "a sector buffer of another size"))?;
        check(
            s.position <= SECTOR,
            NAME,
            "a buffer position past the sector",
        )?;
        let transfer_fits = match s.transfer {
            Transfer::None => true,
            // IDENTIFY's sector is In { lba: 0, remaining: 1 } on any disk.
            Transfer::In {
                lba: 0,
                remaining: 1,
            } => true,
            Transfer::In { lba, remaining } | Transfer::Out { lba, remaining } => {
                remaining > 0 && self.in_range(lba, remaining)
            }
        };
        check(transfer_fits, NAME, "a transfer beyond the disk's end")?;
        check(
            !(matches!(s.transfer, Transfer::Out { .. }) && self.read_only),
            NAME,
            "a write to a read-only disk",
        )?;
        self.features = s.features;
        self.count = s.count;
        self.lba = s.lba;
        self.device = s.device;
        self.status = s.status;
        self.error = s.error;
        self.control = s.control;
        self.transfer = s.transfer;
        self.buffer = buffer;
        self.position = s.position;
        self.set_interrupt(s.interrupt);
        Ok(())
    }
}

impl BusDevice for Pata {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            REG_DATA if data.len() >= 2 && self.selected() => self.read_data(data),
            REG_DATA if data.len() >= 2 => {}
            0..8 => data[0] = self.read_register(offset),
            CONTROL_OFFSET => data[0] = if self.selected() { self.status } else { 0 },
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            REG_DATA if data.len() >= 2 && self.selected() => self.write_data(data),
            REG_DATA if data.len() >= 2 => {}
            0..8 => self.write_register(offset, data[0]),
            CONTROL_OFFSET => self.write_control(data[0]),
            _ => {}
        }
    }
}

/// The 512-byte IDENTIFY DEVICE block for a disk of `sectors` sectors.
fn identify(sectors: u64) -> [u8; SECTOR] {
    let mut words = [0u16; 256];
    let mut text = |first: usize, last: usize, s: &str| {
        let bytes: Vec<u8> = s
            .bytes()
            .chain(std::iter::repeat(b' '))
            .take((last - first + 1) * 2)
            .collect();
        for (i, pair) in bytes.chunks(2).enumerate() {
            words[first + i] = (pair[0] as u16) << 8 | pair[1] as u16;
        }
    };
    text(10, 19, "VISOR-PATA-0001");
    text(23, 26, env!("CARGO_PKG_VERSION"));
    text(27, 46, "visor emulated PATA disk");
    let cylinders = (sectors / (16 * 63)).min(16383) as u16;
    let lba28 = sectors.min(LBA28_MAX);
    words[0] = 0x0040; // fixed disk
    words[1] = cylinders;
    words[3] = 16;
    words[6] = 63;
    words[47] = 0x8000; // no READ/WRITE MULTIPLE
    words[49] = 1 << 9; // LBA
    words[50] = 0x4000;
    words[53] = 0x0003; // words 54-58 and 64-70 valid
    words[54] = cylinders;
    words[55] = 16;
    words[56] = 63;
    let chs = cylinders as u32 * 16 * 63;
    words[57] = chs as u16;
    words[58] = (chs >> 16) as u16;
    words[60] = lba28 as u16;
    words[61] = (lba28 >> 16) as u16;
    words[64] = 0x0003; // PIO modes 3 and 4
    words[65..69].fill(120);
    words[80] = 0x00f0; // ATA/ATAPI-4 to -7
    words[82] = 1 << 5; // volatile write cache
    words[83] = 0x4000 | 1 << 10 | 1 << 12 | 1 << 13; // LBA48, FLUSH CACHE (EXT)
    words[84] = 0x4000;
    words[85] = 1 << 5; // write cache enabled
    words[86] = 1 << 10 | 1 << 12 | 1 << 13;
    words[87] = 0x4000;
    for (i, w) in words[100..104].iter_mut().enumerate() {
        *w = (sectors >> (16 * i)) as u16;
    }
    let mut out = [0u8; SECTOR];
    for (i, w) in words.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Fuzz body: register reads and writes from `data` (offset, value) against a
/// controller with a small disk. Must never panic or touch the file outside it.
pub fn fuzz_registers(data: &[u8], disk: File) {
    let stats = Arc::new(DeviceStats::default());
    let irq = vm_device::LevelIrq::new(stats.clone());
    let len = disk.metadata().map(|m| m.len()).unwrap_or(0);
    let mut pata = Pata::new(disk, len, false, irq, stats);
    for op in data.chunks_exact(3) {
        let offset = match op[0] & 0x0f {
            8 => CONTROL_OFFSET,
            o => o as u64 & 7,
        };
        let width = if op[0] & 0x10 != 0 { 2 } else { 1 };
        let bytes = [op[1], op[2]];
        if op[0] & 0x80 != 0 {
            let mut out = [0u8; 2];
            pata.read(offset, &mut out[..width]);
        } else {
            pata.write(offset, &bytes[..width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn disk(sectors: usize) -> (Pata, File, Arc<DeviceStats>) {
        let mut file = tempfile();
        let mut content = vec![0u8; sectors * SECTOR];
        content[SECTOR * 2..SECTOR * 2 + 5].copy_from_slice(b"hello");
        file.write_all(&content).unwrap();
        let stats = Arc::new(DeviceStats::default());
        let irq = vm_device::LevelIrq::new(stats.clone());
        let pata = Pata::new(
            file.try_clone().unwrap(),
            content.len() as u64,
            false,
            irq,
            stats.clone(),
        );
        (pata, file, stats)
    }

    fn tempfile() -> File {
        let path = std::env::temp_dir().join(format!(
            "pata-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }

    fn outb(p: &mut Pata, reg: u64, v: u8) {
        p.write(reg, &[v]);
    }

    fn inb(p: &mut Pata, reg: u64) -> u8 {
        let mut b = [0];
        p.read(reg, &mut b);
        b[0]
    }

    fn read_words(p: &mut Pata, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut w = [0u8; 2];
            p.read(REG_DATA, &mut w);
            out.extend_from_slice(&w);
        }
        out
    }

    fn lba28(p: &mut Pata, lba: u32, count: u8, command: u8) {
        outb(p, REG_COUNT, count);
        outb(p, REG_LBA_LOW, lba as u8);
        outb(p, REG_LBA_MID, (lba >> 8) as u8);
        outb(p, REG_LBA_HIGH, (lba >> 16) as u8);
        outb(p, REG_DEVICE, DEVICE_LBA | (lba >> 24) as u8 & 0xf);
        outb(p, REG_STATUS_COMMAND, command);
    }

    #[test]
    fn a_failed_flush_aborts_every_later_write_and_flush() {
        let (mut p, file, _) = disk(16);
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[0] is a new descriptor this File now owns; fds[1] is closed.
        p.file = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fds[0]) };
        // SAFETY: fds[1] is ours and not used again.
        unsafe { libc::close(fds[1]) };
        let aborted = |p: &mut Pata| inb(p, REG_STATUS_COMMAND) & STATUS_ERR != 0;
        outb(&mut p, REG_STATUS_COMMAND, 0xe7);
        assert!(aborted(&mut p), "fdatasync on a pipe fails");
        p.file = file; // the image would write back fine now
        outb(&mut p, REG_STATUS_COMMAND, 0xe7);
        assert!(aborted(&mut p), "sticky");
        lba28(&mut p, 1, 1, 0x30);
        assert!(aborted(&mut p), "writes are aborted");
        lba28(&mut p, 2, 1, 0x20);
        assert!(!aborted(&mut p), "reads go on");
        assert!(p.flush().is_err());
    }

    #[test]
    fn a_read_in_progress_goes_on_in_a_restored_controller() {
        let (mut p, file, _) = disk(16);
        lba28(&mut p, 2, 2, 0x20);
        let first = read_words(&mut p, 3);
        let state = serde_json::to_string(&p.save()).unwrap();
        let irq = vm_device::LevelIrq::new(Default::default());
        let mut q = Pata::new(file, 16 * SECTOR as u64, false, irq, Default::default());
        q.restore(&serde_json::from_str(&state).unwrap()).unwrap();
        let rest = read_words(&mut q, 256 + 256 - 3);
        let all = [first, rest].concat();
        assert_eq!(&all[..5], b"hello");
        assert_eq!(all.len(), 2 * SECTOR);
        assert_eq!(q.save().transfer, Transfer::None, "both sectors read");
    }

    #[test]
    fn a_saved_state_that_does_not_fit_the_disk_is_refused_whole() {
        let (mut p, _, _) = disk(16);
        lba28(&mut p, 14, 2, 0x30);
        let mut state = p.save();
        let before = p.save();
        state.transfer = Transfer::Out {
            lba: 15,
            remaining: 2,
        };
        assert!(p.restore(&state).is_err(), "past the end");
        state.transfer = Transfer::None;
        state.buffer.pop();
        assert!(p.restore(&state).is_err(), "a short buffer");
        assert_eq!(p.save(), before, "nothing changed");
    }

    #[test]
    fn reset_signature_and_identify() {
        let (mut p, _, stats) = disk(16);
        assert_eq!((inb(&mut p, REG_COUNT), inb(&mut p, REG_LBA_LOW)), (1, 1));
        assert_eq!(
            (inb(&mut p, REG_LBA_MID), inb(&mut p, REG_LBA_HIGH)),
            (0, 0),
            "ATA, not ATAPI"
        );
        outb(&mut p, REG_STATUS_COMMAND, 0xec);
        assert_eq!(inb(&mut p, CONTROL_OFFSET) & STATUS_DRQ, STATUS_DRQ);
        assert_eq!(stats.snapshot()[1], 1, "IDENTIFY raised INTRQ");
        let id = read_words(&mut p, 256);
        let word = |i: usize| u16::from_le_bytes([id[2 * i], id[2 * i + 1]]);
        assert_eq!(word(60) as u64 | (word(61) as u64) << 16, 16);
        assert_ne!(word(83) & 1 << 10, 0, "LBA48");
        assert_eq!(
            &id[54..58],
            b"ivos",
            "model string is byte-swapped ATA text"
        );
        assert_eq!(inb(&mut p, REG_STATUS_COMMAND) & STATUS_DRQ, 0);
    }

    #[test]
    fn pio_read_and_write_sectors() {
        let (mut p, file, _) = disk(16);
        lba28(&mut p, 2, 1, 0x20);
        assert_eq!(&read_words(&mut p, 256)[..5], b"hello");
        assert_eq!(inb(&mut p, REG_STATUS_COMMAND), STATUS_DRDY | STATUS_DSC);

        lba28(&mut p, 4, 2, 0x30);
        for i in 0..512u16 {
            p.write(REG_DATA, &i.to_le_bytes());
        }
        assert_eq!(
            inb(&mut p, REG_STATUS_COMMAND) & (STATUS_DRQ | STATUS_ERR),
            0
        );
        let mut back = [0u8; 4];
        file.read_exact_at(&mut back, 5 * SECTOR as u64).unwrap();
        assert_eq!(
            back,
            [0, 1, 1, 1],
            "word 256 lands at the start of sector 5"
        );
    }

    #[test]
    fn lba48_and_errors() {
        let (mut p, _, _) = disk(16);
        // READ SECTORS EXT of sector 2: high bytes first, then low bytes.
        for (reg, hi, lo) in [
            (REG_COUNT, 0, 1),
            (REG_LBA_LOW, 0, 2),
            (REG_LBA_MID, 0, 0),
            (REG_LBA_HIGH, 0, 0),
        ] {
            outb(&mut p, reg, hi);
            outb(&mut p, reg, lo);
        }
        outb(&mut p, REG_DEVICE, DEVICE_LBA);
        outb(&mut p, REG_STATUS_COMMAND, 0x24);
        assert_eq!(&read_words(&mut p, 3)[..5], b"hello");
        // Past the end: IDNF. Unknown command: ABRT.
        lba28(&mut p, 15, 2, 0x20);
        assert_eq!(inb(&mut p, REG_STATUS_COMMAND) & STATUS_ERR, STATUS_ERR);
        assert_eq!(inb(&mut p, REG_ERROR_FEATURES), ERROR_IDNF);
        outb(&mut p, REG_STATUS_COMMAND, 0x42);
        assert_eq!(inb(&mut p, REG_ERROR_FEATURES), ERROR_ABRT);
        // The slave is absent: its registers read as zero.
        outb(&mut p, REG_DEVICE, DEVICE_DEV1);
        outb(&mut p, REG_COUNT, 0x55);
        assert_eq!(inb(&mut p, REG_COUNT), 0);
        assert_eq!(inb(&mut p, CONTROL_OFFSET), 0);
    }

    #[test]
    fn fuzz_body_survives_pseudo_random_sequences() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let ops: Vec<u8> = (0..3000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let file = tempfile();
            file.set_len(8 * SECTOR as u64).unwrap();
            fuzz_registers(&ops, file.try_clone().unwrap());
            assert_eq!(
                file.metadata().unwrap().len(),
                8 * SECTOR as u64,
                "never writes past the disk"
            );
        }
    }
}
