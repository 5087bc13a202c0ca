//! Sharing the harts between vCPUs, in the manner of Xen's credit
//! scheduler (ESXi's shares and limits): each hart runs the started,
//! runnable vCPU of the VM that has used the least CPU time for its weight
//! (within the VM, its least-run vCPU), for a slice that the supervisor
//! timer ends (an HS-level interrupt, which the hart takes whenever a
//! guest runs); a VM with a cap may use at most that percent of one hart
//! in each scheduling period, after which it waits for the next. A vCPU
//! that executes WFI waits until its timer or an interrupt for it; one an
//! interrupt wakes runs next (Xen's BOOST). A VM that ends is reported
//! (with every VM's CPU time so far) and, with `on_crash = "restart"`
//! after a fault, started anew; the others run on.
//!
//! Every hart runs [`run`]; they share the VM table under one lock, held
//! while a hart schedules or handles an exit and released while it runs a
//! guest, so guests run in parallel and exits are handled one at a time.
//! The boot hart takes the machine's device interrupts and console input.

use crate::csr::{csr_read, csr_write};
use crate::hypercall;
use crate::machine::{Machine, MAX_HARTS};
use crate::monitor::{self, Command, Monitor};
use crate::println;
use crate::sbi;
use crate::signals;
use crate::vcpu;
use crate::vm::{End, Outcome, Slice, MAX_VCPUS};
use crate::vms::Vms;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use hv_image::{OnCrash, MAX_VMS};

/// A slice: 10 ms; a period (over which caps hold): 100 ms.
const SLICES_PER_SECOND: u64 = 100;
const PERIODS_PER_SECOND: u64 = 10;
/// sie's supervisor software (a kick from another hart), timer (the
/// slice's end) and external (passed-through devices) interrupts.
const SIE_SSIE: usize = 1 << 1;
const SIE_STIE: usize = 1 << 5;
const SIE_SEIE: usize = 1 << 9;
/// How often a crashing VM is restarted before it stays stopped.
const MAX_RESTARTS: u32 = 3;
/// `notify` from a place that runs no vCPU: every hart running one is kicked.
const BOOT_HART_KICKS_ALL: usize = usize::MAX;
/// An unfinished line (a prompt) of an idle VM shows after 50 ms.
const PROMPT_DELAYS_PER_SECOND: u64 = 20;
/// Ctrl-\ on the console sends keyboard input to the next VM.
const SWITCH_INPUT: u8 = 0x1c;

/// What the scheduler knows of each VM.
#[derive(Clone, Copy, Default)]
struct Account {
    stopped: bool,
    /// CPU time used in all, and in the current period (ticks).
    used: u64,
    period_used: u64,
    vcpus: [VcpuAccount; MAX_VCPUS],
}

#[derive(Clone, Copy, Default)]
struct VcpuAccount {
    used: u64,
    /// Idle (WFI) until its timer fires at this time, or an interrupt.
    waiting_until: Option<u64>,
    /// A hart runs it now.
    running: bool,
}

struct Scheduler {
    vms: &'static mut Vms,
    count: usize,
    accounts: [Account; MAX_VMS],
    timebase: u64,
    slice: u64,
    period: u64,
    period_start: u64,
    began: u64,
    /// The VM that has the keyboard.
    focus: usize,
    /// The vCPU an interrupt woke, to run next.
    boosted: Option<(usize, usize)>,
    /// Harts waiting for work (a bit each), kicked when a vCPU wakes.
    idle_harts: usize,
    /// The vCPU (VM, vCPU) each hart ran last.
    last_turn: [Option<(usize, usize)>; MAX_HARTS],
    /// The hypervisor console's command line.
    monitor: Monitor,
}

/// The scheduler's state, behind a ticket lock: harts get it in the order
/// they asked, so one that schedules in a tight loop cannot starve another
/// that waits to handle an exit. `state` is dereferenced only between
/// `lock` and `unlock`.
struct Shared {
    next_ticket: AtomicUsize,
    serving: AtomicUsize,
    state: UnsafeCell<Option<Scheduler>>,
}
// SAFETY: `state` is reached only under the lock (see `lock`).
unsafe impl Sync for Shared {}
static SHARED: Shared = Shared {
    next_ticket: AtomicUsize::new(0),
    serving: AtomicUsize::new(0),
    state: UnsafeCell::new(None),
};

