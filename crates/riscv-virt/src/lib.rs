//! visor's RISC-V board, compatible with QEMU's `virt` machine: DRAM at
//! 0x8000_0000, CLINT, PLIC, a 16550 UART, the `sifive,test` power device,
//! virtio-mmio slots (block, net, console, rng) and an optional emulated PATA
//! disk, with a generated device tree, firmware/kernel/initrd loading, and
//! the loop that runs the harts round-robin on one host thread.

pub mod clint;
pub mod clock;
pub mod fdt;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod io;
pub mod loader;
pub mod migrate;
pub mod plic;
pub mod snapshot;
pub mod uart;

use riscv_hart::{GuestRam, Hart, Platform, MIP_MEIP, MIP_MSIP, MIP_MTIP, MIP_SEIP};
use serde::{Deserialize, Serialize};
use snapshot::{MachineState, SnapshotError};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use virtio::blk::DiskConfig;
pub use virtio::net::{NetConfig, DEFAULT_MAC};
use vm_device::vm_memory::{GuestAddress, GuestMemoryBackend};
use vm_device::Persist;
use vm_device::{DeviceStats, GuestMemoryMmap, IrqLine, LevelIrq, StatsTable};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const TEST_BASE: u64 = 0x10_0000;
pub const TEST_SIZE: u64 = 0x1000;
pub const TEST_POWEROFF: u32 = 0x5555;
pub const TEST_FAIL: u32 = 0x3333;
pub const TEST_RESET: u32 = 0x7777;
/// CLINT `mtime` frequency advertised in the device tree.
pub const TIMEBASE_HZ: u64 = 10_000_000;
/// Where a kernel is placed after the firmware (QEMU's choice for RV64).
pub const KERNEL_OFFSET: u64 = 0x20_0000;
pub const MAX_HARTS: usize = 8;
pub const MIN_RAM: u64 = 1 << 20;
pub const MAX_RAM: u64 = 64 << 30;
const PAGE_SIZE: u64 = 4096;
/// Instructions a hart runs before the next one gets its turn (and the
/// machine looks at its devices and interrupt lines): about 100-200 µs.
const SLICE: u64 = 20_000;
/// The same for translated code, which retires instructions 10-20 times
/// faster, so its turns last about as long; each turn's device and
/// interrupt checks then cost it a few percent less than at 20,000.
const JIT_SLICE: u64 = 100_000;
/// Longest idle sleep while a device (a TAP) can receive host input on its own.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How often such a device is polled while harts run: 100 µs of mtime.
const POLL_TICKS: u64 = TIMEBASE_HZ / 10_000;
/// Magic of OpenSBI's `struct fw_dynamic_info` ("OSBI").
const FW_DYNAMIC_MAGIC: u64 = 0x4942_534f;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not an ELF program or a RISC-V Linux Image", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: ELF for {machine}; visor emulates riscv64", path.display())]
    WrongArchitecture { path: PathBuf, machine: String },
    #[error("{}: malformed ELF: {what}", path.display())]
    BadElf { path: PathBuf, what: String },
    #[error("{what} ({size} bytes at {addr:#x}) does not fit in guest RAM ({ram_base:#x}..{ram_end:#x}); try a larger -m")]
    DoesNotFit {
        what: String,
        addr: u64,
        size: u64,
        ram_base: u64,
        ram_end: u64,
    },
    #[error("no OpenSBI firmware found (looked in {0}); install the Debian package `opensbi` or pass --bios FILE")]
    NoFirmware(String),
    #[error("memory size {0} bytes is out of range (1 MiB to 64 GiB)")]
    BadMemorySize(u64),
    #[error("memory size {0} bytes is not a whole number of 4 KiB pages")]
    UnalignedMemorySize(u64),
    #[error("hart count {0} is out of range (1 to {MAX_HARTS})")]
    BadHartCount(usize),
    #[error("--bios none needs --kernel with an ELF program")]
    NothingToRun,
    #[error(transparent)]
    Ram(#[from] riscv_hart::RamAllocError),
    #[error("building the device tree: {0}")]
    Fdt(String),
    #[error(transparent)]
    Disk(#[from] virtio::blk::DiskError),
    #[error(transparent)]
    Devices(#[from] virtio::devices::DeviceError),
    #[error("{what} ({addr:#x}..{end:#x}) overlaps {other} ({other_addr:#x}..{other_end:#x})")]
    Overlap {
        what: String,
        addr: u64,
        end: u64,
        other: String,
        other_addr: u64,
        other_end: u64,
    },
}

/// Which device host keyboard input goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleDevice {
    /// The 16550 UART (Linux `ttyS0`).
    #[default]
    Serial,
    /// virtio-console (Linux `hvc0`).
    Virtio,
}

/// How the machine is put together: what the CLI builds from its flags,
/// what `GET /vm/config` answers, and what a snapshot or a migration
/// carries so the destination builds the same machine (boot images are
/// kept for the record; a restore does not load them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub ram_size: u64,
    pub harts: usize,
    /// Firmware image loaded at the start of RAM; `None` runs the kernel ELF directly in M-mode.
    pub firmware: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// virtio-blk disks, in slot order (the first is Linux's `vda`).
    pub disks: Vec<DiskConfig>,
    /// A disk behind the emulated PATA controller.
    pub ide_disk: Option<DiskConfig>,
    pub net: Option<NetConfig>,
    pub console: ConsoleDevice,
    pub engine: Engine,
}

impl MachineConfig {
    /// Whether `self` and `other` describe the same machine (whatever
    /// engine runs it).
    pub fn same_machine(&self, other: &MachineConfig) -> bool {
        let engine = Engine::default();
        MachineConfig {
            engine,
            ..self.clone()
        } == MachineConfig {
            engine,
            ..other.clone()
        }
    }

    /// A machine with `ram_size` bytes, one hart and no images or disks.
    pub fn new(ram_size: u64) -> MachineConfig {
        MachineConfig {
            ram_size,
            harts: 1,
            firmware: None,
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            disks: Vec::new(),
            ide_disk: None,
            net: None,
            console: ConsoleDevice::Serial,
            engine: Engine::Interpreter,
        }
    }
}

/// Why the machine stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The guest powered off through the test device.
    Poweroff,
    /// The guest reported failure through the test device, with its code.
    GuestFailure(u32),
    /// The guest asked for a reset.
    Reset,
    /// The program wrote an exit code to `tohost`.
    Tohost(u64),
    /// The user pressed the quit escape on the console.
    Quit,
    /// An HTIF request visor does not implement.
    UnsupportedHtif(u64),
    /// Lock-step mode found translated code disagreeing with the interpreter
    /// ([`Machine::divergence`] says where).
    LockStepDivergence,
    /// The VM was migrated and runs at the destination now.
    Migrated,
}

/// Which engine runs the harts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    #[default]
    #[serde(rename = "interp")]
    Interpreter,
    /// Binary translation, the interpreter for the rest.
    #[serde(rename = "jit")]
    Jit,
    /// The translator checked block by block against the interpreter.
    #[serde(rename = "lockstep")]
    LockStep,
}

impl Engine {
    /// A new engine of this kind for one hart (the one place the board
    /// names the translator's crate).
    fn build(self) -> Box<dyn riscv_hart::Engine> {
        match self {
            Engine::Interpreter => Box::new(riscv_hart::Interpreter),
            Engine::Jit => Box::new(riscv_jit::Jit::new(riscv_jit::JitOptions::default())),
            Engine::LockStep => Box::new(riscv_jit::Jit::new(riscv_jit::JitOptions {
                lockstep: true,
            })),
        }
    }
}

