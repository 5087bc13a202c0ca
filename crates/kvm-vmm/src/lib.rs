//! visor's hosted (Type 2) hypervisor: runs x86-64 guests at native speed
//! through Linux KVM, the way Firecracker and Cloud Hypervisor do, on the
//! rust-vmm crates (kvm-ioctls, vm-memory, linux-loader, vm-superio).
//!
//! Boot: a PVH ELF kernel (the Xen PHYS32_ENTRY note, which Linux's vmlinux
//! with CONFIG_PVH and visor's test guests carry) is loaded by linux-loader
//! and entered in 32-bit protected mode with `hvm_start_info` in EBX; no
//! firmware. Devices: COM1 (vm-superio's 16550, interrupt through an irqfd
//! on the in-kernel PIC/IOAPIC), QEMU's `isa-debug-exit` port and the i8042
//! reset line, all behind the shared [`vm_device::Bus`], so every trapped
//! port access is counted like the emulator's.

mod boot;
mod devices;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{Kvm, VcpuExit, VmFd};
use vm_device::{Bus, StatsTable};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest RAM below this stays clear of the 32-bit MMIO hole.
pub const MAX_RAM: u64 = 3 << 30;
pub const MIN_RAM: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("/dev/kvm does not exist: this host has no KVM (load kvm_intel/kvm_amd, or run on a machine with virtualization)")]
    NoKvm,
    #[error("cannot open /dev/kvm: permission denied (add your user to the `kvm` group)")]
    KvmPermission,
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("memory size {0} bytes is out of range (16 MiB to 3 GiB)")]
    BadMemorySize(u64),
    #[error("cannot allocate guest RAM: {0}")]
    Memory(String),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: neither a PVH ELF kernel nor a bzImage ({detail})")]
    UnknownKernel { path: PathBuf, detail: String },
    #[error("{path}: ELF kernel without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build Linux with CONFIG_PVH")]
    NoPvhEntry { path: PathBuf },
    #[error("{what} does not fit in guest memory ({size} bytes); try a larger -m")]
    DoesNotFit { what: String, size: u64 },
    #[error("the guest stopped KVM: {0}")]
    GuestFault(String),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub ram_size: u64,
    pub kernel: PathBuf,
    pub cmdline: String,
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit(u8),
    /// The guest pulsed the i8042 reset line or triple-faulted.
    Reset,
}

fn kvm_error(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}

/// Opens /dev/kvm (or the device `VISOR_KVM_DEVICE` names, which tests use
/// to stand in for a host without KVM) with a precise message when it is
/// missing or closed to us.
pub fn open_kvm() -> Result<Kvm, VmmError> {
    let path = std::env::var("VISOR_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".into());
    let path = std::ffi::CString::new(path).map_err(|_| VmmError::NoKvm)?;
    Kvm::new_with_path(&path).map_err(|e| match e.errno() {
        libc::ENOENT => VmmError::NoKvm,
        libc::EACCES | libc::EPERM => VmmError::KvmPermission,
        _ => VmmError::Kvm {
            what: "opening /dev/kvm",
            source: e,
        },
    })
}

/// A virtual machine ready to run.
pub struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    _memory: GuestMemoryMmap,
    vcpu: kvm_ioctls::VcpuFd,
    pio: Bus,
    exit: devices::ExitRequest,
    stats: StatsTable,
}

impl Vm {
    pub fn new(config: &VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, VmmError> {
        if !(MIN_RAM..=MAX_RAM).contains(&config.ram_size) {
            return Err(VmmError::BadMemorySize(config.ram_size));
        }
        let kvm = open_kvm()?;
        let vm = kvm.create_vm().map_err(kvm_error("creating the VM"))?;
        vm.set_tss_address(0xfffb_d000)
            .map_err(kvm_error("setting the TSS address"))?;
        vm.create_irq_chip()
            .map_err(kvm_error("creating the in-kernel irqchip"))?;
        let pit = kvm_bindings::kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(kvm_error("creating the in-kernel PIT"))?;

        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), config.ram_size as usize)])
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        boot::register_memory(&vm, &memory)?;
        let entry = boot::load_kernel(&memory, config)?;

        let vcpu = vm.create_vcpu(0).map_err(kvm_error("creating vCPU 0"))?;
        boot::setup_vcpu(&kvm, &vcpu, &entry)?;

        let mut stats = StatsTable::default();
        let exit = devices::ExitRequest::default();
        let pio = devices::port_bus(&vm, console, &exit, &mut stats)?;
        Ok(Vm {
            _kvm: kvm,
            _vm: vm,
            _memory: memory,
            vcpu,
            pio,
            exit,
            stats,
        })
    }

    /// Per-device counters of trapped accesses, interrupts and bytes.
    pub fn stats(&self) -> &StatsTable {
        &self.stats
    }

    /// Runs the vCPU until the guest exits or resets.
    pub fn run(&mut self) -> Result<VmExit, VmmError> {
        loop {
            match self.vcpu.run().map_err(kvm_error("running vCPU 0"))? {
                VcpuExit::IoOut(port, data) => {
                    self.pio.write(port as u64, data);
                }
                VcpuExit::IoIn(port, data) => {
                    if !self.pio.read(port as u64, data) {
                        data.fill(0xff); // an empty ISA bus reads as all ones
                    }
                }
                VcpuExit::MmioRead(_, data) => data.fill(0xff),
                VcpuExit::MmioWrite(..) | VcpuExit::Hlt => {}
                VcpuExit::Shutdown => return Ok(VmExit::Reset),
                VcpuExit::FailEntry(reason, _) => {
                    return Err(VmmError::GuestFault(format!(
                        "VM entry failed, hardware reason {reason:#x}"
                    )))
                }
                VcpuExit::InternalError => {
                    return Err(VmmError::GuestFault(
                        "KVM internal error (an instruction KVM cannot emulate)".into(),
                    ))
                }
                other => return Err(VmmError::GuestFault(format!("unexpected exit {other:?}"))),
            }
            if let Some(exit) = self.exit.take() {
                return Ok(exit);
            }
        }
    }
}

/// Shared by devices that end the VM.
pub(crate) type Shared<T> = Arc<Mutex<T>>;
