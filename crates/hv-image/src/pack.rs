//! `visor hv pack`: a TOML configuration naming the machine and its VMs,
//! the hypervisor's ELF and each VM's kernel become one bootable image.
//! Bad configurations are refused with one line naming the file and the
//! problem: unknown keys, sizes that are not multiples of 2 MiB, more
//! memory than the machine has, a device no machine has or one given to
//! two VMs, duplicate names, kernels that do not fit.
//!
//! ```toml
//! [machine]
//! memory = "256M"
//!
//! [[vm]]
//! name = "counter"
//! memory = "16M"
//! kernel = "counter.elf"        # relative to the configuration's folder
//! vcpus = 1
//! weight = 256
//! cap = 0                       # percent of one hart; 0: none
//! on_crash = "stop"             # or "restart"
//! devices = ["virtio-mmio@10001000"]
//! ```

use crate::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::vec::Vec;

/// The machine memory assumed when the configuration names none: visor's
/// and QEMU's default.
const DEFAULT_MACHINE_MEMORY: u64 = 128 << 20;
/// QEMU virt's virtio-mmio slots: 0x1000_1000 + 0x1000 * n.
const VIRTIO_MMIO_BASE: u64 = 0x1000_1000;
const VIRTIO_MMIO_SLOTS: u64 = 8;
const MAX_VCPUS: u32 = 8;
const DEFAULT_WEIGHT: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Config { path: PathBuf, what: String },
    #[error("{}: {what}", path.display())]
    Hypervisor { path: PathBuf, what: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    machine: Option<MachineConfig>,
    #[serde(default)]
    vm: Vec<VmConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineConfig {
    memory: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmConfig {
    name: String,
    memory: String,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    #[serde(default)]
    bootargs: String,
    vcpus: Option<u32>,
    weight: Option<u32>,
    cap: Option<u32>,
    on_crash: Option<String>,
    #[serde(default)]
    devices: Vec<String>,
}

/// `64M`, `1G`, `4096K` or plain bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `virtio-mmio@10001000`: a device of QEMU virt's (and visor's) board.
fn parse_device(text: &str) -> Option<u64> {
    let address = u64::from_str_radix(text.strip_prefix("virtio-mmio@")?, 16).ok()?;
    let slot = address.checked_sub(VIRTIO_MMIO_BASE)?;
    (slot % 0x1000 == 0 && slot / 0x1000 < VIRTIO_MMIO_SLOTS).then_some(address)
}

fn read(path: &Path) -> Result<Vec<u8>, PackError> {
    std::fs::read(path).map_err(|cause| PackError::Read {
        path: path.to_owned(),
        cause,
    })
}

/// The PT_LOAD segments of a riscv64 ELF laid out flat from `base`, with
/// `memsz` counted (so .bss and what follows are zeros); `None` if `bytes`
/// is not an ELF.
fn flatten_elf(bytes: &[u8], base: u64) -> Option<Result<(Vec<u8>, u64), String>> {
    use elf::endian::AnyEndian;
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    let file = match elf::ElfBytes::<AnyEndian>::minimal_parse(bytes) {
        Ok(f) => f,
        Err(e) => return Some(Err(format!("malformed ELF: {e}"))),
    };
    if file.ehdr.e_machine != elf::abi::EM_RISCV {
        return Some(Err(format!(
            "an ELF for machine {}, not RISC-V",
            file.ehdr.e_machine
        )));
    }
    let Some(segments) = file.segments() else {
        return Some(Err("an ELF without program headers".into()));
    };
    let mut flat = Vec::new();
    for ph in segments
        .iter()
        .filter(|p| p.p_type == elf::abi::PT_LOAD && p.p_memsz > 0)
    {
        let Some(offset) = ph.p_paddr.checked_sub(base) else {
            return Some(Err(format!(
                "a segment at {:#x}, below {base:#x}",
                ph.p_paddr
            )));
        };
        let end = offset.checked_add(ph.p_memsz).filter(|&e| e < 1 << 32);
        let (Some(end), Ok(data)) = (end, file.segment_data(&ph)) else {
            return Some(Err(format!("a malformed segment at {:#x}", ph.p_paddr)));
        };
        if ph.p_filesz > ph.p_memsz {
            return Some(Err("a segment larger in the file than in memory".into()));
        }
        if flat.len() < end as usize {
            flat.resize(end as usize, 0);
        }
        flat[offset as usize..][..data.len()].copy_from_slice(data);
    }
    Some(Ok((flat, file.ehdr.e_entry)))
}

/// Builds the image: the hypervisor (`hypervisor`, its ELF) and the VMs
/// that the configuration at `config_path` names.
pub fn pack(config_path: &Path, hypervisor: &Path) -> Result<Vec<u8>, PackError> {
    let config_error = |what: String| PackError::Config {
        path: config_path.to_owned(),
        what,
    };
    let text = std::fs::read_to_string(config_path).map_err(|cause| PackError::Read {
        path: config_path.to_owned(),
        cause,
    })?;
    let config: Config = toml::from_str(&text).map_err(|e| {
        // One line: toml's message, with where it is.
        let message = e.message().lines().collect::<Vec<_>>().join(": ");
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        config_error(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })?;
    let folder = config_path.parent().unwrap_or(Path::new("."));

    let hv_bytes = read(hypervisor)?;
    let hv_error = |what: String| PackError::Hypervisor {
        path: hypervisor.to_owned(),
        what,
    };
    let (mut image, _) = flatten_elf(&hv_bytes, LOAD_ADDRESS)
        .ok_or_else(|| hv_error("not an ELF".into()))?
        .map_err(hv_error)?;
    if image.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) != Some(&IMAGE_MAGIC[..]) {
        return Err(hv_error(
            "not visor's hypervisor (no Image header at 0x8020_0000)".into(),
        ));
    }
    let footprint = (image.len() as u64).div_ceil(PACKAGE_ALIGN) * PACKAGE_ALIGN;
    image.resize(footprint as usize, 0);

    let machine_memory = match &config.machine {
        Some(m) => parse_size(&m.memory)
            .ok_or_else(|| config_error(format!("machine memory {:?} is not a size", m.memory)))?,
        None => DEFAULT_MACHINE_MEMORY,
    };
    if config.vm.is_empty() {
        return Err(config_error("no [[vm]] is configured".into()));
    }
    if config.vm.len() > MAX_VMS {
        return Err(config_error(format!(
            "{} VMs, at most {MAX_VMS}",
            config.vm.len()
        )));
    }

    let mut descriptors = Vec::new();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let mut owners: Vec<(u64, &str)> = Vec::new();
    let mut total_memory = footprint;
    for vm in &config.vm {
        let bad = |what: String| config_error(format!("VM {:?}: {what}", vm.name));
        let valid_name = !vm.name.is_empty()
            && vm.name.len() < NAME_BYTES
            && vm
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !valid_name {
            return Err(bad(format!(
                "names are 1 to {} letters, digits, - or _",
                NAME_BYTES - 1
            )));
        }
        if names.contains(&vm.name.as_str()) {
            return Err(bad("two VMs have this name".into()));
        }
        names.push(&vm.name);
        let memory = parse_size(&vm.memory)
            .filter(|&m| m > 0 && m % PACKAGE_ALIGN == 0)
            .ok_or_else(|| {
                bad(format!(
                    "memory {:?} is not a non-zero multiple of 2M",
                    vm.memory
                ))
            })?;
        total_memory = total_memory.saturating_add(memory);
        let vcpus = vm.vcpus.unwrap_or(1);
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            return Err(bad(format!(
                "vcpus {vcpus} is out of range (1 to {MAX_VCPUS})"
            )));
        }
        let weight = vm.weight.unwrap_or(DEFAULT_WEIGHT);
        if weight == 0 {
            return Err(bad("weight must be at least 1".into()));
        }
        let cap = vm.cap.unwrap_or(0);
        if cap > 100 {
            return Err(bad(format!("cap {cap}% is more than one hart")));
        }
        let on_crash = match vm.on_crash.as_deref() {
            None | Some("stop") => OnCrash::Stop,
            Some("restart") => OnCrash::Restart,
            Some(other) => {
                return Err(bad(format!(
                    "on_crash {other:?} is neither \"stop\" nor \"restart\""
                )))
            }
        };
        if vm.devices.len() > MAX_DEVICES {
            return Err(bad(format!("more than {MAX_DEVICES} devices")));
        }
        let mut devices = [0; MAX_DEVICES];
        for (slot, name) in vm.devices.iter().enumerate() {
            let address = parse_device(name).ok_or_else(|| {
                bad(format!("unknown device {name:?} (the machine has virtio-mmio@10001000 to virtio-mmio@10008000)"))
            })?;
            if let Some((_, owner)) = owners.iter().find(|(a, _)| *a == address) {
                return Err(bad(format!(
                    "device {name} is already given to VM {owner:?}"
                )));
            }
            owners.push((address, &vm.name));
            devices[slot] = address;
        }
        if vm.bootargs.len() >= BOOTARGS_BYTES {
            return Err(bad(format!(
                "bootargs longer than {} bytes",
                BOOTARGS_BYTES - 1
            )));
        }
        let kernel_path = folder.join(&vm.kernel);
        let kernel_bytes = read(&kernel_path)?;
        // A RISC-V Linux Image goes where its header says (text_offset).
        let load_offset = match kernel_bytes.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) {
            Some(magic) if magic == IMAGE_MAGIC => {
                u64::from_le_bytes(kernel_bytes[8..16].try_into().unwrap())
            }
            _ => 0,
        };
        if load_offset % PACKAGE_ALIGN != 0 || load_offset >= memory {
            return Err(bad(format!(
                "kernel {}: text_offset {load_offset:#x} is not usable",
                kernel_path.display()
            )));
        }
        let kernel = match flatten_elf(&kernel_bytes, GUEST_RAM_BASE) {
            Some(Ok((flat, entry))) if entry == GUEST_RAM_BASE => flat,
            Some(Ok((_, entry))) => {
                return Err(bad(format!(
                    "kernel {}: its entry {entry:#x} is not the start of guest RAM ({GUEST_RAM_BASE:#x})",
                    kernel_path.display()
                )))
            }
            Some(Err(what)) => return Err(bad(format!("kernel {}: {what}", kernel_path.display()))),
            None => kernel_bytes,
        };
        let initrd = match &vm.initrd {
            Some(path) => read(&folder.join(path))?,
            None => Vec::new(),
        };
        if kernel.is_empty() {
            return Err(bad(format!("kernel {} is empty", kernel_path.display())));
        }
        if load_offset + (kernel.len() + initrd.len()) as u64 > memory {
            return Err(bad(format!(
                "kernel and initrd ({} bytes) do not fit in its memory",
                kernel.len() + initrd.len()
            )));
        }
        let mut name = [0; NAME_BYTES];
        name[..vm.name.len()].copy_from_slice(vm.name.as_bytes());
        let mut bootargs = [0; BOOTARGS_BYTES];
        bootargs[..vm.bootargs.len()].copy_from_slice(vm.bootargs.as_bytes());
        descriptors.push(VmDescriptor {
            name,
            memory,
            vcpus,
            weight,
            cap,
            on_crash,
            kernel: Blob::default(),
            initrd: Blob::default(),
            bootargs,
            devices,
            device_count: vm.devices.len() as u32,
            load_offset: load_offset as u32,
        });
        blobs.push(kernel);
        blobs.push(initrd);
    }
    if total_memory > machine_memory {
        return Err(config_error(format!(
            "the VMs need {} MiB with the hypervisor, more than the machine's {} MiB",
            total_memory >> 20,
            machine_memory >> 20
        )));
    }

    // Blobs follow the descriptors, each 8-byte aligned.
    let mut offset = (HEADER_BYTES + descriptors.len() * DESCRIPTOR_BYTES) as u64;
    let mut places = Vec::new();
    for blob in &blobs {
        places.push(Blob {
            offset,
            size: blob.len() as u64,
        });
        offset += (blob.len() as u64).div_ceil(8) * 8;
    }
    for (i, d) in descriptors.iter_mut().enumerate() {
        d.kernel = places[2 * i];
        d.initrd = places[2 * i + 1];
    }
    let mut body = Vec::new();
    for d in &descriptors {
        body.extend_from_slice(&d.encode());
    }
    for blob in &blobs {
        body.extend_from_slice(blob);
        body.resize(body.len().div_ceil(8) * 8, 0);
    }
    let header = PackageHeader {
        vm_count: descriptors.len() as u32,
        size: (HEADER_BYTES + body.len()) as u64,
        checksum: fnv1a64(&body),
    };
    image.extend_from_slice(&header.encode());
    image.extend(body);
    Ok(image)
}
