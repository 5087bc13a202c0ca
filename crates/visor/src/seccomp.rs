//! The system-call allow-list every visor thread runs under once the VM
//! is set up (rust-vmm's `seccompiler`, as Firecracker and Cloud
//! Hypervisor use it).
//!
//! [`restrict`] installs it on every thread of the process at once
//! (TSYNC) just before the VM runs: the console reader, the API's
//! threads and the machine's thread; threads started later (a migration's
//! sender, KVM's vCPUs) inherit it. What a running VM needs stays allowed
//! — file I/O on open descriptors, opening files (snapshots, a TAP
//! re-acquired after a failed migration), sockets of the Unix and IP
//! families (the API, migration), memory mapping, threads, signals, KVM's
//! ioctls and the terminal's — and everything else, starting new
//! programs, new processes, ptrace, mounts, namespaces, module loading,
//! BPF, other socket families and ioctls, ends visor with one line naming
//! the call (a SIGSYS handler) instead of running it.
//!
//! Threads are created with `clone` only with `CLONE_THREAD`; `clone3`,
//! whose flags a filter cannot see, fails with ENOSYS, so the C library
//! falls back to `clone`.
//!
//! Threads with one narrow job stack a list of their own on top
//! ([`vm_device::sandbox`] roles, entered by the thread itself before its
//! first piece of guest work): a disk's I/O thread may only read and write
//! the descriptors it holds (`pread`/`pwrite`, `fdatasync`, `fallocate`),
//! wait on futexes, manage its heap without making anything executable,
//! and end; it cannot open a file or a socket. The common list allows the
//! one call that stacking needs, `seccomp(SECCOMP_SET_MODE_FILTER)` for the
//! calling thread alone: a filter can only take permissions away.

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use vm_device::sandbox::ThreadRole;

/// Exit status when the filter refuses a call (128 + SIGSYS, as a shell
/// reports a process the signal killed).
pub const REFUSED_STATUS: i32 = 128 + libc::SIGSYS;

/// Calls allowed with any arguments.
const ALLOWED: &[libc::c_long] = &[
    // I/O on descriptors.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_sendfile,
    libc::SYS_copy_file_range,
    libc::SYS_pipe2,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    // Files: snapshots, the TAP device, a restore's memory file.
    libc::SYS_openat,
    libc::SYS_open,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_getdents64,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    // Sockets (their family is checked below).
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    // Memory.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_memfd_create,
    // Threads, time and signals.
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// What a disk's I/O thread may call ([`vm_device::sandbox::ThreadRole::DiskIo`]),
/// besides memory mapping without `PROT_EXEC` and writes to stderr (a
/// panic's message).
const DISK_IO: &[libc::c_long] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_fallocate,
    libc::SYS_futex,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Socket families visor uses: Unix (the API) and IP (migration).
const SOCKET_FAMILIES: &[libc::c_int] = &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// ioctls by request number: the terminal's and the TAP's.
const IOCTLS: &[u64] = &[
    libc::TCGETS,
    libc::TCSETS,
    libc::TCSETSW,
    libc::TCSETSF,
    libc::TIOCGWINSZ,
    libc::FIONBIO,
    libc::FIOCLEX,
    0x4004_54ca, // TUNSETIFF
];
/// Every KVM ioctl carries this type (`_IOC_TYPE`, bits 8..16).
const KVM_IOCTL_TYPE: u64 = 0xae;
const IOCTL_TYPE_MASK: u64 = 0xff00;

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).context("a seccomp condition")
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conditions).context("a seccomp rule")
}

/// The allow-list as a BPF program whose refusals raise SIGSYS.
fn allow_list() -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&call| (call, Vec::new())).collect();
    rules.insert(
        libc::SYS_socket,
        SOCKET_FAMILIES
            .iter()
            .map(|&family| rule(vec![condition(0, SeccompCmpOp::Eq, family as u64)?]))
            .collect::<Result<_>>()?,
    );
    let mut ioctls: Vec<SeccompRule> = IOCTLS
        .iter()
        .map(|&request| rule(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect::<Result<_>>()?;
    ioctls.push(rule(vec![condition(
        1,
        SeccompCmpOp::MaskedEq(IOCTL_TYPE_MASK),
        KVM_IOCTL_TYPE << 8,
    )?])?);
    rules.insert(libc::SYS_ioctl, ioctls);
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::MaskedEq(thread),
            thread,
        )?])?],
    );
    // Allowed here, refused with ENOSYS by `clone3_fallback`.
    rules.insert(libc::SYS_clone3, Vec::new());
    // A thread narrowing itself further (a role's list): no flags, so
    // never TSYNC onto other threads.
    rules.insert(
        libc::SYS_seccomp,
        vec![rule(vec![
            condition(0, SeccompCmpOp::Eq, libc::SECCOMP_SET_MODE_FILTER as u64)?,
            condition(1, SeccompCmpOp::Eq, 0)?,
        ])?],
    );
    program(rules, SeccompAction::Trap, SeccompAction::Allow)
}

