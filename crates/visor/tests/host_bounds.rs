//! A hostile guest against the host's resources (`guests/riscv/host_bounds.c`):
//! a block-table flood of 2 Mi one-instruction blocks, a virtio-console
//! transmit chain of 2 GiB, accesses at and across the end of RAM. The
//! guest checks it gets architectural behaviour; this test checks visor's
//! peak RSS stays under [`PEAK_RSS_BOUND`] — without the block table's
//! bound the flood alone needs ~400 MiB, without the console's cap the
//! chain 2 GiB — and that the console sent exactly its 1 MiB cap.

mod common;
use common::*;
use std::io::Read;
use std::process::Stdio;

/// What visor may hold at its peak: the 64 MiB guest (about 40 MiB of it
/// touched), the JIT's code arena and a full block table, with room.
const PEAK_RSS_BOUND: u64 = 256 << 20;
/// What one virtio-console transmit request sends at most.
const MAX_TRANSMIT: usize = 1 << 20;

#[test]
// The child is reaped by wait4 (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn a_hostile_guest_cannot_make_visor_grow_and_gets_architectural_behaviour() {
    let mut child = visor()
        .args([
            "run",
            "--bios",
            "none",
            "-m",
            "64M",
            "--console",
            "virtio",
            "--kernel",
        ])
        .arg(guest("host_bounds"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting visor");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let out = reader.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: String = text
        .lines()
        .filter(|l| !l.contains("xxxx"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(lines.contains("RESULT pass"), "{lines}\n{stderr}");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status:#x}"
    );
    let sent = out.iter().filter(|&&b| b == b'x').count();
    assert_eq!(
        sent, MAX_TRANSMIT,
        "the console sent its cap of the 2 GiB chain"
    );
    let peak = usage.ru_maxrss as u64 * 1024;
    eprintln!("visor's peak RSS: {} MiB", peak >> 20);
    assert!(
        peak < PEAK_RSS_BOUND,
        "visor's peak RSS {} MiB is over {} MiB",
        peak >> 20,
        PEAK_RSS_BOUND >> 20
    );
}
