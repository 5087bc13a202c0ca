//! Bad input gets a one-line error and a non-zero exit, never a panic.

mod common;
use common::*;
use std::time::Duration;

fn expect_error(args: &[&str], needle: &str) {
    let mut cmd = visor();
    cmd.args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr:?}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {stderr:?}"
    );
}

fn scratch(name: &str, bytes: &[u8]) -> String {
    let dir = workspace_root().join("target/test-tmp/bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn missing_kernel_file() {
    expect_error(
        &[
            "run",
            "--bios",
            "none",
            "--kernel",
            "/nonexistent/kernel.elf",
        ],
        "/nonexistent/kernel.elf",
    );
}

#[test]
fn garbage_kernel() {
    let path = scratch("garbage.bin", &[0x5a; 4096]);
    expect_error(
        &["run", "--bios", "none", "--kernel", &path],
        "not an ELF program or a RISC-V Linux Image",
    );
}

#[test]
fn truncated_elf() {
    let path = scratch("truncated.elf", b"\x7fELF\x02\x01\x01\0\0\0");
    expect_error(
        &["run", "--bios", "none", "--kernel", &path],
        "malformed ELF",
    );
}

#[test]
fn elf_for_another_architecture() {
    // This test binary itself is an x86-64 ELF.
    let me = std::env::current_exe().unwrap().display().to_string();
    expect_error(
        &["run", "--bios", "none", "--kernel", &me],
        "ELF for x86-64",
    );
}

#[test]
fn initrd_that_does_not_fit() {
    let big = scratch("big.initrd", &vec![0u8; 3 << 20]);
    expect_error(
        &[
            "run",
            "--bios",
            "none",
            "-m",
            "2M",
            "--kernel",
            guest("int").to_str().unwrap(),
            "--initrd",
            &big,
        ],
        "does not fit",
    );
}

#[test]
fn invalid_memory_sizes() {
    let elf = guest("int").display().to_string();
    expect_error(
        &["run", "--bios", "none", "-m", "lots", "--kernel", &elf],
        "not a size",
    );
    expect_error(
        &["run", "--bios", "none", "-m", "512K", "--kernel", &elf],
        "out of range",
    );
    expect_error(
        &["run", "--bios", "none", "-m", "1000G", "--kernel", &elf],
        "out of range",
    );
}

#[test]
fn invalid_hart_counts() {
    let elf = guest("int").display().to_string();
    expect_error(
        &["run", "--bios", "none", "--smp", "0", "--kernel", &elf],
        "hart count 0",
    );
    expect_error(
        &["run", "--bios", "none", "--smp", "9", "--kernel", &elf],
        "hart count 9",
    );
}

#[test]
fn missing_firmware_file() {
    expect_error(
        &[
            "run",
            "--bios",
            "/nonexistent/fw.bin",
            "--kernel",
            guest("int").to_str().unwrap(),
        ],
        "/nonexistent/fw.bin",
    );
}
