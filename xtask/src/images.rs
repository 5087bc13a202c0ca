//! Guest images built by the recipes under `images/`, cached outside the
//! clone under `~/.cache/visor/NAME-HASH`, where HASH covers every file of
//! the recipe, so a changed recipe builds anew and an unchanged one never does.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A recipe directory (holding `build.sh`) and the file it produces. A
/// recipe built from another's output gets that path as its second argument,
/// and its hash covers the input recipe's too.
pub struct Recipe {
    pub name: &'static str,
    pub output: &'static str,
    pub input: Option<&'static Recipe>,
}

pub const LINUX_RISCV64: Recipe = Recipe {
    name: "linux-riscv64",
    output: "Image",
    input: None,
};
pub const INITRAMFS_RISCV64: Recipe = Recipe {
    name: "initramfs-riscv64",
    output: "initramfs.cpio.gz",
    input: None,
};
/// x86-64 Linux `vmlinux` (PVH entry) and its initramfs for the KVM VMM.
pub const LINUX_X86_64: Recipe = Recipe {
    name: "linux-x86_64",
    output: "vmlinux",
    input: None,
};
/// The riscv64 KVM selftests of linux-source-6.1, static, as a cpio archive
/// to append to the initramfs (`/kvm/run` runs them).
pub const KVM_SELFTESTS_RISCV64: Recipe = Recipe {
    name: "kvm-selftests-riscv64",
    output: "kvm-selftests.cpio.gz",
    input: None,
};
/// A 64 MiB ext4 root filesystem holding the initramfs's busybox tree.
pub const ROOTFS_RISCV64: Recipe = Recipe {
    name: "rootfs-riscv64",
    output: "rootfs.ext4",
    input: Some(&INITRAMFS_RISCV64),
};

/// A Debian 13 (trixie) riscv64 system from Debian's packages: systemd,
/// udev, the stock kernel (`vmlinux` beside it) and its initramfs-tools
/// `initrd.img`, for the distribution benchmark.
pub const DEBIAN_RISCV64: Recipe = Recipe {
    name: "debian-riscv64",
    output: "rootfs.ext4",
    input: None,
};

pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("VISOR_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("visor")
}

/// Every file under `dir`, as paths relative to it, sorted.
fn recipe_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        for entry in std::fs::read_dir(&here)
            .with_context(|| format!("reading recipe {}", here.display()))?
        {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Hash of every file under the recipe directory (relative paths and
/// contents, sorted), and of its input recipe.
fn recipe_hash(root: &Path, recipe: &Recipe) -> Result<String> {
    let dir = root.join("images").join(recipe.name);
    let mut hasher = Sha256::new();
    if let Some(input) = recipe.input {
        hasher.update(recipe_hash(root, input)?);
    }
    for file in recipe_files(&dir)? {
        hasher.update(file.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(dir.join(&file))?);
        hasher.update([0]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Returns the path of the recipe's output, building it first if it is not cached.
pub fn ensure(root: &Path, recipe: &Recipe) -> Result<PathBuf> {
    let dir = root.join("images").join(recipe.name);
    let input = recipe.input.map(|i| ensure(root, i)).transpose()?;
    let hash = recipe_hash(root, recipe)?;
    let cached = cache_root().join(format!("{}-{hash}", recipe.name));
    let output = cached.join(recipe.output);
    if output.is_file() {
        return Ok(output);
    }
    eprintln!(
        "[xtask] building image {} (recipe {hash}) into {}",
        recipe.name,
        cached.display()
    );
    let partial = cache_root().join(format!("{}-{hash}.partial", recipe.name));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .arg(&partial)
        .args(input)
        .status()
        .context("running the image recipe")?;
    if !status.success() {
        bail!("image recipe {} failed ({status})", recipe.name);
    }
    let _ = std::fs::remove_dir_all(&cached);
    std::fs::rename(&partial, &cached)?;
    Ok(output)
}
