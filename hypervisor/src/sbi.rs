//! Calls into OpenSBI (the SBI implementation beneath the hypervisor), and
//! the SBI numbers guests use.

/// Extension IDs.
pub const EID_LEGACY_PUTCHAR: usize = 0x01;
pub const EID_BASE: usize = 0x10;
pub const EID_DBCN: usize = 0x4442_434e;
pub const EID_SRST: usize = 0x5352_5354;
pub const EID_TIME: usize = 0x5449_4d45;
pub const EID_IPI: usize = 0x0073_5049;
pub const EID_RFENCE: usize = 0x5246_4e43;
pub const EID_HSM: usize = 0x0048_534d;
/// HSM's functions, and its hart states.
pub const HSM_HART_START: usize = 0;
pub const HSM_HART_STOP: usize = 1;
pub const HSM_HART_GET_STATUS: usize = 2;
pub const HART_STARTED: usize = 0;
pub const HART_STOPPED: usize = 1;

/// SBI error codes.
pub const SUCCESS: isize = 0;
pub const ERR_FAILED: isize = -1;
pub const ERR_NOT_SUPPORTED: isize = -2;
pub const ERR_INVALID_PARAM: isize = -3;
pub const ERR_DENIED: isize = -4;
pub const ERR_INVALID_ADDRESS: isize = -5;
pub const ERR_ALREADY_AVAILABLE: isize = -6;

/// SBI 2.0, as `get_spec_version` encodes it (major << 24 | minor).
pub const SPEC_VERSION: usize = 2 << 24;

fn call(eid: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> (isize, usize) {
    let (error, value): (usize, usize);
    // SAFETY: an SBI call: OpenSBI reads the arguments and writes a0/a1.
    unsafe {
        core::arch::asm!("ecall",
            inlateout("a0") a0 => error, inlateout("a1") a1 => value,
            in("a2") a2, in("a6") fid, in("a7") eid);
    }
    (error as isize, value)
}

/// Writes `bytes` (at a physical address: the hypervisor runs untranslated)
/// to the debug console.
pub fn console_write(bytes: &[u8]) {
    let (error, _) = call(EID_DBCN, 0, bytes.len(), bytes.as_ptr() as usize, 0);
    if error != SUCCESS {
        // An SBI without DBCN: the legacy putchar.
        for &b in bytes {
            call(EID_LEGACY_PUTCHAR, 0, b as usize, 0, 0);
        }
    }
}

/// Reads what the machine's console has for us into `buffer` (without
/// waiting); how many bytes.
pub fn console_read(buffer: &mut [u8]) -> usize {
    let (error, count) = call(EID_DBCN, 1, buffer.len(), buffer.as_mut_ptr() as usize, 0);
    if error == SUCCESS {
        count.min(buffer.len())
    } else {
        0
    }
}

/// Powers the machine off (SRST shutdown).
pub fn shutdown() -> ! {
    call(EID_SRST, 0, 0, 0, 0);
    loop {
        // SAFETY: waiting for an interrupt has no other effect.
        unsafe { core::arch::asm!("wfi") };
    }
}

/// Programs the supervisor timer for `time` (clears a pending one).
pub fn set_timer(time: u64) {
    call(EID_TIME, 0, time as usize, 0, 0);
}

/// Sends an IPI (the supervisor software interrupt) to hart `hart`.
pub fn send_ipi(hart: usize) {
    call(EID_IPI, 0, 1, hart, 0);
}

/// Starts hart `hart` at physical `entry` with a1 = `opaque` (SBI HSM).
pub fn hart_start(hart: usize, entry: usize, opaque: usize) -> bool {
    call(EID_HSM, HSM_HART_START, hart, entry, opaque).0 == SUCCESS
}
