//! Guest memory registration, kernel loading (PVH ELF or bzImage) and the
//! vCPU state at each protocol's entry point.

use crate::{kvm_error, pvh_elf, VmConfig, VmmError};
use kvm_bindings::{kvm_msr_entry, kvm_segment, kvm_userspace_memory_region, CpuId, Msrs};
use kvm_ioctls::{VcpuFd, VmFd};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{Cmdline, KernelLoader};
use std::io::{Read, Seek};
use vm_device::GuestMemoryMmap;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

/// Where the boot structures go (below the 1 MiB kernel load address).
const BOOT_GDT: u64 = 0x500;
const START_INFO: u64 = 0x6000;
const ZERO_PAGE: u64 = 0x7000;
const BOOT_STACK: u64 = 0x8ff0;
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xa000;
const PD: u64 = 0xb000; // four of them, to 0xefff
const LOADER_UNDEFINED: u8 = 0xff;
const BOOT_FLAG: u16 = 0xaa55;
const MEMMAP: u64 = 0x7000;
const CMDLINE: u64 = 0x20000;
const MODLIST: u64 = 0x8000 - 0x100;
const CMDLINE_MAX: usize = 4096;
const KERNEL_START: u64 = 0x10_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// How to enter the guest.
pub enum Entry {
    /// 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh { rip: u64, start_info: u64 },
    /// 64-bit long mode on identity page tables, RSI = zero page.
    Linux64 { rip: u64, zero_page: u64 },
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

/// Loads the kernel — a PVH ELF (`vmlinux`, visor's test guests) or a
/// bzImage (64-bit boot protocol) — with its command line and initrd, and
/// says how to enter it.
pub fn load_kernel(
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    cmdline_text: &str,
) -> Result<Entry, VmmError> {
    let path = &config.kernel;
    let mut file = std::fs::File::open(path).map_err(|cause| VmmError::Read {
        path: path.clone(),
        cause,
    })?;
    let mut magic = [0u8; 4];
    let is_elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";

    let mut cmdline = Cmdline::new(CMDLINE_MAX).expect("a non-zero capacity");
    let cmdline_error = |e: &dyn std::fmt::Display| VmmError::DoesNotFit {
        what: format!("kernel command line ({e})"),
        size: cmdline_text.len() as u64,
    };
    cmdline
        .insert_str(cmdline_text)
        .map_err(|e| cmdline_error(&e))?;
    linux_loader::loader::load_cmdline(memory, GuestAddress(CMDLINE), &cmdline)
        .map_err(|e| cmdline_error(&e))?;

    if is_elf {
        load_pvh(memory, config, &mut file)
    } else {
        load_bzimage(memory, config, &mut file, cmdline_text.len())
    }
}

/// RAM as the guest sees it: below the EBDA, then from 1 MiB to the end.
fn ram_ranges(ram_size: u64) -> [(u64, u64); 2] {
    [(0, 0x9fc00), (KERNEL_START, ram_size - KERNEL_START)]
}

fn load_pvh(
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    file: &mut std::fs::File,
) -> Result<Entry, VmmError> {
    let path = &config.kernel;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|cause| VmmError::Read {
            path: path.clone(),
            cause,
        })?;
    let loaded = pvh_elf::load(memory, path, &bytes, KERNEL_START, config.ram_size)?;
    let memmap = ram_ranges(config.ram_size).map(|(addr, size)| hvm_memmap_table_entry {
        addr,
        size,
        type_: E820_RAM,
        reserved: 0,
    });
    let initrd = match &config.initrd {
        Some(path) => Some(load_initrd(memory, path, loaded.end, config.ram_size)?),
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
    Ok(Entry::Pvh {
        rip: loaded.entry,
        start_info: START_INFO,
    })
}

fn load_bzimage(
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    file: &mut std::fs::File,
    cmdline_len: usize,
) -> Result<Entry, VmmError> {
    let path = &config.kernel;
    let loaded =
        BzImage::load(memory, None, file, Some(GuestAddress(KERNEL_START))).map_err(|e| {
            VmmError::UnknownKernel {
                path: path.clone(),
                detail: format!("not an ELF; as a bzImage: {e}"),
            }
        })?;
    let header = loaded.setup_header.ok_or_else(|| VmmError::UnknownKernel {
        path: path.clone(),
        detail: "bzImage without a setup header".into(),
    })?;
    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = cmdline_len as u32 + 1;
    if let Some(initrd_path) = &config.initrd {
        let module = load_initrd(memory, initrd_path, loaded.kernel_end, config.ram_size)?;
        params.hdr.ramdisk_image = module.paddr as u32;
        params.hdr.ramdisk_size = module.size as u32;
    }
    for (i, (addr, size)) in ram_ranges(config.ram_size).into_iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: E820_RAM,
        };
        params.e820_entries = i as u8 + 1;
    }
    let params = BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE));
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, memory).map_err(|e| {
        VmmError::DoesNotFit {
            what: format!("zero page ({e})"),
            size: 0,
        }
    })?;
    write_long_mode_tables(memory)?;
    // The 64-bit entry point is 0x200 past the protected-mode kernel's start.
    Ok(Entry::Linux64 {
        rip: loaded.kernel_load.raw_value() + 0x200,
        zero_page: ZERO_PAGE,
    })
}

