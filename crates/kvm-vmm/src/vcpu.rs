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

/// A device access a vCPU exited for, as the dispatcher sees it. Port
/// I/O carries `count` accesses of `size` bytes each (a `rep outs`/`rep
/// ins` is one exit), in `data`.
pub enum Access<'a> {
    PortOut {
        port: u16,
        size: usize,
        data: &'a [u8],
    },
    PortIn {
        port: u16,
        size: usize,
        data: &'a mut [u8],
    },
    MmioRead {
        addr: u64,
        data: &'a mut [u8],
    },
    MmioWrite {
        addr: u64,
        data: &'a [u8],
    },
}

/// Carries out `access` on the buses: every element of a string port
/// access is its own device access, in order; what no device answers
/// reads as all ones (an empty ISA bus, unassigned MMIO).
pub fn dispatch(buses: &Buses, access: Access) {
    match access {
        Access::PortOut { port, size, data } => {
            for element in data.chunks(size.max(1)) {
                buses.pio.write(port as u64, element);
            }
        }
        Access::PortIn { port, size, data } => {
            for element in data.chunks_mut(size.max(1)) {
                if !buses.pio.read(port as u64, element) {
                    element.fill(0xff);
                }
            }
        }
        Access::MmioRead { addr, data } => {
            if !buses.mmio.read(addr, data) {
                data.fill(0xff);
            }
        }
        Access::MmioWrite { addr, data } => {
            buses.mmio.write(addr, data);
        }
    }
}

impl Runner {
    pub fn run(mut self) -> Result<VmExit, VmmError> {
        // Where KVM reports a port access's element size (kvm-ioctls'
        // exit gives the port and all count × size bytes, not the size).
        let run: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        // SAFETY: the kvm_run mapping lives as long as the vCPU fd; the
        // `io` member is read only after a KVM_EXIT_IO, when it is the
        // active one, and it does not overlap the data area.
        let port_size = || unsafe { (*run).__bindgen_anon_1.io.size as usize };
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(VmmError::GuestFault("stopped".into()));
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(kvm_error("running a vCPU")(e)),
            };
            let access = match exit {
                VcpuExit::IoOut(port, data) => Some(Access::PortOut {
                    port,
                    size: port_size(),
                    data,
                }),
                VcpuExit::IoIn(port, data) => Some(Access::PortIn {
                    port,
                    size: port_size(),
                    data,
                }),
                VcpuExit::MmioRead(addr, data) => Some(Access::MmioRead { addr, data }),
                VcpuExit::MmioWrite(addr, data) => Some(Access::MmioWrite { addr, data }),
                other => match Self::other_exit(other)? {
                    Some(exit) => return Ok(exit),
                    None => None,
                },
            };
            if let Some(access) = access {
                dispatch(&self.buses, access);
            }
            if let Some(exit) = self.exit.take() {
                return Ok(exit);
            }
        }
    }

    /// An exit that is not a device access: `None` to go on, or how the
    /// VM ends.
    fn other_exit(exit: VcpuExit) -> Result<Option<VmExit>, VmmError> {
        match exit {
            VcpuExit::Hlt => Ok(None),
            VcpuExit::Shutdown => Ok(Some(VmExit::Reset)),
            VcpuExit::FailEntry(reason, _) => Err(VmmError::GuestFault(format!(
                "VM entry failed, hardware reason {reason:#x}"
            ))),
            VcpuExit::InternalError => Err(VmmError::GuestFault(
                "KVM internal error (an instruction KVM cannot emulate)".into(),
            )),
            other => Err(VmmError::GuestFault(format!("unexpected exit {other:?}"))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vm_device::{Bus, BusDevice};

    /// Logs every write; reads answer with a running count.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        reads: u8,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            self.reads = self.reads.wrapping_add(1);
            data.fill(self.reads);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.writes.push(data.to_vec());
        }
    }

    fn buses() -> (Buses, Arc<Mutex<Recorder>>) {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let mut pio = Bus::new();
        pio.insert(0x3f8, 8, recorder.clone(), Default::default())
            .unwrap();
        let buses = Buses {
            pio,
            mmio: Bus::new(),
        };
        (buses, recorder)
    }

    #[test]
    fn every_element_of_a_string_port_access_reaches_the_device() {
        let (buses, recorder) = buses();
        let text = b"hello";
        let out = Access::PortOut {
            port: 0x3f8,
            size: 1,
            data: text,
        };
        dispatch(&buses, out);
        let words = [1u8, 2, 3, 4];
        dispatch(
            &buses,
            Access::PortOut {
                port: 0x3f8,
                size: 2,
                data: &words,
            },
        );
        let writes = recorder.lock().unwrap().writes.clone();
        let expected: Vec<Vec<u8>> = vec![
            b"h".to_vec(),
            b"e".to_vec(),
            b"l".to_vec(),
            b"l".to_vec(),
            b"o".to_vec(),
            vec![1, 2],
            vec![3, 4],
        ];
        assert_eq!(writes, expected);

        let mut data = [0u8; 4];
        let access = Access::PortIn {
            port: 0x3f8,
            size: 1,
            data: &mut data,
        };
        dispatch(&buses, access);
        assert_eq!(data, [1, 2, 3, 4], "four reads, in order");
        let mut nothing = [0u8; 3];
        let access = Access::PortIn {
            port: 0x80,
            size: 1,
            data: &mut nothing,
        };
        dispatch(&buses, access);
        assert_eq!(nothing, [0xff; 3], "an empty bus reads all ones");
    }

    #[test]
    fn synthetic_exits_of_any_shape_do_not_panic() {
        let (buses, _) = buses();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..10_000 {
            let mut data = vec![0u8; (next() % 64) as usize];
            let port = 0x3f0 + (next() % 32) as u16;
            let size = (next() % 9) as usize;
            let addr = next();
            match next() % 4 {
                0 => dispatch(
                    &buses,
                    Access::PortOut {
                        port,
                        size,
                        data: &data,
                    },
                ),
                1 => dispatch(
                    &buses,
                    Access::PortIn {
                        port,
                        size,
                        data: &mut data,
                    },
                ),
                2 => dispatch(
                    &buses,
                    Access::MmioRead {
                        addr,
                        data: &mut data,
                    },
                ),
                _ => dispatch(&buses, Access::MmioWrite { addr, data: &data }),
            }
        }
    }
}
