//! What the boards' fuzz bodies share (`riscv-virt` and `kvm-vmm`): inputs
//! cut into images, files to hand loaders that take paths, and the seeded
//! pseudo-random inputs their unit tests run the bodies on.

use arbitrary::Unstructured;
use std::path::PathBuf;

/// `count` byte strings from `u`, each behind a 16-bit length (taken
/// modulo what is left, so every input splits).
pub fn parts(u: &mut Unstructured, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let length = u.arbitrary::<u16>().unwrap_or(0) as usize % (u.len() + 1);
            u.bytes(length).unwrap_or(&[]).to_vec()
        })
        .collect()
}

/// Writes `bytes` to `name` in this process's scratch directory for
/// `body` and returns its path.
pub fn scratch_file(body: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("visor-fuzz-{body}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a temporary file");
    path
}

/// `len` pseudo-random bytes from the xorshift `state`.
pub fn pseudo_random(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state >> 29) as u8
        })
        .collect()
}
