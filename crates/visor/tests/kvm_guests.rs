//! The hosted hypervisor (`--accel kvm`): small x86-64 PVH guests from
//! guests/x86_64 run under visor and, as the reference, under
//! `qemu-system-x86_64 -M pc -enable-kvm` with the same image; output and
//! exit status must match. KVM on the CI machine may be a software backend,
//! which these guests are small enough for.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn x86_guest(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = workspace_root();
        let out = root.join("target/guests/x86_64");
        let status = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(root.join("guests/x86_64"))
            .arg(format!("OUT={}", out.display()))
            .status()
            .expect("running make for the x86-64 guests");
        assert!(status.success(), "building guests/x86_64 failed");
        out
    });
    dir.join(format!("{name}.elf"))
}

/// `visor run --accel kvm --kernel IMAGE`.
fn visor_kvm(image: &Path) -> Command {
    let mut c = visor();
    c.args(["run", "--accel", "kvm", "--kernel"]).arg(image);
    c
}

/// The reference: QEMU's `pc` machine on KVM with the same image, COM1 on
/// stdio and isa-debug-exit where visor has it.
fn qemu_pc(image: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-M",
        "pc",
        "-enable-kvm",
        "-cpu",
        "qemu64,-pni",
        "-m",
        "64M",
    ])
    .args(["-nographic", "-nodefaults", "-serial", "stdio"])
    .args([
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel",
    ])
    .arg(image);
    c
}

fn kvm_available() -> bool {
    if std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        return true;
    }
    eprintln!("SKIPPED: /dev/kvm is missing or not accessible on this machine");
    false
}

