//! The guest test programs check the CPU from the inside and exit through
//! `tohost`; each must pass under visor's interpreter.

mod common;
use common::*;
use std::time::Duration;

fn run_program(name: &str) {
    run_program_with(name, &[]);
}

fn run_program_with(name: &str, extra: &[&str]) {
    let mut cmd = visor();
    cmd.args(["run", "--bios", "none", "--kernel"])
        .arg(guest(name))
        .args(extra);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("RESULT pass"),
        "{name} did not pass:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: exit status from tohost"
    );
}

/// Every ISA and privileged program passes under each engine (the tests
/// above use the default, the JIT): the interpreter, and lock-step
/// (translated blocks checked against the interpreter; a divergence ends
/// visor with an error).
#[test]
fn programs_pass_under_the_interpreter_and_lockstep() {
    for name in PROGRAMS {
        for engine in ["interp", "lockstep"] {
            run_program_with(name, &["--engine", engine]);
        }
    }
}

#[test]
fn hostile_virtio_driver_gets_errors_and_a_usable_device() {
    let dir = scratch_dir("hostile");
    let disk = dir.join("disk.img");
    let mut bytes = vec![0u8; 64 << 10];
    bytes[512..526].copy_from_slice(b"visor-sector-1");
    std::fs::write(&disk, &bytes).unwrap();
    run_program_with("virtio_hostile", &["--disk", disk.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&disk).unwrap(),
        bytes,
        "no bad request changed the disk"
    );
}

#[test]
fn integer() {
    run_program("int");
}
#[test]
fn atomics() {
    run_program("amo");
}
#[test]
fn floating_point() {
    run_program("fp");
}
#[test]
fn compressed() {
    run_program("compressed");
}
#[test]
fn traps_and_delegation() {
    run_program("traps");
}
#[test]
fn virtual_memory_sv39_sv48() {
    run_program("vm");
}
#[test]
fn interrupts() {
    run_program("interrupts");
}
#[test]
fn physical_memory_protection() {
    run_program("pmp");
}

/// tohost follows the HTIF convention exactly: odd n exits with n >> 1.
#[test]
fn tohost_exit_code_is_propagated() {
    let dir = tempdir();
    let src = dir.join("exit42.S");
    std::fs::write(
        &src,
        ".globl _start\n.section .text.init\n_start:\n la t0, tohost\n li t1, (42 << 1) | 1\n sd t1, 0(t0)\n1: j 1b\n\
         .section .tohost,\"aw\"\n.align 3\n.globl tohost\ntohost: .dword 0\n",
    )
    .unwrap();
    let elf = dir.join("exit42.elf");
    let status = std::process::Command::new("riscv64-unknown-elf-gcc")
        .args([
            "-nostdlib",
            "-nostartfiles",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-Wl,--no-warn-rwx-segments",
            "-T",
        ])
        .arg(workspace_root().join("guests/riscv/link.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let mut cmd = visor();
    cmd.args(["run", "--bios", "none", "--kernel"]).arg(&elf);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(42));
}

fn tempdir() -> std::path::PathBuf {
    let dir = workspace_root()
        .join("target/test-tmp")
        .join(format!("{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