pub use vm_device::ConsoleInput;

/// Everything a hart reaches through its [`Platform`]: the devices and the clock.
struct Devices {
    ram: GuestRam,
    clint: clint::Clint,
    plic: plic::Plic,
    uart: uart::Uart,
    uart_irq: Arc<LevelIrq>,
    uart_stats: Arc<DeviceStats>,
    /// Every other device, reached through the shared bus.
    bus: vm_device::Bus,
    /// PLIC sources driven by bus devices.
    lines: Vec<(usize, Arc<LevelIrq>)>,
    /// Guest time (`mtime`).
    clock: clock::GuestClock,
    tohost: Option<u64>,
    exit: Option<Exit>,
}

impl Devices {
    fn refresh_uart_irq(&mut self) {
        let level = self.uart.interrupt();
        self.uart_irq.set_level(level);
        self.plic.set_level(uart::IRQ, level);
    }

    /// Copies the bus devices' interrupt lines into their PLIC sources.
    fn refresh_bus_irqs(&mut self) {
        for (source, line) in &self.lines {
            self.plic.set_level(*source, line.level());
        }
    }

    fn htif_request(&mut self, tohost: u64, value: u64) {
        if value == 0 {
            return;
        }
        if value & 1 == 1 {
            self.exit = Some(Exit::Tohost(value >> 1));
            return;
        }
        let (device, command) = (value >> 56, (value >> 48) & 0xff);
        if device == 1 && command == 1 {
            // Console putchar; acknowledged by clearing tohost.
            self.uart.transmit(value as u8);
            self.ram.write(tohost, 8, 0);
        } else {
            self.exit = Some(Exit::UnsupportedHtif(value));
        }
    }
}

impl Platform for Devices {
    fn load(&mut self, _hart: usize, addr: u64, size: u8) -> Option<u64> {
        match addr {
            a if (clint::BASE..clint::BASE + clint::SIZE).contains(&a) => {
                let now = self.mtime();
                self.clint.read(a - clint::BASE, size, now)
            }
            a if (plic::BASE..plic::BASE + plic::SIZE).contains(&a) => {
                self.plic.read(a - plic::BASE, size)
            }
            a if (uart::BASE..uart::BASE + uart::SIZE).contains(&a) => {
                self.uart_stats.trap();
                let v = self.uart.read(a - uart::BASE);
                self.refresh_uart_irq();
                Some(v as u64)
            }
            a if (TEST_BASE..TEST_BASE + TEST_SIZE).contains(&a) => Some(0),
            _ => {
                let mut data = [0u8; 8];
                let data = &mut data[..size as usize];
                if !self.bus.read(addr, data) {
                    return None;
                }
                self.refresh_bus_irqs();
                Some(data.iter().rev().fold(0, |acc, &b| acc << 8 | b as u64))
            }
        }
    }

    fn store(&mut self, _hart: usize, addr: u64, size: u8, value: u64) -> bool {
        match addr {
            a if (clint::BASE..clint::BASE + clint::SIZE).contains(&a) => {
                let now = self.mtime();
                if let Some(new_mtime) = self.clint.write(a - clint::BASE, size, value, now) {
                    self.clock.set(new_mtime);
                }
                true
            }
            a if (plic::BASE..plic::BASE + plic::SIZE).contains(&a) => {
                self.plic.write(a - plic::BASE, size, value)
            }
            a if (uart::BASE..uart::BASE + uart::SIZE).contains(&a) => {
                self.uart_stats.trap();
                self.uart.write(a - uart::BASE, value as u8);
                self.refresh_uart_irq();
                true
            }
            a if (TEST_BASE..TEST_BASE + TEST_SIZE).contains(&a) => {
                if a == TEST_BASE {
                    match value as u32 & 0xffff {
                        TEST_POWEROFF => self.exit = Some(Exit::Poweroff),
                        TEST_FAIL => self.exit = Some(Exit::GuestFailure((value as u32) >> 16)),
                        TEST_RESET => self.exit = Some(Exit::Reset),
                        _ => {}
                    }
                }
                true
            }
            _ => {
                let bytes = value.to_le_bytes();
                if !self.bus.write(addr, &bytes[..size as usize]) {
                    return false;
                }
                self.refresh_bus_irqs();
                true
            }
        }
    }

    fn watched_store(&mut self, _hart: usize, addr: u64, _size: u8, _value: u64) {
        if let Some(tohost) = self.tohost {
            if addr & !7 == tohost {
                let value = self.ram.read(tohost, 8).unwrap_or(0);
                self.htif_request(tohost, value);
            }
        }
    }

    fn mtime(&mut self) -> u64 {
        self.clock.now()
    }
}

/// A whole RISC-V virt machine.
pub struct Machine {
    harts: Vec<Hart>,
    /// Per hart, the engine that runs it.
    engines: Vec<Box<dyn riscv_hart::Engine>>,
    /// What the machine was built from (its engine the one now running).
    config: MachineConfig,
    /// Instructions per hart turn.
    slice: u64,
    devices: Devices,
    pending_input: VecDeque<u8>,
    input_closed: bool,
    /// Where the UART and virtio-console print.
    output: io::SharedWriter,
    virtio_console_input: virtio::console::ConsoleInput,
    /// A device receives host input on its own (a TAP): poll it every
    /// [`POLL_TICKS`] and keep idle sleeps short.
    needs_polling: bool,
    /// Guest time the bus was last polled at.
    polled_at: u64,
    /// Poll the bus at the next turn (console input is waiting for it).
    poll_soon: bool,
    /// Rung by the disks' I/O threads as requests finish: poll the bus.
    doorbell: vm_device::Doorbell,
    stats: StatsTable,
    /// Guest RAM as the devices see it (with their dirty bitmap).
    memory: GuestMemoryMmap,
    /// The snapshot this process wrote last, since which writes are
    /// tracked (what a diff snapshot holds).
    last_snapshot: Option<PathBuf>,
    /// Pages that may hold something other than zeros: written before
    /// the dirty marks were last taken (with those marks, every page
    /// written since the machine was built; a restored machine's RAM
    /// counts as all written). Snapshots and migrations skip the rest.
    written: Vec<u64>,
    /// A live migration in progress.
    outgoing: Option<Outgoing>,
    /// The virtio transports, in slot order, for snapshots.
    transports: Vec<Arc<Mutex<virtio::MmioTransport>>>,
    pata: Option<Arc<Mutex<pata::Pata>>>,
    /// Where lifecycle commands come from, if anywhere.
    control: Option<Receiver<Command>>,
    /// Paused by a command: no hart runs and guest time stands still.
    paused: bool,
}

/// How often a paused machine looks at the console's quit key.
const PAUSED_POLL: Duration = Duration::from_millis(20);