/// The list a thread of `role` stacks on the common one.
fn role_list(role: ThreadRole) -> Result<BpfProgram> {
    let calls = match role {
        ThreadRole::DiskIo => DISK_IO,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        calls.iter().map(|&call| (call, Vec::new())).collect();
    let exec = libc::PROT_EXEC as u64;
    let not_executable = || rule(vec![condition(2, SeccompCmpOp::MaskedEq(exec), 0)?]);
    rules.insert(libc::SYS_mmap, vec![not_executable()?]);
    rules.insert(libc::SYS_mprotect, vec![not_executable()?]);
    rules.insert(
        libc::SYS_write,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::Eq,
            libc::STDERR_FILENO as u64,
        )?])?],
    );
    program(rules, SeccompAction::Trap, SeccompAction::Allow)
}

/// [`vm_device::sandbox`]'s policy: the calling thread stacks its role's
/// list, or visor ends (a thread must not run wider than meant).
fn enter_role(role: ThreadRole) {
    if let Err(e) = role_list(role).and_then(|program| {
        seccompiler::apply_filter(&program)
            .with_context(|| format!("installing the {role:?} thread's seccomp filter"))
    }) {
        eprintln!("visor: {e:#}");
        std::process::exit(1);
    }
}

/// `clone3` fails with ENOSYS (the most restrictive of stacked filters
/// wins), so thread creation uses `clone`, whose flags the allow-list sees.
fn clone3_fallback() -> Result<BpfProgram> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    program(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )
}

fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .context("building the seccomp filter")?;
    filter.try_into().context("compiling the seccomp filter")
}

/// Installs the allow-list on every thread of the process (and those
/// they start), with the handler that reports a refusal.
pub fn restrict() -> Result<()> {
    // The allow-list last: it refuses seccomp(2) but for one thread's own filter.
    let programs = [clone3_fallback()?, allow_list()?];
    install_refusal_handler()?;
    for program in &programs {
        seccompiler::apply_filter_all_threads(program)
            .context("installing the seccomp filter (`--seccomp off` runs without it)")?;
    }
    vm_device::sandbox::set_policy(enter_role);
    Ok(())
}

/// On SIGSYS (a call the filter refused): one line naming the call, then
/// exit with [`REFUSED_STATUS`]. Only async-signal-safe calls.
extern "C" fn refused(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    /// Offset of `si_syscall` in a SIGSYS `siginfo_t` on x86-64
    /// (after signo, errno, code, padding and `si_call_addr`).
    const SI_SYSCALL_OFFSET: usize = 24;
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS, which holds
    // si_syscall at that offset.
    let call = unsafe {
        *(info as *const u8)
            .add(SI_SYSCALL_OFFSET)
            .cast::<libc::c_int>()
    };
    let mut line = [0u8; 160];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        let take = bytes.len().min(line.len() - n);
        line[n..n + take].copy_from_slice(&bytes[..take]);
        n += take;
    };
    put(b"visor: the seccomp filter refused system call ");
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut value = call.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    put(&digits[i..]);
    put(b" (see `ausyscall`); `--seccomp off` runs without the filter (unsafe)\n");
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), n);
        libc::_exit(REFUSED_STATUS);
    }
}

