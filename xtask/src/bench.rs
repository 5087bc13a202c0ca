//! `cargo xtask bench`: visor against `qemu-system-riscv64 -M virt` (TCG) on
//! the same firmware, kernel, initramfs and programs, in one run. Prints a
//! Markdown table (median of several runs) for the README.

use crate::Images;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const RUNS: usize = 5;
const INIT_MARKER: &[u8] = b"visor-init: ready";

/// The riscv64 `fw_dynamic.bin` that Debian's `opensbi` package installs
/// (it ships a riscv32 build too), which visor boots by default and QEMU is
/// given, so both run the same firmware.
pub(crate) fn firmware() -> Result<PathBuf> {
    const WANTED: &str = "/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
    let out = Command::new("dpkg").args(["-L", "opensbi"]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with(WANTED))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("the opensbi package has no file ending in {WANTED}"))
}

/// The version `qemu_binary --version` reports ("10.0.2").
pub(crate) fn qemu_version(qemu_binary: &str) -> Result<String> {
    let out = Command::new(qemu_binary).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{qemu_binary} --version printed no version"))
}

/// The installed `opensbi` package's upstream version ("1.5.1"; Debian's
/// epoch and packaging revision dropped).
pub(crate) fn opensbi_version() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "opensbi"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let upstream = text.rsplit(':').next().unwrap_or_default();
    Ok(upstream.split('-').next().unwrap_or_default().to_owned())
}

/// "QEMU 10.0.2, OpenSBI 1.5.1": what the RISC-V tables were measured with.
pub(crate) fn riscv_versions() -> Result<String> {
    Ok(format!(
        "QEMU {}, OpenSBI {}",
        qemu_version("qemu-system-riscv64")?,
        opensbi_version()?
    ))
}