/// The GDT (boot selectors 0x10 code, 0x18 data, as Linux expects) and
/// identity page tables for the first 4 GiB with 2 MiB pages.
fn write_long_mode_tables(memory: &GuestMemoryMmap) -> Result<(), VmmError> {
    let fail = |_| VmmError::DoesNotFit {
        what: "boot page tables".into(),
        size: 0,
    };
    let gdt: [u64; 4] = [0, 0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    memory
        .write_obj(gdt, GuestAddress(BOOT_GDT))
        .map_err(fail)?;
    memory
        .write_obj(PDPT | 3, GuestAddress(PML4))
        .map_err(fail)?;
    for gib in 0..4u64 {
        let pd = PD + gib * 0x1000;
        memory
            .write_obj(pd | 3, GuestAddress(PDPT + gib * 8))
            .map_err(fail)?;
        for i in 0..512u64 {
            let page = (gib << 30) | (i << 21) | 0x83; // present, writable, 2 MiB
            memory
                .write_obj(page, GuestAddress(pd + i * 8))
                .map_err(fail)?;
        }
    }
    Ok(())
}

/// Places the initrd page-aligned at the top of RAM (as QEMU does), above
/// the kernel, and describes it as the first PVH module.
fn load_initrd(
    memory: &GuestMemoryMmap,
    path: &std::path::Path,
    kernel_end: u64,
    ram_size: u64,
) -> Result<hvm_modlist_entry, VmmError> {
    let bytes = std::fs::read(path).map_err(|cause| VmmError::Read {
        path: path.to_owned(),
        cause,
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

/// The boot vCPU's state at the kernel's entry point. The others wait for
/// INIT-SIPI in the in-kernel local APIC, as on hardware.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: &Entry) -> Result<(), VmmError> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(kvm_error("reading segment registers"))?;
    let data = flat_segment(0x18, 0x3); // read/write, accessed
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    let regs = match *entry {
        Entry::Pvh { rip, start_info } => {
            sregs.cs = flat_segment(0x10, 0xb); // 32-bit execute/read, accessed
            sregs.cr0 = 0x11; // PE | ET
            sregs.cr4 = 0;
            kvm_bindings::kvm_regs {
                rip,
                rbx: start_info,
                rflags: 0x2,
                ..Default::default()
            }
        }
        Entry::Linux64 { rip, zero_page } => {
            let mut code = flat_segment(0x10, 0xb);
            code.l = 1;
            code.db = 0;
            sregs.cs = code;
            sregs.gdt.base = BOOT_GDT;
            sregs.gdt.limit = 4 * 8 - 1;
            sregs.cr3 = PML4;
            sregs.cr4 = 0x20; // PAE
            sregs.efer = 0x500; // LME | LMA
            sregs.cr0 = 0x8000_0011; // PG | ET | PE
            kvm_bindings::kvm_regs {
                rip,
                rsi: zero_page,
                rsp: BOOT_STACK,
                rbp: BOOT_STACK,
                rflags: 0x2,
                ..Default::default()
            }
        }
    };
    vcpu.set_sregs(&sregs)
        .map_err(kvm_error("setting segment registers"))?;
    vcpu.set_regs(&regs)
        .map_err(kvm_error("setting registers"))?;
    Ok(())
}
