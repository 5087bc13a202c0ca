//! The H extension's cost: the CPU workload set (guests/linux/workloads.c,
//! bare-metal in guests/riscv/vs_bench.c) in S-mode and in VS-mode (the
//! same Sv39 tables over an Sv39x4 G-stage), and the round trip of a trap
//! from VS into HS and back, under visor's JIT and QEMU TCG from the same
//! ELF. The program times itself with the 10 MHz `time` CSR.

use crate::bench::{median, qemu, riscv_versions, RUNS};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const WORKLOADS: [&str; 4] = ["integer", "memory", "branchy", "fp"];
const MODES: [&str; 2] = ["S", "VS"];
/// The `time` CSR's rate on visor's and QEMU's virt boards.
const TIMEBASE_HZ: f64 = 10_000_000.0;

/// One run: (workload, mode) -> (time, checksum), and the trap round trip's time per trip.
struct Run {
    workloads: BTreeMap<(String, String), (Duration, String)>,
    roundtrip: Duration,
}

fn ticks(t: u64) -> Duration {
    Duration::from_secs_f64(t as f64 / TIMEBASE_HZ)
}

fn run_once(mut command: Command) -> Result<Run> {
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("{command:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("RESULT pass") {
        bail!("{command:?} did not finish:\n{text}");
    }
    let mut run = Run {
        workloads: BTreeMap::new(),
        roundtrip: Duration::ZERO,
    };
    for line in text.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["bench", "trap-roundtrip", count, t] => {
                run.roundtrip = ticks(t.parse()?) / count.parse::<u32>()?;
            }
            ["bench", name, mode, t, checksum] => {
                run.workloads.insert(
                    (name.to_string(), mode.to_string()),
                    (ticks(t.parse()?), checksum.to_string()),
                );
            }
            _ => {}
        }
    }
    Ok(run)
}

pub fn run(root: &Path) -> Result<()> {
    let guests = crate::bench::riscv_guests(root)?;
    let program = guests.join("vs_bench.elf");
    let visor = || {
        let mut c = Command::new(root.join("target/release/visor"));
        c.args([
            "run", "--engine", "jit", "-m", "256M", "--bios", "none", "--kernel",
        ])
        .arg(&program);
        c
    };
    let qemu_run = || {
        let mut c = qemu();
        c.args(["-m", "256M", "-bios", "none", "-kernel"])
            .arg(&program);
        c
    };
    eprintln!("[bench] workloads in S- and VS-mode (guests/riscv/vs_bench.c), {RUNS} runs each");
    let mut runs: [Vec<Run>; 2] = Default::default();
    for _ in 0..RUNS {
        runs[0].push(run_once(visor())?);
        runs[1].push(run_once(qemu_run())?);
    }
    // Every run of every workload computes the same checksum.
    let reference = &runs[0][0].workloads;
    for run in runs.iter().flatten() {
        for (key, (_, checksum)) in &run.workloads {
            let expected = &reference[&(key.0.clone(), "S".to_string())].1;
            if checksum != expected {
                bail!("{key:?}: checksum {checksum}, expected {expected}");
            }
        }
    }
    let time = |engine: usize, workload: &str, mode: &str| {
        median(
            runs[engine]
                .iter()
                .map(|r| r.workloads[&(workload.to_string(), mode.to_string())].0)
                .collect(),
        )
        .as_secs_f64()
    };
    println!("Versions: {}.", riscv_versions()?);
    println!();
    println!("| workload | visor S-mode | visor VS-mode | VS / S | QEMU S-mode | QEMU VS-mode | VS / S | visor VS throughput vs QEMU VS |");
    println!("|---|---|---|---|---|---|---|---|");
    for w in WORKLOADS {
        let [vs_s, vs_v] = MODES.map(|m| time(0, w, m));
        let [q_s, q_v] = MODES.map(|m| time(1, w, m));
        println!(
            "| {w} | {vs_s:.3} s | {vs_v:.3} s | {:.2} | {q_s:.3} s | {q_v:.3} s | {:.2} | {:.2}× |",
            vs_v / vs_s,
            q_v / q_s,
            q_v / vs_v
        );
    }
    let roundtrip = |engine: usize| {
        median(runs[engine].iter().map(|r| r.roundtrip).collect()).as_secs_f64() * 1e9
    };
    println!();
    println!(
        "Trap round trip VS -> HS -> VS (ecall, a six-instruction handler, sret): visor {:.0} ns, QEMU {:.0} ns.",
        roundtrip(0),
        roundtrip(1)
    );
    Ok(())
}
