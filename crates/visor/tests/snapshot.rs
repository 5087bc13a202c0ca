//! Snapshots through the control API: a guest that counts is paused,
//! snapshotted and restored (also under another engine) and goes on
//! counting with its boot nonce — not a reboot — and with RAM exactly as
//! it was; damaged snapshots and requests in the wrong state get one clear
//! line and change nothing.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The counting guest under `engine`, with its control socket in `dir`.
fn counting(dir: &Path, engine: &str) -> (Session, PathBuf) {
    let socket = dir.join("api.sock");
    let mut cmd = visor();
    cmd.args(["run", "--bios", "none", "--engine", engine, "--kernel"])
        .arg(guest("counter"))
        .arg("--api-sock")
        .arg(&socket);
    (Session::start(cmd), socket)
}

/// `visor VERB --api-sock SOCKET [ARGS]`.
fn control(verb: &str, socket: &Path, args: &[&Path]) -> Output {
    let mut cmd = visor();
    cmd.arg(verb).arg("--api-sock").arg(socket).args(args);
    run_with_timeout(cmd, LIMIT)
}

fn succeeds(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the session has printed, after `wait` more.
fn printed_within(session: &mut Session, wait: Duration) -> String {
    session.collect(wait);
    session.seen.clone()
}

#[test]
fn a_snapshot_resumes_counting_with_the_same_nonce_under_either_engine() {
    let dir = scratch_dir("snapshot");
    let (mut source, socket) = counting(&dir, "jit");
    source.expect("count 5 ", LIMIT);

    succeeds(&control("pause", &socket, &[]), "pause");
    let at_pause = printed_within(&mut source, Duration::from_millis(300));
    let paused = counts(&at_pause);
    let (last, nonce, _) = paused.last().cloned().expect("counted before the pause");
    // Paused: no hart runs, guest time stands still.
    let later = printed_within(&mut source, Duration::from_millis(400));
    assert_eq!(
        counts(&later).len(),
        paused.len(),
        "it counted while paused"
    );

    let snapshot = dir.join("snap");
    succeeds(&control("snapshot", &socket, &[&snapshot]), "snapshot");
    succeeds(&control("resume", &socket, &[]), "resume");
    source.expect(&format!("count {} ", last + 5), LIMIT);
    let original = counts(&source.seen);
    drop(source);

    for engine in ["interp", "jit"] {
        let mut cmd = visor();
        cmd.args(["run", "--engine", engine, "--restore"])
            .arg(&snapshot);
        let mut restored = Session::start(cmd);
        restored.expect(&format!("count {} ", last + 5), LIMIT);
        let text = restored.seen.clone();
        assert!(!text.contains("booted"), "{engine}: it rebooted:\n{text}");
        assert!(!text.contains("FAIL"), "{engine}:\n{text}");
        let resumed = counts(&text);
        // It goes on from the next count, with the nonce and, count by
        // count, the very RAM contents (their checksum) of the original.
        assert_eq!(resumed[0].0, last + 1, "{engine}:\n{text}");
        assert!(
            resumed.iter().all(|(_, n, _)| *n == nonce),
            "{engine}:\n{text}"
        );
        for (count, _, sum) in &resumed {
            let theirs = original.iter().find(|(c, _, _)| c == count).unwrap();
            assert_eq!(&theirs.2, sum, "{engine}: RAM after count {count}");
        }
    }
}

#[test]
fn a_snapshot_loaded_over_the_running_vm_takes_it_back_to_that_moment() {
    let dir = scratch_dir("snapshot-load");
    let (mut vm, socket) = counting(&dir, "jit");
    vm.expect("count 2 ", LIMIT);
    succeeds(&control("pause", &socket, &[]), "pause");
    let at_pause = printed_within(&mut vm, Duration::from_millis(200));
    let (last, nonce, _) = counts(&at_pause).last().cloned().unwrap();
    let snapshot = dir.join("snap");
    succeeds(&control("snapshot", &socket, &[&snapshot]), "snapshot");
    succeeds(&control("resume", &socket, &[]), "resume");
    vm.expect(&format!("count {} ", last + 4), LIMIT);

    // Only a paused VM takes a snapshot over it; a refused one leaves it as it was.
    let out = control("load", &socket, &[&snapshot]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "visor: error: the VM must be paused to load a snapshot over it"
    );
    succeeds(&control("pause", &socket, &[]), "pause");
    let out = control("load", &socket, &[&dir.join("missing")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot load") && stderr.contains("No such file"),
        "{stderr}"
    );
    let before_load = counts(&printed_within(&mut vm, Duration::from_millis(100)));
    // Beyond whatever it counted before this pause (the refused requests
    // take a while on a loaded host): it runs again.
    let (counted, _, _) = before_load.last().cloned().unwrap();
    succeeds(&control("resume", &socket, &[]), "resume");
    vm.expect(&format!("count {} ", counted + 2), LIMIT);

    // Loaded paused, then resumed: it counts from the snapshot's moment on.
    succeeds(&control("pause", &socket, &[]), "pause");
    // What it printed up to the pause (a line may still be on its way).
    printed_within(&mut vm, Duration::from_millis(100));
    let seen_before = vm.seen.len();
    succeeds(&control("load", &socket, &[&snapshot]), "load");
    let loaded = printed_within(&mut vm, Duration::from_millis(300));
    assert!(
        counts(&loaded[seen_before..]).is_empty(),
        "a VM loaded paused stays paused"
    );
    succeeds(&control("resume", &socket, &[]), "resume");
    vm.expect(&format!("count {} ", last + 3), LIMIT);
    let text = vm.seen[seen_before..].to_owned();
    let after = counts(&text);
    assert_eq!(after[0].0, last + 1, "{text}");
    assert!(after.iter().all(|(_, n, _)| *n == nonce), "{text}");
    assert!(
        !text.contains("booted"),
        "not a reboot:
{text}"
    );
    assert!(counted > last);
    // The API still drives the loaded VM.
    let out = control("load", &socket, &[&snapshot]);
    assert!(!out.status.success(), "running again");
}

#[test]
fn requests_in_the_wrong_state_and_bad_json_are_refused() {
    let dir = scratch_dir("snapshot-refusals");
    let (mut source, socket) = counting(&dir, "jit");
    source.expect("count 2 ", LIMIT);
    let out = control("snapshot", &socket, &[&dir.join("running")]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "visor: error: the VM must be paused to snapshot it"
    );
    assert!(!dir.join("running").exists(), "nothing was written");
    for (request, answer) in [
        (
            "PATCH /vm HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"state\":",
            "400",
        ),
        (
            "PATCH /vm HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"state\":\"Frozen\"}",
            "unknown state `Frozen`",
        ),
        ("GET /nowhere HTTP/1.1\r\n\r\n", "404"),
        ("DELETE /vm HTTP/1.1\r\n\r\n", "405"),
        ("GET /vm/config HTTP/1.1\r\n\r\n", "\"state\":\"Running\""),
    ] {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.contains(answer), "{request:?} -> {response}");
    }
    // Still counting.
    source.expect("count 4 ", LIMIT);
}

#[test]
fn damaged_snapshots_are_refused_with_one_line() {
    let dir = scratch_dir("snapshot-damaged");
    let (mut source, socket) = counting(&dir, "interp");
    source.expect("count 2 ", LIMIT);
    let good = dir.join("good");
    succeeds(&control("pause", &socket, &[]), "pause");
    succeeds(&control("snapshot", &socket, &[&good]), "snapshot");
    drop(source);

    let state = std::fs::read(good.join("state")).unwrap();
    let damaged = |name: &str, state: &[u8], memory_len: Option<u64>| -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("state"), state).unwrap();
        std::fs::copy(good.join("memory"), d.join("memory")).unwrap();
        if let Some(len) = memory_len {
            std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("memory"))
                .unwrap()
                .set_len(len)
                .unwrap();
        }
        d
    };
    let mut flipped = state.clone();
    let middle = state.len() / 2;
    flipped[middle] ^= 0x20;
    let mut version = state.clone();
    version[8] = 7;
    // A well-formed state (its CRC right) of a machine other than its
    // memory and harts describe.
    let reconfigured = |edit: &dyn Fn(&mut serde_json::Value)| -> Vec<u8> {
        const HEADER: usize = 8 + 4 + 8;
        let mut json: serde_json::Value =
            serde_json::from_slice(&state[HEADER..state.len() - 4]).unwrap();
        edit(&mut json);
        let payload = serde_json::to_vec(&json).unwrap();
        let mut file = state[..12].to_vec();
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&payload);
        file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        file
    };
    let two_harts = reconfigured(&|j| j["config"]["harts"] = 2.into());
    let more_ram = reconfigured(&|j| j["config"]["ram_size"] = (256u64 << 20).into());
    let a_disk = reconfigured(&|j| {
        j["config"]["disks"] =
            serde_json::json!([{"path": "/nonexistent/disk.img", "read_only": false}])
    });
    let cases = [
        (
            damaged("truncated", &state[..state.len() - 9], None),
            "truncated",
        ),
        (damaged("flipped", &flipped, None), "CRC mismatch"),
        (
            damaged("version", &version, None),
            "snapshot format version 7",
        ),
        (
            damaged("short-memory", &state, Some(1 << 20)),
            "but the snapshot's RAM is",
        ),
        (dir.join("missing"), "No such file"),
        (
            damaged("two-harts", &two_harts, None),
            "a machine with 2 harts and the state of 1",
        ),
        (
            damaged("more-ram", &more_ram, None),
            "but the snapshot's RAM is 268435456",
        ),
        (damaged("a-disk", &a_disk, None), "/nonexistent/disk.img"),
    ];
    for (snapshot, reason) in cases {
        let mut cmd = visor();
        cmd.args(["run", "--restore"]).arg(&snapshot);
        let out = run_with_timeout(cmd, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {stderr}",
            snapshot.display()
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(reason), "{}: {stderr}", snapshot.display());
        assert!(out.stdout.is_empty(), "nothing ran");
    }
}

