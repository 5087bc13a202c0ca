//! `cargo xtask`: the project's automation.
//!
//! - `boot [VISOR-ARGS…]`: install dependencies, build missing images, boot Linux to a shell.
//! - `test [CARGO-TEST-ARGS…]`: the same preparation, then the whole test suite.
//! - `images`: build missing images and print their paths.
//! - `fuzz [SECONDS] [TARGET…]`: the libFuzzer targets in `fuzz/` (`fuzz.rs`);
//!   `test` runs each for a short fixed time.
//! - `bench [engine|workloads|paravirt|kvm|hypervisor]`: visor against QEMU
//!   on the same images (`bench.rs`; the CPU workload set inside Linux in
//!   `bench_workloads.rs`), emulated against paravirtual devices
//!   (`bench_paravirt.rs`), the KVM VMM against qemu-system-x86_64
//!   (`bench_kvm.rs`), VS-mode against S-mode (`bench_hypervisor.rs`), and
//!   the Type 1 hypervisor's VMs against the bare machine (`bench_type1.rs`).

mod bench;
mod bench_distro;
mod bench_hypervisor;
mod bench_kvm;
mod bench_migration;
mod bench_paravirt;
mod bench_type1;
mod bench_workloads;
mod fuzz;
mod images;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs the dependency installer (apt packages) when something is missing;
/// `extra` names optional sets (`--distro`).
pub(crate) fn install_deps(root: &Path, extra: &[&str]) -> Result<()> {
    let status = Command::new("bash")
        .arg(root.join("scripts/install-deps.sh"))
        .args(extra)
        .status()?;
    if !status.success() {
        bail!("installing dependencies failed; see scripts/install-deps.sh");
    }
    Ok(())
}

/// The Rust target the Type 1 hypervisor (hypervisor/) builds for.
const HYPERVISOR_TARGET: &str = "riscv64gc-unknown-none-elf";

/// Builds the Type 1 hypervisor (its own workspace, another target),
/// adding the rustup target first if it is missing, and returns the ELF.
fn build_hypervisor(root: &Path) -> Result<PathBuf> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the hypervisor needs the riscv64gc-unknown-none-elf target)")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == HYPERVISOR_TARGET)
    {
        eprintln!("[xtask] rustup target add {HYPERVISOR_TARGET}");
        run({
            let mut c = Command::new("rustup");
            c.args(["target", "add", HYPERVISOR_TARGET]);
            c
        })?;
    }
    let dir = root.join("hypervisor");
    run({
        let mut c = cargo();
        // The hypervisor's .cargo/config.toml (its target) applies from its directory.
        c.current_dir(&dir).args(["build", "--release", "--quiet"]);
        c
    })?;
    Ok(dir.join(format!("target/{HYPERVISOR_TARGET}/release/visor-hv")))
}

/// Guest images every engine test and benchmark uses.
pub struct Images {
    pub linux: PathBuf,
    /// The out-of-tree module of the hypervisor's hypercalls, built with
    /// that kernel (beside its Image).
    pub visor_ipc: PathBuf,
    pub initramfs: PathBuf,
    /// ext4 root filesystem for virtio-blk and PATA tests (copy it before writing).
    pub rootfs: PathBuf,
    /// The KVM selftests (a cpio archive for `/kvm`).
    pub kvm_selftests: PathBuf,
    /// The Type 1 hypervisor's ELF.
    pub hypervisor: PathBuf,
    /// x86-64 vmlinux for the KVM VMM's Linux test: built only where the host
    /// CPU has hardware virtualization, the only place that test can run.
    pub linux_x86_64: Option<PathBuf>,
}

/// Whether the host CPU advertises VMX or SVM.
fn hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "vmx" || w == "svm"))
        .unwrap_or(false)
}

