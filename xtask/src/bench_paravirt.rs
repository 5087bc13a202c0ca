//! `cargo xtask bench paravirt`: what paravirtualization buys. The same
//! Linux guest runs the same workload on a trapped, fully emulated device and
//! on its virtio counterpart: 64 MiB written and read with O_DIRECT on the
//! PATA disk vs virtio-blk, and 1 MiB written to the 16550 UART (ttyS0) vs virtio-console
//! (hvc0). Reported per device: throughput, traps per MiB and host CPU
//! seconds per MiB, each workload's counters taken from `visor --stats`
//! minus those of a boot-and-poweroff baseline run with the same machine.

use crate::Images;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DISK_MIB: u64 = 64;
const CONSOLE_MIB: u64 = 1;

/// One measured run: wall time of the workload, host CPU of the whole run,
/// and the `--stats` rows.
struct Run {
    workload: Duration,
    cpu: Duration,
    stats: Vec<(String, [u64; 4])>,
}

impl Run {
    fn traps(&self, device: &str) -> u64 {
        self.stats
            .iter()
            .find(|(n, _)| n == device)
            .map_or(0, |(_, c)| c[0])
    }
}

/// Boots the bench machine, runs `command` between two markers, powers off.
fn run_once(visor: &Path, images: &Images, disks: &[PathBuf], command: &str) -> Result<Run> {
    let mut child = Command::new(visor)
        .args(["run", "-m", "256M", "--stats", "--kernel"])
        .arg(&images.linux)
        .arg("--initrd")
        .arg(&images.initramfs)
        .arg("--disk")
        .arg(&disks[0])
        .arg("--disk")
        .arg(format!("{},if=ide", disks[1].display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting visor")?;
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, &'static str)>();
    std::thread::spawn(move || {
        let markers = ["visor-init: ready", "BENCH-START", "BENCH-END"];
        let mut next = 0;
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            while next < markers.len() {
                let m = markers[next].as_bytes();
                match tail.windows(m.len()).position(|w| w == m) {
                    Some(at) => {
                        let _ = tx.send((Instant::now(), markers[next]));
                        tail.drain(..at + m.len());
                        next += 1;
                    }
                    None => break,
                }
            }
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
        }
    });
    let wait = |what: &str| -> Result<Instant> {
        let (at, _) = rx
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| anyhow!("the guest never printed {what}"))?;
        Ok(at)
    };
    wait("visor-init: ready")?;
    std::thread::sleep(Duration::from_millis(300));
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(
        stdin,
        "echo BENCH''-START; {command}; echo BENCH''-END; poweroff"
    )?;
    stdin.flush()?;
    let start = wait("BENCH-START")?;
    let end = wait("BENCH-END")?;
    let usage = crate::bench::wait_with_usage(&mut child)?;
    let (status, cpu) = (usage.status, usage.cpu);
    if !status.success() {
        bail!("visor exited with {status}");
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr)?;
    let stats = stderr
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_string();
            let nums: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
            Some((name, nums.try_into().ok()?))
        })
        .collect();
    Ok(Run {
        workload: end - start,
        cpu,
        stats,
    })
}

struct Row {
    workload: &'static str,
    device: &'static str,
    stats_row: &'static str,
    mib: u64,
    command: String,
}

pub fn run(visor: &Path, images: &Images) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("visor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let disks = [dir.join("virtio.img"), dir.join("pata.img")];
    for disk in &disks {
        std::fs::File::create(disk)?.set_len((DISK_MIB + 1) << 20)?;
    }
    // O_DIRECT: the device path is measured, not the guest page cache.
    let write = |dev: &str| {
        format!("dd if=/dev/zero of={dev} bs=1M count={DISK_MIB} oflag=direct 2>/dev/null")
    };
    let read = |dev: &str| {
        format!("dd if={dev} of=/dev/null bs=1M count={DISK_MIB} iflag=direct 2>/dev/null")
    };
    let print =
        |tty: &str| format!("dd if=/dev/zero bs=4k count=256 2>/dev/null | tr '\\0' x > {tty}");
    let rows = [
        Row {
            workload: "disk write 64 MiB (dd, O_DIRECT)",
            device: "PATA, PIO (emulated)",
            stats_row: "pata",
            mib: DISK_MIB,
            command: write("/dev/sda"),
        },
        Row {
            workload: "disk write 64 MiB (dd, O_DIRECT)",
            device: "virtio-blk",
            stats_row: "virtio-blk0",
            mib: DISK_MIB,
            command: write("/dev/vda"),
        },
        Row {
            workload: "disk read 64 MiB (dd, O_DIRECT)",
            device: "PATA, PIO (emulated)",
            stats_row: "pata",
            mib: DISK_MIB,
            command: read("/dev/sda"),
        },
        Row {
            workload: "disk read 64 MiB (dd, O_DIRECT)",
            device: "virtio-blk",
            stats_row: "virtio-blk0",
            mib: DISK_MIB,
            command: read("/dev/vda"),
        },
        Row {
            workload: "console write 1 MiB",
            device: "16550 UART, ttyS0 (emulated)",
            stats_row: "uart",
            mib: CONSOLE_MIB,
            command: print("/dev/ttyS0"),
        },
        Row {
            workload: "console write 1 MiB",
            device: "virtio-console, hvc0",
            stats_row: "virtio-console",
            mib: CONSOLE_MIB,
            command: print("/dev/hvc0"),
        },
    ];
    eprintln!("[bench] paravirtualization: baseline boot");
    let baseline = run_once(visor, images, &disks, "true")?;
    let mut results = Vec::new();
    for row in &rows {
        eprintln!("[bench] {} on {}", row.workload, row.device);
        let run = run_once(visor, images, &disks, &row.command)?;
        results.push(run);
    }
    println!(
        "Versions: OpenSBI {} (visor's default firmware).",
        crate::bench::opensbi_version()?
    );
    println!();
    println!("| workload | device | throughput | traps per MiB | host CPU s per MiB |");
    println!("|---|---|---|---|---|");
    let mut summary = Vec::new();
    for (row, run) in rows.iter().zip(&results) {
        let mib = row.mib as f64;
        let throughput = mib / run.workload.as_secs_f64();
        let traps = run
            .traps(row.stats_row)
            .saturating_sub(baseline.traps(row.stats_row)) as f64
            / mib;
        let cpu = run.cpu.saturating_sub(baseline.cpu).as_secs_f64() / mib;
        println!(
            "| {} | {} | {throughput:.1} MiB/s | {traps:.0} | {cpu:.3} |",
            row.workload, row.device
        );
        summary.push((throughput, traps));
    }
    println!();
    for (i, what) in [(0, "disk write"), (2, "disk read"), (4, "console write")] {
        let (emulated, virtio) = (summary[i], summary[i + 1]);
        println!(
            "{what}: virtio {:.1}× the emulated device's throughput, {:.0}× fewer traps per MiB.",
            virtio.0 / emulated.0,
            emulated.1 / virtio.1.max(1e-9)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
