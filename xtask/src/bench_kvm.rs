//! `cargo xtask bench kvm`: visor's hosted hypervisor against
//! `qemu-system-x86_64 -M pc -enable-kvm` on the same guest binaries, in one
//! run: time from process start to the guest's first serial line, peak RSS
//! of the whole process (the guests touch under 100 KiB of their 64 MiB),
//! and the cost of one trapped port-I/O write (`port_loop`'s 100,000 writes
//! to port 0x80, minus the `serial` guest's run time, divided by 100,000).

use crate::bench::{median, time_to_marker, wait_with_usage};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const PORT_WRITES: f64 = 100_000.0;

fn visor(root: &Path, guest: &Path) -> Command {
    let mut c = Command::new(root.join("target/release/visor"));
    c.args(["run", "--accel", "kvm", "-m", "64M", "--kernel"])
        .arg(guest);
    c
}

fn qemu(guest: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-M",
        "pc",
        "-enable-kvm",
        "-cpu",
        "qemu64,-pni",
        "-m",
        "64M",
        "-nographic",
        "-nodefaults",
    ])
    .args([
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel",
    ])
    .arg(guest);
    c
}

/// Runs to completion; returns wall time and peak RSS. Both guests end with status 33.
fn complete(mut command: Command) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let usage = wait_with_usage(&mut child)?;
    if usage.status.code() != Some(33) {
        bail!("{command:?} ended with {}", usage.status);
    }
    Ok((started.elapsed(), usage.max_rss_kib))
}

pub fn run(root: &Path) -> Result<()> {
    let guests = root.join("target/guests/x86_64");
    crate::run({
        let mut c = Command::new("make");
        c.arg("-s")
            .arg("-C")
            .arg(root.join("guests/x86_64"))
            .arg(format!("OUT={}", guests.display()));
        c
    })?;
    let serial: PathBuf = guests.join("serial.elf");
    let port_loop: PathBuf = guests.join("port_loop.elf");
    type Launcher<'a> = Box<dyn Fn(&Path) -> Command + 'a>;
    let peers: [(&str, Launcher); 2] = [
        ("visor --accel kvm", Box::new(|g| visor(root, g))),
        ("qemu-system-x86_64 -M pc", Box::new(qemu)),
    ];
    println!(
        "Versions: QEMU {}.",
        crate::bench::qemu_version("qemu-system-x86_64")?
    );
    println!();
    println!("| VMM | start → first serial line | peak RSS | trapped port write |");
    println!("|---|---|---|---|");
    for (name, launch) in &peers {
        eprintln!("[bench] {name}: {RUNS} runs of each guest");
        let mut first_line = Vec::new();
        let mut rss = Vec::new();
        let mut base = Vec::new();
        let mut loops = Vec::new();
        for _ in 0..RUNS {
            first_line.push(time_to_marker(launch(&serial), b"visor-x86")?);
            let (t, r) = complete(launch(&serial))?;
            base.push(t);
            rss.push(r);
            loops.push(complete(launch(&port_loop))?.0);
        }
        rss.sort_unstable();
        let per_write = median(loops).saturating_sub(median(base)).as_secs_f64() / PORT_WRITES;
        println!(
            "| {name} | {:.1} ms | {:.1} MiB | {:.2} µs |",
            median(first_line).as_secs_f64() * 1e3,
            rss[RUNS / 2] as f64 / 1024.0,
            per_write * 1e6
        );
    }
    Ok(())
}
