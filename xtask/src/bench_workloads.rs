//! The CPU workload set (guests/linux/workloads.c: integer, memory, branchy,
//! floating point) inside Linux, under visor's interpreter, visor's JIT and
//! QEMU TCG, on the same kernel and initramfs, and natively on the host from
//! the same source. Each workload is timed from outside, between the
//! "start" and "done" lines it prints; checksums must agree everywhere.

use crate::bench::{firmware, median, qemu, riscv_versions, RUNS};
use crate::Images;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The order the program runs them in.
pub(crate) const WORKLOADS: [&str; 4] = ["integer", "memory", "branchy", "fp"];

/// One run: each workload's time and checksum.
pub(crate) type Timings = BTreeMap<String, (Duration, String)>;

/// Runs `command` to its end, timing the workloads from the lines it prints.
fn time_workloads(command: Command) -> Result<Timings> {
    observe_workloads(command, &WORKLOADS).map(|o| o.timings)
}

/// What a run of the workload set showed.
pub(crate) struct Observed {
    pub timings: Timings,
    /// From the start to the first workload's start (boot to userspace).
    pub boot: Duration,
    /// Every line it printed.
    pub lines: Vec<String>,
}

/// Runs `command` to its end, timing the workloads from the lines it
/// prints (with or without a VM's "[name]" prefix) and keeping the lines;
/// fails unless every one of `expected` finished.
pub(crate) fn observe_workloads(mut command: Command, expected: &[&str]) -> Result<Observed> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{command:?}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let (mut pending, mut buf) = (Vec::new(), [0u8; 4096]);
    let mut starts = BTreeMap::new();
    let mut timings = Timings::new();
    let mut boot = None;
    let mut lines = Vec::new();
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = without_escapes(&String::from_utf8_lossy(&line));
            let mut words: Vec<&str> = line.split_whitespace().collect();
            if words
                .first()
                .is_some_and(|w| w.starts_with('[') && w.ends_with(']'))
            {
                words.remove(0);
            }
            // What a program prints may follow other output on the line
            // (a login prompt on a second console).
            if let Some(at) = words.iter().rposition(|w| *w == "workload") {
                words.drain(..at);
            }
            match words.as_slice() {
                ["workload", name, "start"] => {
                    boot.get_or_insert(now - started);
                    starts.insert(name.to_string(), now);
                }
                ["workload", name, "done", checksum] => {
                    let Some(start) = starts.get(*name) else {
                        bail!("{command:?}: {name} finished without starting");
                    };
                    timings.insert(name.to_string(), (now - *start, checksum.to_string()));
                }
                _ => {}
            }
            lines.push(line);
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            bail!("{command:?} took over 600 s");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(missing) = expected.iter().find(|name| !timings.contains_key(**name)) {
        bail!("{command:?} never finished workload {missing}");
    }
    Ok(Observed {
        timings,
        boot: boot.unwrap_or_default(),
        lines,
    })
}

/// `line` without terminal escape sequences (CSI `ESC [ … final`, OSC
/// `ESC ] … BEL`, and two-byte ones), which a console may put before what
/// a program prints (systemd resets the terminal it gives a service).
fn without_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                let mut last = '\0';
                for c in chars.by_ref() {
                    if c == '\x07' || (last == '\x1b' && c == '\\') {
                        break;
                    }
                    last = c;
                }
            }
            _ => {}
        }
    }
    out
}

