//! Helpers shared by visor's end-to-end tests: building the guest programs,
//! locating images, running visor and QEMU.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

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
    "vm",
    "interrupts",
    "pmp",
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
