//! Live migration over loopback: a counting guest moves to a waiting
//! `visor run --incoming` and goes on counting there with its nonce and
//! its RAM (the CRC-32 both ends report matches); a guest that dirties
//! memory faster than it can be copied still moves within the round
//! limit; a destination that dies leaves the source running; a busy port
//! and a stream that is not a migration get one clear line.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on (now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `guest` under `engine` with its control socket in `dir`.
fn source(dir: &Path, guest_name: &str) -> (Session, PathBuf) {
    let socket = dir.join("api.sock");
    let mut cmd = visor();
    cmd.args(["run", "--bios", "none", "--kernel"])
        .arg(guest(guest_name))
        .arg("--api-sock")
        .arg(&socket);
    (Session::start(cmd), socket)
}

/// `visor run --incoming tcp:127.0.0.1:PORT`, once it listens.
fn destination(port: u16, engine: &str) -> Session {
    let mut cmd = visor();
    cmd.args(["run", "--engine", engine, "--incoming"])
        .arg(format!("tcp:127.0.0.1:{port}"));
    let session = Session::start(cmd);
    let address = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + LIMIT;
    // It listens once the port is taken.
    while TcpListener::bind(&address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the destination never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    session
}

fn migrate(socket: &Path, port: u16, extra: &[&str]) -> Output {
    let mut cmd = visor();
    cmd.arg("migrate")
        .arg("--api-sock")
        .arg(socket)
        .arg("--to")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .args(extra);
    run_with_timeout(cmd, LIMIT)
}

/// The value of `key` in the migration report (one JSON line).
fn report_field(out: &Output, key: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match &report[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn a_counting_guest_migrates_and_counts_on_with_its_nonce_and_ram() {
    let dir = scratch_dir("migrate-counter");
    let port = free_port();
    let mut target = destination(port, "interp");
    let (mut source, socket) = source(&dir, "counter");
    source.expect("count 3 ", LIMIT);
    let out = migrate(&socket, port, &["--verify-ram"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        source.wait_exit(LIMIT),
        0,
        "the source ends once the destination runs"
    );
    assert!(source.stderr().contains("migrated"));
    source.collect(Duration::from_millis(100));
    let last_before = counts(&source.seen).last().unwrap().0;
    target.expect(&format!("count {} ", last_before + 3), LIMIT);
    // The console is seamless: the source's output and then the
    // destination's (which may finish the source's last line) count 1, 2,
    // 3, ... with one nonce, with no reboot between.
    let both = format!("{}{}", source.seen, target.seen);
    let all = counts(&both);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, (n, _, _))| *n == i as u64 + 1),
        "{both}"
    );
    assert!(all.iter().all(|(_, n, _)| *n == all[0].1), "{both}");
    assert!(all.len() as u64 > last_before + 1, "{both}");
    assert!(
        !target.seen.contains("booted") && !target.seen.contains("FAIL"),
        "{}",
        target.seen
    );
    // RAM at the source's pause is RAM at the destination before it ran.
    let crc = report_field(&out, "ram_crc32");
    let _ = target.child.kill();
    let _ = target.child.wait();
    assert!(
        target.stderr().contains(&format!("RAM CRC-32 {crc}")),
        "the ends disagree on RAM (source {crc})"
    );
    assert_eq!(report_field(&out, "forced"), "false");
}

#[test]
fn a_guest_that_never_converges_moves_within_the_round_limit() {
    let dir = scratch_dir("migrate-dirtier");
    let port = free_port();
    let mut target = destination(port, "jit");
    let (mut source, socket) = source(&dir, "dirtier");
    source.expect("pass 2\n", LIMIT);
    let out = migrate(&socket, port, &["--downtime-ms", "0", "--max-rounds", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report_field(&out, "forced"), "true");
    assert_eq!(report_field(&out, "rounds"), "3");
    assert_eq!(source.wait_exit(LIMIT), 0);
    source.collect(Duration::from_millis(200));
    // Two more full passes, each checking every word of the last one.
    let last: u64 = source
        .seen
        .lines()
        .filter_map(|l| l.strip_prefix("pass ")?.trim().parse().ok())
        .max()
        .unwrap();
    target.expect(&format!("pass {}\n", last + 2), LIMIT);
    assert!(!target.seen.contains("FAIL"), "{}", target.seen);
    let both = format!("{}{}", source.seen, target.seen);
    let passes: Vec<u64> = both
        .lines()
        .filter_map(|l| l.strip_prefix("pass ")?.trim().parse().ok())
        .collect();
    assert!(
        passes.iter().enumerate().all(|(i, &p)| p == i as u64 + 1),
        "{both}"
    );
}

#[test]
fn a_destination_that_dies_leaves_the_source_running() {
    let dir = scratch_dir("migrate-dies");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A destination that takes the start of the stream, then is gone.
    let dies = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut start = vec![0u8; 64 << 10];
        stream.read_exact(&mut start).unwrap();
    });
    let (mut source, socket) = source(&dir, "counter");
    source.expect("count 2 ", LIMIT);
    let out = migrate(&socket, port, &[]);
    dies.join().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed") && stderr.contains("the VM runs on here"),
        "{stderr}"
    );
    // Still counting, from where it was.
    let seen = counts(&source.seen).last().unwrap().0;
    source.expect(&format!("count {} ", seen + 3), LIMIT);
    assert!(!source.seen.contains("FAIL"));
}

