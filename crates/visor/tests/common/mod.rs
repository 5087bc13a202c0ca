//! Helpers shared by visor's end-to-end tests: building the guest programs,
//! locating images, running visor and QEMU.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

/// Builds guests/riscv once per test binary and returns the output directory.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let out = root.join("target/guests/riscv");
        let status = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(root.join("guests/riscv"))
            .arg(format!("OUT={}", out.display()))
            .status()
            .expect("running make for the guest programs (needs gcc-riscv64-unknown-elf)");
        assert!(status.success(), "building guests/riscv failed");
        out
    })
}

pub fn guest(name: &str) -> PathBuf {
    guests().join(format!("{name}.elf"))
}

/// The ISA and privileged guest programs.
pub const PROGRAMS: &[&str] = &[
    "int",
    "amo",
    "fp",
    "compressed",
    "traps",
    "misaligned",
    "vm",
    "interrupts",
    "pmp",
    "hyp",
    "hyp_spec",
    "hyp_hostile",
];

pub fn visor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visor"))
}

/// Runs a command to completion with a time limit, capturing output
/// (collected on a thread, so a chatty guest never blocks on a full pipe).
pub fn run_with_timeout(mut command: Command, limit: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawning");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("collecting output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().expect("child reaped").expect("collecting output");
            panic!(
                "{command:?} ran past {limit:?}; output so far:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// A guest image built by `cargo xtask`, named by an environment variable.
pub fn image(var: &str) -> PathBuf {
    let path = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with `cargo xtask test`, which builds the guest images")
    });
    PathBuf::from(path)
}

/// Linux under visor, driven through its console like a person at a shell.
pub struct Session {
    pub child: std::process::Child,
    output: mpsc::Receiver<u8>,
    pub seen: String,
}

impl Session {
    /// Boots Linux with the busybox initramfs, plus `extra` visor options.
    pub fn boot(extra: &[&str]) -> Session {
        let mut cmd = visor();
        cmd.arg("run")
            .arg("--initrd")
            .arg(image("VISOR_INITRAMFS"))
            .args(extra);
        Session::linux(cmd)
    }

    /// Boots Linux with its root filesystem on the disk `extra` attaches
    /// (`root` names the guest device), no initramfs.
    pub fn boot_from_disk(root: &str, extra: &[&str]) -> Session {
        let mut cmd = visor();
        cmd.arg("run")
            .arg("--append")
            .arg(format!("console=ttyS0 root={root} rw"))
            .args(extra);
        Session::linux(cmd)
    }

    fn linux(mut cmd: Command) -> Session {
        cmd.arg("--kernel").arg(image("VISOR_LINUX_IMAGE"));
        Session::start(cmd)
    }

