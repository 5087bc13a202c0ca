//! visor-hv, the Type 1 hypervisor, measured on visor's machine (JIT) and
//! on QEMU TCG from the same images: the CPU workload set inside Linux on
//! the bare machine and inside a Linux VM under the hypervisor (the
//! virtualization overhead, and boot to userspace), the VM's exits per
//! second by reason, and the paravirtual console hypercall against the
//! trapped virtual UART (`guests/hv/console_bench.c`).

use crate::bench::{firmware, median, qemu, riscv_versions, RUNS};
use crate::bench_workloads::{observe_workloads, Observed, WORKLOADS};
use crate::Images;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The machine, and the Linux VM's share of it.
const MACHINE_MEMORY: &str = "512M";
const VM_MEMORY: &str = "256M";
const APPEND: &str = "console=ttyS0 rdinit=/bench/run";
/// The `time` CSR's rate on visor's and QEMU's virt boards.
const TIMEBASE_HZ: f64 = 10_000_000.0;

/// Packs `config` (kernels named relative to `dir`) into `dir/NAME.img`.
fn pack(root: &Path, images: &Images, dir: &Path, name: &str, config: &str) -> Result<PathBuf> {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)?;
    let image = dir.join(format!("{name}.img"));
    crate::run({
        let mut c = Command::new(root.join("target/release/visor"));
        c.args(["hv", "pack"])
            .arg(&config_path)
            .arg("-o")
            .arg(&image)
            .arg("--hypervisor")
            .arg(&images.hypervisor)
            .stdout(Stdio::null());
        c
    })?;
    Ok(image)
}

/// The four ways the workloads run: bare Linux and Linux in a VM, on
/// visor's JIT and on QEMU.
fn commands(
    root: &Path,
    images: &Images,
    initramfs: &Path,
    vm_image: &Path,
) -> Result<[Command; 4]> {
    // Bare Linux gets the RAM the VM has; the hypervisor's machine more.
    let visor = |kernel: &Path, memory: &str| {
        let mut c = Command::new(root.join("target/release/visor"));
        c.args(["run", "--engine", "jit", "-m", memory, "--kernel"])
            .arg(kernel);
        c
    };
    let mut bare_visor = visor(&images.linux, VM_MEMORY);
    bare_visor
        .arg("--initrd")
        .arg(initramfs)
        .args(["--append", APPEND]);
    let firmware = firmware()?;
    let qemu_on = |kernel: &Path, memory: &str| {
        let mut q = qemu();
        q.args(["-m", memory, "-bios"])
            .arg(&firmware)
            .arg("-kernel")
            .arg(kernel);
        q
    };
    let mut bare_qemu = qemu_on(&images.linux, VM_MEMORY);
    bare_qemu
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", APPEND]);
    Ok([
        bare_visor,
        visor(vm_image, MACHINE_MEMORY),
        bare_qemu,
        qemu_on(vm_image, MACHINE_MEMORY),
    ])
}

/// "visor-hv: VM NAME exits in MS ms: timer N device N ...": the
/// reasons and counts, and the milliseconds they were counted over.
fn exits(lines: &[String], vm: &str) -> Option<(Vec<(String, u64)>, u64)> {
    let prefix = format!("visor-hv: VM {vm} exits in ");
    let line = lines.iter().find_map(|l| l.trim().strip_prefix(&prefix))?;
    let (ms, counts) = line.split_once(" ms:")?;
    let words: Vec<&str> = counts.split_whitespace().collect();
    let counts = words
        .chunks(2)
        .filter_map(|pair| Some((pair[0].to_owned(), pair.get(1)?.parse().ok()?)))
        .collect();
    Some((counts, ms.parse().ok()?))
}

