//! Sharing the hart between VMs: each runnable VM gets a time slice in
//! turn, ended by the supervisor timer (an HS-level interrupt, which the
//! hart takes whenever a guest runs). A VM that ends is reported and, with
//! `on_crash = "restart"` after a fault, started anew; the others run on.

use crate::csr::{csr_read, csr_write};
use crate::machine::Machine;
use crate::sbi;
use crate::vm::End;
use crate::vms::Vms;
use hv_image::{OnCrash, MAX_VMS};

/// A slice: 10 ms.
const SLICES_PER_SECOND: usize = 100;
/// sie.STIE: the supervisor timer interrupt.
const SIE_STIE: usize = 1 << 5;
/// How often a crashing VM is restarted before it stays stopped.
const MAX_RESTARTS: u32 = 3;

pub fn run(machine: &Machine, vms: &mut Vms) {
    let slice = (machine.timebase / SLICES_PER_SECOND) as u64;
    csr_write!("sie", csr_read!("sie") | SIE_STIE);
    let mut stopped = [false; MAX_VMS];
    let count = vms.len();
    while stopped.iter().take(count).any(|s| !s) {
        for (i, vm) in vms.iter_mut().enumerate() {
            if stopped[i] {
                continue;
            }
            sbi::set_timer(csr_read!("time") as u64 + slice);
            let Some(end) = vm.run_slice() else {
                continue;
            };
            crate::println!("visor-hv: VM {} {end}", vm.name());
            let restart = matches!(end, End::Crashed { .. })
                && vm.on_crash == OnCrash::Restart
                && vm.restarts < MAX_RESTARTS;
            if restart {
                vm.restarts += 1;
                crate::println!(
                    "visor-hv: VM {} restarting ({} of {MAX_RESTARTS})",
                    vm.name(),
                    vm.restarts
                );
                vm.reset();
            } else {
                stopped[i] = true;
            }
        }
    }
    sbi::set_timer(u64::MAX);
}
