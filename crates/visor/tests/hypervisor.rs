//! The Type 1 hypervisor (hypervisor/, built by `cargo xtask`) as
//! OpenSBI's next stage, on visor's machine and on `qemu-system-riscv64 -M
//! virt` (QEMU 10): it reads the device tree, runs its VMs in VS-mode behind
//! their own G-stages, shares the hart between them in time slices, answers
//! their SBI calls, stops (or restarts) a VM that reaches outside its
//! memory while the others run on, and powers off when every VM has ended.
//! `visor hv pack` builds the image from a TOML configuration and refuses
//! bad ones with one line; a corrupted image is refused at boot.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Builds guests/hv once and returns its output folder.
fn hv_guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let out = root.join("target/guests/hv");
        let status = Command::new("make")
            .args(["-s", "-C"])
            .arg(root.join("guests/hv"))
            .arg(format!("OUT={}", out.display()))
            .status()
            .expect("running make for guests/hv");
        assert!(status.success(), "building guests/hv failed");
        out
    })
}

/// `visor hv pack` of `config` (kernels named relative to guests/hv's output).
fn pack(name: &str, config: &str) -> (Output, PathBuf) {
    let dir = hv_guests();
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let image = dir.join(format!("{name}.img"));
    let mut v = visor();
    v.args(["hv", "pack"])
        .arg(&config_path)
        .arg("-o")
        .arg(&image)
        .arg("--hypervisor")
        .arg(image_path());
    (run_with_timeout(v, LIMIT), image)
}

fn image_path() -> PathBuf {
    image("VISOR_HYPERVISOR")
}

fn boot_visor(kernel: &Path) -> Output {
    let mut v = visor();
    v.args(["run", "--kernel"]).arg(kernel);
    run_with_timeout(v, LIMIT)
}

fn boot_qemu(kernel: &Path) -> Output {
    let firmware = riscv_virt::loader::find_firmware("fw_dynamic.bin").unwrap();
    let mut q = Command::new("qemu-system-riscv64");
    q.args(["-M", "virt", "-nographic", "-bios"])
        .arg(&firmware)
        .arg("-kernel")
        .arg(kernel);
    run_with_timeout(q, LIMIT)
}

