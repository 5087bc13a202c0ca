//! End-to-end: OpenSBI + Linux + busybox under visor, driven through the
//! console like a person at a shell. Needs the images `cargo xtask test` builds.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Session {
    child: std::process::Child,
    output: mpsc::Receiver<u8>,
    seen: String,
}

impl Session {
    fn boot(extra: &[&str]) -> Session {
        let mut cmd = visor();
        cmd.arg("run")
            .arg("--kernel")
            .arg(image("VISOR_LINUX_IMAGE"))
            .arg("--initrd")
            .arg(image("VISOR_INITRAMFS"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("starting visor");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || buf[..n].iter().any(|&b| tx.send(b).is_err()) {
                    break;
                }
            }
        });
        Session {
            child,
            output: rx,
            seen: String::new(),
        }
    }

    /// Waits until the console has printed `text` (after what was already consumed).
    fn expect(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut fresh = String::new();
        loop {
            if fresh.contains(text) {
                self.seen.push_str(&fresh);
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => fresh.push(b as char),
                Err(_) => panic!(
                    "console never showed {text:?}; it showed:\n{}{fresh}",
                    self.seen
                ),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn wait_exit(mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("visor did not exit after poweroff; console:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const BOOT: Duration = Duration::from_secs(180);
const STEP: Duration = Duration::from_secs(60);

#[test]
fn linux_boots_to_a_shell_and_powers_off() {
    let mut s = Session::boot(&[]);
    s.expect("OpenSBI v1.1", BOOT);
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
    let mut s = Session::boot(&[
        "--bios",
        "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin",
    ]);
    s.expect("Domain0 Next Arg1         : 0x0000000082200000", BOOT);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send("uname -m");
    s.expect("riscv64", STEP);
    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0);
}