pub fn run(root: &Path, images: &Images) -> Result<()> {
    let (initramfs, _) = crate::bench_workloads::build(root, images)?;
    let dir = root.join("target/guests/hv-bench");
    std::fs::create_dir_all(&dir)?;
    let vm_image = pack(
        root,
        images,
        &dir,
        "linux-vm",
        &format!(
            "[machine]\nmemory = \"{MACHINE_MEMORY}\"\n\n[[vm]]\nname = \"linux\"\nmemory = \"{VM_MEMORY}\"\n\
             kernel = \"{}\"\ninitrd = \"{}\"\nbootargs = \"{APPEND}\"\n",
            images.linux.display(),
            initramfs.display()
        ),
    )?;
    eprintln!("[bench] CPU workloads inside Linux, bare and in a visor-hv VM, {RUNS} runs each");
    let mut runs: [Vec<Observed>; 4] = Default::default();
    for _ in 0..RUNS {
        for (slot, command) in commands(root, images, &initramfs, &vm_image)?
            .into_iter()
            .enumerate()
        {
            runs[slot].push(observe_workloads(command, &WORKLOADS)?);
        }
    }
    for run in runs.iter().flatten() {
        for (name, (_, checksum)) in &run.timings {
            if *checksum != runs[0][0].timings[name].1 {
                bail!("workload {name}: checksums differ between runs");
            }
        }
    }
    let secs = |d: Duration| d.as_secs_f64();
    let median_of = |slot: usize, f: &dyn Fn(&Observed) -> Duration| {
        secs(median(runs[slot].iter().map(f).collect()))
    };
    println!("Versions: {}.", riscv_versions()?);
    println!();
    println!("| workload (inside Linux) | visor bare | visor in VM | overhead | QEMU bare | QEMU in VM | overhead |");
    println!("|---|---|---|---|---|---|---|");
    let mut totals = [0.0f64; 4];
    for name in WORKLOADS {
        let t: Vec<f64> = (0..4)
            .map(|slot| median_of(slot, &|o: &Observed| o.timings[name].0))
            .collect();
        for (total, v) in totals.iter_mut().zip(&t) {
            *total += v;
        }
        print_row(name, &t);
    }
    print_row("**all four**", &totals);
    let boot: Vec<f64> = (0..4)
        .map(|slot| median_of(slot, &|o: &Observed| o.boot))
        .collect();
    println!();
    println!(
        "Boot to the first workload (firmware, hypervisor, Linux, initramfs): visor {:.2} s bare, {:.2} s in a VM; QEMU {:.2} s bare, {:.2} s in a VM (visor's VM boot takes {:.2}× QEMU's time).",
        boot[0],
        boot[1],
        boot[2],
        boot[3],
        boot[1] / boot[3]
    );
    println!();
    println!("| exits per second of the Linux VM | visor | QEMU |");
    println!("|---|---|---|");
    let observed: Vec<_> = [1, 3]
        .iter()
        .map(|&slot| exits(&runs[slot][0].lines, "linux").context("the VM's exit report"))
        .collect::<Result<_>>()?;
    for (i, (reason, _)) in observed[0].0.iter().enumerate() {
        let rate =
            |(counts, ms): &(Vec<(String, u64)>, u64)| counts[i].1 as f64 * 1000.0 / *ms as f64;
        println!(
            "| {reason} | {:.0} | {:.0} |",
            rate(&observed[0]),
            rate(&observed[1])
        );
    }
    println!();
    console(root, images, &dir)
}

fn print_row(name: &str, t: &[f64]) {
    let overhead = |bare: f64, vm: f64| (vm / bare - 1.0) * 100.0;
    println!(
        "| {name} | {:.3} s | {:.3} s | {:+.1} % | {:.3} s | {:.3} s | {:+.1} % |",
        t[0],
        t[1],
        overhead(t[0], t[1]),
        t[2],
        t[3],
        overhead(t[2], t[3])
    );
}

/// The console benchmark: 16 KiB through the trapped UART and through the
/// CONSOLE_WRITE hypercall, in a VM alone, on visor's JIT and on QEMU.
fn console(root: &Path, images: &Images, dir: &Path) -> Result<()> {
    let guests = root.join("target/guests/hv");
    crate::run({
        let mut c = Command::new("make");
        c.args(["-s", "-C"])
            .arg(root.join("guests/hv"))
            .arg(format!("OUT={}", guests.display()));
        c
    })?;
    println!("| console, 16 KiB from a VM | exits per byte | visor | QEMU | visor vs QEMU |");
    println!("|---|---|---|---|---|");
    for (label, program) in [
        ("trapped 16550 (LSR poll + THR store)", "console_uart.elf"),
        ("CONSOLE_WRITE hypercall (256 B a call)", "console_pv.elf"),
    ] {
        let config = format!(
            "[machine]\nmemory = \"64M\"\n\n[[vm]]\nname = \"console\"\nmemory = \"8M\"\nkernel = \"{}\"\n",
            guests.join(program).display()
        );
        let image = pack(root, images, dir, program.trim_end_matches(".elf"), &config)?;
        let mut rates = Vec::new();
        let (mut per_byte, mut total_bytes) = (0.0, 0.0);
        for machine in ["visor", "qemu"] {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                let mut c = if machine == "visor" {
                    let mut c = Command::new(root.join("target/release/visor"));
                    c.args(["run", "--engine", "jit", "--kernel"]).arg(&image);
                    c
                } else {
                    let mut q = qemu();
                    q.args(["-bios"])
                        .arg(firmware()?)
                        .arg("-kernel")
                        .arg(&image);
                    q
                };
                let out = c.stdin(Stdio::null()).stderr(Stdio::null()).output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                let result = lines
                    .iter()
                    .find_map(|l| l.strip_prefix("[console] bench console "))
                    .context("the console benchmark's result")?;
                let (bytes, ticks) = result.split_once(' ').context("bytes and ticks")?;
                let (bytes, ticks): (f64, f64) = (bytes.parse()?, ticks.trim().parse()?);
                samples.push(Duration::from_secs_f64(ticks / TIMEBASE_HZ));
                total_bytes = bytes;
                let (counts, _) = exits(&lines, "console").context("the VM's exit report")?;
                let device_exits: u64 = counts
                    .iter()
                    .filter(|(reason, _)| ["uart", "hypercall"].contains(&reason.as_str()))
                    .map(|(_, n)| n)
                    .sum();
                per_byte = device_exits as f64 / bytes;
            }
            rates.push(total_bytes / median(samples).as_secs_f64() / 1e6);
        }
        println!(
            "| {label} | {per_byte:.3} | {:.2} MB/s | {:.2} MB/s | {:.2}× |",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
    }
    Ok(())
}
