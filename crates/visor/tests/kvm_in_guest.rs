//! Linux's KVM on visor's H extension: the riscv KVM selftests that
//! linux-source-6.1 ships (built static by images/kvm-selftests-riscv64)
//! run inside Linux under visor and, from the same kernel and initramfs,
//! under `qemu-system-riscv64 -M virt` (QEMU 10); every test must pass
//! under visor and end the same under QEMU.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const APPEND: &str = "console=ttyS0 rdinit=/kvm/run";
/// dirty_log_test maps 1 GiB of guest memory (it touches little of it).
const MEMORY: &str = "2G";
/// QEMU's CPU with visor's page-table formats: without Sv57 (which QEMU
/// has and visor lacks), so Linux's KVM picks Sv48x4 on both.
const QEMU_CPU: &str = "rv64,sv57=off";
/// The whole selftest run, per machine.
const LIMIT: Duration = Duration::from_secs(900);

/// The project's initramfs with the selftests appended (Linux unpacks
/// concatenated archives in turn).
fn initramfs_with_selftests() -> PathBuf {
    let mut bytes = std::fs::read(image("VISOR_INITRAMFS")).unwrap();
    bytes.extend(std::fs::read(image("VISOR_KVM_SELFTESTS")).unwrap());
    let path = scratch_dir("kvm-selftests").join("initramfs.cpio.gz");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Test name -> "PASS", "SKIP" or "FAIL(rc)", from `kvm-selftest NAME: RESULT` lines.
fn results(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kvm-selftest "))
        .filter_map(|l| l.split_once(": "))
        .map(|(name, result)| (name.to_owned(), result.trim().to_owned()))
        .collect()
}

fn run(mut command: Command, who: &str) -> String {
    let out = run_with_timeout(
        {
            command.env("RUST_BACKTRACE", "0");
            command
        },
        LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("kvm-selftests: end"),
        "{who}: the selftests did not finish:\n{text}"
    );
    text
}

#[test]
fn kvm_selftests_pass_under_visor_as_under_qemu() {
    let initramfs = initramfs_with_selftests();
    let kernel = image("VISOR_LINUX_IMAGE");

    let mut v = visor();
    v.args(["run", "-m", MEMORY, "--append", APPEND, "--kernel"])
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initramfs);

    let firmware = riscv_virt::loader::find_firmware("fw_dynamic.bin").unwrap();
    let mut q = Command::new("qemu-system-riscv64");
    q.args([
        "-M",
        "virt",
        "-cpu",
        QEMU_CPU,
        "-m",
        MEMORY,
        "-nographic",
        "-bios",
    ])
    .arg(&firmware)
    .arg("-kernel")
    .arg(&kernel)
    .arg("-initrd")
    .arg(&initramfs)
    .args(["-append", APPEND]);
    // Both machines at once (each runs on one host core).
    let (ours, theirs) = std::thread::scope(|scope| {
        let qemu = scope.spawn(|| run(q, "QEMU"));
        (run(v, "visor"), qemu.join().unwrap())
    });

    // Linux found the H extension and set KVM up as it does under QEMU.
    for line in [
        "hypervisor extension available",
        "G-stage page table format",
        "VMID 14 bits available",
    ] {
        // The line without its timestamp.
        let find = |text: &str| {
            let l = text.lines().find(|l| l.contains(line))?;
            Some(l.split_once("] ").map_or(l, |(_, rest)| rest).to_owned())
        };
        let (a, b) = (find(&ours), find(&theirs));
        assert!(a.is_some(), "visor: no {line:?} in the kernel log:\n{ours}");
        assert_eq!(a, b, "the kernel's KVM line differs from QEMU's");
    }
    let (a, b) = (results(&ours), results(&theirs));
    eprintln!("visor: {a:?}\nQEMU:  {b:?}");
    assert_eq!(a.len(), 6, "every selftest reported:\n{ours}");
    assert_eq!(a, b, "each selftest ends under visor as under QEMU");
    for (name, result) in &a {
        assert_eq!(result, "PASS", "{name} under visor:\n{ours}");
    }
}
