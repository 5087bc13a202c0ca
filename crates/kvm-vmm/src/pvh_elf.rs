//! Loading a PVH kernel from an ELF file of either class: a 64-bit
//! `vmlinux` (EM_X86_64) or a 32-bit image (ELFCLASS32, EM_386), as
//! `qemu-system-x86_64 -kernel` accepts both. linux-loader's `Elf` reads
//! only 64-bit headers, so this module parses with the `elf` crate (which
//! reads both) and copies the segments itself; every address and size in
//! the file is checked against guest RAM before anything is written.

use crate::VmmError;
use elf::endian::AnyEndian;
use elf::file::Class;
use elf::note::Note;
use elf::ElfBytes;
use std::path::Path;
use vm_device::GuestMemoryMmap;
use vm_memory::{Bytes, GuestAddress};

/// The note type holding the 32-bit physical entry point of the PVH boot
/// protocol (Xen's `XEN_ELFNOTE_PHYS32_ENTRY`).
const XEN_ELFNOTE_PHYS32_ENTRY: u64 = 18;
const XEN_NOTE_NAME: &str = "Xen";

/// A loaded PVH kernel.
pub struct LoadedKernel {
    /// The 32-bit entry point from the PVH note.
    pub entry: u64,
    /// End of the highest loaded segment.
    pub end: u64,
}

/// Loads every PT_LOAD segment at its physical address, which must lie in
/// `[low, ram_size)`, and returns the PVH entry point.
pub fn load(
    memory: &GuestMemoryMmap,
    path: &Path,
    bytes: &[u8],
    low: u64,
    ram_size: u64,
) -> Result<LoadedKernel, VmmError> {
    let unknown = |detail: String| VmmError::UnknownKernel {
        path: path.to_owned(),
        detail,
    };
    let file = ElfBytes::<AnyEndian>::minimal_parse(bytes).map_err(|e| unknown(e.to_string()))?;
    let (expected, what, container) = match file.ehdr.class {
        Class::ELF64 => (elf::abi::EM_X86_64, "x86-64", "an ELF"),
        Class::ELF32 => (elf::abi::EM_386, "i386", "a 32-bit ELF"),
    };
    if file.ehdr.e_machine != expected {
        return Err(unknown(format!(
            "{container} for machine {}, not {what}",
            file.ehdr.e_machine
        )));
    }
    let segments = file
        .segments()
        .ok_or_else(|| unknown("ELF without program headers".into()))?;

    let mut entry = None;
    let mut end = 0;
    for ph in segments.iter() {
        match ph.p_type {
            elf::abi::PT_NOTE => {
                let notes = file
                    .segment_data_as_notes(&ph)
                    .map_err(|e| unknown(format!("malformed note segment: {e}")))?;
                for note in notes {
                    if let Note::Unknown(any) = note {
                        if any.n_type == XEN_ELFNOTE_PHYS32_ENTRY
                            && any.name.trim_end_matches('\0') == XEN_NOTE_NAME
                        {
                            let word = any
                                .desc
                                .get(..4)
                                .ok_or_else(|| unknown("PVH entry note too short".into()))?;
                            entry = Some(u64::from(u32::from_le_bytes(word.try_into().unwrap())));
                        }
                    }
                }
            }
            elf::abi::PT_LOAD if ph.p_memsz > 0 => {
                let fits = ph
                    .p_paddr
                    .checked_add(ph.p_memsz)
                    .filter(|&seg_end| ph.p_paddr >= low && seg_end <= ram_size);
                let Some(seg_end) = fits.filter(|_| ph.p_filesz <= ph.p_memsz) else {
                    return Err(VmmError::DoesNotFit {
                        what: format!("kernel segment at {:#x}", ph.p_paddr),
                        size: ph.p_memsz,
                    });
                };
                let data = file
                    .segment_data(&ph)
                    .map_err(|e| unknown(format!("segment at {:#x}: {e}", ph.p_paddr)))?;
                let too_big = || VmmError::DoesNotFit {
                    what: format!("kernel segment at {:#x}", ph.p_paddr),
                    size: ph.p_memsz,
                };
                memory
                    .write_slice(data, GuestAddress(ph.p_paddr))
                    .map_err(|_| too_big())?;
                // The rest of the segment (.bss) is left as it is: guest RAM
                // starts zeroed.
                end = end.max(seg_end);
            }
            _ => {}
        }
    }
    let entry = entry.ok_or_else(|| VmmError::NoPvhEntry {
        path: path.to_owned(),
    })?;
    Ok(LoadedKernel { entry, end })
}
