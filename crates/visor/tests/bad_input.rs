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

/// Each cause appears once: the OS error is not repeated by the layers
/// that pass it on.
fn expect_cause_once(args: &[&str], cause: &str) {
    let mut cmd = visor();
    cmd.args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches(cause).count(), 1, "{args:?}: {stderr:?}");
}

#[test]
fn a_missing_file_is_named_once_with_its_cause() {
    let enoent = "No such file or directory";
    expect_cause_once(&["run", "--kernel", "/nonexistent"], enoent);
    expect_cause_once(
        &["run", "--bios", "none", "--kernel", "/nonexistent"],
        enoent,
    );
    let me = std::env::current_exe().unwrap().display().to_string();
    expect_cause_once(
        &[
            "run",
            "--bios",
            "none",
            "--kernel",
            &me,
            "--disk",
            "/nonexistent.img",
        ],
        enoent,
    );
    if std::path::Path::new("/dev/kvm").exists() {
        expect_cause_once(
            &["run", "--accel", "kvm", "--kernel", "/nonexistent"],
            enoent,
        );
    }
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
fn images_that_overlap_are_refused() {
    // A raw "firmware" at the start of RAM, and a program linked there too.
    let firmware = scratch("firmware.bin", &[0x13; 8192]);
    let program = guest("int").display().to_string();
    expect_error(
        &["run", "--bios", &firmware, "--kernel", &program],
        "overlaps",
    );
    expect_error(
        &["run", "--bios", &firmware, "--kernel", &program],
        "firmware",
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
    expect_error(
        &["run", "--bios", "none", "-m", "2049K", "--kernel", &elf],
        "memory size 2098176 bytes is not a whole number of 4 KiB pages",
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

fn with_program(extra: &[&str], needle: &str) {
    let program = guest("int").display().to_string();
    let mut args = vec!["run", "--bios", "none", "--kernel", &program];
    args.extend_from_slice(extra);
    expect_error(&args, needle);
}

#[test]
fn bad_disks_and_nics() {
    with_program(
        &["--disk", "/nonexistent/disk.img"],
        "disk image /nonexistent/disk.img: No such file",
    );
    with_program(
        &["--disk", "x.img,writeback"],
        "unknown disk option `writeback`",
    );
    with_program(&["--disk", ",readonly"], "a disk needs a path");
    let disk = scratch("small.img", &[0; 4096]);
    let ide = format!("{disk},if=ide");
    with_program(&["--disk", &ide, "--disk", &ide], "takes one disk");
    let disks: Vec<String> = (0..7)
        .map(|i| scratch(&format!("small{i}.img"), &[0; 4096]))
        .collect();
    let many: Vec<&str> = disks.iter().flat_map(|d| ["--disk", d.as_str()]).collect();
    with_program(&many, "too many virtio devices");
    let same = format!(
        "{}/../bad-input/small.img",
        std::path::Path::new(&disk).parent().unwrap().display()
    );
    with_program(
        &["--disk", &disk, "--disk", &same],
        "small.img is given twice",
    );
    with_program(&["--disk", &disk, "--disk", &ide], "is given twice");
    with_program(&["--net", "mac=52:54:00:00:00:01"], "--net needs tap=NAME");
    with_program(&["--net", "tap=t0,mac=zz"], "is not a MAC address");
    with_program(
        &["--net", "tap=an-interface-name-too-long"],
        "TAP interface",
    );
    with_program(&["--console", "parallel"], "invalid value 'parallel'");
}

#[test]
fn an_image_another_vm_writes_is_refused_and_readers_share() {
    let disk = scratch("locked.img", &[0; 4096]);
    let readonly = format!("{disk},readonly");
    let counter = guest("counter").display().to_string();
    let args = |disk: &str| -> Vec<String> {
        [
            "run", "--bios", "none", "--kernel", &counter, "--disk", disk,
        ]
        .map(String::from)
        .to_vec()
    };
    let start = |disk: &str| {
        let mut cmd = visor();
        cmd.args(args(disk));
        let mut vm = Session::start(cmd);
        vm.expect("count 1 ", Duration::from_secs(20));
        vm
    };
    let refused = |disk: &str| {
        let args = args(disk);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_error(&args, "locked.img: in use by another VM (locked)");
    };
    let writer = start(&disk);
    refused(&disk);
    refused(&readonly);
    drop(writer);
    // Readers share; a writer then waits its turn.
    let _reader = start(&readonly);
    let _another = start(&readonly);
    refused(&disk);
}
