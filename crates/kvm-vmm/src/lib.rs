//! visor's hosted (Type 2) hypervisor: runs x86-64 guests at native speed
//! through Linux KVM, the way Firecracker and Cloud Hypervisor do, on the
//! rust-vmm crates (kvm-ioctls, vm-memory, linux-loader, vm-superio).
//!
//! Boot: a PVH ELF kernel (the Xen PHYS32_ENTRY note, which Linux's vmlinux
//! with CONFIG_PVH and visor's test guests carry) is loaded by linux-loader
//! and entered in 32-bit protected mode with `hvm_start_info` in EBX; no
//! firmware. Devices: COM1 (vm-superio's 16550, interrupt through an irqfd
//! on the in-kernel PIC/IOAPIC), QEMU's `isa-debug-exit` port, the i8042
//! reset line and the POST-code port on the port-I/O bus; the shared virtio
//! devices (visor's `virtio` crate) on virtio-mmio slots from 0xd000_0000,
//! GSI 5 up, announced to Linux with `virtio_mmio.device=`. Both buses are
//! [`vm_device::Bus`]es, so every trapped access is counted like the
//! emulator's. One host thread per vCPU.

mod boot;
mod devices;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod pvh_elf;
mod vcpu;

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvm_ioctls::{Kvm, VmFd};
pub use vm_device::ConsoleInput;
use vm_device::GuestMemoryMmap;
use vm_device::{Bus, StatsTable};
use vm_memory::GuestAddress;

/// Guest RAM below this stays clear of the 32-bit MMIO hole.
pub const MAX_RAM: u64 = 3 << 30;
pub const MIN_RAM: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("/dev/kvm does not exist: this host has no KVM (load kvm_intel/kvm_amd, or run on a machine with virtualization)")]
    NoKvm,
    #[error("cannot open /dev/kvm: permission denied (add your user to the `kvm` group)")]
    KvmPermission,
    #[error("KVM: {what}: {cause}")]
    Kvm {
        what: &'static str,
        cause: kvm_ioctls::Error,
    },
    #[error("memory size {0} bytes is out of range (16 MiB to 3 GiB)")]
    BadMemorySize(u64),
    #[error("vCPU count {0} is out of range (1 to {MAX_VCPUS})")]
    BadVcpuCount(usize),
    #[error(transparent)]
    Devices(#[from] virtio::devices::DeviceError),
    #[error("cannot allocate guest RAM: {0}")]
    Memory(String),
    #[error("{what}: {cause}")]
    Host {
        what: &'static str,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
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
    pub vcpus: usize,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// virtio-blk disks on virtio-mmio slots, announced with `virtio_mmio.device=`
    /// (followed by virtio-net if configured, then virtio-rng).
    pub disks: Vec<virtio::blk::DiskConfig>,
    pub net: Option<virtio::net::NetConfig>,
}

pub const MAX_VCPUS: usize = 32;
/// How often console input is moved into COM1, and devices with host-side
/// input (a TAP) are polled, while the guest runs.
const HOST_POLL: Duration = Duration::from_millis(1);

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit(u8),
    /// The guest pulsed the i8042 reset line or triple-faulted.
    Reset,
    /// The user quit from the console (Ctrl-A x).
    Quit,
}

fn kvm_error(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |cause| VmmError::Kvm { what, cause }
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
            cause: e,
        },
    })
}

/// A virtual machine ready to run.
pub struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    _memory: GuestMemoryMmap,
    vcpus: Vec<kvm_ioctls::VcpuFd>,
    buses: Arc<Buses>,
    com1: Arc<Mutex<devices::Com1>>,
    exit: devices::ExitRequest,
    /// Rung by the disks' I/O threads as requests finish.
    doorbell: vm_device::Doorbell,
    stats: StatsTable,
}

/// Where trapped accesses go: port I/O and MMIO, shared by every vCPU thread.
pub(crate) struct Buses {
    pub(crate) pio: Bus,
    pub(crate) mmio: Bus,
}