/// A lifecycle command for a running machine (from a control API), each
/// answered on its channel once carried out between hart turns.
pub enum Command {
    Pause(Sender<Result<(), CommandError>>),
    Resume(Sender<Result<(), CommandError>>),
    /// A snapshot into a directory (with `diff`, of the pages written
    /// since the last one); the machine must be paused.
    Snapshot {
        dir: PathBuf,
        diff: bool,
        reply: Sender<Result<(), CommandError>>,
    },
    /// Replaces the paused VM with the one a snapshot holds (the engine
    /// stays); with `resume` it runs at once, else it stays paused. The VM
    /// goes on as it was when anything in the snapshot is refused.
    Load {
        dir: PathBuf,
        resume: bool,
        reply: Sender<Result<(), CommandError>>,
    },
    Info(Sender<MachineInfo>),
    /// A live migration to a destination (`host:port`) waiting with
    /// [`Machine::incoming`]; answered when the destination runs the VM
    /// (the machine then ends with [`Exit::Migrated`]) or the migration
    /// failed (the VM runs on here).
    Migrate {
        to: String,
        params: migrate::MigrationParams,
        reply: Sender<Result<(migrate::MigrationReport, Option<u32>), CommandError>>,
    },
}

/// A migration under way: its sending thread and the current round.
struct Outgoing {
    link: migrate::Outbound,
    to: String,
    params: migrate::MigrationParams,
    reply: Sender<Result<(migrate::MigrationReport, Option<u32>), CommandError>>,
    started: std::time::Instant,
    round: u32,
    round_started: std::time::Instant,
    /// The current round's pages went out (the next round begins once it
    /// lasted [`MIGRATION_MIN_ROUND`]).
    round_sent: Option<migrate::Sent>,
    /// Bytes per second on the link, from the last set large enough to tell.
    rate: f64,
    pages_sent: u64,
    /// Paused by a command before the migration began (stays so if it fails).
    was_paused: bool,
}

/// The shortest round: what the guest writes over a shorter one (a few
/// turns, maybe all spent on a device) says little about its rate.
const MIGRATION_MIN_ROUND: std::time::Duration = std::time::Duration::from_millis(5);
/// A set of pages this large tells the link's rate.
const RATE_SAMPLE_BYTES: u64 = 1 << 20;
/// The longest a migrating machine with nothing to run waits before it
/// looks at its sending thread again.
const MIGRATION_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// Not in a state the command applies to.
    #[error("{0}")]
    WrongState(&'static str),
    #[error("{0}")]
    Failed(String),
}

/// What a machine is and whether it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo {
    pub config: MachineConfig,
    pub paused: bool,
}

/// Why a snapshot could not be restored, or a migrating VM received.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Incoming(#[from] migrate::IncomingError),
    #[error("cannot listen on {address}: {cause}")]
    Listen {
        address: String,
        cause: std::io::Error,
    },
}

impl Machine {
    /// Builds the machine and loads firmware, kernel, initrd and device tree.
    pub fn new(
        config: &MachineConfig,
        console: Box<dyn Write + Send>,
    ) -> Result<Machine, BootError> {
        if !(MIN_RAM..=MAX_RAM).contains(&config.ram_size) {
            return Err(BootError::BadMemorySize(config.ram_size));
        }
        // A partial last page would let a hart cache a translation for
        // the whole page, reaching past the end of RAM.
        if !config.ram_size.is_multiple_of(PAGE_SIZE) {
            return Err(BootError::UnalignedMemorySize(config.ram_size));
        }
        if !(1..=MAX_HARTS).contains(&config.harts) {
            return Err(BootError::BadHartCount(config.harts));
        }
        let (ram, memory) = allocate_ram(config.ram_size)?;
        let (mut machine, io) = Machine::assemble(config, ram, &memory, console)?;
        let boot = load_boot_images(&machine.devices.ram, config, &io)?;
        machine.devices.tohost = boot.tohost;
        for hart in &mut machine.harts {
            hart.pc = boot.entry;
            hart.x[10] = hart.id as u64; // a0: hart id
            hart.x[11] = boot.fdt; // a1: device tree
            hart.x[12] = boot.fw_dynamic_info; // a2: fw_dynamic_info
            if let Some(tohost) = boot.tohost {
                hart.watch_page(tohost);
            }
        }
        Ok(machine)
    }

    /// The machine a snapshot in `dir` was taken of, at the moment it was
    /// taken: its RAM mapped copy-on-write from the memory file, every
    /// hart and device as saved, guest time going on from where it stood.
    /// `engine` need not be the one the snapshot was taken under. Nothing
    /// runs when anything in the snapshot is refused.
    pub fn restore(
        dir: &std::path::Path,
        engine: Engine,
        console: Box<dyn Write + Send>,
    ) -> Result<Machine, RestoreError> {
        let state = snapshot::read_state(dir)?;
        let config = &state.config;
        check_shape(config.ram_size, config.harts)?;
        // A diff: back along its bases to the full snapshot they build on.
        let mut chain = vec![(dir.to_owned(), state.clone())];
        while let Some(diff) = &chain.last().unwrap().1.diff {
            if chain.len() == snapshot::MAX_CHAIN {
                return Err(SnapshotError::Shape(format!(
                    "a chain of more than {} diff snapshots",
                    snapshot::MAX_CHAIN
                ))
                .into());
            }
            let base = snapshot::read_state(&diff.base)?;
            if !base.config.same_machine(&state.config) {
                return Err(SnapshotError::Shape(format!(
                    "another configuration than its base {}",
                    diff.base.display()
                ))
                .into());
            }
            chain.push((diff.base.clone(), base));
        }
        let (full, _) = chain.last().unwrap();
        let file = snapshot::open_memory(full, config.ram_size)?;
        let (ram, memory) = map_ram_file(file, config.ram_size)?;
        for (diff_dir, diff_state) in chain.iter().rev().skip(1) {
            let pages = &diff_state.diff.as_ref().unwrap().pages;
            snapshot::apply_diff(diff_dir, pages, &ram)?;
        }
        let mut machine = Machine::resume_from(&state, ram, &memory, engine, console)?;
        // What the memory file holds is not tracked: count all of it.
        machine.written.fill(u64::MAX);
        Ok(machine)
    }

    /// The machine `state` describes, on `ram` that already holds its
    /// contents (a snapshot's, or what a migration sent).
    fn resume_from(
        state: &MachineState,
        ram: GuestRam,
        memory: &GuestMemoryMmap,
        engine: Engine,
        console: Box<dyn Write + Send>,
    ) -> Result<Machine, RestoreError> {
        if state.harts.len() != state.config.harts {
            return Err(SnapshotError::Shape(format!(
                "{} harts and the state of {}",
                state.config.harts,
                state.harts.len()
            ))
            .into());
        }
        if ram.len() != state.config.ram_size {
            return Err(SnapshotError::Shape(format!(
                "{} bytes of RAM, and {} came",
                state.config.ram_size,
                ram.len()
            ))
            .into());
        }
        let config = MachineConfig {
            engine,
            ..state.config.clone()
        };
        let (mut machine, _) = Machine::assemble(&config, ram, memory, console)?;
        machine.restore_state(state)?;
        Ok(machine)
    }

