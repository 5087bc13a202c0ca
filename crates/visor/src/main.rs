//! The `visor` command line: parses QEMU-familiar options, builds a machine
//! and connects it to the terminal. No emulation logic lives here.

mod console;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use riscv_virt::{Exit, Machine, MachineConfig};
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// The RISC-V interpreter.
    Interp,
}

#[derive(Parser)]
struct RunArgs {
    /// Execution engine.
    #[arg(long, value_enum, default_value = "interp")]
    engine: Engine,
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
    /// Print instructions executed and speed at exit.
    #[arg(long)]
    stats: bool,
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
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("visor: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: RunArgs) -> Result<i32> {
    let Engine::Interp = args.engine;
    let firmware = match args.bios.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(riscv_virt::loader::find_firmware()?),
    };
    let config = MachineConfig {
        ram_size: args.memory,
        harts: args.smp,
        firmware,
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.append,
    };
    let mut machine =
        Machine::new(&config, Box::new(std::io::stdout())).context("cannot build the machine")?;
    let console = console::Console::attach();
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