#[test]
fn a_linux_shell_on_two_harts_goes_on_after_a_diff_restore_with_its_disk_intact() {
    let dir = scratch_dir("snapshot-linux");
    let (mut source, disk, socket) = linux_for_moving(&dir);
    succeeds(&control("pause", &socket, &[]), "pause");
    let base = dir.join("base");
    succeeds(&control("snapshot", &socket, &[&base]), "snapshot");
    succeeds(&control("resume", &socket, &[]), "resume");
    // Pages the disk's DMA fills after the full snapshot: a diff must hold
    // them (the device's writes are tracked as well as the harts').
    source.send("echo 3 > /proc/sys/vm/drop_caches; md5sum /bin/busybox");
    source.expect("/bin/busybox", STEP);
    source.expect("# ", STEP);
    let hash = source
        .seen
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_suffix("  /bin/busybox"))
        .expect("md5sum printed")
        .to_owned();
    succeeds(&control("pause", &socket, &[]), "pause");
    let snapshot = dir.join("diff");
    succeeds(
        &control("snapshot", &socket, &[Path::new("--diff"), &snapshot]),
        "diff snapshot",
    );
    drop(source); // the source is gone: only the snapshots go on

    let mut cmd = visor();
    cmd.args(["run", "--restore"]).arg(&snapshot);
    let mut restored = Session::start(cmd);
    linux_goes_on(&mut restored, &disk, |restored| {
        // From the page cache the disk filled before the diff.
        restored.send("md5sum /bin/busybox");
        restored.expect(&format!("{hash}  /bin/busybox"), STEP);
        restored.expect("# ", STEP);
    });
}