    /// The devices, harts and engines of a machine with `config` on `ram`
    /// (as `memory` for the devices), before anything is loaded.
    fn assemble(
        config: &MachineConfig,
        ram: GuestRam,
        memory: &GuestMemoryMmap,
        console: Box<dyn Write + Send>,
    ) -> Result<(Machine, io::IoDevices), BootError> {
        let output = io::SharedWriter(Arc::new(Mutex::new(console)));
        let mut stats = StatsTable::default();
        let uart_stats = stats.register("uart");
        let mut io = io::build(config, memory, output.clone(), &mut stats)?;
        // Tracked from the start (the loaders' writes included), so the
        // pages never written are known to be zero.
        ram.set_dirty_tracking(true);
        let harts: Vec<Hart> = (0..config.harts)
            .map(|id| Hart::new(id, ram.clone()))
            .collect();
        let devices = Devices {
            ram,
            clint: clint::Clint::new(config.harts),
            plic: plic::Plic::new(config.harts),
            uart: uart::Uart::new(Box::new(output.clone()), uart_stats.clone()),
            uart_irq: LevelIrq::new(uart_stats.clone()),
            uart_stats,
            bus: std::mem::take(&mut io.bus),
            lines: std::mem::take(&mut io.lines),
            clock: clock::GuestClock::new(),
            tohost: None,
            exit: None,
        };
        let engines = (0..config.harts).map(|_| config.engine.build()).collect();
        let machine = Machine {
            harts,
            engines,
            config: config.clone(),
            slice: match config.engine {
                Engine::Jit => JIT_SLICE,
                Engine::Interpreter | Engine::LockStep => SLICE,
            },
            devices,
            pending_input: VecDeque::new(),
            input_closed: false,
            output,
            virtio_console_input: io.console_input.clone(),
            needs_polling: io.needs_polling,
            polled_at: 0,
            poll_soon: true,
            doorbell: io.doorbell.clone(),
            stats,
            memory: memory.clone(),
            last_snapshot: None,
            written: vec![0; (config.ram_size.div_ceil(PAGE_SIZE) as usize).div_ceil(64)],
            outgoing: None,
            transports: std::mem::take(&mut io.transports),
            pata: io.pata.clone(),
            control: None,
            paused: false,
        };
        Ok((machine, io))
    }

    /// Everything but RAM, as a snapshot keeps it; the machine must be
    /// paused (between turns, guest time stopped).
    fn save_state(&self) -> MachineState {
        MachineState {
            config: self.config.clone(),
            console_input: self.undelivered_input(),
            mtime: self.devices.clock.now(),
            harts: self.harts.iter().map(Hart::save_state).collect(),
            clint: self.devices.clint.save(),
            plic: self.devices.plic.save(),
            uart: self.devices.uart.save(),
            virtio: self.transports.iter().map(|t| lock(t).save()).collect(),
            pata: self.pata.as_ref().map(|p| lock(p).save()),
            tohost: self.devices.tohost,
            diff: None,
        }
    }

    fn restore_state(&mut self, state: &MachineState) -> Result<(), RestoreError> {
        for (hart, saved) in self.harts.iter_mut().zip(&state.harts) {
            hart.restore_state(saved)
                .map_err(|cause| SnapshotError::Hart {
                    hart: hart.id,
                    cause,
                })?;
            if let Some(tohost) = state.tohost {
                hart.watch_page(tohost);
            }
        }
        let d = &mut self.devices;
        d.clint.restore(&state.clint).map_err(SnapshotError::from)?;
        d.plic.restore(&state.plic).map_err(SnapshotError::from)?;
        d.uart.restore(&state.uart).map_err(SnapshotError::from)?;
        if state.virtio.len() != self.transports.len() {
            return Err(
                SnapshotError::Shape(format!("{} virtio devices", state.virtio.len())).into(),
            );
        }
        for (transport, saved) in self.transports.iter().zip(&state.virtio) {
            lock(transport)
                .restore(saved)
                .map_err(SnapshotError::from)?;
        }
        match (&self.pata, &state.pata) {
            (Some(pata), Some(saved)) => lock(pata).restore(saved).map_err(SnapshotError::from)?,
            (None, None) => {}
            _ => return Err(SnapshotError::Shape("another PATA controller".into()).into()),
        }
        self.pending_input = state.console_input.iter().copied().collect();
        d.refresh_bus_irqs();
        if let Some(tohost) = state.tohost {
            if !d.ram.contains(tohost, 8) {
                return Err(
                    SnapshotError::Shape(format!("tohost at {tohost:#x}, outside RAM")).into(),
                );
            }
        }
        d.tohost = state.tohost;
        d.clock.set(state.mtime);
        d.refresh_uart_irq();
        Ok(())
    }

    /// Writes a snapshot of the paused machine into `dir`: all of RAM, or
    /// with `diff` the pages written since the last snapshot; writes are
    /// tracked from then on.
    fn snapshot(&mut self, dir: &std::path::Path, diff: bool) -> Result<(), SnapshotError> {
        self.flush_devices().map_err(|cause| SnapshotError::Io {
            path: dir.to_owned(),
            cause,
        })?;
        let mut state = self.save_state();
        if diff {
            let Some(base) = self.last_snapshot.clone() else {
                return Err(SnapshotError::Unsupported(
                    "a diff snapshot needs an earlier snapshot of this VM by this process".into(),
                ));
            };
            if std::path::absolute(dir).is_ok_and(|d| d == base) {
                return Err(SnapshotError::Unsupported(
                    "a diff snapshot needs a directory of its own, not its base's".into(),
                ));
            }
            state.diff = Some(snapshot::Diff {
                base,
                pages: self.take_dirty_pages(),
            });
        } else {
            self.start_dirty_tracking();
        }
        let written = self.maybe_nonzero();
        let result = snapshot::write(dir, &state, &self.devices.ram, &written);
        if result.is_err() {
            // The next diff must hold what this one would have.
            self.last_snapshot = None;
            return result;
        }
        self.last_snapshot = Some(std::path::absolute(dir).map_err(|cause| SnapshotError::Io {
            path: dir.to_owned(),
            cause,
        })?);
        Ok(())
    }

    /// Makes what the guest wrote to its disks durable (before a snapshot
    /// or a migration names them by path).
    fn flush_devices(&self) -> std::io::Result<()> {
        self.transports
            .iter()
            .try_for_each(|t| lock(t).flush_device())?;
        self.pata.as_ref().map_or(Ok(()), |p| lock(p).flush())
    }

    /// Host console input the guest has not taken yet, in order.
    fn undelivered_input(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = lock(&self.virtio_console_input).iter().copied().collect();
        bytes.extend(&self.pending_input);
        bytes
    }

    /// Restarts the record of which pages harts and devices write.
    fn start_dirty_tracking(&mut self) {
        self.take_dirty_pages();
    }

    /// Pages that may hold something other than zeros (see
    /// [`Machine::written`]), the dirty marks left as they are.
    fn maybe_nonzero(&self) -> Vec<u64> {
        let mut pages = self.devices.ram.peek_dirty();
        self.or_device_writes(&mut pages, false);
        for (word, written) in pages.iter_mut().zip(&self.written) {
            *word |= written;
        }
        pages
    }

    /// Adds the pages devices wrote (vm-memory's dirty bitmap) to
    /// `pages`; with `reset`, clears the bitmap.
    fn or_device_writes(&self, pages: &mut [u64], reset: bool) {
        use vm_device::vm_memory::{bitmap::Bitmap, GuestMemoryRegion};
        for region in self.memory.iter() {
            let bitmap = vm_device::vm_memory::MmapRegion::bitmap(&**region);
            for page in 0..pages.len() * 64 {
                let offset = page * PAGE_SIZE as usize;
                if offset < region.len() as usize && bitmap.dirty_at(offset) {
                    pages[page / 64] |= 1 << (page % 64);
                }
            }
            if reset {
                bitmap.reset();
            }
        }
    }

    /// The pages written since tracking started or this was last called (a
    /// bit per 4 KiB page), by harts or by devices; cleared.
    fn take_dirty_pages(&mut self) -> Vec<u64> {
        let mut pages = self.devices.ram.take_dirty();
        for hart in &mut self.harts {
            hart.drop_write_translations();
        }
        self.or_device_writes(&mut pages, true);
        for (written, page) in self.written.iter_mut().zip(&pages) {
            *written |= page;
        }
        pages
    }

