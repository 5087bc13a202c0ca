//! `cargo xtask fuzz [SECONDS] [TARGET…]`: builds the libFuzzer targets in
//! `fuzz/` and runs each for SECONDS (every target when none is named).
//! `cargo xtask test` runs each for [`CI_SECONDS`].
//!
//! On the stable toolchain, without cargo-fuzz: the targets are built with
//! the flags `cargo fuzz build` passes (LLVM's SanitizerCoverage with
//! inline 8-bit counters, PC tables and compare tracing; debug assertions
//! and overflow checks on) for the host target explicitly, so build
//! scripts stay uninstrumented. AddressSanitizer needs a nightly compiler
//! and is not used; the bodies are safe Rust over the crates' own code.
//! Each target keeps its corpus in `fuzz/corpus/TARGET` and leaves a
//! crashing input in `fuzz/artifacts/TARGET/`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Seconds `cargo xtask test` gives each target.
pub const CI_SECONDS: u64 = 20;
/// Seconds `cargo xtask fuzz` gives each target unless told.
const DEFAULT_SECONDS: u64 = 300;
/// libFuzzer's memory limit per target: a body that needs more has a bug.
const RSS_LIMIT_MB: u64 = 2048;
const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: &[&str] = &[
    "decoder",
    "hart_step",
    "jit_vs_interpreter",
    "platform_devices",
    "loaders",
    "kvm_exits",
    "virtio_blk_chains",
    "virtio_mmio_registers",
    "virtio_net_console",
    "pata_registers",
];

const SANCOV_FLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cdebug-assertions",
    "-Coverflow-checks",
    "--cfg",
    "fuzzing",
];

/// `cargo xtask fuzz`'s arguments: seconds first, then target names.
pub fn run_from_args(root: &Path, args: &[String]) -> Result<()> {
    let (seconds, names) = match args.split_first() {
        Some((first, rest)) if first.parse::<u64>().is_ok() => (first.parse()?, rest),
        _ => (DEFAULT_SECONDS, args),
    };
    let targets: Vec<&str> = if names.is_empty() {
        TARGETS.to_vec()
    } else {
        for name in names {
            if !TARGETS.contains(&name.as_str()) {
                bail!(
                    "no fuzz target {name:?} (there are: {})",
                    TARGETS.join(", ")
                );
            }
        }
        names.iter().map(String::as_str).collect()
    };
    run(root, &targets, seconds)
}

/// Builds `targets` and runs each for `seconds`; fails on the first crash.
pub fn run(root: &Path, targets: &[&str], seconds: u64) -> Result<()> {
    let dir = root.join("fuzz");
    let started = std::time::Instant::now();
    let mut build = super::cargo();
    build
        .current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", HOST_TARGET])
        .env("RUSTFLAGS", SANCOV_FLAGS.join(" "));
    for target in targets {
        build.args(["--bin", target]);
    }
    super::run(build)?;
    eprintln!(
        "[xtask] fuzz targets built ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    for target in targets {
        let started = std::time::Instant::now();
        let corpus = dir.join("corpus").join(target);
        let artifacts = dir.join("artifacts").join(target);
        for d in [&corpus, &artifacts] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let binary = dir.join(format!("target/{HOST_TARGET}/release/{target}"));
        let output = Command::new(&binary)
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg(&corpus)
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "fuzz target {target} failed ({}); the input is in {}",
                output.status,
                artifacts.display()
            );
        }
        let runs = final_stat(&log, "stat::number_of_executed_units").unwrap_or(0);
        let coverage = log
            .lines()
            .rev()
            .find_map(|l| l.split("cov: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?");
        eprintln!(
            "[xtask] fuzz {target}: {runs} inputs, coverage {coverage}, no failure ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A number libFuzzer's `-print_final_stats` printed.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        l.strip_prefix(name)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    })
}
