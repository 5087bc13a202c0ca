//! The `visor` command line: parses QEMU-familiar options, builds a machine
//! and connects it to the terminal. No emulation logic lives here.

mod api;
mod console;
mod seccomp;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use riscv_virt::{ConsoleDevice, DiskConfig, Exit, Machine, MachineConfig, NetConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "visor",
    version,
    about = "A virtualization toolkit: emulators and hypervisors in one codebase"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a guest.
    Run(RunArgs),
    /// The Type 1 hypervisor's tools.
    #[command(subcommand)]
    Hv(HvCommand),
    /// Pause a running VM (every hart, and guest time) through its API.
    Pause(ApiArgs),
    /// Resume a paused VM through its API.
    Resume(ApiArgs),
    /// Snapshot a paused VM into a directory (`visor run --restore DIR`).
    Snapshot(SnapshotArgs),
    /// Replace a paused VM with the one a snapshot directory holds.
    Load(LoadArgs),
    /// Live-migrate a VM to a `visor run --incoming` waiting elsewhere.
    Migrate(MigrateArgs),
}

#[derive(Parser)]
struct LoadArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The snapshot (a directory `visor snapshot` wrote).
    dir: PathBuf,
    /// Run the loaded VM at once (else it stays paused).
    #[arg(long)]
    resume: bool,
}

#[derive(Parser)]
struct MigrateArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Where the destination waits: tcp:HOST:PORT.
    #[arg(long)]
    to: String,
    /// The longest the guest may stand still at the end (QEMU's default).
    #[arg(long, default_value_t = 300)]
    downtime_ms: u64,
    /// Dirty rounds after which the guest is stopped whatever is left.
    #[arg(long, default_value_t = 30)]
    max_rounds: u32,
    /// Both ends report the CRC-32 of RAM (at the pause, and as received);
    /// adds their time to the downtime.
    #[arg(long)]
    verify_ram: bool,
}

#[derive(Parser)]
struct ApiArgs {
    /// The VM's control socket (`visor run --api-sock PATH`).
    #[arg(long)]
    api_sock: PathBuf,
}

#[derive(Parser)]
struct SnapshotArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Where to write the snapshot (a directory, created if needed).
    dir: PathBuf,
    /// Only the pages written since this VM's last snapshot (which the
    /// new one names as its base).
    #[arg(long)]
    diff: bool,
}

#[derive(Subcommand)]
enum HvCommand {
    /// Pack the hypervisor and the VMs a configuration names into one
    /// bootable image (`visor run --kernel IMAGE`, `qemu-system-riscv64
    /// -kernel IMAGE`).
    Pack(PackArgs),
}

#[derive(Parser)]
struct PackArgs {
    /// The configuration (TOML: [machine] and [[vm]] tables).
    config: PathBuf,
    /// Where to write the image.
    #[arg(short, long)]
    output: PathBuf,
    /// The hypervisor's ELF (hypervisor/, built by `cargo xtask`); default:
    /// $VISOR_HYPERVISOR.
    #[arg(long)]
    hypervisor: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// The RISC-V interpreter.
    Interp,
    /// Binary translation to x86-64 (integer blocks; the interpreter for the rest).
    Jit,
    /// The translator, checked block by block against the interpreter.
    Lockstep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Accel {
    /// x86-64 guests on Linux KVM (the hosted hypervisor).
    Kvm,
}

#[derive(Parser)]
struct RunArgs {
    /// Execution engine for the RISC-V machine.
    #[arg(long, value_enum, default_value = "jit")]
    engine: Engine,
    /// Run an x86-64 guest on a hardware accelerator instead of emulating RISC-V.
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Firmware image (OpenSBI fw_dynamic.bin / fw_jump.bin), or `none` to start the kernel ELF in M-mode.
    #[arg(long)]
    bios: Option<String>,
    /// Kernel: a Linux Image, or an ELF program.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "console=ttyS0")]
    append: String,
    /// Guest RAM: a number of MiB, or with a suffix K, M, G.
    #[arg(short = 'm', long = "memory", default_value = "128M", value_parser = parse_size)]
    memory: u64,
    /// Number of harts.
    #[arg(long, default_value_t = 1)]
    smp: usize,
    /// A disk image: PATH[,readonly][,if=virtio|ide]. virtio disks appear
    /// as vda, vdb, … in order; `if=ide` puts one on the emulated PATA controller.
    #[arg(long = "disk", value_parser = parse_disk)]
    disks: Vec<Disk>,
    /// A virtio network card on a host TAP interface: tap=NAME[,mac=52:54:00:12:34:56].
    #[arg(long, value_parser = parse_net)]
    net: Option<NetConfig>,
    /// Where keyboard input goes: the 16550 UART (ttyS0) or virtio-console (hvc0).
    #[arg(long, value_enum, default_value = "serial")]
    console: ConsoleArg,
    /// Print instructions executed, speed and per-device counters at exit.
    #[arg(long)]
    stats: bool,
    /// Serve the control API (HTTP/JSON) on this Unix socket.
    #[arg(long)]
    api_sock: Option<PathBuf>,
    /// Resume the VM a snapshot directory holds instead of booting one
    /// (the machine is the snapshot's; --engine may differ).
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "bios", "disks", "net", "smp", "memory"])]
    restore: Option<PathBuf>,
    /// Wait for a VM migrating in (`tcp:HOST:PORT`) and run it.
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "bios", "disks", "net", "smp", "memory", "restore"])]
    incoming: Option<String>,
    /// The system-call allow-list every thread runs under once the VM is
    /// set up; `off` (for debugging) runs without it, which is unsafe.
    #[arg(long, value_enum, default_value = "on")]
    seccomp: Switch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// From here on, every thread runs under the seccomp allow-list (unless