/// The lines of VM `name` (its console, prefixed `[name]`, and the
/// hypervisor's reports about it), in order.
fn vm_lines(stdout: &[u8], name: &str) -> Vec<String> {
    let prefix = format!("[{name}] ");
    let report = format!("visor-hv: VM {name} ");
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix) || l.starts_with(&report))
        .filter(|l| !l.contains(" MiB at ") && !l.contains(" exits in "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bare_hypervisor_runs_its_demo_vm_on_visor_and_on_qemu() {
    let (ours, theirs) = (boot_visor(&image_path()), boot_qemu(&image_path()));
    let text = String::from_utf8_lossy(&ours.stdout);
    assert!(text.contains("1 hart(s) with the H extension"), "{text}");
    let expected = [
        "[demo] hello from a VM",
        "[demo] 1",
        "[demo] 2",
        "[demo] 3",
        "visor-hv: VM demo shut down",
    ];
    assert_eq!(vm_lines(&ours.stdout, "demo"), expected, "{text}");
    assert_eq!(vm_lines(&theirs.stdout, "demo"), expected);
    assert!(text.contains("visor-hv: all VMs stopped"));
    assert_eq!(ours.status.code(), Some(0), "the machine powered off");
}

const SEVEN_VMS: &str = r#"
[machine]
memory = "128M"

[[vm]]
name = "alpha"
memory = "16M"
kernel = "counter.elf"

[[vm]]
name = "beta"
memory = "16M"
kernel = "counter.elf"

[[vm]]
name = "intruder"
memory = "16M"
kernel = "hostile_ram.elf"
on_crash = "restart"

[[vm]]
name = "clint"
memory = "8M"
kernel = "hostile_clint.elf"

[[vm]]
name = "virtio"
memory = "8M"
kernel = "hostile_virtio.elf"

[[vm]]
name = "hv"
memory = "8M"
kernel = "hostile_hv.elf"
devices = ["virtio-mmio@10002000"]

[[vm]]
name = "neighbour"
memory = "8M"
kernel = "hostile_neighbour.elf"
devices = ["virtio-mmio@10003000"]
"#;

#[test]
fn several_vms_share_the_hart_and_a_hostile_one_is_stopped() {
    let (packed, image) = pack("seven", SEVEN_VMS);
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    // visor's board has a virtio slot per device given (QEMU's all eight):
    // three small disks, so the slots the intruders own exist.
    let dir = scratch_dir("hv-seven");
    let mut visor_with_slots = visor();
    visor_with_slots.args(["run", "--kernel"]).arg(&image);
    for n in 0..3 {
        let disk = dir.join(format!("disk{n}.img"));
        std::fs::write(&disk, [0u8; 4096]).unwrap();
        visor_with_slots.arg("--disk").arg(disk);
    }
    let on_visor = run_with_timeout(visor_with_slots, LIMIT);
    for (who, out) in [("visor", on_visor), ("QEMU", boot_qemu(&image))] {
        let text = String::from_utf8_lossy(&out.stdout);
        let counting: Vec<String> = (1..=5).map(|n| format!("count {n}")).collect();
        for name in ["alpha", "beta"] {
            let mut expected: Vec<String> =
                counting.iter().map(|c| format!("[{name}] {c}")).collect();
            expected.push(format!("visor-hv: VM {name} shut down"));
            assert_eq!(vm_lines(&out.stdout, name), expected, "{who}:\n{text}");
        }
        // Time slices: beta counted before alpha finished.
        let position = |line: &str| text.find(line).unwrap();
        assert!(
            position("[beta] count 1") < position("[alpha] count 5"),
            "{who}: the VMs share the hart:\n{text}"
        );
        // Each intruder is stopped at its first write; the restarting one
        // three more times, then for good.
        // The last two own a device, so their RAM is where it lies in the
        // machine's: one writes into the hypervisor's image, the other
        // into the RAM of the VM packed before it.
        let neighbour_base = text
            .lines()
            .find_map(|l| l.strip_prefix("visor-hv: VM neighbour with 8 MiB at 0x"))
            .and_then(|l| u64::from_str_radix(l.split(',').next()?, 16).ok())
            .unwrap_or_else(|| panic!("{who}: where the neighbour VM lies:\n{text}"));
        let below_neighbour = format!("{:#x}", neighbour_base - 8);
        for (name, address) in [
            ("clint", "0x2000000"),
            ("virtio", "0x10001000"),
            ("hv", "0x80200000"),
            ("neighbour", below_neighbour.as_str()),
        ] {
            let lines = vm_lines(&out.stdout, name);
            assert_eq!(lines.len(), 2, "{who}: {lines:?}");
            assert!(
                lines[1].contains("faulted: exception 23")
                    && lines[1].ends_with(&format!("(address {address})")),
                "{who}: {lines:?}"
            );
        }
        let intruder = vm_lines(&out.stdout, "intruder");
        assert_eq!(
            intruder.iter().filter(|l| l.contains("faulted")).count(),
            4,
            "{who}: {intruder:?}"
        );
        assert_eq!(
            intruder.iter().filter(|l| l.contains("restarting")).count(),
            3,
            "{who}: {intruder:?}"
        );
        assert!(
            !text.contains("FAIL"),
            "{who}: a write went through:\n{text}"
        );
        assert!(text.contains("visor-hv: all VMs stopped"), "{who}:\n{text}");
        assert_eq!(out.status.code(), Some(0), "{who}: the machine powered off");
    }
}

#[test]
fn a_corrupted_image_is_refused_at_boot_with_a_message() {
    let (packed, image) = pack("corrupt", SEVEN_VMS);
    assert!(packed.status.success());
    let mut bytes = std::fs::read(&image).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x40;
    let damaged = image.with_file_name("corrupted.img");
    std::fs::write(&damaged, bytes).unwrap();
    for (who, out) in [
        ("visor", boot_visor(&damaged)),
        ("QEMU", boot_qemu(&damaged)),
    ] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(
                "visor-hv: error: the image is not usable: the package's checksum does not match"
            ),
            "{who}:\n{text}"
        );
        assert!(!text.contains("[alpha]"), "{who}: no VM ran");
        assert_eq!(out.status.code(), Some(0), "{who}: powered off, no hang");
    }
}

