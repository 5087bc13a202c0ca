//! The seccomp allow-list: every thread of a running visor (the machine,
//! the console reader, the control API's) is under it, a disk's I/O
//! thread under a narrower list of its own on top, and `--seccomp off`
//! runs without it and says so. (That a refused call ends visor with
//! one line naming it: the `seccomp` unit tests.)

mod common;
use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The `Seccomp:` mode of each of `pid`'s threads (2: filtered).
fn seccomp_modes(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .map(|task| {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect()
}

fn counting(dir: &std::path::Path, extra: &[&str]) -> Session {
    let mut cmd = visor();
    cmd.args(["run", "--bios", "none", "--kernel"])
        .arg(guest("counter"))
        .arg("--api-sock")
        .arg(dir.join("api.sock"))
        .args(extra);
    let mut vm = Session::start(cmd);
    vm.expect("count 2 ", LIMIT);
    vm
}

#[test]
fn every_thread_of_a_running_vm_is_filtered() {
    let dir = scratch_dir("seccomp-on");
    let mut vm = counting(&dir, &[]);
    let modes = seccomp_modes(vm.child.id());
    assert!(
        modes.len() >= 3,
        "machine, console and API threads: {modes:?}"
    );
    assert!(modes.iter().all(|m| m == "2"), "{modes:?}");
    // The API still works under the filter.
    let mut pause = visor();
    pause
        .args(["pause", "--api-sock"])
        .arg(dir.join("api.sock"));
    assert!(run_with_timeout(pause, LIMIT).status.success());
    vm.child.kill().unwrap();
}

#[test]
fn seccomp_off_runs_unfiltered_and_says_it_is_unsafe() {
    let dir = scratch_dir("seccomp-off");
    let mut vm = counting(&dir, &["--seccomp", "off"]);
    let modes = seccomp_modes(vm.child.id());
    assert!(modes.iter().all(|m| m == "0"), "{modes:?}");
    vm.child.kill().unwrap();
    vm.child.wait().unwrap();
    let stderr = vm.stderr();
    assert!(
        stderr.contains("--seccomp off: no system-call filter (unsafe; for debugging only)"),
        "{stderr}"
    );
}

/// Each thread's name (`comm`) and `Seccomp_filters:` count.
fn filters_by_thread(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .map(|task| {
            let path = task.unwrap().path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap();
            let status = std::fs::read_to_string(path.join("status")).unwrap();
            let filters = status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp_filters:"))
                .expect("a kernel that reports Seccomp_filters (5.9+)")
                .trim()
                .parse()
                .unwrap();
            (name.trim().to_owned(), filters)
        })
        .collect()
}

#[test]
fn a_disk_io_thread_runs_under_a_narrower_list_of_its_own() {
    let dir = scratch_dir("seccomp-disk");
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut vm = Session::boot(&["--disk", disk.to_str().unwrap()]);
    shell_ready(&mut vm); // Linux has read the disk's partition table
    vm.send("dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct && echo READ''-OK");
    vm.expect("READ-OK", STEP);
    let threads = filters_by_thread(vm.child.id());
    let disk_io: Vec<_> = threads.iter().filter(|(n, _)| n == "virtio-blk").collect();
    assert_eq!(disk_io.len(), 1, "{threads:?}");
    // The common pair (clone3's fallback, the allow-list), plus its own.
    assert_eq!(disk_io[0].1, 3, "{threads:?}");
    assert!(
        threads
            .iter()
            .filter(|(n, _)| n != "virtio-blk")
            .all(|(_, filters)| *filters == 2),
        "{threads:?}"
    );
    vm.send("poweroff");
    assert_eq!(vm.wait_exit(LIMIT), 0, "{}", vm.seen);
}
