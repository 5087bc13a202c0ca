//! Guest memory registration, kernel loading (PVH ELF) and the vCPU state
//! at the PVH entry point.

use crate::{kvm_error, VmConfig, VmmError};
use kvm_bindings::{kvm_msr_entry, kvm_segment, kvm_userspace_memory_region, CpuId, Msrs};
use kvm_ioctls::{VcpuFd, VmFd};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{Cmdline, KernelLoader};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

/// Where the boot structures go (below the 1 MiB kernel load address).
const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = 0x7000;
const CMDLINE: u64 = 0x20000;
const MODLIST: u64 = 0x8000 - 0x100;
const CMDLINE_MAX: usize = 4096;
const KERNEL_START: u64 = 0x10_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// How to enter the guest.
pub struct Entry {
    pub rip: u64,
    pub start_info: u64,
}

pub fn register_memory(vm: &VmFd, memory: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (slot, region) in memory.iter().enumerate() {
        let mem_region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `memory`, which the Vm keeps as long as the VM.
        unsafe { vm.set_user_memory_region(mem_region) }
            .map_err(kvm_error("registering guest memory"))?;
    }
    Ok(())
}

pub fn load_kernel(
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    cmdline_text: &str,
) -> Result<Entry, VmmError> {
    let path = &config.kernel;
    let mut file = std::fs::File::open(path).map_err(|source| VmmError::Read {
        path: path.clone(),
        source,
    })?;
    let loaded =
        Elf::load(memory, None, &mut file, Some(GuestAddress(KERNEL_START))).map_err(|e| {
            VmmError::UnknownKernel {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(VmmError::NoPvhEntry { path: path.clone() });
    };

    let mut cmdline = Cmdline::new(CMDLINE_MAX).expect("a non-zero capacity");
    cmdline
        .insert_str(&config.cmdline)
        .map_err(|e| VmmError::DoesNotFit {
            what: format!("kernel command line ({e})"),
            size: config.cmdline.len() as u64,
        })?;
    linux_loader::loader::load_cmdline(memory, GuestAddress(CMDLINE), &cmdline).map_err(|e| {
        VmmError::DoesNotFit {
            what: format!("kernel command line ({e})"),
            size: cmdline_text.len() as u64,
        }
    })?;

    // RAM below the EBDA, then from 1 MiB to the end.
    let memmap = [
        hvm_memmap_table_entry {
            addr: 0,
            size: 0x9fc00,
            type_: E820_RAM,
            reserved: 0,
        },
        hvm_memmap_table_entry {
            addr: KERNEL_START,
            size: config.ram_size - KERNEL_START,
            type_: E820_RAM,
            reserved: 0,
        },
    ];
    let initrd = match &config.initrd {
        Some(path) => Some(load_initrd(
            memory,
            path,
            loaded.kernel_end,
            config.ram_size,
        )?),
        None => None,
    };
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: memmap.len() as u32,
        nr_modules: initrd.is_some() as u32,
        modlist_paddr: if initrd.is_some() { MODLIST } else { 0 },
        ..Default::default()
    };
    let mut params = BootParams::new::<hvm_start_info>(&start_info, GuestAddress(START_INFO));
    params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(MEMMAP));
    if let Some(module) = initrd {
        params.set_modules::<hvm_modlist_entry>(&[module], GuestAddress(MODLIST));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, memory).map_err(|e| {
        VmmError::DoesNotFit {
            what: format!("PVH start info ({e})"),
            size: 0,
        }
    })?;
    Ok(Entry {
        rip: entry.raw_value(),
        start_info: START_INFO,
    })
}

/// Places the initrd page-aligned at the top of RAM (as QEMU does), above
/// the kernel, and describes it as the first PVH module.
fn load_initrd(
    memory: &GuestMemoryMmap,
    path: &std::path::Path,
    kernel_end: u64,
    ram_size: u64,
) -> Result<hvm_modlist_entry, VmmError> {
    let bytes = std::fs::read(path).map_err(|source| VmmError::Read {
        path: path.to_owned(),
        source,
    })?;
    let size = bytes.len() as u64;
    let too_big = || VmmError::DoesNotFit {
        what: format!("initrd {}", path.display()),
        size,
    };
    let at = ram_size.checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if at < kernel_end {
        return Err(too_big());
    }
    memory
        .write_slice(&bytes, GuestAddress(at))
        .map_err(|_| too_big())?;
    Ok(hvm_modlist_entry {
        paddr: at,
        size,
        ..Default::default()
    })
}

/// A flat 4 GiB segment for 32-bit protected mode.
fn flat_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// MSRs a freshly reset x86-64 CPU has (SYSENTER/SYSCALL state cleared, TSC
/// at 0) plus fast string operations enabled in IA32_MISC_ENABLE, as
/// firmware would leave them.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), VmmError> {
    const CLEARED: [u32; 10] = [
        0x174,       // IA32_SYSENTER_CS
        0x175,       // IA32_SYSENTER_ESP
        0x176,       // IA32_SYSENTER_EIP
        0xc000_0081, // STAR
        0xc000_0082, // LSTAR
        0xc000_0083, // CSTAR
        0xc000_0084, // SYSCALL_MASK
        0xc000_0102, // KERNEL_GS_BASE
        0x10,        // IA32_TSC
        0x1a0,       // IA32_MISC_ENABLE (set below)
    ];
    let entries: Vec<kvm_msr_entry> = CLEARED
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            data: if index == 0x1a0 { 1 } else { 0 }, // FAST_STRING
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).expect("a handful of MSRs fits");
    let written = vcpu.set_msrs(&msrs).map_err(kvm_error("setting MSRs"))?;
    if written != entries.len() {
        return Err(VmmError::GuestFault(format!(
            "KVM accepted {written} of {} boot MSRs",
            entries.len()
        )));
    }
    Ok(())
}

/// KVM's supported CPUID, with this vCPU's APIC ID in leaves 1 and 0xB.
pub fn setup_cpuid(vcpu: &VcpuFd, supported: &CpuId, id: usize) -> Result<(), VmmError> {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (id as u32) << 24,
            0xb => entry.edx = id as u32,
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(kvm_error("setting CPUID"))
}

/// The PVH entry state of the boot vCPU: 32-bit protected mode, paging off,
/// flat segments, EBX = physical address of `hvm_start_info`. The others
/// wait for INIT-SIPI in the in-kernel local APIC, as on hardware.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: &Entry) -> Result<(), VmmError> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(kvm_error("reading segment registers"))?;
    sregs.cs = flat_segment(0x10, 0xb); // execute/read, accessed
    let data = flat_segment(0x18, 0x3); // read/write, accessed
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr4 = 0;
    vcpu.set_sregs(&sregs)
        .map_err(kvm_error("setting segment registers"))?;

    let regs = kvm_bindings::kvm_regs {
        rip: entry.rip,
        rbx: entry.start_info,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(kvm_error("setting registers"))?;
    Ok(())
}
