//! Loading boot images into guest RAM: ELF programs (with their `tohost`
//! symbol), raw firmware binaries, Linux `Image` files and initrds; and
//! finding Debian's OpenSBI when no firmware is named.

use crate::BootError;
use elf::endian::AnyEndian;
use elf::ElfBytes;
use riscv_hart::GuestRam;
use std::path::{Path, PathBuf};

/// OpenSBI's generic-platform firmware for riscv64 as Debian's `opensbi`
/// package installs it (a riscv32 build sits in `riscv32-linux-gnu` beside
/// it, which visor never picks), and QEMU's links to it.
const FIRMWARE_DIRS: &[(&str, &str)] = &[
    ("/usr/lib/riscv64-linux-gnu/opensbi/generic/", ""),
    ("/usr/share/qemu/", "opensbi-riscv64-generic-"),
];

/// The firmware visor boots when none is named.
pub const DEFAULT_FIRMWARE: &str = "fw_dynamic.bin";

/// Finds OpenSBI's riscv64 generic firmware `file` (`fw_dynamic.bin`,
/// `fw_jump.bin`) on this system.
pub fn find_firmware(file: &str) -> Result<PathBuf, BootError> {
    let candidates: Vec<PathBuf> = FIRMWARE_DIRS
        .iter()
        .map(|(dir, prefix)| PathBuf::from(format!("{dir}{prefix}{file}")))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            BootError::NoFirmware(looked.join(", "))
        })
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|cause| BootError::Read {
        path: path.to_owned(),
        cause,
    })
}

/// Where the loaders put what, so no image lands on another (a kernel
/// over the firmware, an ELF segment over the device tree): the second
/// is refused, naming both.
#[derive(Default)]
pub struct Placements {
    spans: Vec<(String, u64, u64)>,
}

impl Placements {
    /// Takes `[addr, addr + len)` for `what`, unless something has it.
    pub fn claim(&mut self, what: &str, addr: u64, len: u64) -> Result<(), BootError> {
        let end = addr.saturating_add(len);
        if len == 0 {
            return Ok(());
        }
        if let Some((other, start, stop)) =
            self.spans.iter().find(|(_, s, e)| addr < *e && *s < end)
        {
            return Err(BootError::Overlap {
                what: what.to_owned(),
                addr,
                end,
                other: other.clone(),
                other_addr: *start,
                other_end: *stop,
            });
        }
        self.spans.push((what.to_owned(), addr, end));
        Ok(())
    }
}

/// A loaded ELF program.
pub struct ElfProgram {
    pub entry: u64,
    /// Physical address of the `tohost` symbol, if the program defines one.
    pub tohost: Option<u64>,
    /// End of the highest loaded segment.
    pub end: u64,
}

pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Loads the PT_LOAD segments of a riscv64 ELF at their physical addresses.
pub fn load_elf(
    ram: &GuestRam,
    placements: &mut Placements,
    path: &Path,
    bytes: &[u8],
) -> Result<ElfProgram, BootError> {
    let bad = |what: String| BootError::BadElf {
        path: path.to_owned(),
        what,
    };
    if bytes.len() > 4 && bytes[4] != 2 {
        return Err(bad("32-bit ELF; visor emulates riscv64".into()));
    }
    let file = ElfBytes::<AnyEndian>::minimal_parse(bytes).map_err(|e| bad(e.to_string()))?;
    if file.ehdr.e_machine != elf::abi::EM_RISCV {
        return Err(BootError::WrongArchitecture {
            path: path.to_owned(),
            machine: machine_name(file.ehdr.e_machine),
        });
    }
    let segments = file
        .segments()
        .ok_or_else(|| bad("no program headers".into()))?;
    let mut end = 0;
    for ph in segments
        .iter()
        .filter(|ph| ph.p_type == elf::abi::PT_LOAD && ph.p_memsz > 0)
    {
        let data = file.segment_data(&ph).map_err(|e| bad(e.to_string()))?;
        if ph.p_filesz > ph.p_memsz {
            return Err(bad(format!(
                "segment at {:#x} has file size larger than memory size",
                ph.p_paddr
            )));
        }
        let fits = ram.contains(ph.p_paddr, ph.p_memsz);
        if fits {
            let what = format!("{} segment", path.display());
            placements.claim(&what, ph.p_paddr, ph.p_memsz)?;
        }
        if !fits || !ram.write_bytes(ph.p_paddr, data) {
            return Err(BootError::DoesNotFit {
                what: format!("{} segment", path.display()),
                addr: ph.p_paddr,
                size: ph.p_memsz,
                ram_base: ram.base(),
                ram_end: ram.end(),
            });
        }
        // The part past the file contents is zero-filled (.bss).
        let zeros = vec![0u8; (ph.p_memsz - ph.p_filesz) as usize];
        ram.write_bytes(ph.p_paddr + ph.p_filesz, &zeros);
        end = end.max(ph.p_paddr + ph.p_memsz);
    }
    let tohost = find_symbol(&file, "tohost").map_err(|e| bad(e.to_string()))?;
    Ok(ElfProgram {
        entry: file.ehdr.e_entry,
        tohost,
        end,
    })
}

fn find_symbol(file: &ElfBytes<AnyEndian>, name: &str) -> Result<Option<u64>, elf::ParseError> {
    let Some((symbols, strings)) = file.symbol_table()? else {
        return Ok(None);
    };
    for sym in symbols.iter() {
        if strings.get(sym.st_name as usize)? == name {
            return Ok(Some(sym.st_value));
        }
    }
    Ok(None)
}

fn machine_name(machine: u16) -> String {
    match machine {
        elf::abi::EM_X86_64 => "x86-64".into(),
        elf::abi::EM_386 => "i386".into(),
        elf::abi::EM_AARCH64 => "aarch64".into(),
        elf::abi::EM_ARM => "arm".into(),
        other => format!("machine type {other}"),
    }
}

/// Offset of the "RSC\x05" magic in a RISC-V Linux `Image` header.
const IMAGE_MAGIC_OFFSET: usize = 0x38;
/// Offset of the effective image size (including BSS) in the header.
const IMAGE_SIZE_OFFSET: usize = 0x10;

/// If `bytes` is a RISC-V Linux `Image`, the memory it occupies once running.
pub fn linux_image_size(bytes: &[u8]) -> Option<u64> {
    let magic = bytes.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4)?;
    if magic != b"RSC\x05" {
        return None;
    }
    let size = u64::from_le_bytes(
        bytes
            .get(IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8)?
            .try_into()
            .ok()?,
    );
    Some(size.max(bytes.len() as u64))
}

/// Copies a raw binary into RAM at `addr`.
pub fn load_raw(
    ram: &GuestRam,
    placements: &mut Placements,
    what: &str,
    bytes: &[u8],
    addr: u64,
) -> Result<(), BootError> {
    if ram.contains(addr, bytes.len() as u64) {
        placements.claim(what, addr, bytes.len() as u64)?;
    }
    if ram.write_bytes(addr, bytes) {
        Ok(())
    } else {
        Err(BootError::DoesNotFit {
            what: what.into(),
            addr,
            size: bytes.len() as u64,
            ram_base: ram.base(),
            ram_end: ram.end(),
        })
    }
}