#[test]
fn bad_configurations_are_refused_by_pack_with_one_line() {
    let vm = |extra: &str| {
        format!("[[vm]]\nname = \"a\"\nmemory = \"16M\"\nkernel = \"counter.elf\"\n{extra}\n")
    };
    let cases = [
        (vm("colour = \"red\""), "unknown field `colour`"),
        (
            "[[vm]]\nname = \"a\"\nmemory = \"3M\"\nkernel = \"counter.elf\"\n".to_string(),
            "multiple of 2M",
        ),
        (
            format!(
                "[machine]\nmemory = \"64M\"\n{}{}",
                vm(""),
                vm("").replace("\"a\"", "\"b\"").replace("16M", "64M")
            ),
            "more than the machine's 64 MiB",
        ),
        (vm("devices = [\"virtio-mmio@20000000\"]"), "unknown device"),
        (
            format!(
                "{}{}",
                vm("devices = [\"virtio-mmio@10001000\"]"),
                vm("devices = [\"virtio-mmio@10001000\"]").replace("\"a\"", "\"b\"")
            ),
            "already given to VM \"a\"",
        ),
        (format!("{}{}", vm(""), vm("")), "two VMs have this name"),
        (
            vm("on_crash = \"explode\""),
            "neither \"stop\" nor \"restart\"",
        ),
        (
            vm("").replace("counter.elf", "missing.elf"),
            "missing.elf: No such file",
        ),
        (vm("cap = 150"), "more than one hart"),
        ("".to_string(), "no [[vm]]"),
        ("[[vm]\n".to_string(), "line 1"),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        let (out, image) = pack(&format!("bad{i}"), config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} packed:\n{config}");
        assert!(
            stderr.contains(needle),
            "case {i}: {needle:?} not in {stderr:?}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "case {i}: one line: {stderr:?}"
        );
        assert!(!stderr.contains("panicked"));
        let _ = std::fs::remove_file(image);
    }
}

/// The first "CPU time" report after `line`: (elapsed ms, [(vm, ms)]).
fn cpu_time_after(stdout: &[u8], line: &str) -> (u64, Vec<(String, u64)>) {
    let text = String::from_utf8_lossy(stdout);
    let report = text
        .lines()
        .skip_while(|l| *l != line)
        .find_map(|l| l.strip_prefix("visor-hv: CPU time in "))
        .unwrap_or_else(|| panic!("no CPU time report after {line:?}:\n{text}"));
    let (elapsed, vms) = report.split_once(" ms: ").unwrap();
    let vms = vms
        .split(", ")
        .map(|vm| {
            let (name, ms) = vm.split_once(' ').unwrap();
            (name.to_owned(), ms.trim_end_matches(" ms").parse().unwrap())
        })
        .collect();
    (elapsed.parse().unwrap(), vms)
}