/// Takes the lock; the state is the caller's until `unlock`.
fn lock() -> &'static mut Scheduler {
    let ticket = SHARED.next_ticket.fetch_add(1, Ordering::Relaxed);
    while SHARED.serving.load(Ordering::Acquire) != ticket {
        core::hint::spin_loop();
    }
    // SAFETY: the lock is held, so no other hart has the state; `init` put
    // it there before any hart runs.
    unsafe { (*SHARED.state.get()).as_mut().unwrap() }
}

/// Gives the lock back; the reference `lock` returned must not be used after.
fn unlock() {
    SHARED.serving.fetch_add(1, Ordering::Release);
}

fn now() -> u64 {
    csr_read!("time") as u64
}

/// Prepares the scheduler for `vms` (before any hart runs it).
pub fn init(machine: &Machine, vms: &'static mut Vms) {
    let timebase = machine.timebase as u64;
    let start = now();
    let count = vms.len();
    // SAFETY: called once by the boot hart before the other harts start.
    unsafe {
        *SHARED.state.get() = Some(Scheduler {
            vms,
            count,
            accounts: [Account::default(); MAX_VMS],
            timebase,
            slice: timebase / SLICES_PER_SECOND,
            period: timebase / PERIODS_PER_SECOND,
            period_start: start,
            began: start,
            focus: 0,
            boosted: None,
            idle_harts: 0,
            last_turn: [None; MAX_HARTS],
            monitor: Monitor::new(),
        });
    }
}

/// Sets this hart's interrupts up for scheduling.
pub fn configure_hart() {
    csr_write!("sie", csr_read!("sie") | SIE_SSIE | SIE_STIE | SIE_SEIE);
}

/// Runs vCPUs on this hart until every VM has stopped.
pub fn run(hart: usize, boot: bool) {
    loop {
        let s = lock();
        if s.accounts[..s.count].iter().all(|a| a.stopped) {
            unlock();
            break;
        }
        if boot {
            let before = now().saturating_sub(s.timebase / PROMPT_DELAYS_PER_SECOND);
            for i in 0..s.count {
                s.vms.get_mut(i).unwrap().show_waiting_line(before);
            }
            s.route_input();
            s.route_interrupts(hart);
        }
        if now() - s.period_start >= s.period {
            s.period_start = now();
            s.accounts.iter_mut().for_each(|a| a.period_used = 0);
        }
        let Some((i, v, budget)) = s.pick() else {
            // Nothing to run: idle until the first timer, the next period
            // or a kick (and look at the keyboard meanwhile).
            let wake = s.first_wake().min(now() + s.slice);
            s.idle_harts |= 1 << hart;
            unlock();
            sbi::set_timer(wake);
            // SAFETY: waits for an interrupt; HS interrupts stay globally
            // off, so none is taken, they only end the wait.
            unsafe { core::arch::asm!("wfi") };
            crate::vm::csr_clear_ssip();
            lock().idle_harts &= !(1 << hart);
            unlock();
            continue;
        };
        run_turn(hart, boot, i, v, budget);
    }
    sbi::set_timer(u64::MAX);
}

impl Scheduler {
    /// Whether vCPU `v` of VM `i` may run now.
    fn runnable(&self, i: usize, v: usize) -> bool {
        let vm = self.vms.get(i).unwrap();
        let account = &self.accounts[i].vcpus[v];
        if !vm.started(v) || account.running {
            return false;
        }
        match account.waiting_until {
            None => true,
            Some(until) => {
                now() >= until
                    || signals::pending(i, v) & signals::INJECT_VSSIP != 0
                    || vm.interrupt_pending(v, now() as usize)
            }
        }
    }