/// Starts `command` and returns the time until its output contains `marker`.
pub(crate) fn time_to_marker(mut command: Command, marker: &[u8]) -> Result<Duration> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break Err(anyhow::anyhow!(
                "{command:?} ended before printing the marker"
            ));
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(marker.len()).any(|w| w == marker) {
            break Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(300) {
            break Err(anyhow::anyhow!("{command:?} took over 300 s"));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// How a child process ended and what it cost.
pub(crate) struct Usage {
    pub status: std::process::ExitStatus,
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident set size.
    pub max_rss_kib: u64,
}

/// Waits for `child` (wait4) and returns its status and resource usage.
pub(crate) fn wait_with_usage(child: &mut std::process::Child) -> Result<Usage> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Usage {
        status: std::process::ExitStatus::from_raw(status),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

/// Runs `command` to completion and returns its wall time and stderr.
fn time_run(mut command: Command) -> Result<(Duration, String)> {
    let started = Instant::now();
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(crate) fn qemu() -> Command {
    let mut c = Command::new("qemu-system-riscv64");
    c.args(["-M", "virt", "-nographic", "-m", "128M"]);
    c
}

/// `bench [engine|workloads|paravirt|kvm]`: engine (which includes the
/// workloads) and paravirt when no argument is given.
pub fn run(root: &Path, images: &Images, args: &[String]) -> Result<()> {
    crate::run({
        let mut c = crate::cargo();
        c.current_dir(root)
            .args(["build", "--release", "--quiet", "-p", "visor"]);
        c
    })?;
    let which = args.first().map(String::as_str);
    if !matches!(
        which,
        None | Some("engine")
            | Some("workloads")
            | Some("paravirt")
            | Some("kvm")
            | Some("hypervisor")
            | Some("type1")
            | Some("migration")
            | Some("distro")
    ) {
        bail!(
            "usage: cargo xtask bench [engine|workloads|paravirt|kvm|hypervisor|type1|migration|distro]"
        );
    }
    // Another build (an older commit's) can be measured the same way.
    let visor = std::env::var_os("VISOR_BENCH_VISOR")
        .map_or_else(|| root.join("target/release/visor"), PathBuf::from);
    if which == Some("distro") {
        return crate::bench_distro::run(root, &visor);
    }
    if which == Some("migration") {
        return crate::bench_migration::run(root);
    }
    if which == Some("type1") {
        return crate::bench_type1::run(root, images);
    }
    if which == Some("hypervisor") {
        return crate::bench_hypervisor::run(root);
    }
    if which == Some("kvm") {
        return crate::bench_kvm::run(root);
    }
    if which == Some("workloads") {
        return crate::bench_workloads::run(root, images);
    }
    if which != Some("paravirt") {
        engine(root, images)?;
    }
    if which != Some("engine") {
        println!();
        crate::bench_paravirt::run(&visor, images)?;
        println!();
        crate::bench_hypervisor::run(root)?;
    }
    Ok(())
}

/// Builds the bare-metal RISC-V programs (guests/riscv) and returns their directory.
pub(crate) fn riscv_guests(root: &Path) -> Result<PathBuf> {
    let guests = root.join("target/guests/riscv");
    crate::run({
        let mut c = Command::new("make");
        c.arg("-s")
            .arg("-C")
            .arg(root.join("guests/riscv"))
            .arg(format!("OUT={}", guests.display()));
        c
    })?;
    Ok(guests)
}

/// visor's interpreter and JIT against QEMU TCG: Linux boot and a CPU-bound program.
fn engine(root: &Path, images: &Images) -> Result<()> {
    let guests = riscv_guests(root)?;
    let visor_bin = root.join("target/release/visor");
    let visor = |engine: &str| {
        let mut c = Command::new(&visor_bin);
        c.args(["run", "-m", "128M", "--engine", engine]);
        c
    };
    const ENGINES: [&str; 2] = ["interp", "jit"];
    let firmware = firmware()?;

    eprintln!("[bench] Linux boot to init, {RUNS} runs each");
    let mut boot: [Vec<Duration>; 3] = Default::default();
    for _ in 0..RUNS {
        for (i, engine) in ENGINES.iter().enumerate() {
            let mut v = visor(engine);
            v.arg("--kernel")
                .arg(&images.linux)
                .arg("--initrd")
                .arg(&images.initramfs);
            boot[i].push(time_to_marker(v, INIT_MARKER)?);
        }
        let mut q = qemu();
        q.arg("-kernel")
            .arg(&images.linux)
            .arg("-initrd")
            .arg(&images.initramfs)
            .arg("-bios")
            .arg(&firmware)
            .args(["-append", "console=ttyS0"]);
        boot[2].push(time_to_marker(q, INIT_MARKER)?);
    }

    eprintln!("[bench] CPU-bound program (guests/riscv/bench_cpu.c), {RUNS} runs each");
    let program = guests.join("bench_cpu.elf");
    let mut cpu: [Vec<Duration>; 3] = Default::default();
    let mut mips = 0.0;
    for _ in 0..RUNS {
        for (i, engine) in ENGINES.iter().enumerate() {
            let mut v = visor(engine);
            v.args(["--bios", "none", "--stats", "--kernel"])
                .arg(&program);
            let (t, stderr) = time_run(v)?;
            cpu[i].push(t);
            if let Some(m) = stderr
                .split('(')
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|_| i == 0)
            {
                mips = m;
            }
        }
        let mut q = qemu();
        q.args(["-bios", "none", "-kernel"]).arg(&program);
        cpu[2].push(time_run(q)?.0);
    }

    // The same C, compiled for the host with the same optimisation level.
    let native_source = guests.join("bench_cpu_native.c");
    let native = guests.join("bench_cpu.native");
    let source = std::fs::read_to_string(root.join("guests/riscv/bench_cpu.c"))?;
    let shim = root.join("guests/riscv/native_runtime.h");
    std::fs::write(
        &native_source,
        source.replace(
            "#include \"runtime.h\"",
            &format!("#include \"{}\"", shim.display()),
        ),
    )?;
    crate::run({
        let mut c = Command::new("cc");
        c.args(["-O2", "-o"]).arg(&native).arg(&native_source);
        c
    })?;
    let native_time = median(
        (0..RUNS)
            .map(|_| time_run(Command::new(&native)).map(|(t, _)| t))
            .collect::<Result<Vec<_>>>()?,
    );

    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let ratio = |a: Duration, b: Duration| format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64());
    println!("Versions: {}.", riscv_versions()?);
    println!();
    println!("| workload | visor interp | visor jit | qemu-system-riscv64 (TCG) | interp / QEMU | jit / QEMU |");
    println!("|---|---|---|---|---|---|");
    let cpu_jit = median(cpu[1].clone());
    for (name, runs) in [
        (
            "Linux boot to init (OpenSBI + Linux 6.1 + busybox, 1 hart)",
            boot,
        ),
        ("CPU-bound program: sieve, hash, sort, FP (bare metal)", cpu),
    ] {
        let [interp, jit, qemu] = runs.map(median);
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            s(interp),
            s(jit),
            s(qemu),
            ratio(interp, qemu),
            ratio(jit, qemu)
        );
    }
    println!();
    println!(
        "The same program compiled for the host (cc -O2) runs in {:.3} s: the JIT takes {:.0}× as long.",
        native_time.as_secs_f64(),
        cpu_jit.as_secs_f64() / native_time.as_secs_f64()
    );
    println!("visor's interpreter retired {mips:.0} million guest instructions per second on the CPU-bound program.");
    println!();
    crate::bench_workloads::run(root, images)
}