    /// Starts `cmd` with piped stdin/stdout.
    pub fn start(mut cmd: Command) -> Session {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
    pub fn expect(&mut self, text: &str, limit: Duration) {
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

    /// Adds to `seen` whatever the console prints within `wait`.
    pub fn collect(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(b) = self
            .output
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(b as char);
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
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

    /// What visor printed on stderr (the `--stats` table), once it has exited.
    pub fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

pub const BOOT: Duration = Duration::from_secs(180);
pub const STEP: Duration = Duration::from_secs(60);

impl Drop for Session {
    /// A test that fails mid-session must not leave its guest running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test, emptied first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("visor-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A network namespace (for tests that need root) with a TAP interface
/// `tap` holding `host_ip`/24; removed on drop.
pub struct Namespace(pub String);

impl Namespace {
    pub fn create(tap: &str, host_ip: &str) -> Namespace {
        let name = format!("visor-net-{}-{tap}", std::process::id());
        let ns = Namespace(name.clone());
        let address = format!("{host_ip}/24");
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "tuntap", "add", "dev", tap, "mode", "tap"]);
        ip(&["-n", &name, "addr", "add", &address, "dev", tap]);
        ip(&["-n", &name, "link", "set", tap, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// `cmd ARGS` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// Moves the calling thread into the namespace (sockets it opens live there).
    pub fn enter(&self) {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.0)).unwrap();
        // SAFETY: setns on an open namespace descriptor affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespace {
    /// Enters the namespace from a helper thread without deleting it afterwards.
    pub fn enter_and_forget(self) {
        self.enter();
        std::mem::forget(self);
    }
}

/// A private copy of the ext4 root filesystem image.
pub fn rootfs_copy(dir: &Path) -> String {
    let copy = dir.join("rootfs.ext4");
    std::fs::copy(image("VISOR_ROOTFS"), &copy).expect("copying the rootfs image");
    copy.display().to_string()
}

/// `debugfs -R "cat PATH"` on the host.
pub fn host_cat(image: &str, path: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), image])
        .output()
        .expect("running debugfs (e2fsprogs)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_fsck_clean(image: &str) {
    let out = Command::new("e2fsck")
        .args(["-fn", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck found problems in {image}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Waits for the initramfs's or root filesystem's shell prompt.
pub fn shell_ready(s: &mut Session) {
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
}

/// The (count, nonce, sum) of each complete "count" line that
/// `guests/riscv/counter.c` printed in `text`.
pub fn counts(text: &str) -> Vec<(u64, String, String)> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["count", n, "nonce", nonce, "sum", sum] if sum.len() == 18 => {
                    Some((n.parse().ok()?, nonce.to_owned(), sum.to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Linux on two harts with its root on a private copy of the rootfs in
/// `dir`, a scratch disk on the PATA controller, and its control socket
/// there, at a shell that has written /root/before and sector 1 of the
/// PATA disk: (session, root image, socket).
pub fn linux_for_moving(dir: &Path) -> (Session, String, PathBuf) {
    let disk = rootfs_copy(dir);
    let pata = pata_scratch(&disk);
    std::fs::write(&pata, vec![0u8; 1 << 20]).unwrap();
    let pata_arg = format!("{},if=ide", pata.display());
    let socket = dir.join("api.sock");
    let socket_arg = socket.display().to_string();
    let mut linux = Session::boot_from_disk(
        "/dev/vda",
        &[
            "--disk",
            &disk,
            "--disk",
            &pata_arg,
            "--smp",
            "2",
            "--api-sock",
            &socket_arg,
        ],
    );
    shell_ready(&mut linux);
    linux.send(
        "echo before-$((40+2)) > /root/before; echo pata-before | dd of=/dev/sda bs=512 seek=1 2>/dev/null; sync; echo nproc=$(nproc)",
    );
    linux.expect("nproc=2", STEP);
    linux.expect("# ", STEP);
    (linux, disk, socket)
}

/// The scratch disk on the PATA controller beside the root image `disk`.
fn pata_scratch(disk: &str) -> PathBuf {
    Path::new(disk).with_file_name("pata.img")
}

/// The moved Linux of [`linux_for_moving`] in `moved` goes on: it reads
/// /root/before, writes /root/after, still has two harts, did not reboot;
/// after `extra` (more checks), it powers off and both files are on the
/// image, which `e2fsck` finds clean.
pub fn linux_goes_on(moved: &mut Session, disk: &str, extra: impl FnOnce(&mut Session)) {
    moved.send("cat /root/before; echo after-$((40+3)) > /root/after; sync; echo nproc=$(nproc)");
    moved.expect("before-42", STEP);
    moved.expect("nproc=2", STEP);
    moved.expect("# ", STEP);
    moved.send(
        "dd if=/dev/sda bs=512 skip=1 count=1 2>/dev/null | head -c 11; echo; echo pata-after | dd of=/dev/sda bs=512 seek=2 2>/dev/null; sync; echo PATA''-DONE",
    );
    moved.expect("pata-before", STEP);
    moved.expect("PATA-DONE", STEP);
    moved.expect("# ", STEP);
    extra(moved);
    assert!(
        !moved.seen.contains("Linux version"),
        "it rebooted:\n{}",
        moved.seen
    );
    moved.send("poweroff");
    assert_eq!(moved.wait_exit(STEP), 0);
    assert_eq!(host_cat(disk, "/root/before"), "before-42\n");
    assert_eq!(host_cat(disk, "/root/after"), "after-43\n");
    let pata = std::fs::read(pata_scratch(disk)).unwrap();
    assert_eq!(&pata[512..524], b"pata-before\n", "the PATA disk, sector 1");
    assert_eq!(
        &pata[1024..1035],
        b"pata-after\n",
        "the PATA disk, sector 2"
    );
    assert_fsck_clean(disk);
}