/// Builds the program for riscv64 Linux (static) and for the host, and an
/// initramfs: the project's, plus /bench/workloads and /bench/run (an init
/// that runs them and powers off). Returns (initramfs, native binary).
pub(crate) fn build(
    root: &Path,
    images: &Images,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let out = root.join("target/guests/linux");
    let tree = out.join("bench-root");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("bench"))?;
    let source = root.join("guests/linux/workloads.c");
    crate::run({
        let mut c = Command::new("riscv64-linux-gnu-gcc");
        c.args(["-O2", "-static", "-o"])
            .arg(tree.join("bench/workloads"))
            .arg(&source)
            .arg("-lm");
        c
    })?;
    let native = out.join("workloads.native");
    crate::run({
        let mut c = Command::new("cc");
        c.args(["-O2", "-o"]).arg(&native).arg(&source).arg("-lm");
        c
    })?;
    let init = tree.join("bench/run");
    std::fs::write(
        &init,
        "#!/bin/busybox sh\n/bench/workloads \"$@\"\n/bin/busybox poweroff -f\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    // Linux unpacks concatenated (compressed) cpio archives in turn.
    let extra = out.join("bench.cpio.gz");
    crate::run({
        let mut c = Command::new("sh");
        c.current_dir(&tree).arg("-c").arg(format!(
            "find . | sort | cpio -o -H newc --quiet | gzip -1 > {}",
            extra.display()
        ));
        c
    })?;
    let initramfs = out.join("initramfs-bench.cpio.gz");
    let mut joined = std::fs::read(&images.initramfs)?;
    joined.extend(std::fs::read(&extra)?);
    std::fs::write(&initramfs, joined)?;
    Ok((initramfs, native))
}

/// Prints the Markdown table; returns nothing else.
pub fn run(root: &Path, images: &Images) -> Result<()> {
    let (initramfs, native) = build(root, images)?;
    let append = "console=ttyS0 rdinit=/bench/run";
    let visor_bin = root.join("target/release/visor");
    let visor = |engine: &str| {
        let mut c = Command::new(&visor_bin);
        c.args(["run", "-m", "256M", "--engine", engine, "--kernel"])
            .arg(&images.linux)
            .arg("--initrd")
            .arg(&initramfs)
            .args(["--append", append]);
        c
    };
    eprintln!("[bench] CPU workloads inside Linux (guests/linux/workloads.c), {RUNS} runs each");
    // interp, jit, QEMU, native
    let mut runs: [Vec<Timings>; 4] = Default::default();
    let firmware = firmware()?;
    for _ in 0..RUNS {
        runs[0].push(time_workloads(visor("interp"))?);
        runs[1].push(time_workloads(visor("jit"))?);
        let mut q = qemu();
        q.args(["-m", "256M", "-bios"])
            .arg(&firmware)
            .arg("-kernel")
            .arg(&images.linux)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", append]);
        runs[2].push(time_workloads(q)?);
        runs[3].push(time_workloads(Command::new(&native))?);
    }
    let reference = &runs[3][0];
    for run in runs.iter().flatten() {
        for (name, (_, checksum)) in run {
            if *checksum != reference[name].1 {
                bail!(
                    "workload {name}: checksum {checksum}, natively {}",
                    reference[name].1
                );
            }
        }
    }
    let seconds = |d: Duration| d.as_secs_f64();
    println!("Versions: {}.", riscv_versions()?);
    println!();
    println!("| workload (inside Linux) | visor interp | visor jit | qemu-system-riscv64 (TCG) | native (cc -O2) | jit throughput vs QEMU | jit vs interp | jit / native time |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |name: &str, t: &[f64]| {
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.2}× | {:.1}× | {:.1}× |",
            t[0],
            t[1],
            t[2],
            t[3],
            t[2] / t[1],
            t[0] / t[1],
            t[1] / t[3]
        )
    };
    let mut totals = [0.0f64; 4];
    let mut log_ratio = 0.0;
    for name in WORKLOADS {
        let t: Vec<f64> = runs
            .iter()
            .map(|r| seconds(median(r.iter().map(|run| run[name].0).collect())))
            .collect();
        for (total, v) in totals.iter_mut().zip(&t) {
            *total += v;
        }
        log_ratio += (t[2] / t[1]).ln();
        row(name, &t);
    }
    row("**all four**", &totals);
    println!();
    println!(
        "Geometric mean of the JIT's per-workload throughput against QEMU: {:.2}×.",
        (log_ratio / WORKLOADS.len() as f64).exp()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_are_dropped() {
        let line = "\x1b[!p\x1b]104\x07\x1b[?7hworkload spawn start\x1b[0m\n";
        assert_eq!(super::without_escapes(line), "workload spawn start\n");
        assert_eq!(super::without_escapes("\x1b]0;title\x1b\\x"), "x");
    }
}