impl Vm {
    pub fn new(config: &VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, VmmError> {
        if !(MIN_RAM..=MAX_RAM).contains(&config.ram_size) {
            return Err(VmmError::BadMemorySize(config.ram_size));
        }
        if !(1..=MAX_VCPUS).contains(&config.vcpus) {
            return Err(VmmError::BadVcpuCount(config.vcpus));
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

        let mut stats = StatsTable::default();
        let exit = devices::ExitRequest::default();
        let irq_events = |gsi| devices::irqfd(&vm, gsi);
        let (pio, com1) = devices::port_bus(&irq_events, console, &exit, &mut stats)?;
        let doorbell = vm_device::Doorbell::new();
        let (mmio, announce) = devices::virtio_bus(
            &irq_events,
            &memory,
            &config.disks,
            config.net.as_ref(),
            &doorbell,
            config.vcpus,
            &mut stats,
        )?;
        let mut cmdline = config.cmdline.clone();
        for device in announce {
            cmdline.push(' ');
            cmdline.push_str(&device);
        }
        let entry = boot::load_kernel(&memory, config, &cmdline)?;

        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_error("reading supported CPUID"))?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let vcpu = vm
                .create_vcpu(id as u64)
                .map_err(kvm_error("creating a vCPU"))?;
            boot::setup_cpuid(&vcpu, &cpuid, id)?;
            boot::setup_msrs(&vcpu)?;
            if id == 0 {
                boot::setup_boot_vcpu(&vcpu, &entry)?;
            }
            vcpus.push(vcpu);
        }
        Ok(Vm {
            _kvm: kvm,
            _vm: vm,
            _memory: memory,
            vcpus,
            buses: Arc::new(Buses { pio, mmio }),
            com1,
            exit,
            doorbell,
            stats,
        })
    }

    /// Per-device counters of trapped accesses, interrupts and bytes.
    pub fn stats(&self) -> &StatsTable {
        &self.stats
    }

    /// Runs one thread per vCPU until the guest exits, resets or faults, or
    /// the user quits; meanwhile feeds console `input` to COM1. Then stops
    /// every vCPU.
    pub fn run(&mut self, input: &Receiver<ConsoleInput>) -> Result<VmExit, VmmError> {
        vcpu::install_kick_handler();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for (id, fd) in std::mem::take(&mut self.vcpus).into_iter().enumerate() {
            let runner = vcpu::Runner {
                fd,
                buses: self.buses.clone(),
                exit: self.exit.clone(),
                stop: stop.clone(),
            };
            let (done, doorbell) = (done_tx.clone(), self.doorbell.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    let _ = done.send(runner.run());
                    doorbell.ring(); // serve_console sees it at once
                })
                .map_err(|cause| VmmError::Host {
                    what: "spawning a vCPU thread",
                    cause,
                })?;
            threads.push(thread);
        }
        drop(done_tx);
        let result = self.serve_console(&done_rx, input);
        vcpu::stop_all(&stop, &threads);
        for thread in threads {
            let _ = thread.join();
        }
        result
    }

    /// Waits for a vCPU to finish the VM, moving console input into COM1
    /// as its FIFO drains and polling devices for host-side input.
    fn serve_console(
        &self,
        done: &Receiver<Result<VmExit, VmmError>>,
        input: &Receiver<ConsoleInput>,
    ) -> Result<VmExit, VmmError> {
        let mut pending = VecDeque::new();
        let mut input_open = true;
        loop {
            // Woken early when a disk request finished, to complete it at once.
            self.doorbell.wait(HOST_POLL);
            self.doorbell.answer();
            match done.try_recv() {
                Ok(result) => return result,
                Err(TryRecvError::Disconnected) => {
                    return Err(VmmError::GuestFault("every vCPU thread ended".into()))
                }
                Err(TryRecvError::Empty) => {}
            }
            while input_open {
                match input.try_recv() {
                    Ok(ConsoleInput::Byte(b)) => pending.push_back(b),
                    Ok(ConsoleInput::Quit) => return Ok(VmExit::Quit),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => input_open = false,
                }
            }
            if !pending.is_empty() {
                self.com1
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .receive(&mut pending);
            }
            self.buses.mmio.poll();
        }
    }
}

/// Shared by devices that end the VM.
pub(crate) type Shared<T> = Arc<Mutex<T>>;
