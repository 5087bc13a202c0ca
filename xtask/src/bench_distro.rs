//! The distribution benchmark: Debian 13's own userland (images/debian-
//! riscv64: systemd, udev, Debian's stock kernel and initramfs-tools initrd,
//! root on virtio-blk) under visor's JIT and QEMU TCG, on the same firmware
//! and images, in one run. Each machine is timed from its start to the serial
//! console's login prompt, and, booted again, through the fork/exec-heavy
//! parts of `/usr/local/bin/visor-workload`, each timed between the "start"
//! and "done" lines it prints; their checksums must agree. Every boot gets a
//! fresh copy of the root filesystem, so every run is the same boot.

use crate::bench::{firmware, median, qemu, riscv_versions, time_to_marker};
use crate::bench_workloads::{observe_workloads, Timings};
use crate::images;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs of each measurement (a boot takes tens of seconds).
const RUNS: usize = 3;
/// The workload's parts, in the order it runs them.
const PARTS: [&str; 3] = ["spawn", "pipeline", "script"];
/// What getty prints on ttyS0 (the image's hostname first).
const LOGIN_PROMPT: &[u8] = b"visor-debian login:";
/// Debian's usual kernel command line, on the serial console.
const APPEND: &str = "root=/dev/vda ro console=ttyS0 quiet";
const MEMORY: &str = "1G";
/// Runs every part of the workload, on a serial console without a getty
/// (whose vhangup would cut the workload's output off), and without one on
/// visor's virtio-console either (whose prompt would share the output).
const WORKLOAD: &str = "visor.workload=all systemd.mask=serial-getty@ttyS0.service \
                        systemd.mask=serial-getty@hvc0.service";

/// The machines compared, in table order.
#[derive(Clone, Copy)]
enum Machine {
    VisorJit,
    Qemu,
}

/// The image's files.
struct Distro {
    kernel: PathBuf,
    initrd: PathBuf,
    rootfs: PathBuf,
    /// The copy each boot writes to.
    disk: PathBuf,
    firmware: PathBuf,
}

impl Distro {
    /// `machine`'s command line, booting the image with `append` added to
    /// the kernel's command line, on a fresh copy of the root filesystem.
    fn boot(&self, visor: &Path, machine: Machine, append: &str) -> Result<Command> {
        crate::run({
            let mut c = Command::new("cp");
            c.arg("--sparse=always").arg(&self.rootfs).arg(&self.disk);
            c
        })?;
        let append = format!("{APPEND} {append}");
        Ok(match machine {
            Machine::VisorJit => {
                let mut c = Command::new(visor);
                c.args(["run", "--engine", "jit", "-m", MEMORY, "--bios"])
                    .arg(&self.firmware)
                    .arg("--kernel")
                    .arg(&self.kernel)
                    .arg("--initrd")
                    .arg(&self.initrd)
                    .args(["--append", &append, "--disk"])
                    .arg(&self.disk);
                c
            }
            Machine::Qemu => {
                let mut c = qemu();
                c.args(["-m", MEMORY, "-nic", "none", "-bios"])
                    .arg(&self.firmware)
                    .arg("-kernel")
                    .arg(&self.kernel)
                    .arg("-initrd")
                    .arg(&self.initrd)
                    .args(["-append", &append, "-drive"])
                    .arg(format!(
                        "file={},format=raw,if=none,id=root",
                        self.disk.display()
                    ))
                    .args(["-device", "virtio-blk-device,drive=root"]);
                c
            }
        })
    }
}

/// Builds the image if it is not cached, then prints the Markdown tables.
pub fn run(root: &Path, visor: &Path) -> Result<()> {
    crate::install_deps(root, &["--distro"])?;
    let rootfs = images::ensure(root, &images::DEBIAN_RISCV64)?;
    let version = |name: &str| -> Result<String> {
        let path = rootfs.with_file_name(name);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned())
    };
    let scratch = root.join("target/guests/distro");
    std::fs::create_dir_all(&scratch)?;
    let distro = Distro {
        kernel: rootfs.with_file_name("vmlinux"),
        initrd: rootfs.with_file_name("initrd.img"),
        disk: scratch.join("rootfs.ext4"),
        firmware: firmware()?,
        rootfs: rootfs.clone(),
    };
    let machines = [Machine::VisorJit, Machine::Qemu];
    eprintln!(
        "[bench] Debian riscv64: boot to login, then the fork/exec workload; {RUNS} runs each"
    );
    let mut login: [Vec<Duration>; 2] = Default::default();
    let mut work: [Vec<Timings>; 2] = Default::default();
    for _ in 0..RUNS {
        for (slot, &machine) in machines.iter().enumerate() {
            login[slot].push(time_to_marker(
                distro.boot(visor, machine, "")?,
                LOGIN_PROMPT,
            )?);
            let command = distro.boot(visor, machine, WORKLOAD)?;
            work[slot].push(observe_workloads(command, &PARTS)?.timings);
        }
    }
    let _ = std::fs::remove_file(&distro.disk);
    let reference = &work[1][0];
    for (name, (_, checksum)) in work.iter().flatten().flatten() {
        if *checksum != reference[name].1 {
            bail!(
                "workload {name}: checksum {checksum}, under QEMU {}",
                reference[name].1
            );
        }
    }
    let seconds = |runs: Vec<Duration>| median(runs).as_secs_f64();
    println!(
        "Debian {} riscv64, kernel {}, `-m {MEMORY}`, one hart; {}.",
        version("debian_version")?,
        version("kernel_version")?,
        riscv_versions()?
    );
    println!();
    println!("| | visor jit | qemu-system-riscv64 (TCG) | visor time / QEMU time |");
    println!("|---|---|---|---|");
    let row = |what: &str, t: [f64; 2]| {
        println!(
            "| {what} | {:.2} s | {:.2} s | {:.2}× |",
            t[0],
            t[1],
            t[0] / t[1]
        )
    };
    row("start to `login:`", login.clone().map(seconds));
    let mut totals = [0.0; 2];
    for name in PARTS {
        let t = [0, 1].map(|slot| seconds(work[slot].iter().map(|w| w[name].0).collect()));
        totals[0] += t[0];
        totals[1] += t[1];
        row(&format!("workload: {name}"), t);
    }
    row("workload: all three", totals);
    println!();
    println!(
        "The JIT's workload throughput against QEMU: {:.2}×.",
        totals[1] / totals[0]
    );
    Ok(())
}