/// Bytes the file at `path` takes on disk (holes take none).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_diff_snapshot_holds_only_what_changed_and_restores_on_its_base() {
    let dir = scratch_dir("snapshot-diff");
    let (mut source, socket) = counting(&dir, "jit");
    source.expect("count 3 ", LIMIT);
    succeeds(&control("pause", &socket, &[]), "pause");
    let early = dir.join("early");
    let out = control("snapshot", &socket, &[Path::new("--diff"), &early]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("a diff snapshot needs an earlier snapshot of this VM"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = dir.join("base");
    succeeds(&control("snapshot", &socket, &[&base]), "full snapshot");
    succeeds(&control("resume", &socket, &[]), "resume");
    let resumed_at = counts(&printed_within(&mut source, Duration::ZERO))
        .last()
        .unwrap()
        .0;
    source.expect(&format!("count {} ", resumed_at + 5), LIMIT);
    succeeds(&control("pause", &socket, &[]), "pause");
    let diff = dir.join("diff");
    succeeds(
        &control("snapshot", &socket, &[Path::new("--diff"), &diff]),
        "diff snapshot",
    );
    let (last, nonce, _) = counts(&printed_within(&mut source, Duration::from_millis(200)))
        .last()
        .cloned()
        .unwrap();
    succeeds(&control("resume", &socket, &[]), "resume");
    source.expect(&format!("count {} ", last + 3), LIMIT);
    let original = counts(&source.seen);
    drop(source);

    // Five counts touched a few pages of the 256 KiB buffer and the stack.
    let (full, partial) = (
        allocated(&base.join("memory")),
        allocated(&diff.join("memory")),
    );
    assert!(
        partial * 4 < full,
        "diff {partial} bytes, full {full} bytes"
    );

    let mut cmd = visor();
    cmd.args(["run", "--engine", "interp", "--restore"])
        .arg(&diff);
    let mut restored = Session::start(cmd);
    restored.expect(&format!("count {} ", last + 3), LIMIT);
    let resumed = counts(&restored.seen);
    assert_eq!(resumed[0].0, last + 1, "{}", restored.seen);
    for (count, n, sum) in &resumed {
        assert_eq!(n, &nonce);
        let theirs = original.iter().find(|(c, _, _)| c == count).unwrap();
        assert_eq!(&theirs.2, sum, "RAM after count {count}");
    }
    assert!(!restored.seen.contains("FAIL"), "{}", restored.seen);
}