    /// Lets `commands` drive the machine's lifecycle while it runs (see
    /// [`Command`]).
    pub fn set_control(&mut self, commands: Receiver<Command>) {
        self.control = Some(commands);
    }

    /// What the machine is, for a control API's `GET /vm/config`.
    pub fn info(&self) -> MachineInfo {
        MachineInfo {
            config: self.config.clone(),
            paused: self.paused,
        }
    }

    /// Carries out the lifecycle commands that arrived; while paused,
    /// waits for the next (console input waits meanwhile; the quit key
    /// still quits).
    fn handle_commands(&mut self, input: &Receiver<ConsoleInput>) -> Option<Exit> {
        loop {
            let command = match &self.control {
                None => return None,
                Some(control) if !self.paused || self.outgoing.is_some() => {
                    match control.try_recv() {
                        Ok(command) => command,
                        Err(_) => return None,
                    }
                }
                Some(control) => match control.recv_timeout(PAUSED_POLL) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(exit) = self.take_quit(input) {
                            return Some(exit);
                        }
                        continue;
                    }
                    // Nobody can resume it any more: run on.
                    Err(RecvTimeoutError::Disconnected) => {
                        self.control = None;
                        self.set_paused(false);
                        return None;
                    }
                },
            };
            match command {
                Command::Pause(reply) => {
                    self.set_paused(true);
                    // A migration that fails leaves the VM as last asked.
                    if let Some(m) = &mut self.outgoing {
                        m.was_paused = true;
                    }
                    let _ = reply.send(Ok(()));
                }
                Command::Resume(reply) => {
                    self.set_paused(false);
                    if let Some(m) = &mut self.outgoing {
                        m.was_paused = false;
                    }
                    let _ = reply.send(Ok(()));
                }
                Command::Snapshot { dir, diff, reply } => {
                    let result = if self.outgoing.is_some() {
                        // It would take the dirty marks the migration needs.
                        Err(CommandError::WrongState(
                            "a migration is under way; snapshot after it",
                        ))
                    } else if self.paused {
                        self.snapshot(&dir, diff)
                            .map_err(|e| CommandError::Failed(e.to_string()))
                    } else {
                        Err(CommandError::WrongState(
                            "the VM must be paused to snapshot it",
                        ))
                    };
                    let _ = reply.send(result);
                }
                Command::Load { dir, resume, reply } => {
                    let result = if self.paused && self.outgoing.is_none() {
                        self.load(&dir, resume)
                    } else {
                        Err(CommandError::WrongState(
                            "the VM must be paused to load a snapshot over it",
                        ))
                    };
                    let _ = reply.send(result);
                }
                Command::Info(reply) => {
                    let _ = reply.send(self.info());
                }
                Command::Migrate { to, params, reply } => {
                    if self.outgoing.is_some() {
                        let _ = reply.send(Err(CommandError::WrongState(
                            "a migration is already under way",
                        )));
                    } else if let Err(e) = self.start_migration(&to, params, reply.clone()) {
                        let _ = reply.send(Err(CommandError::Failed(format!(
                            "cannot migrate to {to}: {e}"
                        ))));
                    } else if self.paused {
                        // A paused VM migrates too (its pages do not change).
                        return None;
                    }
                }
            }
        }
    }

    /// Becomes the machine the snapshot in `dir` holds (see [`Command::Load`]).
    fn load(&mut self, dir: &std::path::Path, resume: bool) -> Result<(), CommandError> {
        let console = Box::new(self.output.clone());
        // The snapshot's machine may open the same images.
        self.release_backends()
            .map_err(|e| CommandError::Failed(format!("releasing the disk images and TAP: {e}")))?;
        let mut loaded = match Machine::restore(dir, self.config.engine, console) {
            Ok(loaded) => loaded,
            Err(e) => {
                let relocked = match self.reacquire_backends() {
                    Ok(()) => String::new(),
                    Err(e) => {
                        format!(" (and the VM's disk images or TAP could not be taken again: {e})")
                    }
                };
                return Err(CommandError::Failed(format!(
                    "cannot load {}: {e}{relocked}",
                    dir.display()
                )));
            }
        };
        loaded.control = self.control.take();
        loaded.input_closed = self.input_closed;
        loaded.set_paused(!resume);
        *self = loaded;
        Ok(())
    }

    /// Connects to the destination and starts the full pass.
    fn start_migration(
        &mut self,
        to: &str,
        params: migrate::MigrationParams,
        reply: Sender<Result<(migrate::MigrationReport, Option<u32>), CommandError>>,
    ) -> std::io::Result<()> {
        use std::net::ToSocketAddrs;
        let address = to
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no such address"))?;
        let stream = std::net::TcpStream::connect_timeout(&address, migrate::LINK_TIMEOUT)?;
        stream.set_write_timeout(Some(migrate::LINK_TIMEOUT))?;
        stream.set_read_timeout(Some(migrate::LINK_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let header = migrate::Header {
            ram_size: self.devices.ram.len(),
            harts: self.harts.len() as u32,
            verify: params.verify,
        };
        let link = migrate::Outbound::start(stream, header, self.memory.clone(), RAM_BASE)?;
        // Tracking restarts: a diff snapshot needs a full one after this.
        self.last_snapshot = None;
        self.start_dirty_tracking();
        link.send_pages(self.maybe_nonzero());
        let now = std::time::Instant::now();
        self.outgoing = Some(Outgoing {
            link,
            to: to.to_owned(),
            params,
            reply,
            started: now,
            round: 0,
            round_started: now,
            round_sent: None,
            rate: 0.0,
            pages_sent: 0,
            was_paused: self.paused,
        });
        Ok(())
    }

    /// Looks at the migration: at a round's end, decides whether to go on
    /// (the pages written meanwhile go to the sending thread) or stop and
    /// copy. True when the VM now runs at the destination.
    fn migrate_step(&mut self) -> bool {
        let mut m = self.outgoing.take().expect("a migration under way");
        if m.round_sent.is_none() {
            match m.link.poll() {
                None => {
                    self.outgoing = Some(m);
                    return false;
                }
                Some(migrate::Done::Pages(sent)) => {
                    m.pages_sent += sent.pages;
                    if sent.bytes >= RATE_SAMPLE_BYTES || m.rate == 0.0 {
                        m.rate = sent.bytes as f64 / sent.busy.as_secs_f64().max(1e-6);
                    }
                    m.round_sent = Some(sent);
                }
                Some(migrate::Done::Running(_)) => unreachable!("no finish was asked for"),
                Some(migrate::Done::Failed(why)) => {
                    self.migration_failed(m, &why);
                    return false;
                }
            }
        }
        if m.round_started.elapsed() < MIGRATION_MIN_ROUND {
            self.outgoing = Some(m);
            return false;
        }
        // The round is done: what did the guest write meanwhile?
        m.round_sent = None;
        let dirty = self.take_dirty_pages();
        let left: u64 = dirty.iter().map(|w| w.count_ones() as u64).sum();
        let bytes = left as f64 * (1 + 8 + migrate::PAGE) as f64;
        let estimate = std::time::Duration::from_secs_f64(bytes / m.rate.max(1.0));
        let converged = estimate <= m.params.downtime;
        if converged || m.round >= m.params.max_rounds {
            return self.stop_and_copy(m, dirty, !converged);
        }
        m.round += 1;
        m.round_started = std::time::Instant::now();
        m.link.send_pages(dirty);
        self.outgoing = Some(m);
        false
    }

    /// Pauses the guest, has the rest (`dirty` and what was written since)
    /// and the state sent, and waits for the destination to run it. True
    /// when it does.
    fn stop_and_copy(&mut self, mut m: Outgoing, mut dirty: Vec<u64>, forced: bool) -> bool {
        self.set_paused(true);
        let paused_at = std::time::Instant::now();
        if let Err(e) = self.flush_devices() {
            self.migration_failed(m, &format!("flushing the disks: {e}"));
            return false;
        }
        // The destination opens the disks when the state arrives.
        if let Err(e) = self.release_backends() {
            self.migration_failed(m, &format!("releasing the disk images and TAP: {e}"));
            return false;
        }
        for (word, more) in dirty.iter_mut().zip(self.take_dirty_pages()) {
            *word |= more;
        }
        let crc = m.params.verify.then(|| self.ram_crc());
        m.link.finish(dirty, self.save_state());
        match m.link.wait() {
            migrate::Done::Running(sent) => m.pages_sent += sent.pages,
            migrate::Done::Failed(why) => {
                self.migration_failed(m, &format!("the destination did not take the VM: {why}"));
                return false;
            }
            migrate::Done::Pages(_) => unreachable!("every set was answered"),
        }
        let report = migrate::MigrationReport {
            rounds: m.round,
            pages_sent: m.pages_sent,
            total: m.started.elapsed(),
            downtime: paused_at.elapsed(),
            forced,
        };
        let _ = m.reply.send(Ok((report, crc)));
        true
    }

    /// Ends a failed migration: the VM runs on here as before.
    fn migration_failed(&mut self, m: Outgoing, why: &str) {
        // Its disks back (the stop-and-copy may have let them go). If
        // someone else holds them now — a destination that runs the VM
        // after all? — it must not write them too: it stays paused.
        let outcome = match self.reacquire_backends() {
            Ok(()) => {
                self.set_paused(m.was_paused);
                "the VM runs on here".to_owned()
            }
            Err(e) => {
                self.set_paused(true);
                format!(
                    "its disk images or TAP could not be taken again ({e}), so the VM stays paused"
                )
            }
        };
        let _ = m.reply.send(Err(CommandError::Failed(format!(
            "migration to {} failed: {why}; {outcome}",
            m.to
        ))));
    }

    /// Lets go of the disk images' locks and a NIC's TAP, so a
    /// destination (or a loaded snapshot's machine) can take them.
    fn release_backends(&self) -> std::io::Result<()> {
        self.transports
            .iter()
            .try_for_each(|t| lock(t).release_device())?;
        self.pata.as_ref().map_or(Ok(()), |p| lock(p).release())
    }

    /// Takes the disk images' locks and the TAP again.
    fn reacquire_backends(&self) -> std::io::Result<()> {
        self.transports
            .iter()
            .try_for_each(|t| lock(t).reacquire_device())?;
        self.pata.as_ref().map_or(Ok(()), |p| lock(p).reacquire())
    }

    /// CRC-32 of all of guest RAM (both ends of a migration report it).
    fn ram_crc(&self) -> u32 {
        let ram = &self.devices.ram;
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < ram.len() {
            let len = chunk.len().min((ram.len() - offset) as usize);
            ram.read_bytes(ram.base() + offset, &mut chunk[..len]);
            hasher.update(&chunk[..len]);
            offset += len as u64;
        }
        hasher.finalize()
    }

    /// Waits on `address` (`host:port`) for one VM sent by a migrating
    /// machine, and returns it ready to run (the source has been told),
    /// with the CRC-32 of its RAM as received when the source asked.
    pub fn incoming(
        address: &str,
        engine: Engine,
        console: Box<dyn Write + Send>,
    ) -> Result<(Machine, Option<u32>), RestoreError> {
        let listener =
            std::net::TcpListener::bind(address).map_err(|cause| RestoreError::Listen {
                address: address.to_owned(),
                cause,
            })?;
        eprintln!("visor: waiting for a migration on {address}");
        let (mut stream, _) = listener.accept().map_err(migrate::IncomingError::from)?;
        stream
            .set_read_timeout(Some(migrate::LINK_TIMEOUT))
            .map_err(migrate::IncomingError::from)?;
        let mut input = std::io::BufReader::with_capacity(
            1 << 20,
            stream.try_clone().map_err(migrate::IncomingError::from)?,
        );
        let header = migrate::read_header(&mut input)?;
        let ram_size = header.ram_size;
        check_shape(ram_size, header.harts as usize)?;
        let (ram, memory) = allocate_ram(ram_size)?;
        let pages = ram_size / PAGE_SIZE;
        let zeros = [0u8; migrate::PAGE];
        // Fresh RAM is zero: a zero page needs writing only over one sent
        // before (writing it anyway would commit host memory for nothing).
        let mut written = vec![0u64; (pages as usize).div_ceil(64)];
        let state = loop {
            match migrate::read_record(&mut input, pages)? {
                migrate::Record::Page(index, data) => {
                    ram.write_bytes(RAM_BASE + index * PAGE_SIZE, &data[..]);
                    written[index as usize / 64] |= 1 << (index % 64);
                }
                migrate::Record::Zero(index) => {
                    if snapshot::page_set(&written, index as usize) {
                        ram.write_bytes(RAM_BASE + index * PAGE_SIZE, &zeros);
                    }
                }
                migrate::Record::State(state) => break state,
            }
        };
        if state.config.ram_size != ram_size || state.config.harts != header.harts as usize {
            return Err(SnapshotError::Shape(
                "another configuration than the stream's header".into(),
            )
            .into());
        }
        let mut machine = Machine::resume_from(&state, ram, &memory, engine, console)?;
        // Every page not sent as data is zero here, as at the source.
        machine.written = written;
        let crc = header.verify.then(|| machine.ram_crc());
        migrate::send_running(&mut stream).map_err(migrate::IncomingError::from)?;
        Ok((machine, crc))
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if paused {
            self.devices.clock.pause();
        } else {
            self.devices.clock.resume();
        }
    }

    /// While paused: keeps console input for later, but honours the quit key.
    fn take_quit(&mut self, input: &Receiver<ConsoleInput>) -> Option<Exit> {
        while let Ok(event) = input.try_recv() {
            match event {
                ConsoleInput::Byte(b) => self.pending_input.push_back(b),
                ConsoleInput::Quit => return Some(Exit::Quit),
            }
        }
        None
    }

    /// Where lock-step mode found a translation bug, if it did.
    pub fn divergence(&self) -> Option<String> {
        self.engines.iter().find_map(|e| e.divergence())
    }

    /// What the translator did, across harts (`None` for the interpreter).
    pub fn jit_stats(&self) -> Option<riscv_hart::TranslationStats> {
        self.engines.iter().fold(None, |sum, engine| {
            let stats = engine.translation_stats()?;
            let mut sum = sum.unwrap_or_default();
            sum += stats;
            Some(sum)
        })
    }

    /// Why translated code had to be checked again: stores over it, `fence.i`.
    pub fn code_stats(&self) -> riscv_hart::CodeStats {
        self.devices.ram.code_stats()
    }

    /// Soft-TLB flushes, and its other counters, across harts.
    pub fn tlb_stats(&self) -> (u64, riscv_hart::TlbStats) {
        self.harts
            .iter()
            .fold((0, Default::default()), |(flushes, mut sum), h| {
                sum += h.tlb_stats();
                (flushes + h.translation_generation(), sum)
            })
    }

    /// Traps the harts took, by cause.
    pub fn trap_counts(&self) -> riscv_hart::TrapCounts {
        let mut sum = riscv_hart::TrapCounts::default();
        for hart in &self.harts {
            sum += hart.trap_counts();
        }
        sum
    }

    /// Per-device counters: traps, interrupts, bytes moved.
    pub fn stats(&self) -> &StatsTable {
        &self.stats
    }

    /// Instructions retired by all harts so far.
    pub fn instructions_retired(&self) -> u64 {
        self.harts.iter().map(|h| h.instret).sum()
    }

    /// Runs until the guest powers off, resets, exits through `tohost`, or the user quits.
    pub fn run(&mut self, input: &Receiver<ConsoleInput>) -> Exit {
        loop {
            if let Some(exit) = self.handle_commands(input) {
                return exit;
            }
            if self.outgoing.is_some() && self.migrate_step() {
                return Exit::Migrated;
            }
            if self.paused {
                // A paused VM migrating: nothing runs until the thread
                // sending it is done with a round.
                std::thread::sleep(MIGRATION_POLL);
                continue;
            }
            if let Some(exit) = self.feed_console(input) {
                return exit;
            }
            self.poll_devices();
            let mut all_waiting = true;
            for h in 0..self.harts.len() {
                let now = self.devices.mtime();
                let lines = self.interrupt_lines(h, now);
                let hart = &mut self.harts[h];
                hart.set_external_interrupts(lines);
                if hart.waiting && !hart.wakeup_pending(now) {
                    continue;
                }
                all_waiting = false;
                let engine = &mut self.engines[h];
                engine.run(hart, &mut self.devices, self.slice);
                if self.config.engine == Engine::LockStep && engine.divergence().is_some() {
                    return Exit::LockStepDivergence;
                }
                if let Some(exit) = self.devices.exit.take() {
                    return exit;
                }
            }
            if all_waiting {
                if let Some(exit) = self.sleep_until_event(input) {
                    return exit;
                }
            }
        }
    }

    /// Lets devices with host-side input deliver it: at once after console
    /// input was queued for them or a disk request finished, and every
    /// [`POLL_TICKS`] while a TAP is attached. Not every turn: device
    /// accesses end turns, and polling then would tax every trapped access.
    fn poll_devices(&mut self) {
        if self.doorbell.answer() {
            self.poll_soon = true;
        }
        if !self.poll_soon && !self.needs_polling {
            return;
        }
        let now = self.devices.mtime();
        // Wrapping: the guest may set mtime anywhere, up to u64::MAX.
        if !self.poll_soon && poll_interval_running(now, self.polled_at) {
            return;
        }
        self.poll_soon = false;
        self.polled_at = now;
        self.devices.bus.poll();
        self.devices.refresh_bus_irqs();
    }

    /// MSIP, MTIP, MEIP and SEIP for hart `h` at time `now`.
    fn interrupt_lines(&self, h: usize, now: u64) -> u64 {
        let d = &self.devices;
        let mut lines = 0;
        if d.clint.msip[h] {
            lines |= MIP_MSIP;
        }
        if now >= d.clint.mtimecmp[h] {
            lines |= MIP_MTIP;
        }
        if d.plic.context_pending(2 * h) {
            lines |= MIP_MEIP;
        }
        if d.plic.context_pending(2 * h + 1) {
            lines |= MIP_SEIP;
        }
        lines
    }

    /// Moves host console input into the UART as its FIFO has room.
    fn feed_console(&mut self, input: &Receiver<ConsoleInput>) -> Option<Exit> {
        while !self.input_closed && self.pending_input.len() < 4096 {
            match input.try_recv() {
                Ok(ConsoleInput::Byte(b)) => self.pending_input.push_back(b),
                Ok(ConsoleInput::Quit) => return Some(Exit::Quit),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.input_closed = true,
            }
        }
        match self.config.console {
            ConsoleDevice::Serial => {
                while self.devices.uart.rx_space() > 0 {
                    let Some(b) = self.pending_input.pop_front() else {
                        break;
                    };
                    self.devices.uart.receive(b);
                }
                self.devices.refresh_uart_irq();
            }
            ConsoleDevice::Virtio if !self.pending_input.is_empty() => {
                let mut queue = self
                    .virtio_console_input
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                queue.extend(self.pending_input.drain(..));
                self.poll_soon = true; // deliver it at once
            }
            ConsoleDevice::Virtio => {}
        }
        None
    }

    /// All harts wait for interrupts: sleep until the next timer deadline or console input.
    fn sleep_until_event(&mut self, input: &Receiver<ConsoleInput>) -> Option<Exit> {
        let now = self.devices.mtime();
        let mut deadline = u64::MAX;
        for (h, hart) in self.harts.iter().enumerate() {
            deadline = deadline
                .min(self.devices.clint.mtimecmp[h])
                .min(hart.csr.timer_deadline());
        }
        let ticks = deadline.saturating_sub(now).min(TIMEBASE_HZ / 20);
        let mut wait = Duration::from_nanos(ticks * (1_000_000_000 / TIMEBASE_HZ));
        if self.needs_polling {
            wait = wait.min(POLL_INTERVAL);
        }
        if self.outgoing.is_some() {
            wait = wait.min(MIGRATION_POLL);
        }
        // In this order: a ring sets the bell before it stops expecting.
        let expecting = self.doorbell.expecting();
        if wait.is_zero() || self.doorbell.rang() {
            return None;
        }
        if expecting {
            // A disk request in flight: woken when it finishes; console
            // input (which does not ring) waits at most POLL_INTERVAL.
            self.doorbell.wait(wait.min(POLL_INTERVAL));
            return None;
        }
        if !self.pending_input.is_empty() || self.input_closed {
            std::thread::sleep(wait);
            return None;
        }
        match input.recv_timeout(wait) {
            Ok(ConsoleInput::Byte(b)) => self.pending_input.push_back(b),
            Ok(ConsoleInput::Quit) => return Some(Exit::Quit),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.input_closed = true,
        }
        None
    }
}

/// Whether less than [`POLL_TICKS`] of guest time passed from `polled_at`
/// to `now`, across a wrap of `mtime` too (a guest that sets `mtime`
/// back makes the next poll due at once).
fn poll_interval_running(now: u64, polled_at: u64) -> bool {
    now.wrapping_sub(polled_at) < POLL_TICKS
}

/// Refuses a snapshot's or a migration's machine shape this board cannot build.
fn check_shape(ram_size: u64, harts: usize) -> Result<(), SnapshotError> {
    if !(MIN_RAM..=MAX_RAM).contains(&ram_size) || !ram_size.is_multiple_of(PAGE_SIZE) {
        return Err(SnapshotError::Shape(format!("{ram_size} bytes of RAM")));
    }
    if !(1..=MAX_HARTS).contains(&harts) {
        return Err(SnapshotError::Shape(format!("{harts} harts")));
    }
    Ok(())
}

/// A device's lock; a device that panicked while holding it left its
/// state as it was, which is still the state to save.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where boot left things: the entry point and the a1/a2 arguments.
struct BootInfo {
    entry: u64,
    fdt: u64,
    fw_dynamic_info: u64,
    tohost: Option<u64>,
}

/// Guest RAM as one anonymous mapping (vm-memory's), seen by the harts as a
/// [`GuestRam`] and by the devices as a [`GuestMemoryMmap`].
fn allocate_ram(size: u64) -> Result<(GuestRam, GuestMemoryMmap), BootError> {
    let too_big = || BootError::Ram(riscv_hart::RamAllocError(size));
    let len = usize::try_from(size).map_err(|_| too_big())?;
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM_BASE), len)]).map_err(|_| too_big())?;
    guest_ram_of(memory, size)
}

