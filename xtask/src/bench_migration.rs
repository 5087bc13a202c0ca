//! Snapshots and live migration, visor against QEMU 10 on the same
//! bare-metal guests (`guests/riscv/counter.c` with a line every 1 ms,
//! which otherwise writes little, and `dirtier.c`, which rewrites 16 MiB on
//! every pass and prints a line per MiB), in one run: live-migration total
//! time and downtime over loopback TCP (visor: `visor migrate` to a `visor
//! run --incoming`; QEMU: QMP `migrate` to a second `qemu-system-riscv64
//! -incoming tcp:…`, both with their default 300 ms downtime budget), the
//! downtime both as the tool reports it and as the guest's console shows
//! it (the gap between the source's last line and the destination's first,
//! less the guest's usual gap between lines); snapshot create time and
//! restore-to-running time (process start to the guest's first line, with
//! a line every 1 ms: `counter_fast`; QEMU: `migrate` to `file:` and
//! `-incoming file:`).

use crate::bench::{median, riscv_versions, RUNS};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const MIGRATION_RAM: &str = "256M";
const SNAPSHOT_RAM: &str = "128M";
const LIMIT: Duration = Duration::from_secs(60);

/// A guest process whose console lines arrive, timestamped, on a channel.
struct Running {
    child: Child,
    lines: Receiver<(Instant, String)>,
    started: Instant,
}

