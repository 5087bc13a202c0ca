//! Sharing the hart between VMs, in the manner of Xen's credit scheduler
//! (ESXi's shares and limits): the runnable VM that has used the least CPU
//! time for its weight runs next, for a slice that the supervisor timer ends
//! (an HS-level interrupt, which the hart takes whenever a guest runs); a
//! VM with a cap may use at most that percent of each scheduling period,
//! after which it waits for the next. A VM that ends is reported (with
//! every VM's CPU time so far) and, with `on_crash = "restart"` after a
//! fault, started anew; the others run on.

use crate::csr::{csr_read, csr_write};
use crate::machine::Machine;
use crate::println;
use crate::sbi;
use crate::vm::{End, Slice};
use crate::vms::Vms;
use hv_image::{OnCrash, MAX_VMS};

/// A slice: 10 ms; a period (over which caps hold): 100 ms.
const SLICES_PER_SECOND: u64 = 100;
const PERIODS_PER_SECOND: u64 = 10;
/// sie.STIE and sie.SEIE: the supervisor timer and external interrupts
/// (the scheduler's and the passed-through devices').
const SIE_STIE: usize = 1 << 5;
const SIE_SEIE: usize = 1 << 9;
/// How often a crashing VM is restarted before it stays stopped.
const MAX_RESTARTS: u32 = 3;
/// Ctrl-\ on the console sends keyboard input to the next VM.
const SWITCH_INPUT: u8 = 0x1c;

/// What the scheduler knows of each VM.
#[derive(Clone, Copy, Default)]
struct Account {
    stopped: bool,
    /// CPU time used in all, and in the current period (ticks).
    used: u64,
    period_used: u64,
    /// Idle (WFI) until its timer fires at this time.
    waiting_until: Option<u64>,
}

fn now() -> u64 {
    csr_read!("time") as u64
}

pub fn run(machine: &Machine, vms: &mut Vms) {
    let timebase = machine.timebase as u64;
    let slice = timebase / SLICES_PER_SECOND;
    let period = timebase / PERIODS_PER_SECOND;
    csr_write!("sie", csr_read!("sie") | SIE_STIE | SIE_SEIE);
    let count = vms.len();
    let mut accounts = [Account::default(); MAX_VMS];
    let mut period_start = now();
    let began = period_start;
    let mut focus = 0;
    // A VM an interrupt woke runs next (Xen's BOOST).
    let mut boosted = None;
    while accounts[..count].iter().any(|a| !a.stopped) {
        focus = route_input(vms, &accounts[..count], focus);
        if let Some(woken) = route_interrupts(vms, &mut accounts[..count]) {
            boosted = boosted.or(Some(woken));
        }
        if now() - period_start >= period {
            period_start = now();
            accounts.iter_mut().for_each(|a| a.period_used = 0);
        }
        // The runnable VM furthest behind its share; its slice ends early
        // where its cap would.
        let mut next: Option<(usize, u64)> = None;
        for (i, account) in accounts[..count].iter().enumerate() {
            let vm = vms.get(i).unwrap();
            let budget = match vm.cap {
                0 => slice,
                cap => (period * cap as u64 / 100)
                    .saturating_sub(account.period_used)
                    .min(slice),
            };
            let waiting = account.waiting_until.is_some_and(|t| now() < t);
            if account.stopped || budget == 0 || waiting {
                continue;
            }
            // Virtual time: CPU time scaled by the inverse of the weight.
            let virtual_time = |a: &Account, w: u32| a.used / w as u64;
            let behind = next.is_none_or(|(j, _)| {
                virtual_time(account, vm.weight)
                    < virtual_time(&accounts[j], vms.get(j).unwrap().weight)
            });
            if behind {
                next = Some((i, budget));
            }
        }
        if let Some(b) = boosted.take().filter(|&b| !accounts[b].stopped) {
            next = Some((b, slice));
        }
        let Some((i, budget)) = next else {
            // Every VM left waits or has spent its cap: idle until the
            // first timer or the next period.
            let wake = accounts[..count]
                .iter()
                .filter(|a| !a.stopped)
                .filter_map(|a| a.waiting_until)
                .fold(period_start + period, u64::min)
                .min(now() + slice); // and look at the keyboard meanwhile
            sbi::set_timer(wake);
            // SAFETY: waits for the timer (sie.STIE); HS interrupts stay
            // globally off, so it is not taken, only ends the wait.
            unsafe { core::arch::asm!("wfi") };
            continue;
        };
        let vm = vms.get_mut(i).unwrap();
        let started = now();
        sbi::set_timer(started + budget);
        accounts[i].waiting_until = None;
        let slice = vm.run_slice();
        let ran = now() - started;
        accounts[i].used += ran;
        accounts[i].period_used += ran;
        let end = match slice {
            Slice::Preempted | Slice::External => continue,
            Slice::Idle { until } => {
                accounts[i].waiting_until = Some(until);
                continue;
            }
            Slice::Ended(end) => end,
        };
        println!("visor-hv: VM {} {end}", vm.name());
        if let End::Reboot = end {
            vm.reset();
            continue;
        }
        let restart = matches!(end, End::Crashed { .. })
            && vm.on_crash == OnCrash::Restart
            && vm.restarts < MAX_RESTARTS;
        if restart {
            vm.restarts += 1;
            println!(
                "visor-hv: VM {} restarting ({} of {MAX_RESTARTS})",
                vm.name(),
                vm.restarts
            );
            vm.reset();
        } else {
            vm.release_devices();
            accounts[i].stopped = true;
        }
        report_cpu_time(vms, &accounts[..count], timebase, now() - began);
    }
    sbi::set_timer(u64::MAX);
}

