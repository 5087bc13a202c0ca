//! The Type 1 hypervisor (hypervisor/, built by `cargo xtask`) as
//! OpenSBI's next stage, on visor's machine and on `qemu-system-riscv64 -M
//! virt` (QEMU 10): it reads the device tree, runs its VM in VS-mode behind
//! a G-stage, answers the VM's SBI calls, and powers off when the VM shuts
//! itself down. The VM's output must be the same on both machines.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The lines a VM printed (prefixed with its name) and the hypervisor's own.
fn lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("[") || l.starts_with("visor-hv: VM") || l.contains("all VMs"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_hypervisor_runs_its_vm_on_visor_and_on_qemu() {
    let hv = image("VISOR_HYPERVISOR");
    let mut v = visor();
    v.args(["run", "--kernel"]).arg(&hv);
    let ours = run_with_timeout(v, LIMIT);
    let firmware = riscv_virt::loader::find_firmware("fw_dynamic.bin").unwrap();
    let mut q = Command::new("qemu-system-riscv64");
    q.args(["-M", "virt", "-nographic", "-bios"])
        .arg(&firmware)
        .arg("-kernel")
        .arg(&hv);
    let theirs = run_with_timeout(q, LIMIT);
    let text = String::from_utf8_lossy(&ours.stdout);
    assert!(
        text.contains("1 hart(s) with the H extension"),
        "the hypervisor read the device tree:\n{text}"
    );
    assert_eq!(
        lines(&ours.stdout),
        [
            "[demo] hello from a VM",
            "[demo] 1",
            "[demo] 2",
            "[demo] 3",
            "visor-hv: VM demo shut down",
            "visor-hv: all VMs stopped",
        ],
        "{text}"
    );
    assert_eq!(
        lines(&ours.stdout),
        lines(&theirs.stdout),
        "visor and QEMU agree"
    );
    assert_eq!(ours.status.code(), Some(0), "the machine powered off");
}