fn install_refusal_handler() -> Result<()> {
    // SAFETY: a zeroed sigaction with a valid handler and SA_SIGINFO.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = refused as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("installing the SIGSYS handler");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` in a child process under the filter; returns how the
    /// child ended (its exit status) and what it wrote to stderr.
    fn under_filter(body: fn() -> i32) -> (i32, String) {
        under(&[], body)
    }

    /// [`under_filter`], with the child in `roles` too (stacked in order).
    fn under(roles: &[ThreadRole], body: fn() -> i32) -> (i32, String) {
        let mut programs = vec![clone3_fallback().unwrap(), allow_list().unwrap()];
        programs.extend(roles.iter().map(|&role| role_list(role).unwrap()));
        let mut pipe = [0; 2];
        // SAFETY: pipe(2) with a two-element array.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only installs the handler and filters (already
        // compiled), runs `body` and exits; it returns to no Rust code
        // that could touch the parent's locks.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            // SAFETY: stderr becomes the pipe's write end in the child.
            unsafe { libc::dup2(pipe[1], libc::STDERR_FILENO) };
            install_refusal_handler().unwrap();
            for program in &programs {
                seccompiler::apply_filter(program).unwrap();
            }
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(body()) };
        }
        // SAFETY: closing our copy of the write end, then waiting for the child.
        let mut status = 0;
        unsafe {
            libc::close(pipe[1]);
            libc::waitpid(child, &mut status, 0);
        }
        let mut output = String::new();
        use std::io::Read;
        // SAFETY: the read end is ours alone from here.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(pipe[0]) };
        reader.read_to_string(&mut output).unwrap();
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        (libc::WEXITSTATUS(status), output)
    }

    #[test]
    fn what_a_running_vm_does_is_allowed() {
        let (status, output) = under_filter(|| {
            let thread = std::thread::spawn(|| std::fs::read("/proc/self/status").map(|b| b.len()));
            let read = thread.join().unwrap().unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let connected = std::net::TcpStream::connect(listener.local_addr().unwrap()).is_ok();
            (read > 0 && connected) as i32 * 7
        });
        assert_eq!((status, output.as_str()), (7, ""));
    }

    #[test]
    fn starting_a_program_is_refused_with_one_line() {
        let (status, output) = under_filter(|| {
            // SAFETY: execve with valid, NUL-terminated arguments.
            unsafe {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                libc::execve(argv[0], argv.as_ptr(), std::ptr::null());
            }
            0
        });
        assert_eq!(status, REFUSED_STATUS);
        assert_eq!(
            output,
            format!(
                "visor: the seccomp filter refused system call {} (see `ausyscall`); \
                 `--seccomp off` runs without the filter (unsafe)\n",
                libc::SYS_execve
            )
        );
    }

    #[test]
    fn a_disk_thread_reads_and_writes_its_image_but_opens_nothing() {
        use std::os::fd::{FromRawFd, IntoRawFd};
        use std::sync::atomic::Ordering;
        let image = crate::seccomp::tests::memfd();
        SCRATCH_IMAGE.store(image.into_raw_fd(), Ordering::SeqCst);
        let (status, output) = under(&[ThreadRole::DiskIo], || {
            use std::os::unix::fs::FileExt;
            // SAFETY: the child owns its inherited copy of the descriptor.
            let image = unsafe { std::fs::File::from_raw_fd(SCRATCH_IMAGE.load(Ordering::SeqCst)) };
            image.write_all_at(b"sector", 512).unwrap();
            image.sync_data().unwrap();
            let mut back = [0u8; 6];
            image.read_exact_at(&mut back, 512).unwrap();
            let grown = vec![0u8; 1 << 20]; // the heap still grows
            if back != *b"sector" || grown.len() != 1 << 20 {
                return 1;
            }
            let _ = std::fs::File::open("/proc/self/status");
            2
        });
        assert_eq!(status, REFUSED_STATUS, "{output}");
        assert!(output.contains(&format!("system call {} ", libc::SYS_openat)));
        // SAFETY: the parent's copy, not used elsewhere.
        drop(unsafe { std::fs::File::from_raw_fd(SCRATCH_IMAGE.load(Ordering::SeqCst)) });
    }

    fn memfd() -> std::fs::File {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a valid C string; the File owns the descriptor.
        let fd = unsafe { libc::memfd_create(c"visor-seccomp".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: fd was just created and is owned by nothing else.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }

    /// The descriptor of a scratch image the disk-thread test's child
    /// inherits (opened before its filters).
    static SCRATCH_IMAGE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    #[test]
    fn a_new_process_and_a_raw_socket_are_refused() {
        let (status, _) = under_filter(|| {
            // SAFETY: fork(2); the filter stops it before a child exists.
            unsafe { libc::fork() };
            0
        });
        assert_eq!(status, REFUSED_STATUS);
        let (status, output) = under_filter(|| {
            // SAFETY: socket(2) with constant arguments.
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            0
        });
        assert_eq!(status, REFUSED_STATUS, "{output}");
        assert!(output.contains(&format!("system call {} ", libc::SYS_socket)));
    }
}
