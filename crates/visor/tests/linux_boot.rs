//! End-to-end: OpenSBI + Linux + busybox under visor, driven through the
//! console like a person at a shell. Needs the images `cargo xtask test` builds.

mod common;
use common::*;

#[test]
fn linux_boots_to_a_shell_and_powers_off() {
    let mut s = Session::boot(&[]);
    s.expect("OpenSBI v", BOOT);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("uname -m");
    s.expect("riscv64", STEP);
    s.send("echo $((6 * 7)) > /tmp/answer; cat /tmp/answer");
    s.expect("42", STEP);
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0, "poweroff ends visor with status 0");
}

#[test]
fn linux_smp4_sees_four_harts() {
    let mut s = Session::boot(&["--smp", "4"]);
    s.expect("smp: Brought up 1 node, 4 CPUs", BOOT);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("nproc");
    s.expect("4\r\n", STEP);
    // Work on all harts at once, then power off from the shell.
    s.send("for i in 1 2 3 4; do (i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; echo done$i) & done; wait");
    for _ in 0..4 {
        s.expect("done2000", STEP);
    }
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0);
}

#[test]
fn linux_boots_with_opensbi_fw_jump() {
    let fw_jump = riscv_virt::loader::find_firmware("fw_jump.bin").expect("OpenSBI installed");
    let mut s = Session::boot(&["--bios", fw_jump.to_str().unwrap()]);
    s.expect("Domain0 Next Arg1         : 0x0000000082200000", BOOT);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("uname -m");
    s.expect("riscv64", STEP);
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0);
}

#[test]
fn linux_smp2_boots_under_the_jit_in_lockstep() {
    let mut s = Session::boot(&["--engine", "lockstep", "--smp", "2"]);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("echo $((6 * 7)) jit");
    s.expect("42 jit", STEP);
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0, "no divergence, clean poweroff");
}

#[test]
fn linux_smp4_boots_under_the_interpreter() {
    let mut s = Session::boot(&["--engine", "interp", "--smp", "4"]);
    s.expect("smp: Brought up 1 node, 4 CPUs", BOOT);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("nproc; echo $((6 * 7)) interp");
    s.expect("42 interp", STEP);
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0);
}
