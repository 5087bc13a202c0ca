//! One vCPU's thread: KVM_RUN, then dispatch of the exit to the buses.
//! Stopping: a flag plus a no-op signal that interrupts a blocked KVM_RUN.

use crate::{devices::ExitRequest, kvm_error, Buses, VmExit, VmmError};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Runner {
    pub fd: VcpuFd,
    pub buses: Arc<Buses>,
    pub exit: ExitRequest,
    pub stop: Arc<AtomicBool>,
}

impl Runner {
    pub fn run(mut self) -> Result<VmExit, VmmError> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(VmmError::GuestFault("stopped".into()));
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(kvm_error("running a vCPU")(e)),
            };
            match exit {
                VcpuExit::IoOut(port, data) => {
                    self.buses.pio.write(port as u64, data);
                }
                VcpuExit::IoIn(port, data) => {
                    if !self.buses.pio.read(port as u64, data) {
                        data.fill(0xff); // an empty ISA bus reads as all ones
                    }
                }
                VcpuExit::MmioRead(addr, data) => {
                    if !self.buses.mmio.read(addr, data) {
                        data.fill(0xff);
                    }
                }
                VcpuExit::MmioWrite(addr, data) => {
                    self.buses.mmio.write(addr, data);
                }
                VcpuExit::Hlt => {}
                VcpuExit::Shutdown => return Ok(VmExit::Reset),
                VcpuExit::FailEntry(reason, _) => {
                    return Err(VmmError::GuestFault(format!(
                        "VM entry failed, hardware reason {reason:#x}"
                    )))
                }
                VcpuExit::InternalError => {
                    return Err(VmmError::GuestFault(
                        "KVM internal error (an instruction KVM cannot emulate)".into(),
                    ))
                }
                other => return Err(VmmError::GuestFault(format!("unexpected exit {other:?}"))),
            }
            if let Some(exit) = self.exit.take() {
                return Ok(exit);
            }
        }
    }
}

extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Makes the kick signal interrupt system calls without killing the process.
pub fn install_kick_handler() {
    let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick);
}

/// Asks every vCPU thread to stop and kicks each until it has.
pub fn stop_all(stop: &AtomicBool, threads: &[JoinHandle<()>]) {
    stop.store(true, Ordering::Release);
    for _ in 0..1000 {
        if threads.iter().all(|t| t.is_finished()) {
            return;
        }
        for t in threads.iter().filter(|t| !t.is_finished()) {
            // SAFETY: the thread is alive (not finished) and owned by us.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