fn prepare(root: &Path) -> Result<Images> {
    let started = std::time::Instant::now();
    install_deps(root, &[])?;
    eprintln!(
        "[xtask] dependencies ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let linux = images::ensure(root, &images::LINUX_RISCV64)?;
    let images = Images {
        visor_ipc: linux.with_file_name("visor_ipc.ko"),
        linux,
        initramfs: images::ensure(root, &images::INITRAMFS_RISCV64)?,
        rootfs: images::ensure(root, &images::ROOTFS_RISCV64)?,
        kvm_selftests: images::ensure(root, &images::KVM_SELFTESTS_RISCV64)?,
        hypervisor: build_hypervisor(root)?,
        linux_x86_64: if hardware_virtualization() {
            Some(images::ensure(root, &images::LINUX_X86_64)?)
        } else {
            eprintln!("[xtask] no vmx/svm on this CPU: not building the x86-64 Linux guest (its test skips)");
            None
        },
    };
    eprintln!(
        "[xtask] images ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(images)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// `test`'s command again, for the unit tests and the guest-program
/// suite under the `overflow` profile.
fn with_overflow_checks(test: &Command) -> Command {
    let mut c = cargo();
    c.current_dir(test.get_current_dir().unwrap_or(Path::new(".")))
        .args([
            "test",
            "--workspace",
            "--profile",
            "overflow",
            "--lib",
            "--bins",
        ])
        .args(["--test", "guest_programs"]);
    for (key, value) in test.get_envs() {
        if let Some(value) = value {
            c.env(key, value);
        }
    }
    c
}

/// Errors are one line (with their causes), never a backtrace: a failed apt
/// run or image build is not a crash, whatever `RUST_BACKTRACE` says.
fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[xtask] error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask() -> Result<()> {
    let root = project_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match command {
        "images" => {
            let images = prepare(&root)?;
            for image in [
                &images.linux,
                &images.visor_ipc,
                &images.initramfs,
                &images.rootfs,
                &images.kvm_selftests,
            ] {
                println!("{}", image.display());
            }
        }
        "boot" => {
            let images = prepare(&root)?;
            run({
                let mut c = cargo();
                c.current_dir(&root)
                    .args(["build", "--release", "--quiet", "-p", "visor"]);
                c
            })?;
            let mut visor = Command::new(root.join("target/release/visor"));
            visor
                .arg("run")
                .arg("--kernel")
                .arg(&images.linux)
                .arg("--initrd")
                .arg(&images.initramfs)
                .args(rest);
            eprintln!("[xtask] booting Linux under visor; `poweroff` or Ctrl-A x ends it");
            let status = visor.status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        "test" => {
            let images = prepare(&root)?;
            let mut c = cargo();
            c.current_dir(&root)
                .args(["test", "--workspace", "--release"])
                .args(rest)
                .env("VISOR_LINUX_IMAGE", &images.linux)
                .env("VISOR_IPC_MODULE", &images.visor_ipc)
                .env("VISOR_INITRAMFS", &images.initramfs)
                .env("VISOR_ROOTFS", &images.rootfs)
                .env("VISOR_KVM_SELFTESTS", &images.kvm_selftests)
                .env("VISOR_HYPERVISOR", &images.hypervisor);
            if let Some(vmlinux) = &images.linux_x86_64 {
                c.env("VISOR_LINUX_X86_64", vmlinux);
            }
            let checked = with_overflow_checks(&c);
            let started = std::time::Instant::now();
            run(c)?;
            eprintln!(
                "[xtask] tests passed ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            // Unless a test was named: the unit tests and the guest
            // programs again, with overflow checks and debug assertions.
            if rest.is_empty() {
                let started = std::time::Instant::now();
                run(checked)?;
                eprintln!(
                    "[xtask] unit tests and guest programs with overflow checks passed ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                let started = std::time::Instant::now();
                fuzz::run(&root, fuzz::TARGETS, fuzz::CI_SECONDS)?;
                eprintln!(
                    "[xtask] every fuzz target ran {} s without a failure ({:.1} s)",
                    fuzz::CI_SECONDS,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        "fuzz" => fuzz::run_from_args(&root, rest)?,
        "bench" => {
            let images = prepare(&root)?;
            bench::run(&root, &images, rest)?;
        }
        _ => {
            eprintln!("usage: cargo xtask (boot [VISOR-ARGS…] | test [CARGO-TEST-ARGS…] | images | fuzz [SECONDS] [TARGET…] | bench)");
            if command != "help" {
                std::process::exit(2);
            }
        }
    }
    Ok(())
}