/// Takes the machine's pending device interrupts to the VMs owning them;
/// the first waiting VM they wake, if any.
fn route_interrupts(vms: &mut Vms, accounts: &mut [Account]) -> Option<usize> {
    let plic = vms.plic?;
    if csr_read!("sip") & SIE_SEIE == 0 {
        return None;
    }
    let mut woken = None;
    loop {
        let irq = plic.claim();
        if irq == 0 {
            return woken;
        }
        let owner = (0..accounts.len())
            .find(|&i| !accounts[i].stopped && vms.get(i).is_some_and(|vm| vm.owns_irq(irq)));
        let Some(i) = owner else {
            // Its VM has stopped: nobody will complete it; leave it claimed,
            // so the device stays quiet.
            continue;
        };
        let vm = vms.get_mut(i).unwrap();
        vm.raise(irq);
        if accounts[i].waiting_until.is_some() && vm.interrupt_pending() {
            accounts[i].waiting_until = None;
            woken = woken.or(Some(i));
        }
    }
}

/// Hands what was typed on the machine's console to the VM that has the
/// keyboard (`focus`); Ctrl-\ moves it to the next running VM. Returns
/// the VM that has it now.
fn route_input(vms: &mut Vms, accounts: &[Account], mut focus: usize) -> usize {
    // Only what the VM can take: the rest waits in the machine's UART.
    let room = vms.get(focus).map_or(0, |vm| vm.input_room());
    if room == 0 {
        return focus;
    }
    let mut typed = [0u8; 16];
    let n = sbi::console_read(&mut typed[..room.min(16)]);
    for &byte in &typed[..n] {
        if byte == SWITCH_INPUT {
            let running = |i: &usize| !accounts[*i].stopped;
            if let Some(next) = (focus + 1..accounts.len()).chain(0..=focus).find(running) {
                focus = next;
                println!(
                    "visor-hv: keyboard to VM {}",
                    vms.get(focus).unwrap().name()
                );
            }
        } else if let Some(vm) = vms.get_mut(focus) {
            vm.input(byte);
        }
    }
    focus
}

/// "visor-hv: CPU time in 1800 ms: alpha 1200 ms, beta 600 ms": every
/// VM's so far, and the time since the VMs started.
fn report_cpu_time(vms: &Vms, accounts: &[Account], timebase: u64, elapsed: u64) {
    let mut console = crate::console::Console::new();
    use core::fmt::Write;
    let _ = write!(
        console,
        "visor-hv: CPU time in {} ms:",
        elapsed * 1000 / timebase
    );
    for (i, account) in accounts.iter().enumerate() {
        let ms = account.used * 1000 / timebase;
        let separator = if i == 0 { "" } else { "," };
        let _ = write!(
            console,
            "{separator} {} {ms} ms",
            vms.get(i).unwrap().name()
        );
    }
    let _ = writeln!(console);
}