    /// The budget VM `i` may run for now (its cap's rest of the period).
    fn budget(&self, i: usize) -> u64 {
        match self.vms.get(i).unwrap().cap {
            0 => self.slice,
            cap => (self.period * cap as u64 / 100)
                .saturating_sub(self.accounts[i].period_used)
                .min(self.slice),
        }
    }

    /// The next vCPU to run and for how long: a boosted one, else the
    /// runnable one furthest behind its VM's share.
    fn pick(&mut self) -> Option<(usize, usize, u64)> {
        if let Some((i, v)) = self.boosted.take() {
            if !self.accounts[i].stopped && self.runnable(i, v) && self.budget(i) > 0 {
                return Some((i, v, self.budget(i)));
            }
        }
        let mut best: Option<(usize, usize, u64)> = None;
        for i in 0..self.count {
            let budget = self.budget(i);
            if self.accounts[i].stopped || budget == 0 {
                continue;
            }
            let vm = self.vms.get(i).unwrap();
            let least_run = (0..vm.vcpu_count())
                .filter(|&v| self.runnable(i, v))
                .min_by_key(|&v| self.accounts[i].vcpus[v].used);
            let Some(v) = least_run else { continue };
            // Virtual time: CPU time scaled by the inverse of the weight.
            let virtual_time =
                |i: usize| self.accounts[i].used / self.vms.get(i).unwrap().weight.max(1) as u64;
            if best.is_none_or(|(j, _, _)| virtual_time(i) < virtual_time(j)) {
                best = Some((i, v, budget));
            }
        }
        best
    }

    /// When an idle hart should look again: the first vCPU timer, or the
    /// next period (where a capped VM may run again).
    fn first_wake(&self) -> u64 {
        let mut wake = self.period_start + self.period;
        for account in self.accounts[..self.count].iter().filter(|a| !a.stopped) {
            for vcpu in &account.vcpus {
                if let Some(until) = vcpu.waiting_until {
                    wake = wake.min(until);
                }
            }
        }
        wake
    }

    /// Delivers `request` to the vCPUs of VM `i` in `targets`: kicks the
    /// harts running them, wakes waiting ones. Returns those running on
    /// other harts (whose fences the caller waits for).
    fn signal(&mut self, hart: usize, i: usize, targets: u32, request: usize) -> u32 {
        let vcpus = self.vms.get(i).unwrap().vcpu_count();
        let mut awaited = 0u32;
        for t in (0..vcpus).filter(|t| targets & 1 << t != 0) {
            match signals::post(i, t, request) {
                Some(h) if h != hart => {
                    sbi::send_ipi(h);
                    awaited |= 1 << t;
                }
                _ => {
                    if request & signals::INJECT_VSSIP != 0 {
                        self.wake(i, t);
                    }
                }
            }
        }
        awaited
    }

    /// vCPU `v` of VM `i` has an interrupt: if it waits, it runs next
    /// (on an idle hart, kicked, if there is one). Whether it waited.
    fn wake(&mut self, i: usize, v: usize) -> bool {
        let account = &mut self.accounts[i].vcpus[v];
        if account.waiting_until.take().is_none() {
            return false;
        }
        self.boosted = self.boosted.or(Some((i, v)));
        self.wake_idle_hart();
        true
    }

    /// Kicks a hart that waits for work, if any (something became runnable).
    fn wake_idle_hart(&self) {
        if let Some(idle) = (0..usize::BITS as usize).find(|h| self.idle_harts & 1 << h != 0) {
            sbi::send_ipi(idle);
        }
    }

    /// Takes the machine's pending device interrupts to the VMs owning
    /// them (kicking the harts that run their vCPUs); whether one woke a
    /// waiting vCPU.
    fn route_interrupts(&mut self, hart: usize) -> bool {
        let Some(plic) = self.vms.plic else {
            return false;
        };
        if csr_read!("sip") & SIE_SEIE == 0 {
            return false;
        }
        let mut woke = false;
        loop {
            let irq = plic.claim();
            if irq == 0 {
                return woke;
            }
            let owner =
                (0..self.count).find(|&i| self.vms.get(i).is_some_and(|vm| vm.owns_irq(irq)));
            let Some(i) = owner.filter(|&i| !self.accounts[i].stopped) else {
                // Its VM has stopped (and reset the device): done with.
                plic.complete(irq);
                continue;
            };
            self.vms.get_mut(i).unwrap().raise(irq);
            woke |= self.notify(hart, i);
        }
    }