/// (stdout, exit status) of the guest under visor and under QEMU, each with
/// its own extra options.
fn both_with(
    name: &str,
    visor_extra: &[&str],
    qemu_extra: &[&str],
) -> ((String, i32), (String, i32)) {
    let image = x86_guest(name);
    let mut visor_cmd = visor_kvm(&image);
    visor_cmd.args(visor_extra);
    let v = run_with_timeout(visor_cmd, Duration::from_secs(60));
    let mut qemu = qemu_pc(&image);
    qemu.args(qemu_extra);
    let q = run_with_timeout(qemu, Duration::from_secs(60));
    let text = |o: &std::process::Output| {
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        // QEMU's SeaBIOS prints its banner on the same serial line first, without a newline.
        s.lines()
            .filter_map(|l| l.find("visor-x86").map(|at| &l[at..]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        (text(&v), v.status.code().unwrap_or(-1)),
        (text(&q), q.status.code().unwrap_or(-1)),
    )
}

fn both(name: &str) -> ((String, i32), (String, i32)) {
    both_with(name, &[], &[])
}

fn check(name: &str, expected: &str) {
    if !kvm_available() {
        return;
    }
    let (visor, qemu) = both(name);
    assert_eq!(visor, (expected.to_string(), 33), "{name} under visor");
    assert_eq!(visor, qemu, "{name}: visor and QEMU agree");
}

#[test]
fn serial_output_and_debug_exit() {
    check("serial", "visor-x86: serial ok");
}

/// A PVH kernel in a 32-bit ELF container (ELFCLASS32, EM_386), which
/// QEMU's `-kernel` accepts as well.
#[test]
fn pvh_kernel_in_an_elf32_container() {
    check("serial_elf32", "visor-x86: serial ok (elf32)");
}

#[test]
fn switch_from_32_bit_entry_to_long_mode() {
    check(
        "long_mode",
        "visor-x86: 32-bit protected mode\nvisor-x86: 64-bit long mode ok",
    );
}

/// `rep outsb`/`rep insb`: every byte of count × size is a port access.
#[test]
fn string_port_io_moves_every_byte() {
    check("string_io", "visor-x86: rep insb and rep outsb ok");
}

#[test]
fn port_io_exits_are_dispatched_and_counted() {
    check("port_loop", "visor-x86: 100000 port writes");
    if !kvm_available() {
        return;
    }
    let mut cmd = visor_kvm(&x86_guest("port_loop"));
    cmd.arg("--stats");
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stats = String::from_utf8_lossy(&out.stderr);
    let row = stats
        .lines()
        .find(|l| l.starts_with("post-code"))
        .expect("post-code row");
    assert_eq!(row.split_whitespace().nth(1), Some("100000"), "{stats}");
}

/// Host keyboard input reaches the guest through COM1, under both VMMs.
#[test]
fn console_input_reaches_com1() {
    if !kvm_available() {
        return;
    }
    let image = x86_guest("echo");
    let visor_cmd = visor_kvm(&image);
    let qemu = qemu_pc(&image);
    for cmd in [visor_cmd, qemu] {
        let mut s = Session::start(cmd);
        s.expect("visor-x86: type a line", STEP);
        s.send("typed-on-the-host");
        s.expect("visor-x86: echo typed-on-the-host", STEP);
        assert_eq!(s.wait_exit(STEP), 33);
    }
}

#[test]
fn hlt_wakes_on_pit_timer_interrupts() {
    check("timer", "visor-x86: woke from hlt on 3 timer interrupts");
}

#[test]
fn two_vcpus_start_with_init_sipi_and_report_in() {
    if !kvm_available() {
        return;
    }
    let (visor, qemu) = both_with("smp", &["--smp", "2"], &["-smp", "2"]);
    let expected = "visor-x86: cpu 1 reporting in\nvisor-x86: cpu 0 reporting in, 2 cpus up";
    assert_eq!(visor, (expected.to_string(), 33));
    assert_eq!(visor, qemu, "visor and QEMU agree");
}

#[test]
fn minimal_guest_driver_reads_and_writes_virtio_blk() {
    if !kvm_available() {
        return;
    }
    let dir = scratch_dir("kvm-virtio");
    let disk = dir.join("disk.img");
    let mut bytes = vec![0u8; 64 << 10];
    bytes[512..526].copy_from_slice(b"visor-sector-1");
    std::fs::write(&disk, &bytes).unwrap();
    let disk_arg = disk.display().to_string();
    let (visor, qemu) = both_with("virtio_blk", &["--disk", &disk_arg], &[]);
    assert_eq!(
        visor,
        (
            "visor-x86: virtio-blk read, write and flush ok".to_string(),
            33
        )
    );
    let written = std::fs::read(&disk).unwrap();
    let expected: Vec<u8> = (0..512).map(|i: u32| (i * 7 + 3) as u8).collect();
    assert_eq!(
        &written[1024..1536],
        &expected[..],
        "sector 2 is on the host"
    );
    // QEMU's pc machine has no virtio-mmio: the same image boots and says so.
    assert_eq!(
        qemu,
        ("visor-x86: no virtio device at 0xd0000000".to_string(), 33)
    );
}

#[test]
fn minimal_guest_driver_reads_virtio_rng() {
    if !kvm_available() {
        return;
    }
    let (visor, qemu) = both("virtio_rng");
    assert_eq!(visor, ("visor-x86: virtio-rng entropy ok".to_string(), 33));
    assert_eq!(qemu, ("visor-x86: no virtio-rng device".to_string(), 33));
}

/// virtio-net on KVM: the guest's ARP request goes out through the TAP in a
/// test namespace and the host kernel's reply comes back in.
#[test]
fn minimal_guest_driver_exchanges_frames_over_virtio_net() {
    // SAFETY: geteuid has no preconditions.
    if !kvm_available() || unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs /dev/kvm and root (network namespaces, /dev/net/tun)");
        return;
    }
    let ns = Namespace::create("ktap0", "10.0.2.2");
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_visor"));
    cmd.args(["run", "--accel", "kvm", "--net", "tap=ktap0", "--kernel"])
        .arg(x86_guest("virtio_net"));
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("visor-x86: arp reply from 10.0.2.2"),
        "{console}"
    );
    assert_eq!(out.status.code(), Some(33));
}

