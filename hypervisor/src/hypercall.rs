//! visor-hv's own SBI extension, the hypercall interface of
//! `docs/hypercalls.md`: a paravirtual console, information about the
//! VMs, and messages between them (a mailbox per VM). Handled by the
//! scheduler, under its lock, since a call may reach another VM.

use crate::sbi;
use crate::vm::Vm;
use crate::vms::Vms;
use hv_image::NAME_BYTES;

/// The extension's ID: in SBI's firmware-specific range, "VIS".
pub const EID_VISOR: usize = 0x0A56_4953;
/// Interface version 1.0 (major << 16 | minor).
const VERSION: usize = 1 << 16;

const VERSION_FN: usize = 0;
const CONSOLE_WRITE: usize = 1;
const CONSOLE_READ: usize = 2;
const VM_SELF: usize = 3;
const VM_INFO: usize = 4;
const VM_LOOKUP: usize = 5;
const MSG_SEND: usize = 6;
const MSG_RECEIVE: usize = 7;
const VM_COUNT: usize = 8;

/// The longest message, and how many wait in a mailbox at most.
pub const MSG_MAX: usize = 256;
pub const MAILBOX_SLOTS: usize = 8;
/// VM_INFO's record: name (16 bytes, NUL-padded), vCPUs (u32), state (u32:
/// 0 running, 1 stopped), memory in bytes (u64).
const INFO_BYTES: usize = NAME_BYTES + 16;

/// VM_INFO's state field.
const RUNNING: u32 = 0;
const STOPPED: u32 = 1;

/// Messages waiting for a VM.
pub struct Mailbox {
    slots: [[u8; MSG_MAX]; MAILBOX_SLOTS],
    lengths: [usize; MAILBOX_SLOTS],
    senders: [usize; MAILBOX_SLOTS],
    start: usize,
    count: usize,
}

impl Mailbox {
    pub const fn new() -> Mailbox {
        Mailbox {
            slots: [[0; MSG_MAX]; MAILBOX_SLOTS],
            lengths: [0; MAILBOX_SLOTS],
            senders: [0; MAILBOX_SLOTS],
            start: 0,
            count: 0,
        }
    }

    /// Queues `message` from VM id `from`; false when full.
    fn push(&mut self, from: usize, message: &[u8]) -> bool {
        if self.count == MAILBOX_SLOTS {
            return false;
        }
        let slot = (self.start + self.count) % MAILBOX_SLOTS;
        self.slots[slot][..message.len()].copy_from_slice(message);
        self.lengths[slot] = message.len();
        self.senders[slot] = from;
        self.count += 1;
        true
    }

    /// The oldest message's sender and length, if any.
    fn peek(&self) -> Option<(usize, usize)> {
        (self.count > 0).then(|| (self.senders[self.start], self.lengths[self.start]))
    }

    /// Takes the oldest message into `into` (which peek said is large enough).
    fn pop(&mut self, into: &mut [u8]) {
        let len = self.lengths[self.start];
        into[..len].copy_from_slice(&self.slots[self.start][..len]);
        self.start = (self.start + 1) % MAILBOX_SLOTS;
        self.count -= 1;
    }
}

/// Answers vCPU `v` of VM `caller` (index), which made a hypercall;
/// `stopped` says which VMs have ended. Sets a0/a1 and moves it past
/// the ECALL.
pub fn handle(vms: &mut Vms, stopped: &[bool], caller: usize, v: usize) {
    let count = vms.len();
    let vm = vms.get_mut(caller).unwrap();
    let x = vm.regs_of_mut(v).x;
    let (fid, a0, a1, a2) = (x[16], x[10], x[11], x[12]);
    let (error, value) = match fid {
        VERSION_FN => (sbi::SUCCESS, VERSION),
        CONSOLE_WRITE => match vm.guest_memory(a0, a1.min(crate::vm::CONSOLE_WRITE_MAX)) {
            Some(bytes) => {
                bytes.iter().for_each(|&b| vm.put(b));
                (sbi::SUCCESS, bytes.len())
            }
            None => (sbi::ERR_INVALID_ADDRESS, 0),
        },
        CONSOLE_READ => match vm.guest_memory(a0, a1) {
            Some(bytes) => {
                let n = vm.take_input(bytes);
                (sbi::SUCCESS, n)
            }
            None => (sbi::ERR_INVALID_ADDRESS, 0),
        },
        VM_SELF => (sbi::SUCCESS, caller + 1),
        VM_COUNT => (sbi::SUCCESS, count),
        VM_INFO => vm_info(vms, stopped, caller, a0, a1, a2),
        VM_LOOKUP => match vm.guest_memory(a0, a1) {
            Some(name) => {
                let name: &[u8] = name;
                match (0..count).find(|&i| vms.get(i).unwrap().name().as_bytes() == name) {
                    Some(i) => (sbi::SUCCESS, i + 1),
                    None => (sbi::ERR_INVALID_PARAM, 0),
                }
            }
            None => (sbi::ERR_INVALID_ADDRESS, 0),
        },
        MSG_SEND => send(vms, stopped, caller, a0, a1, a2),
        MSG_RECEIVE => receive(vm, a0, a1),
        _ => (sbi::ERR_NOT_SUPPORTED, 0),
    };
    let regs = vms.get_mut(caller).unwrap().regs_of_mut(v);
    regs.x[10] = error as usize;
    regs.x[11] = value;
    regs.pc = regs.pc.wrapping_add(4);
}