    /// VM `i`'s virtual PLIC has changed: the harts running its vCPUs are
    /// kicked (to look at it again before re-entering), waiting vCPUs with
    /// an interrupt now woken. Whether one was.
    fn notify(&mut self, hart: usize, i: usize) -> bool {
        let mut woke = false;
        for v in 0..self.vms.get(i).unwrap().vcpu_count() {
            match signals::post(i, v, 0) {
                Some(h) if h != hart => sbi::send_ipi(h),
                Some(_) => {}
                None => {
                    if self
                        .vms
                        .get(i)
                        .unwrap()
                        .interrupt_pending(v, now() as usize)
                    {
                        woke |= self.wake(i, v);
                    }
                }
            }
        }
        woke
    }

    /// VM `i` ended as `end`: rebooted, restarted or stopped.
    fn vm_ended(&mut self, i: usize, end: End) {
        let vm = self.vms.get_mut(i).unwrap();
        println!("visor-hv: VM {} {end}", vm.name());
        let restart = match end {
            End::Reboot | End::Restarted => true,
            End::Crashed { .. }
                if vm.on_crash == OnCrash::Restart && vm.restarts < MAX_RESTARTS =>
            {
                vm.restarts += 1;
                println!(
                    "visor-hv: VM {} restarting ({} of {MAX_RESTARTS})",
                    vm.name(),
                    vm.restarts
                );
                true
            }
            _ => false,
        };
        // Its other vCPUs, running elsewhere, stop at their next exit.
        vm.stop_all_vcpus();
        for v in 0..MAX_VCPUS {
            if let Some(h) = signals::post(i, v, 0) {
                sbi::send_ipi(h);
            }
        }
        if restart {
            // Once no hart runs it any more: `reset_pending` is looked at
            // as each turn ends.
            vm.reset_pending = true;
            self.reset_when_idle(i);
        } else {
            vm.release_devices();
            self.accounts[i].stopped = true;
        }
        if !matches!(end, End::Reboot | End::Restarted) {
            self.report_exits(i);
            self.report_cpu_time();
        }
    }

    /// Resets VM `i` if none of its vCPUs runs on a hart (else the last
    /// turn to end does it).
    fn reset_when_idle(&mut self, i: usize) {
        let running = self.accounts[i].vcpus.iter().any(|a| a.running);
        let vm = self.vms.get_mut(i).unwrap();
        if vm.reset_pending && !running {
            vm.reset_pending = false;
            vm.reset();
            self.accounts[i]
                .vcpus
                .iter_mut()
                .for_each(|a| a.waiting_until = None);
            // Requests posted to the old run are void.
            (0..MAX_VCPUS).for_each(|v| signals::clear(i, v));
        }
    }

    /// Hands what was typed on the machine's console to the VM that has
    /// the keyboard, or to the hypervisor console; Ctrl-\ moves it on to
    /// the next running VM, and after the last to the hypervisor console.
    fn route_input(&mut self) {
        // Only what the VM can take: the rest waits in the machine's UART.
        let room = match self.vms.get(self.focus) {
            Some(vm) => vm.input_room(),
            None => 16,
        };
        if room == 0 {
            return;
        }
        let mut typed = [0u8; 16];
        let n = sbi::console_read(&mut typed[..room.min(16)]);
        for &byte in &typed[..n] {
            if byte == SWITCH_INPUT {
                let (focus, count) = (self.focus, self.count);
                let accounts = &self.accounts;
                let takes_input = |i: &usize| *i == count || !accounts[*i].stopped;
                let next = (focus + 1..=count).chain(0..=focus).find(takes_input);
                self.focus = next.unwrap_or(count);
                match self.vms.get(self.focus) {
                    Some(vm) => println!("visor-hv: keyboard to VM {}", vm.name()),
                    None => crate::print!(
                        "visor-hv: keyboard to the hypervisor console\n{}",
                        monitor::PROMPT
                    ),
                }
            } else if let Some(vm) = self.vms.get_mut(self.focus) {
                vm.input(byte);
                self.notify(BOOT_HART_KICKS_ALL, self.focus);
            } else {
                let vms = &self.vms;
                let count = self.count;
                let find = |name: &str| (0..count).find(|&i| vms.get(i).unwrap().name() == name);
                if let Some(command) = self.monitor.input(byte, find) {
                    self.command(command);
                    crate::print!("{}", monitor::PROMPT);
                }
            }
        }
    }