#[test]
fn bad_kernels_get_clear_errors() {
    if !kvm_available() {
        return;
    }
    let dir = scratch_dir("kvm-bad");
    let garbage = dir.join("garbage.bin");
    std::fs::write(&garbage, b"definitely not a kernel").unwrap();
    let riscv = guest("int");
    for (kernel, needle) in [
        (garbage.clone(), "neither a PVH ELF kernel nor a bzImage"),
        (riscv, "an ELF for machine 243, not x86-64"),
        (dir.join("missing"), "No such file"),
    ] {
        let out = run_with_timeout(visor_kvm(&kernel), Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(needle),
            "{kernel:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    // Too little memory: for any VM, for the kernel's segments, for the initrd.
    let high = dir.join("high.elf");
    let status = Command::new("objcopy")
        .args(["--change-addresses", "0x3000000"])
        .arg(x86_guest("serial"))
        .arg(&high)
        .status()
        .unwrap();
    assert!(status.success());
    let big_initrd = dir.join("big.initrd");
    std::fs::write(&big_initrd, vec![0u8; 20 << 20]).unwrap();
    let serial = x86_guest("serial").display().to_string();
    for (args, needle) in [
        (
            vec!["-m", "4M", "--kernel", &serial],
            "out of range (16 MiB to 3 GiB)",
        ),
        (
            vec!["-m", "16M", "--kernel", high.to_str().unwrap()],
            "kernel segment at 0x3100000 does not fit in guest memory",
        ),
        (
            vec![
                "-m",
                "16M",
                "--kernel",
                &serial,
                "--initrd",
                big_initrd.to_str().unwrap(),
            ],
            "does not fit in guest memory (20971520 bytes); try a larger -m",
        ),
    ] {
        let mut cmd = visor();
        cmd.args(["run", "--accel", "kvm"]).args(&args);
        let out = run_with_timeout(cmd, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_host_without_kvm_gets_a_clear_error() {
    let mut cmd = visor_kvm(&x86_guest("serial"));
    cmd.env("VISOR_KVM_DEVICE", "/nonexistent/kvm");
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/dev/kvm does not exist"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// Linux (x86-64, as a PVH vmlinux and as a bzImage) boots to its init,
/// which lists the virtio-blk disk and reboots. Needs hardware virtualization: a software
/// KVM backend cannot run a stock kernel (it stops at FPU setup).
#[test]
fn linux_boots_to_init_with_a_virtio_disk() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpuinfo.split_whitespace().any(|w| w == "vmx" || w == "svm") {
        eprintln!(
            "SKIPPED: this CPU has no hardware virtualization (no vmx/svm in /proc/cpuinfo), \
             so KVM here cannot run Linux"
        );
        return;
    }
    if !kvm_available() {
        return;
    }
    let vmlinux = image("VISOR_LINUX_X86_64");
    let initramfs = vmlinux.with_file_name("initramfs.cpio");
    let dir = scratch_dir("kvm-linux");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 8 << 20]).unwrap();
    // The same kernel through both boot protocols: PVH (vmlinux) and bzImage.
    for kernel in [vmlinux.clone(), vmlinux.with_file_name("bzImage")] {
        let mut cmd = visor_kvm(&kernel);
        cmd.args(["-m", "256M"])
            .arg("--initrd")
            .arg(&initramfs)
            .args(["--append", "console=ttyS0 reboot=k panic=-1", "--disk"])
            .arg(&disk);
        let out = run_with_timeout(cmd, Duration::from_secs(120));
        let console = String::from_utf8_lossy(&out.stdout);
        assert!(
            console.contains("visor-linux-x86: init running"),
            "{kernel:?}: {console}"
        );
        assert!(
            console.contains("vda"),
            "{kernel:?}: virtio-blk disk listed: {console}"
        );
        assert!(
            console.contains("visor-linux-x86: powering off"),
            "{kernel:?}: {console}"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kernel:?}: reboot ends visor with 0"
        );
    }
}

#[test]
fn a_user_without_access_to_kvm_gets_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let kvm_mode = std::fs::metadata("/dev/kvm")
        .map(|m| m.permissions().mode() & 0o006)
        .ok();
    if !root || kvm_mode != Some(0) || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs root, setpriv and a /dev/kvm closed to other users");
        return;
    }
    // A copy of visor that user `nobody` may execute, wherever the checkout lives.
    let dir = scratch_dir("kvm-nobody");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.join("visor");
    std::fs::copy(env!("CARGO_BIN_EXE_visor"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args(["run", "--accel", "kvm", "--kernel", "/nonexistent-kernel"]);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot open /dev/kvm: permission denied"),
        "{stderr}"
    );
}