#[test]
fn weights_share_the_hart_two_to_one_to_one() {
    let config = r#"
[[vm]]
name = "heavy"
memory = "8M"
kernel = "spinner.elf"
weight = 512

[[vm]]
name = "light1"
memory = "8M"
kernel = "spinner.elf"
weight = 256

[[vm]]
name = "light2"
memory = "8M"
kernel = "spinner.elf"
weight = 256
"#;
    let (packed, image) = pack("weights", config);
    assert!(packed.status.success());
    for (who, out) in [("visor", boot_visor(&image)), ("QEMU", boot_qemu(&image))] {
        // While all three ran (until heavy ended), CPU time went 2:1:1.
        let (_, used) = cpu_time_after(&out.stdout, "visor-hv: VM heavy shut down");
        let ms = |name: &str| used.iter().find(|(n, _)| n == name).unwrap().1 as f64;
        for light in ["light1", "light2"] {
            let ratio = ms("heavy") / ms(light);
            assert!(
                (1.8..=2.2).contains(&ratio),
                "{who}: heavy/{light} = {ratio:.2}: {used:?}"
            );
        }
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn a_cap_of_25_percent_holds() {
    let config = "[[vm]]\nname = \"capped\"\nmemory = \"8M\"\nkernel = \"spinner.elf\"\ncap = 25\n";
    let (packed, image) = pack("cap", config);
    assert!(packed.status.success());
    for (who, out) in [("visor", boot_visor(&image)), ("QEMU", boot_qemu(&image))] {
        let (elapsed, used) = cpu_time_after(&out.stdout, "visor-hv: VM capped shut down");
        let share = used[0].1 as f64 / elapsed as f64;
        assert!(
            (0.20..=0.30).contains(&share),
            "{who}: {:.1}% of {elapsed} ms",
            share * 100.0
        );
    }
}

#[test]
fn a_sleeping_vm_gets_its_timer_while_another_spins_with_interrupts_off() {
    let config = r#"
[[vm]]
name = "ticker"
memory = "8M"
kernel = "ticker.elf"

[[vm]]
name = "spinner"
memory = "8M"
kernel = "spinner.elf"
"#;
    let (packed, image) = pack("ticker", config);
    assert!(packed.status.success());
    for (who, out) in [("visor", boot_visor(&image)), ("QEMU", boot_qemu(&image))] {
        let text = String::from_utf8_lossy(&out.stdout);
        // Five 10 ms ticks through SBI TIME and WFI, on time although the
        // spinner never yields: the hypervisor's timer preempts it.
        let ms: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("[ticker] 5 ticks in "))
            .and_then(|rest| rest.strip_suffix(" ms"))
            .unwrap_or_else(|| panic!("{who}: no ticks:\n{text}"))
            .parse()
            .unwrap();
        assert!((50..100).contains(&ms), "{who}: five ticks took {ms} ms");
        // WFI gave the hart away: the ticker used little of it.
        let (_, used) = cpu_time_after(&out.stdout, "visor-hv: VM ticker shut down");
        assert!(
            used[0].1 < 20,
            "{who}: the sleeping VM used {} ms",
            used[0].1
        );
        assert!(text.contains("[spinner] done"), "{who}:\n{text}");
    }
}

/// A Linux VM with two vCPUs whose root filesystem is the machine's first
/// virtio-mmio slot (passed through: mapped in its G-stage, its interrupt
/// routed through the hypervisor to the VM's virtual PLIC), beside a
/// bare-metal VM that ticks.
fn linux_on_disk_config() -> String {
    format!(
        r#"
[machine]
memory = "256M"

[[vm]]
name = "linux"
memory = "128M"
vcpus = 2
kernel = "{}"
bootargs = "console=ttyS0 root=/dev/vda rw"
devices = ["virtio-mmio@10001000"]

[[vm]]
name = "metronome"
memory = "8M"
kernel = "metronome.elf"
"#,
        image("VISOR_LINUX_IMAGE").display()
    )
}

const LINUX_STEP: Duration = Duration::from_secs(120);

/// Scripts the Linux VM's shell on the machine's console (which has the
/// keyboard first): its architecture and CPUs, a file written and read
/// back after a reboot of that VM alone, while the other VM's ticks go on.
fn linux_vm_with_its_own_disk(machine: Command, who: &str) {
    let mut s = Session::start(machine);
    s.expect("[linux] visor-init: ready", LINUX_STEP);
    s.send("uname -m; echo cpus-$(nproc)");
    s.expect("[linux] riscv64", LINUX_STEP);
    s.expect("[linux] cpus-2", LINUX_STEP);
    s.send("cat /sys/class/block/vda/size; echo mark-$((6*7)) > /root/mark; sync; reboot");
    s.expect("[linux] 131072", LINUX_STEP);
    s.expect("visor-hv: VM linux rebooting", LINUX_STEP);
    s.expect("[metronome] tick", LINUX_STEP);
    s.expect("[linux] visor-init: ready", LINUX_STEP);
    s.send("cat /root/mark; poweroff");
    s.expect("[linux] mark-42", LINUX_STEP);
    s.expect("visor-hv: VM linux shut down", LINUX_STEP);
    s.expect("[metronome] tick", LINUX_STEP);
    let _ = s.child.kill();
    let _ = s.child.wait();
    let ticks = s.seen.matches("[metronome] tick").count();
    assert!(
        ticks >= 4,
        "{who}: the metronome ticked {ticks} times:\n{}",
        s.seen
    );
    assert!(!s.seen.contains("faulted"), "{who}:\n{}", s.seen);
}

/// QEMU's virt machine booting `hv_image` with `harts` harts and `disk` in
/// its first virtio-mmio slot (where visor's `--disk` goes).
fn qemu_with_disk(hv_image: &Path, disk: &Path, harts: &str) -> Command {
    let firmware = riscv_virt::loader::find_firmware("fw_dynamic.bin").unwrap();
    let mut q = Command::new("qemu-system-riscv64");
    q.args([
        "-M",
        "virt",
        "-m",
        "256M",
        "-smp",
        harts,
        "-nographic",
        "-bios",
    ])
    .arg(&firmware)
    .arg("-kernel")
    .arg(hv_image)
    .arg("-drive")
    .arg(format!(
        "file={},if=none,format=raw,id=root",
        disk.display()
    ))
    .args([
        "-device",
        "virtio-blk-device,drive=root,bus=virtio-mmio-bus.0",
    ]);
    q
}

/// Boots the Linux-and-metronome image on visor and on QEMU with `harts`
/// harts each (the two vCPUs multiplexed on one, or one hart each), at once.
fn linux_vm_on_machines_with(harts: &str) {
    let (packed, hv_image) = pack(&format!("linux-disk-{harts}"), &linux_on_disk_config());
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let dir = scratch_dir(&format!("hv-linux-{harts}"));
    let (ours, theirs) = (dir.join("visor.ext4"), dir.join("qemu.ext4"));
    for disk in [&ours, &theirs] {
        std::fs::copy(image("VISOR_ROOTFS"), disk).unwrap();
    }
    let mut v = visor();
    v.args(["run", "-m", "256M", "--smp", harts, "--kernel"])
        .arg(&hv_image)
        .arg("--disk")
        .arg(&ours);
    let q = qemu_with_disk(&hv_image, &theirs, harts);
    std::thread::scope(|scope| {
        let qemu = scope.spawn(|| linux_vm_with_its_own_disk(q, &format!("QEMU -smp {harts}")));
        linux_vm_with_its_own_disk(v, &format!("visor --smp {harts}"));
        qemu.join().unwrap();
    });
}

#[test]
fn a_linux_vm_with_two_vcpus_on_one_hart_mounts_its_root_from_a_passed_through_disk_and_survives_its_reboot(
) {
    linux_vm_on_machines_with("1");
}

#[test]
fn a_linux_vm_with_two_vcpus_on_two_harts_mounts_its_root_from_a_passed_through_disk_and_survives_its_reboot(
) {
    linux_vm_on_machines_with("2");
}

/// The Linux VM (root on its passed-through disk, which gets the
/// hypercall module) and the bare-metal `echo` VM exchange messages through
/// the hypervisor's hypercalls: echo's greeting reaches Linux's
/// /dev/visor-ipc, Linux's message reaches echo, echo's answer comes back.
fn messages_between_linux_and_a_bare_metal_vm(machine: Command, who: &str) {
    let mut s = Session::start(machine);
    s.expect("[linux] visor-init: ready", LINUX_STEP);
    // The kernel's messages may land inside the shell's echo of a line:
    // they are looked for without the line's prefix.
    s.send("insmod /root/visor_ipc.ko");
    s.expect(
        "visor-ipc: hypercalls v1.0; this is VM linux (1 of 2), 2 vCPUs, 128 MiB",
        LINUX_STEP,
    );
    s.send("head -n1 /dev/visor-ipc");
    s.expect("[linux] echo:hello from echo", LINUX_STEP);
    s.send("echo linux:to-self > /dev/visor-ipc; head -n1 /dev/visor-ipc");
    s.expect("[linux] linux:to-self", LINUX_STEP);
    s.send("echo echo:ping-$((6*7)) > /dev/visor-ipc && head -n1 /dev/visor-ipc");
    s.expect("[echo] got 'ping-42' from linux", LINUX_STEP);
    s.expect("[linux] echo:echo: ping-42", LINUX_STEP);
    s.send("echo nobody:x > /dev/visor-ipc || echo refused-$?");
    s.expect("[linux] refused-1", LINUX_STEP);
    s.send("poweroff");
    s.expect("visor-hv: VM linux shut down", LINUX_STEP);
    let _ = s.child.kill();
    let _ = s.child.wait();
    assert!(!s.seen.contains("faulted"), "{who}:\n{}", s.seen);
}

#[test]
fn linux_and_a_bare_metal_vm_exchange_messages_through_hypercalls() {
    let config = linux_on_disk_config()
        .replace("name = \"metronome\"", "name = \"echo\"")
        .replace("metronome.elf", "echo.elf");
    let (packed, hv_image) = pack("linux-ipc", &config);
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let dir = scratch_dir("hv-ipc");
    let (ours, theirs) = (dir.join("visor.ext4"), dir.join("qemu.ext4"));
    for disk in [&ours, &theirs] {
        std::fs::copy(image("VISOR_ROOTFS"), disk).unwrap();
        let module = image("VISOR_IPC_MODULE");
        let status = Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("write {} root/visor_ipc.ko", module.display()))
            .arg(disk)
            .output()
            .expect("running debugfs (e2fsprogs)");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let mut v = visor();
    v.args(["run", "-m", "256M", "--smp", "2", "--kernel"])
        .arg(&hv_image)
        .arg("--disk")
        .arg(&ours);
    let q = qemu_with_disk(&hv_image, &theirs, "2");
    std::thread::scope(|scope| {
        let qemu = scope.spawn(|| messages_between_linux_and_a_bare_metal_vm(q, "QEMU"));
        messages_between_linux_and_a_bare_metal_vm(v, "visor");
        qemu.join().unwrap();
    });
}

const TWO_QUIET_VMS: &str = r#"
[machine]
memory = "64M"

[[vm]]
name = "metronome"
memory = "8M"
kernel = "metronome.elf"

[[vm]]
name = "echo"
memory = "8M"
kernel = "echo.elf"
"#;

/// Ctrl-\ twice takes the keyboard past the VMs to the hypervisor
/// console, which lists them, stops one (its ticks end) and restarts it
/// (they start again from 1).
fn the_hypervisor_console_on(machine: Command, who: &str) {
    let mut s = Session::start(machine);
    s.expect("[metronome] tick 2", LIMIT);
    s.send("\x1c\x1c");
    s.expect("visor-hv> ", LIMIT);
    s.send("list");
    s.expect("metronome: running, 1 vCPU(s), 8 MiB, CPU", LIMIT);
    s.expect("echo: running, 1 vCPU(s), 8 MiB, CPU", LIMIT);
    s.expect(" hypercall ", LIMIT);
    s.send("stop metronome");
    s.expect("visor-hv: VM metronome stopped from the console", LIMIT);
    s.send("list");
    s.expect("metronome: stopped", LIMIT);
    s.send("restart metronome");
    s.expect("visor-hv: VM metronome restarted from the console", LIMIT);
    s.expect("[metronome] tick 1", LIMIT);
    s.send("stop nobody");
    s.expect("unknown command or VM", LIMIT);
    let _ = s.child.kill();
    let _ = s.child.wait();
    let after_stop = s
        .seen
        .split("stopped from the console")
        .nth(1)
        .unwrap_or("");
    let before_restart = after_stop
        .split("restarted from the console")
        .next()
        .unwrap_or("");
    assert!(
        !before_restart.contains("[metronome] tick"),
        "{who}: a stopped VM ticked:\n{}",
        s.seen
    );
}

#[test]
fn the_hypervisor_console_lists_stops_and_restarts_vms() {
    let (packed, image) = pack("console", TWO_QUIET_VMS);
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let mut v = visor();
    v.args(["run", "--kernel"]).arg(&image);
    let firmware = riscv_virt::loader::find_firmware("fw_dynamic.bin").unwrap();
    let mut q = Command::new("qemu-system-riscv64");
    q.args(["-M", "virt", "-nographic", "-bios"])
        .arg(&firmware)
        .arg("-kernel")
        .arg(&image);
    std::thread::scope(|scope| {
        let qemu = scope.spawn(|| the_hypervisor_console_on(q, "QEMU"));
        the_hypervisor_console_on(v, "visor");
        qemu.join().unwrap();
    });
}