    /// Carries out a command of the hypervisor console.
    fn command(&mut self, command: Command) {
        match command {
            Command::Nothing => {}
            Command::Help => println!("{}", monitor::HELP),
            Command::Unknown => println!("unknown command or VM; {}", monitor::HELP),
            Command::List => self.list(),
            Command::Stop(i) if !self.accounts[i].stopped => self.vm_ended(i, End::Stopped),
            Command::Restart(i) if !self.accounts[i].stopped => self.vm_ended(i, End::Restarted),
            Command::Restart(i) => {
                let vm = self.vms.get_mut(i).unwrap();
                println!("visor-hv: VM {} restarted from the console", vm.name());
                // Once none of its vCPUs is on a hart any more.
                vm.reset_pending = true;
                self.accounts[i].stopped = false;
                self.reset_when_idle(i);
            }
            Command::Stop(_) => println!("it has stopped already"),
        }
    }

    /// "visor-hv: VM linux exits in 1800 ms: timer 12 device 3 ...": VM
    /// `i`'s exits by reason since the VMs started.
    fn report_exits(&self, i: usize) {
        use core::fmt::Write;
        let vm = self.vms.get(i).unwrap();
        let mut line = crate::console::Console::new();
        let elapsed = (now() - self.began) * 1000 / self.timebase;
        let _ = write!(line, "visor-hv: VM {} exits in {elapsed} ms:", vm.name());
        for (name, count) in crate::vm::EXIT_NAMES.iter().zip(vm.exits()) {
            let _ = write!(line, " {name} {count}");
        }
        let _ = writeln!(line);
    }

    /// One line per VM: state, vCPUs, memory, CPU time, exits by reason.
    fn list(&self) {
        use core::fmt::Write;
        for i in 0..self.count {
            let vm = self.vms.get(i).unwrap();
            let mut line = crate::console::Console::new();
            let state = if self.accounts[i].stopped {
                "stopped"
            } else {
                "running"
            };
            let _ = write!(
                line,
                "{}: {state}, {} vCPU(s), {} MiB, CPU {} ms; exits:",
                vm.name(),
                vm.vcpu_count(),
                vm.memory_size() >> 20,
                self.accounts[i].used * 1000 / self.timebase
            );
            for (name, count) in crate::vm::EXIT_NAMES.iter().zip(vm.exits()) {
                let _ = write!(line, " {name} {count}");
            }
            let _ = writeln!(line);
        }
    }

    /// "visor-hv: CPU time in 1800 ms: alpha 1200 ms, beta 600 ms": every
    /// VM's so far, and the time since the VMs started.
    fn report_cpu_time(&self) {
        use core::fmt::Write;
        let mut console = crate::console::Console::new();
        let elapsed = now() - self.began;
        let _ = write!(
            console,
            "visor-hv: CPU time in {} ms:",
            elapsed * 1000 / self.timebase
        );
        for (i, account) in self.accounts[..self.count].iter().enumerate() {
            let ms = account.used * 1000 / self.timebase;
            let separator = if i == 0 { "" } else { "," };
            let _ = write!(
                console,
                "{separator} {} {ms} ms",
                self.vms.get(i).unwrap().name()
            );
        }
        let _ = writeln!(console);
    }
}