#[test]
fn a_vm_paused_during_a_failed_migration_stays_paused_and_takes_no_snapshot_meanwhile() {
    let dir = scratch_dir("migrate-paused");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A destination that takes the start of the stream and then stalls
    // (the dirtier's 16 MiB do not fit the socket's buffers) until told.
    let (hang_up, hang_up_rx) = std::sync::mpsc::channel::<()>();
    let (reading, reading_rx) = std::sync::mpsc::channel();
    let stalls = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut start = vec![0u8; 64 << 10];
        stream.read_exact(&mut start).unwrap();
        reading.send(()).unwrap();
        let _ = hang_up_rx.recv();
    });
    let (mut source, socket) = source(&dir, "dirtier");
    source.expect("pass 1\n", LIMIT);
    let migration = {
        let socket = socket.clone();
        std::thread::spawn(move || migrate(&socket, port, &[]))
    };
    reading_rx.recv().unwrap();
    let control = |verb: &str, extra: &[&Path]| {
        let mut cmd = visor();
        cmd.arg(verb).arg("--api-sock").arg(&socket).args(extra);
        run_with_timeout(cmd, LIMIT)
    };
    assert!(control("pause", &[]).status.success());
    let out = control("snapshot", &[&dir.join("snap")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "visor: error: a migration is under way; snapshot after it"
    );
    hang_up.send(()).unwrap();
    stalls.join().unwrap();
    let out = migration.join().unwrap();
    assert!(!out.status.success(), "the destination hung up");
    // Paused when the migration failed, so still paused.
    source.collect(Duration::from_millis(200));
    let before = source.seen.len();
    source.collect(Duration::from_millis(500));
    assert_eq!(source.seen.len(), before, "it ran while paused");
    assert!(control("resume", &[]).status.success());
    let passes = source.seen.matches("pass ").count();
    source.expect(&format!("pass {}\n", passes + 2), LIMIT);
    assert!(!source.seen.contains("FAIL"));
}

#[test]
fn a_busy_port_and_a_stream_that_is_not_a_migration_are_refused() {
    let port = free_port();
    let mut first = destination(port, "interp");
    let mut second = visor();
    second
        .args(["run", "--incoming"])
        .arg(format!("tcp:127.0.0.1:{port}"));
    let out = run_with_timeout(second, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("visor: error"))
            .count(),
        1
    );

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    drop(stream);
    assert_eq!(first.wait_exit(LIMIT), 1);
    let stderr = first.stderr();
    assert!(stderr.contains("not a visor migration"), "{stderr}");
}

#[test]
fn a_linux_shell_on_two_harts_goes_on_after_migration_with_its_disk_intact() {
    let dir = scratch_dir("migrate-linux");
    let (mut linux, disk, socket) = linux_for_moving(&dir);
    let port = free_port();
    let mut target = destination(port, "jit");
    let out = migrate(&socket, port, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(linux.wait_exit(LIMIT), 0);

    linux_goes_on(&mut target, &disk, |_| {});
}