/// The harts' view of `memory`, one region of `size` bytes at [`RAM_BASE`].
fn guest_ram_of(
    memory: GuestMemoryMmap,
    size: u64,
) -> Result<(GuestRam, GuestMemoryMmap), BootError> {
    let too_big = || BootError::Ram(riscv_hart::RamAllocError(size));
    let region = memory
        .find_region(GuestAddress(RAM_BASE))
        .ok_or_else(too_big)?;
    let host = region.as_ptr();
    let owner: Rc<dyn std::any::Any> = Rc::new(memory.clone());
    // SAFETY: the mapping is `len` bytes, readable and writable, and `owner`
    // (a clone of the GuestMemoryMmap, sharing its regions) keeps it mapped.
    let ram = unsafe { GuestRam::from_host(RAM_BASE, host, size, owner) };
    Ok((ram, memory))
}

/// Guest RAM mapped from `file` (a snapshot's memory file, `size` bytes)
/// copy-on-write: pages are read from the file as the guest first touches
/// them, and the guest's writes never reach the file.
fn map_ram_file(file: std::fs::File, size: u64) -> Result<(GuestRam, GuestMemoryMmap), BootError> {
    use vm_device::vm_memory::{FileOffset, GuestRegionMmap, MmapRegion};
    let too_big = || BootError::Ram(riscv_hart::RamAllocError(size));
    let len = usize::try_from(size).map_err(|_| too_big())?;
    let region = MmapRegion::build(
        Some(FileOffset::new(file, 0)),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_NORESERVE,
    )
    .map_err(|_| too_big())?;
    let region = GuestRegionMmap::new(region, GuestAddress(RAM_BASE)).ok_or_else(too_big)?;
    let memory = GuestMemoryMmap::from_regions(vec![region]).map_err(|_| too_big())?;
    guest_ram_of(memory, size)
}