/// The index of the VM with (1-based) `id`, if there is one.
fn vm_index(vms: &Vms, id: usize) -> Option<usize> {
    id.checked_sub(1).filter(|&i| i < vms.len())
}

/// VM_INFO(id, address, length): the record of VM `id` (1-based).
fn vm_info(
    vms: &mut Vms,
    stopped: &[bool],
    caller: usize,
    id: usize,
    address: usize,
    len: usize,
) -> (isize, usize) {
    let Some(target) = vm_index(vms, id) else {
        return (sbi::ERR_INVALID_PARAM, 0);
    };
    let about = vms.get(target).unwrap();
    let mut record = [0u8; INFO_BYTES];
    let name = about.name().as_bytes();
    record[..name.len()].copy_from_slice(name);
    record[16..20].copy_from_slice(&(about.vcpu_count() as u32).to_le_bytes());
    let state = if stopped[target] { STOPPED } else { RUNNING };
    record[20..24].copy_from_slice(&state.to_le_bytes());
    record[24..32].copy_from_slice(&(about.memory_size() as u64).to_le_bytes());
    let n = len.min(INFO_BYTES);
    match vms.get_mut(caller).unwrap().guest_memory(address, n) {
        Some(out) => {
            out.copy_from_slice(&record[..n]);
            (sbi::SUCCESS, n)
        }
        None => (sbi::ERR_INVALID_ADDRESS, 0),
    }
}

/// MSG_SEND(id, address, length): a copy of the caller's bytes into the
/// mailbox of VM `id`.
fn send(
    vms: &mut Vms,
    stopped: &[bool],
    caller: usize,
    id: usize,
    address: usize,
    len: usize,
) -> (isize, usize) {
    let Some(target) = vm_index(vms, id) else {
        return (sbi::ERR_INVALID_PARAM, 0);
    };
    if len == 0 || len > MSG_MAX {
        return (sbi::ERR_INVALID_PARAM, 0);
    }
    if stopped[target] {
        return (sbi::ERR_DENIED, 0);
    }
    let mut message = [0u8; MSG_MAX];
    match vms.get_mut(caller).unwrap().guest_memory(address, len) {
        Some(bytes) => message[..len].copy_from_slice(bytes),
        None => return (sbi::ERR_INVALID_ADDRESS, 0),
    }
    if vms
        .get_mut(target)
        .unwrap()
        .mailbox()
        .push(caller + 1, &message[..len])
    {
        (sbi::SUCCESS, 0)
    } else {
        (sbi::ERR_FAILED, 0)
    }
}

/// MSG_RECEIVE(address, length): the oldest message, its length in the
/// low 32 bits of the value and its sender's id above; 0 when none waits.
fn receive(vm: &mut Vm, address: usize, len: usize) -> (isize, usize) {
    let Some((from, size)) = vm.mailbox().peek() else {
        return (sbi::SUCCESS, 0);
    };
    if size > len {
        return (sbi::ERR_INVALID_PARAM, 0);
    }
    match vm.guest_memory(address, size) {
        Some(out) => {
            vm.mailbox().pop(out);
            (sbi::SUCCESS, from << 32 | size)
        }
        None => (sbi::ERR_INVALID_ADDRESS, 0),
    }
}
