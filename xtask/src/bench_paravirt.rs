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
const PARALLEL_JOBS: u64 = 4;

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

/// Boots the bench machine, runs `command` between two markers, powers off;
/// with `cgroup`, visor runs in that (blkio) cgroup.
fn run_once(
    visor: &Path,
    images: &Images,
    disks: &[PathBuf],
    command: &str,
    cgroup: Option<&Path>,
) -> Result<Run> {
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
    if let Some(cgroup) = cgroup {
        // All of visor's threads move (the guest has not read the disk yet).
        std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string())
            .context("moving visor into the throttled cgroup")?;
    }
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
    // Four jobs at once, each on its own quarter of the disk: what a
    // guest with several I/O-bound processes asks of one virtio-blk.
    let parallel = |op: &str| {
        let quarter = DISK_MIB / PARALLEL_JOBS;
        let (files, offset, flag) = match op {
            "write" => ("if=/dev/zero of=/dev/vda", "seek", "oflag"),
            _ => ("if=/dev/vda of=/dev/null", "skip", "iflag"),
        };
        let job =
            format!("dd {files} bs=1M count={quarter} {offset}=$((i*{quarter})) {flag}=direct");
        let jobs: Vec<String> = (0..PARALLEL_JOBS).map(|i| i.to_string()).collect();
        format!(
            "for i in {}; do {job} 2>/dev/null & done; wait",
            jobs.join(" ")
        )
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
        Row {
            workload: "disk write 64 MiB, 4 parallel dd (O_DIRECT)",
            device: "virtio-blk",
            stats_row: "virtio-blk0",
            mib: DISK_MIB,
            command: parallel("write"),
        },
        Row {
            workload: "disk read 64 MiB, 4 parallel dd (O_DIRECT)",
            device: "virtio-blk",
            stats_row: "virtio-blk0",
            mib: DISK_MIB,
            command: parallel("read"),
        },
    ];
    eprintln!("[bench] paravirtualization: baseline boot");
    let baseline = run_once(visor, images, &disks, "true", None)?;
    let mut results = Vec::new();
    for row in &rows {
        eprintln!("[bench] {} on {}", row.workload, row.device);
        let run = run_once(visor, images, &disks, &row.command, None)?;
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
    println!();
    if let Err(e) = slow_disk(visor, images, &disks) {
        println!("Slow disk: skipped ({e:#}).");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What the guest's harts can do while virtio-blk waits for a slow disk:
/// the image read at [`SLOW_DISK_BPS`] (a blkio cgroup throttling the
/// host disk under the image), a CPU-bound shell loop timed alone and
/// with 4 parallel `dd` readers in the background, and the readers'
/// throughput. Needs root and cgroup v1's blkio controller.
fn slow_disk(visor: &Path, images: &Images, disks: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    const SLOW_DISK_BPS: u64 = 4 << 20;
    const RUNS: usize = 3;
    let blkio = Path::new("/sys/fs/cgroup/blkio");
    if !blkio.join("blkio.throttle.read_bps_device").exists() {
        bail!("no cgroup v1 blkio controller at {}", blkio.display());
    }
    let cgroup = blkio.join(format!("visor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).context("creating a blkio cgroup (needs root)")?;
    let dev = std::fs::metadata(&disks[0])?.dev();
    let rule = format!("{}:{} {SLOW_DISK_BPS}", libc::major(dev), libc::minor(dev));
    let result = (|| {
        std::fs::write(cgroup.join("blkio.throttle.read_bps_device"), &rule)
            .with_context(|| format!("throttling device {rule}"))?;
        let image = &disks[0];
        {
            use std::io::Write;
            let mut file = std::fs::File::create(image)?;
            let mut chunk = vec![0u8; 1 << 20];
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = (i * 7 + 3) as u8; // not zeros: the host must read it
            }
            for _ in 0..=DISK_MIB {
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
        }
        let cpu_job = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done";
        let readers = |mib: u64| {
            let each = mib / PARALLEL_JOBS;
            let jobs: Vec<String> = (0..PARALLEL_JOBS).map(|i| i.to_string()).collect();
            format!(
                "for i in {}; do dd if=/dev/vda of=/dev/null bs=1M count={each} \
                 skip=$((i*{each})) iflag=direct 2>/dev/null & done",
                jobs.join(" ")
            )
        };
        let cases = [
            ("CPU loop alone", cpu_job.to_string(), 0),
            (
                "CPU loop, 4 dd readers in the background",
                format!("{}; {cpu_job}", readers(DISK_MIB)),
                0,
            ),
            (
                "4 parallel dd readers",
                format!("{}; wait", readers(16)),
                16,
            ),
        ];
        println!(
            "Slow disk: the image read at {} MiB/s (blkio throttle), median of {RUNS} runs:",
            SLOW_DISK_BPS >> 20
        );
        println!();
        println!("| workload | time | dd throughput |");
        println!("|---|---|---|");
        for (name, command, mib) in cases {
            let mut times = Vec::new();
            for _ in 0..RUNS {
                drop_cached(image)?;
                eprintln!("[bench] slow disk: {name}");
                times.push(run_once(visor, images, disks, &command, Some(&cgroup))?.workload);
            }
            times.sort();
            let median = times[RUNS / 2];
            let throughput = if mib > 0 {
                format!("{:.1} MiB/s", mib as f64 / median.as_secs_f64())
            } else {
                "–".into()
            };
            println!("| {name} | {:.2} s | {throughput} |", median.as_secs_f64());
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&cgroup);
    result
}

/// Drops the host's cached pages of `image`, so the guest's reads reach the disk.
fn drop_cached(image: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(image)?;
    // SAFETY: fadvise on an open descriptor with plain integer arguments.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        bail!("posix_fadvise: {}", std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}