impl Running {
    fn start(mut command: Command) -> Result<Running> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("{command:?}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            realtime();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Running {
            child,
            lines,
            started,
        })
    }

    /// Waits for a line starting with `prefix`; when it came.
    fn wait_for(&self, prefix: &str) -> Result<Instant> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no line starting {prefix:?}"))?;
            if line.starts_with(prefix) {
                return Ok(at);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts the calling thread ahead of the guests' (SCHED_FIFO, where
/// allowed), so a line's timestamp is when it was printed even while both
/// ends of a migration keep every core busy.
fn realtime() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler on this thread (0) with a valid parameter.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something listens on `port`.
fn listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        if Instant::now() > deadline {
            bail!("nothing listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn wait_for_socket(path: &Path) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while UnixStream::connect(path).is_err() {
        if Instant::now() > deadline {
            bail!("{} never accepted", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A QMP session with a QEMU.
struct Qmp {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        wait_for_socket(path)?;
        let out = UnixStream::connect(path)?;
        let mut qmp = Qmp {
            input: BufReader::new(out.try_clone()?),
            out,
        };
        qmp.reply()?; // the greeting
        qmp.execute(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(qmp)
    }

    /// The next line that is not an event.
    fn reply(&mut self) -> Result<String> {
        loop {
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                bail!("QMP closed");
            }
            if field(&line, "event").is_err() {
                return Ok(line);
            }
        }
    }

    fn execute(&mut self, command: &str) -> Result<String> {
        writeln!(self.out, "{command}")?;
        let reply = self.reply()?;
        if field(&reply, "error").is_ok() {
            bail!("QMP {command}: {reply}");
        }
        Ok(reply)
    }

    /// Runs `migrate` to `uri` to its end: (total, downtime) as QEMU reports them.
    fn migrate(&mut self, uri: &str) -> Result<(f64, f64)> {
        self.execute(&format!(
            r#"{{"execute":"migrate","arguments":{{"uri":"{uri}"}}}}"#
        ))?;
        let deadline = Instant::now() + LIMIT;
        loop {
            let reply = self.execute(r#"{"execute":"query-migrate"}"#)?;
            let status = field(&reply, "status").unwrap_or_default();
            if status == "completed" {
                return Ok((number(&reply, "total-time")?, number(&reply, "downtime")?));
            }
            if status == "failed" || Instant::now() > deadline {
                bail!("QEMU's migration did not complete: {reply}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Field `key` of a JSON object, or of its `return` (a QMP reply).
fn field(text: &str, key: &str) -> Result<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(text.trim())?;
    let found = value.get(key).or_else(|| value.get("return")?.get(key));
    found
        .cloned()
        .with_context(|| format!("no {key} in {text}"))
}

fn number(text: &str, key: &str) -> Result<f64> {
    field(text, key)?
        .as_f64()
        .with_context(|| format!("{key} is not a number in {text}"))
}

fn qemu_guest(guest: &Path, memory: &str) -> Command {
    let mut c = Command::new("qemu-system-riscv64");
    c.args([
        "-M",
        "virt",
        "-nographic",
        "-m",
        memory,
        "-bios",
        "none",
        "-kernel",
    ])
    .arg(guest);
    c
}

fn visor_guest(visor: &Path, guest: &Path, memory: &str, socket: &Path) -> Command {
    let mut c = Command::new(visor);
    c.args(["run", "--bios", "none", "-m", memory, "--kernel"])
        .arg(guest)
        .arg("--api-sock")
        .arg(socket);
    c
}

/// What one migration took, in ms.
#[derive(Clone, Copy)]
struct Migration {
    total: f64,
    /// As the tool reports it.
    downtime: f64,
    /// As the guest's console shows it.
    gap: f64,
}

/// How long the guest's console stood still across the move: the time
/// from the source's last line to the destination's first, less the
/// median gap between the source's lines before (all in ms). The source
/// has stopped printing (it ended, or it is paused for good).
fn console_gap(source: &Running, destination: &Running) -> Result<f64> {
    let mut times = Vec::new();
    while let Ok((at, _)) = source.lines.recv_timeout(Duration::from_millis(200)) {
        times.push(at);
    }
    let (last, first) = match (times.last(), destination.lines.recv_timeout(LIMIT)) {
        (Some(&last), Ok((first, _))) => (last, first),
        _ => bail!("no console lines on both sides of the migration"),
    };
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        bail!("{} console lines before the migration", times.len());
    }
    gaps.sort();
    let usual = gaps[gaps.len() / 2];
    Ok(ms(first
        .saturating_duration_since(last)
        .saturating_sub(usual)))
}

/// One visor migration of `guest` once it printed `ready`.
fn visor_migration(visor: &Path, guest: &Path, ready: &str, dir: &Path) -> Result<Migration> {
    let port = free_port()?;
    let mut incoming = Command::new(visor);
    incoming
        .args(["run", "--incoming"])
        .arg(format!("tcp:127.0.0.1:{port}"));
    let destination = Running::start(incoming)?;
    listening(port)?;
    let socket = dir.join("visor-src.sock");
    let _ = std::fs::remove_file(&socket);
    let source = Running::start(visor_guest(visor, guest, MIGRATION_RAM, &socket))?;
    source.wait_for(ready)?;
    let out = Command::new(visor)
        .arg("migrate")
        .arg("--api-sock")
        .arg(&socket)
        .arg("--to")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .output()?;
    if !out.status.success() {
        bail!("visor migrate: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8_lossy(&out.stdout);
    let gap = console_gap(&source, &destination)?;
    drop((source, destination));
    Ok(Migration {
        total: number(&report, "total_ms")?,
        downtime: number(&report, "downtime_ms")?,
        gap,
    })
}

fn qemu_migration(guest: &Path, ready: &str, dir: &Path) -> Result<Migration> {
    let port = free_port()?;
    let mut incoming = qemu_guest(guest, MIGRATION_RAM);
    incoming
        .arg("-incoming")
        .arg(format!("tcp:127.0.0.1:{port}"));
    let destination = Running::start(incoming)?;
    listening(port)?;
    let socket = dir.join("qemu-src.sock");
    let _ = std::fs::remove_file(&socket);
    let mut command = qemu_guest(guest, MIGRATION_RAM);
    command
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()));
    let source = Running::start(command)?;
    source.wait_for(ready)?;
    let (total, downtime) = Qmp::connect(&socket)?.migrate(&format!("tcp:127.0.0.1:{port}"))?;
    let gap = console_gap(&source, &destination)?;
    drop((source, destination));
    Ok(Migration {
        total,
        downtime,
        gap,
    })
}

/// visor: (snapshot create, restore to the first line) in ms.
fn visor_snapshot(visor: &Path, guest: &Path, dir: &Path) -> Result<(f64, f64)> {
    let socket = dir.join("visor-snap.sock");
    let _ = std::fs::remove_file(&socket);
    let snapshot = dir.join("visor-snapshot");
    let _ = std::fs::remove_dir_all(&snapshot);
    let source = Running::start(visor_guest(visor, guest, SNAPSHOT_RAM, &socket))?;
    source.wait_for("count 20 ")?;
    let control = |args: &[&std::ffi::OsStr]| -> Result<()> {
        let out = Command::new(visor).args(args).output()?;
        if !out.status.success() {
            bail!("visor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let sock = socket.as_os_str();
    control(&["pause".as_ref(), "--api-sock".as_ref(), sock])?;
    let began = Instant::now();
    control(&[
        "snapshot".as_ref(),
        "--api-sock".as_ref(),
        sock,
        snapshot.as_os_str(),
    ])?;
    let create = began.elapsed();
    drop(source);
    let mut restore = Command::new(visor);
    restore.arg("run").arg("--restore").arg(&snapshot);
    let restored = Running::start(restore)?;
    let first = restored.wait_for("count ")?;
    Ok((ms(create), ms(first - restored.started)))
}

/// QEMU: (migrate to a file, start with -incoming file: to the first line) in ms.
fn qemu_snapshot(guest: &Path, dir: &Path) -> Result<(f64, f64)> {
    let socket = dir.join("qemu-snap.sock");
    let _ = std::fs::remove_file(&socket);
    let file = dir.join("qemu-snapshot.bin");
    let _ = std::fs::remove_file(&file);
    let mut command = qemu_guest(guest, SNAPSHOT_RAM);
    command
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()));
    let source = Running::start(command)?;
    source.wait_for("count 20 ")?;
    // Migrated to the file running (QEMU's destination keeps the source's
    // run state, so a paused source would restore paused).
    let (create, _) = Qmp::connect(&socket)?.migrate(&format!("file:{}", file.display()))?;
    drop(source);
    let mut restore = qemu_guest(guest, SNAPSHOT_RAM);
    restore
        .arg("-incoming")
        .arg(format!("file:{}", file.display()));
    let restored = Running::start(restore)?;
    let first = restored.wait_for("count ")?;
    Ok((create, ms(first - restored.started)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Medians of `RUNS` migrations.
fn migration_medians(mut f: impl FnMut() -> Result<Migration>) -> Result<Migration> {
    let runs = (0..RUNS).map(|_| f()).collect::<Result<Vec<_>>>()?;
    let median_of = |pick: fn(&Migration) -> f64| {
        ms(median(
            runs.iter()
                .map(|m| Duration::from_secs_f64(pick(m) / 1e3))
                .collect(),
        ))
    };
    Ok(Migration {
        total: median_of(|m| m.total),
        downtime: median_of(|m| m.downtime),
        gap: median_of(|m| m.gap),
    })
}

/// Medians of `RUNS` runs of `f`'s pair.
fn medians(mut f: impl FnMut() -> Result<(f64, f64)>) -> Result<(f64, f64)> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..RUNS {
        let (x, y) = f()?;
        a.push(Duration::from_secs_f64(x / 1e3));
        b.push(Duration::from_secs_f64(y / 1e3));
    }
    Ok((ms(median(a)), ms(median(b))))
}

pub fn run(root: &Path) -> Result<()> {
    let guests = crate::bench::riscv_guests(root)?;
    let visor = root.join("target/release/visor");
    let dir: PathBuf = root.join("target/bench-migration");
    std::fs::create_dir_all(&dir)?;
    println!("Versions: {}.", riscv_versions()?);
    println!();
    println!("| live migration, {MIGRATION_RAM} guest | visor total | visor downtime: reported / console gap | QEMU total | QEMU downtime: reported / console gap | console gap, QEMU / visor |");
    println!("|---|---|---|---|---|---|");
    for (name, guest, ready) in [
        (
            "idle (counter, a line per ms)",
            "counter_fast",
            "count 100 ",
        ),
        ("write-heavy (dirtier)", "dirtier", "pass 3"),
    ] {
        let guest = guests.join(format!("{guest}.elf"));
        eprintln!("[bench] migrating the {name} guest, {RUNS} runs each");
        let v = migration_medians(|| visor_migration(&visor, &guest, ready, &dir))?;
        let q = migration_medians(|| qemu_migration(&guest, ready, &dir))?;
        println!(
            "| {name} | {:.1} ms | {:.2} / {:.2} ms | {:.1} ms | {:.2} / {:.2} ms | {:.1}× |",
            v.total,
            v.downtime,
            v.gap,
            q.total,
            q.downtime,
            q.gap,
            q.gap / v.gap.max(0.01)
        );
    }
    println!();
    let guest = guests.join("counter_fast.elf");
    eprintln!("[bench] snapshot and restore of a {SNAPSHOT_RAM} guest, {RUNS} runs each");
    let (vc, vr) = medians(|| visor_snapshot(&visor, &guest, &dir))?;
    let (qc, qr) = medians(|| qemu_snapshot(&guest, &dir))?;
    println!("| snapshot, {SNAPSHOT_RAM} guest | visor | QEMU | QEMU / visor |");
    println!("|---|---|---|---|");
    println!(
        "| create (paused) | {vc:.1} ms | {qc:.1} ms | {:.1}× |",
        qc / vc
    );
    println!(
        "| restore: process start to the guest's first line | {vr:.1} ms | {qr:.1} ms | {:.1}× |",
        qr / vr
    );
    Ok(())
}