/// `--seccomp off`).
fn restrict_system_calls(seccomp: Switch) -> Result<()> {
    match seccomp {
        Switch::On => seccomp::restrict(),
        Switch::Off => {
            eprintln!(
                "visor: warning: --seccomp off: no system-call filter (unsafe; for debugging only)"
            );
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ConsoleArg {
    Serial,
    Virtio,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Disk {
    config: DiskConfig,
    ide: bool,
}

/// Parses `PATH[,readonly][,if=virtio|ide]`.
fn parse_disk(text: &str) -> Result<Disk, String> {
    let mut parts = text.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or("a disk needs a path")?;
    let mut disk = Disk {
        config: DiskConfig {
            path: PathBuf::from(path),
            read_only: false,
        },
        ide: false,
    };
    for option in parts {
        match option {
            "readonly" | "ro" => disk.config.read_only = true,
            "if=virtio" => disk.ide = false,
            "if=ide" => disk.ide = true,
            _ => {
                return Err(format!(
                    "unknown disk option `{option}` (readonly, if=virtio, if=ide)"
                ))
            }
        }
    }
    Ok(disk)
}

/// Parses `tap=NAME[,mac=XX:XX:XX:XX:XX:XX]`.
fn parse_net(text: &str) -> Result<NetConfig, String> {
    let mut tap = None;
    let mut mac = riscv_virt::DEFAULT_MAC;
    for option in text.split(',') {
        if let Some(name) = option.strip_prefix("tap=") {
            tap = Some(name.to_string());
        } else if let Some(text) = option.strip_prefix("mac=") {
            let bytes: Vec<u8> = text
                .split(':')
                .map(|b| u8::from_str_radix(b, 16))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("`{text}` is not a MAC address"))?;
            mac = bytes
                .try_into()
                .map_err(|_| format!("`{text}` is not a MAC address"))?;
        } else {
            return Err(format!("unknown net option `{option}` (tap=NAME, mac=…)"));
        }
    }
    let tap = tap.ok_or("--net needs tap=NAME")?;
    Ok(NetConfig { tap, mac })
}

/// Parses a QEMU-style size: plain numbers are MiB.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "M"),
    };
    if digits.is_empty() {
        return Err(format!("`{text}` is not a size"));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("unknown size unit `{unit}` (use K, M or G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size `{text}` is out of range"))
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line: clap's first line, without its "try --help" footer.
            let text = e.to_string();
            eprintln!(
                "visor: {}",
                text.lines().next().unwrap_or("invalid arguments")
            );
            std::process::exit(2);
        }
    };
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Hv(HvCommand::Pack(args)) => pack(args),
        Command::Pause(args) => set_state(&args, "Paused"),
        Command::Resume(args) => set_state(&args, "Resumed"),
        Command::Snapshot(args) => snapshot(&args),
        Command::Load(args) => load(&args),
        Command::Migrate(args) => migrate(&args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("visor: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// `visor pause|resume`: PATCH /vm.
fn set_state(args: &ApiArgs, state: &str) -> Result<i32> {
    let body = serde_json::json!({ "state": state }).to_string();
    api::request(&args.api_sock, "PATCH", "/vm", &body)?;
    Ok(0)
}

/// `visor snapshot`: PUT /snapshot/create.
fn snapshot(args: &SnapshotArgs) -> Result<i32> {
    let dir = std::path::absolute(&args.dir)?;
    let kind = if args.diff { "Diff" } else { "Full" };
    let body = serde_json::json!({ "snapshot_dir": dir, "snapshot_type": kind }).to_string();
    api::request(&args.api.api_sock, "PUT", "/snapshot/create", &body)?;
    Ok(0)
}

/// `visor load`: PUT /snapshot/load.
fn load(args: &LoadArgs) -> Result<i32> {
    let dir = std::path::absolute(&args.dir)?;
    let body = serde_json::json!({ "snapshot_dir": dir, "resume_vm": args.resume }).to_string();
    api::request(&args.api.api_sock, "PUT", "/snapshot/load", &body)?;
    Ok(0)
}

/// `visor migrate`: PUT /migrate; prints what the migration did.
fn migrate(args: &MigrateArgs) -> Result<i32> {
    tcp_address(&args.to)?;
    let body = serde_json::json!({
        "destination_url": args.to,
        "downtime_ms": args.downtime_ms,
        "max_rounds": args.max_rounds,
        "verify_ram": args.verify_ram,
    })
    .to_string();
    let report = api::request(&args.api.api_sock, "PUT", "/migrate", &body)?;
    println!("{}", report.trim());
    Ok(0)
}

/// `HOST:PORT` of a `tcp:HOST:PORT` URL.
fn tcp_address(url: &str) -> Result<&str> {
    match url.strip_prefix("tcp:") {
        Some(address) if address.contains(':') => Ok(address),
        _ => bail!("`{url}` is not tcp:HOST:PORT"),
    }
}

/// `visor hv pack`: writes the packed image.
fn pack(args: PackArgs) -> Result<i32> {
    let hypervisor = args
        .hypervisor
        .or_else(|| std::env::var_os("VISOR_HYPERVISOR").map(PathBuf::from))
        .context("no hypervisor given: pass --hypervisor PATH or set VISOR_HYPERVISOR")?;
    let image = hv_image::pack::pack(&args.config, &hypervisor)?;
    std::fs::write(&args.output, &image)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "visor: wrote {} ({} KiB)",
        args.output.display(),
        image.len() >> 10
    );
    Ok(0)
}

/// `--accel kvm`: an x86-64 PVH kernel on KVM.
fn run_kvm(args: RunArgs) -> Result<i32> {
    let Some(kernel) = args.kernel else {
        bail!("--accel kvm needs --kernel (a PVH ELF kernel)");
    };
    if args.disks.iter().any(|d| d.ide) {
        bail!("--accel kvm has no emulated IDE controller; use virtio disks");
    }
    let config = kvm_vmm::VmConfig {
        ram_size: args.memory,
        vcpus: args.smp,
        kernel,
        initrd: args.initrd,
        cmdline: args.append,
        disks: args.disks.iter().map(|d| d.config.clone()).collect(),
        net: args.net,
    };
    let mut vm = kvm_vmm::Vm::new(&config, Box::new(std::io::stdout()))?;
    let console = console::Console::attach();
    restrict_system_calls(args.seccomp)?;
    let exit = vm.run(console.input());
    drop(console);
    let exit = exit?;
    if args.stats {
        eprint!("{}", vm.stats().render());
    }
    Ok(match exit {
        kvm_vmm::VmExit::DebugExit(value) => ((value as i32) << 1) | 1,
        kvm_vmm::VmExit::Reset => {
            eprintln!("visor: guest reset");
            0
        }
        kvm_vmm::VmExit::Quit => 0,
    })
}

fn run(args: RunArgs) -> Result<i32> {
    if args.accel == Some(Accel::Kvm) {
        return run_kvm(args);
    }
    let firmware = match args.bios.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(riscv_virt::loader::find_firmware(
            riscv_virt::loader::DEFAULT_FIRMWARE,
        )?),
    };
    let mut ide_disks = args
        .disks
        .iter()
        .filter(|d| d.ide)
        .map(|d| d.config.clone());
    let ide_disk = ide_disks.next();
    if ide_disks.next().is_some() {
        bail!("the emulated PATA controller takes one disk (if=ide)");
    }
    let config = MachineConfig {
        harts: args.smp,
        firmware,
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.append,
        disks: args
            .disks
            .iter()
            .filter(|d| !d.ide)
            .map(|d| d.config.clone())
            .collect(),
        ide_disk,
        net: args.net,
        console: match args.console {
            ConsoleArg::Serial => ConsoleDevice::Serial,
            ConsoleArg::Virtio => ConsoleDevice::Virtio,
        },
        engine: match args.engine {
            Engine::Interp => riscv_virt::Engine::Interpreter,
            Engine::Jit => riscv_virt::Engine::Jit,
            Engine::Lockstep => riscv_virt::Engine::LockStep,
        },
        ..MachineConfig::new(args.memory)
    };
    // Attached first, so a VM that comes in (or is restored) runs the
    // moment it is in place.
    let console = console::Console::attach();
    let built = match (&args.restore, &args.incoming) {
        (Some(dir), _) => Machine::restore(dir, config.engine, Box::new(std::io::stdout()))
            .with_context(|| format!("cannot restore {}", dir.display())),
        (None, Some(url)) => {
            let address = tcp_address(url)?;
            Machine::incoming(address, config.engine, Box::new(std::io::stdout()))
                .context("no VM came in")
                .map(|(machine, crc)| {
                    match crc {
                        Some(crc) => eprintln!("visor: a VM came in: RAM CRC-32 {crc:08x}"),
                        None => eprintln!("visor: a VM came in"),
                    }
                    machine
                })
        }
        (None, None) => {
            Machine::new(&config, Box::new(std::io::stdout())).context("cannot build the machine")
        }
    };
    let mut machine = built?; // (an error drops the console first, restoring the terminal)
    let api_server = match &args.api_sock {
        Some(socket) => {
            let (commands, control) = std::sync::mpsc::channel();
            machine.set_control(control);
            Some(api::serve(socket, commands)?)
        }
        None => None,
    };
    restrict_system_calls(args.seccomp)?;
    let started = std::time::Instant::now();
    let exit = machine.run(console.input());
    drop(console);
    if args.stats {
        let seconds = started.elapsed().as_secs_f64();
        let instructions = machine.instructions_retired();
        eprintln!(
            "visor: {instructions} instructions in {seconds:.3} s ({:.1} MIPS)",
            instructions as f64 / seconds / 1e6
        );
        if let Some(jit) = machine.jit_stats() {
            eprintln!(
                "visor: {} of them ({:.0}%) ran as translated code",
                jit.translated_instructions,
                jit.translated_instructions as f64 * 100.0 / instructions.max(1) as f64
            );
            let blocks = jit.blocks.max(1) as f64;
            eprintln!(
                "visor: {} blocks translated ({:.1} guest instructions, {:.0} host bytes each) in {:.1} ms ({:.1} µs per block)",
                jit.blocks,
                jit.block_instructions as f64 / blocks,
                jit.code_bytes as f64 / blocks,
                jit.translation_nanos as f64 / 1e6,
                jit.translation_nanos as f64 / 1e3 / blocks
            );
            let code = machine.code_stats();
            eprintln!(
                "visor: code epoch moved {} times ({} stores over translated code, {} fence.i): {} blocks checked again and kept, {} translated again; jump cache cleared {} times; {} block lookups by the dispatcher and {} from translated code (jump-cache misses)",
                code.stores + code.fences,
                code.stores,
                code.fences,
                jit.revalidations,
                jit.retranslations,
                jit.jump_cache_clears,
                jit.dispatches,
                jit.code_lookups
            );
            if jit.table_flushes > 0 {
                eprintln!(
                    "visor: the block table reached its bound {} times and was emptied",
                    jit.table_flushes
                );
            }
        }
        let (flushes, tlb) = machine.tlb_stats();
        eprintln!(
            "visor: soft-TLB: {flushes} full flushes, {} of one page and {} of one ASID; {} address-space switches ({} found their entries kept); {} pages filled ({} of them a guest's, two-stage), {} G-stage walks saved by the leaf cache",
            tlb.page_flushes,
            tlb.asid_flushes,
            tlb.switches,
            tlb.switches_kept,
            tlb.fills,
            tlb.guest_fills,
            tlb.gstage_hits
        );
        let taken = machine.trap_counts().taken();
        let total: u64 = taken.iter().map(|&(_, n)| n).sum();
        let by_cause: Vec<String> = taken
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        eprintln!("visor: traps: {total} ({})", by_cause.join(", "));
        eprint!("{}", machine.stats().render());
    }
    Ok(match exit {
        Exit::Poweroff | Exit::Quit => 0,
        Exit::Tohost(code) => code as i32,
        Exit::GuestFailure(code) => {
            eprintln!("visor: guest reported failure {code}");
            code.max(1) as i32
        }
        Exit::Reset => {
            eprintln!("visor: guest requested a reset");
            0
        }
        Exit::UnsupportedHtif(value) => {
            bail!("unsupported HTIF request {value:#x} written to tohost")
        }
        Exit::Migrated => {
            eprintln!("visor: the VM migrated and runs at the destination now");
            if let Some(api) = &api_server {
                api.finish_answers();
            }
            0
        }
        Exit::LockStepDivergence => {
            bail!(
                "lock-step: translated code diverged from the interpreter: {}",
                machine.divergence().unwrap_or_default()
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_like_qemu() {
        assert_eq!(parse_size("128"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