fn load_boot_images(
    ram: &GuestRam,
    config: &MachineConfig,
    io: &io::IoDevices,
) -> Result<BootInfo, BootError> {
    let mut tohost = None;
    let mut entry = RAM_BASE;
    let placed = &mut loader::Placements::default();
    // The kernel: an ELF at its own addresses, or a Linux Image after the firmware.
    let mut kernel_span = None;
    if let Some(path) = &config.kernel {
        let bytes = loader::read_file(path)?;
        if loader::is_elf(&bytes) {
            let program = loader::load_elf(ram, placed, path, &bytes)?;
            tohost = program.tohost;
            kernel_span = Some((program.entry, program.end));
            entry = program.entry;
        } else if let Some(size) = loader::linux_image_size(&bytes) {
            let at = RAM_BASE + KERNEL_OFFSET;
            let what = format!("kernel {}", path.display());
            loader::load_raw(ram, placed, &what, &bytes, at)?;
            if !ram.contains(at, size) {
                return Err(BootError::DoesNotFit {
                    what,
                    addr: at,
                    size,
                    ram_base: ram.base(),
                    ram_end: ram.end(),
                });
            }
            // The rest of the image's size is its bss.
            let file_end = at + bytes.len() as u64;
            placed.claim(&what, file_end, (at + size).saturating_sub(file_end))?;
            kernel_span = Some((at, at + size));
            entry = at;
        } else {
            return Err(BootError::UnknownFormat { path: path.clone() });
        }
    }
    match &config.firmware {
        Some(path) => {
            let bytes = loader::read_file(path)?;
            if loader::is_elf(&bytes) {
                loader::load_elf(ram, placed, path, &bytes)?;
            } else {
                loader::load_raw(
                    ram,
                    placed,
                    &format!("firmware {}", path.display()),
                    &bytes,
                    RAM_BASE,
                )?;
            }
            entry = RAM_BASE;
        }
        None if config.kernel.is_none() => return Err(BootError::NothingToRun),
        None => {}
    }
    // Device tree and fw_dynamic_info live in the top 2 MiB of RAM.
    let top = ram.end() - (2 << 20).min(ram.len() / 4);
    let fdt_addr = top & !0xfff;
    let initrd = match &config.initrd {
        Some(path) => {
            let bytes = loader::read_file(path)?;
            let size = bytes.len() as u64;
            let (kernel_start, kernel_end) = kernel_span.unwrap_or((RAM_BASE, RAM_BASE));
            // Like QEMU: well past the kernel if RAM allows, else right after it.
            let far = (kernel_start + (ram.len() / 2).min(128 << 20)) & !0xfff;
            let near = (kernel_end + 0xfff) & !0xfff;
            let start = [far, near]
                .into_iter()
                .find(|&s| s >= kernel_end && s + size <= fdt_addr);
            let Some(start) = start else {
                return Err(BootError::DoesNotFit {
                    what: format!("initrd {}", path.display()),
                    addr: near,
                    size,
                    ram_base: ram.base(),
                    ram_end: fdt_addr,
                });
            };
            loader::load_raw(
                ram,
                placed,
                &format!("initrd {}", path.display()),
                &bytes,
                start,
            )?;
            Some((start, start + size))
        }
        None => None,
    };
    let layout = fdt::Layout {
        harts: config.harts,
        ram_base: ram.base(),
        ram_size: ram.len(),
        cmdline: &config.cmdline,
        initrd,
        virtio_slots: io.virtio_slots,
        pata: io.pata.is_some(),
        rng_seed: {
            let mut seed = [0; fdt::RNG_SEED_BYTES];
            if !vm_device::host_random(&mut seed) {
                return Err(BootError::Fdt(
                    "no entropy from the host for rng-seed".into(),
                ));
            }
            seed
        },
    };
    let blob = fdt::build(&layout).map_err(|e| BootError::Fdt(e.to_string()))?;
    loader::load_raw(ram, placed, "the device tree", &blob, fdt_addr)?;
    // struct fw_dynamic_info { magic, version, next_addr, next_mode, options, boot_hart }
    let info_addr = (fdt_addr + blob.len() as u64 + 0xf) & !0xf;
    let next_addr = kernel_span.map_or(RAM_BASE + KERNEL_OFFSET, |(start, _)| start);
    let info: [u64; 6] = [FW_DYNAMIC_MAGIC, 2, next_addr, 1, 0, u64::MAX];
    let info_bytes: Vec<u8> = info.iter().flat_map(|v| v.to_le_bytes()).collect();
    loader::load_raw(ram, placed, "fw_dynamic_info", &info_bytes, info_addr)?;
    Ok(BootInfo {
        entry,
        fdt: fdt_addr,
        fw_dynamic_info: info_addr,
        tohost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_keeps_its_interval_across_a_wrap_of_mtime() {
        let near_end = u64::MAX - 10;
        assert!(poll_interval_running(near_end, near_end - 5));
        assert!(!poll_interval_running(near_end, near_end - POLL_TICKS));
        // Past the wrap, the interval still counts from the last poll.
        assert!(poll_interval_running(5, near_end));
        assert!(!poll_interval_running(POLL_TICKS, near_end));
        // mtime set back: due at once.
        assert!(!poll_interval_running(100, 5_000));
    }
}