/// Runs vCPU `v` of VM `i` on this hart for at most `budget`; called with
/// the lock held, returns with it released. The scheduler's state is
/// re-derived after every time the lock was let go (other harts change it).
fn run_turn(hart: usize, boot: bool, i: usize, v: usize, budget: u64) {
    let s = lock_held();
    let started = now();
    sbi::set_timer(started + budget);
    s.accounts[i].vcpus[v].waiting_until = None;
    s.accounts[i].vcpus[v].running = true;
    signals::set_running(i, v, Some(hart));
    let hart_kept_it = s.last_turn.get(hart) == Some(&Some((i, v)));
    if let Some(last) = s.last_turn.get_mut(hart) {
        *last = Some((i, v));
    }
    s.vms.get_mut(i).unwrap().begin_turn(v, hart, hart_kept_it);
    let slice = loop {
        let regs = lock_free_entry(i, v);
        let exit = vcpu::enter_raw(regs);
        let s = lock();
        let vm = s.vms.get_mut(i).unwrap();
        let outcome = vm.handle_exit(v, &exit);
        if vm.take_plic_changed() {
            s.notify(hart, i);
        }
        match outcome {
            Outcome::Resume => {}
            Outcome::Started(t) => {
                s.accounts[i].vcpus[t].waiting_until = None;
                s.wake_idle_hart();
            }
            Outcome::End(Slice::External) if boot => {
                // Stay on unless the interrupt woke a vCPU with no idle
                // hart to run it.
                if s.route_interrupts(hart) && s.idle_harts == 0 {
                    break Slice::External;
                }
            }
            Outcome::End(slice) => break slice,
            Outcome::Hypercall => {
                let mut stopped = [false; MAX_VMS];
                for (j, account) in s.accounts[..s.count].iter().enumerate() {
                    stopped[j] = account.stopped;
                }
                hypercall::handle(s.vms, &stopped[..s.count], i, v);
            }
            Outcome::Signal { targets, request } => {
                let awaited = s.signal(hart, i, targets, request);
                if request & signals::FENCES != 0 && awaited != 0 {
                    unlock();
                    wait_for_fences(i, v, awaited, request);
                    lock();
                }
            }
        }
    };
    // The lock is held again (taken after the last exit).
    let s = lock_held();
    let vm = s.vms.get_mut(i).unwrap();
    vm.end_turn(v, matches!(slice, Slice::Idle { .. }), now());
    signals::set_running(i, v, None);
    let ran = now() - started;
    let account = &mut s.accounts[i];
    account.used += ran;
    account.period_used += ran;
    account.vcpus[v].used += ran;
    account.vcpus[v].running = false;
    match slice {
        Slice::Preempted | Slice::External => {}
        Slice::Idle { until } => account.vcpus[v].waiting_until = Some(until),
        Slice::Ended(end) => s.vm_ended(i, end),
    }
    s.reset_when_idle(i);
    unlock();
}

/// Waits (without the lock) until the vCPUs of VM `i` in `awaited`, on
/// other harts, have applied the fence `request`, applying meanwhile what
/// they may ask of `me` (two vCPUs fencing each other at once would
/// otherwise wait forever).
fn wait_for_fences(i: usize, me: usize, awaited: u32, request: usize) {
    for t in (0..MAX_VCPUS).filter(|t| awaited & 1 << t != 0) {
        while signals::awaited(i, t, request) {
            signals::apply(i, me);
            core::hint::spin_loop();
        }
    }
}

/// The scheduler while this hart holds the lock (after an exit).
fn lock_held() -> &'static mut Scheduler {
    // SAFETY: called only by the hart that holds the lock (run_turn).
    unsafe { (*SHARED.state.get()).as_mut().unwrap() }
}

/// Gets vCPU `v` of VM `i` ready to enter (VSEIP as its virtual PLIC has
/// it), releases the lock, and applies the requests other harts posted to
/// it; its registers, for entering.
fn lock_free_entry(i: usize, v: usize) -> *mut vcpu::GuestRegs {
    let vm = lock_held().vms.get_mut(i).unwrap();
    vm.refresh_external(v);
    let regs: *mut vcpu::GuestRegs = vm.regs_of_mut(v);
    unlock();
    signals::apply(i, v);
    regs
}
