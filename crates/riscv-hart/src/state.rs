//! A hart's architectural state as one plain value: what a snapshot keeps
//! and a restore puts back (registers, FP, CSRs, privilege and V, WFI, the
//! LR reservation, retired instructions). Caches are not part of it (the
//! soft-TLB, an engine's decoded or translated code): they are rebuilt
//! after a restore.

use crate::csr::Csrs;
use crate::{Hart, Privilege};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    pub x: [u64; 32],
    pub f: [u64; 32],
    pub pc: u64,
    pub privilege: Privilege,
    pub virt: bool,
    pub csr: Csrs,
    /// Stopped in WFI.
    pub waiting: bool,
    /// LR's reservation: physical address and the value loaded.
    pub reservation: Option<(u64, u64)>,
    pub instret: u64,
}

/// Why a [`HartState`] cannot be restored into a hart.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the state is hart {found}'s, not hart {expected}'s")]
    WrongHart { expected: u64, found: u64 },
    #[error("x0 is not zero")]
    NonZeroX0,
    #[error("M-mode with V set")]
    VirtualMachineMode,
    #[error("a misaligned LR reservation")]
    MisalignedReservation,
    #[error("{0}")]
    ImpossibleCsr(&'static str),
}

impl Hart {
    /// Its architectural state now.
    pub fn save_state(&self) -> HartState {
        HartState {
            x: self.x,
            f: self.f,
            pc: self.pc,
            privilege: self.privilege,
            virt: self.virt,
            csr: self.csr.clone(),
            waiting: self.waiting,
            reservation: self.reservation,
            instret: self.instret,
        }
    }

    /// Puts `state` (saved from the hart with this id, maybe by another
    /// process: it is checked first, and nothing changes when it is
    /// refused) into this hart, whose cached translations are dropped.
    pub fn restore_state(&mut self, state: &HartState) -> Result<(), StateError> {
        if state.csr.mhartid != self.id as u64 {
            return Err(StateError::WrongHart {
                expected: self.id as u64,
                found: state.csr.mhartid,
            });
        }
        if state.x[0] != 0 {
            return Err(StateError::NonZeroX0);
        }
        if state.virt && state.privilege == Privilege::Machine {
            return Err(StateError::VirtualMachineMode);
        }
        if state.reservation.is_some_and(|(addr, _)| addr % 4 != 0) {
            return Err(StateError::MisalignedReservation);
        }
        if let Some(why) = state.csr.impossible_value() {
            return Err(StateError::ImpossibleCsr(why));
        }
        self.x = state.x;
        self.f = state.f;
        self.pc = state.pc;
        self.privilege = state.privilege;
        self.virt = state.virt;
        self.csr = state.csr.clone();
        self.waiting = state.waiting;
        self.reservation = state.reservation;
        self.instret = state.instret;
        self.stop = None;
        self.interrupt_check = true;
        self.tlb.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_platform::NoDevices;
    use crate::GuestRam;

    const BASE: u64 = 0x8000_0000;

    /// RAM holding a loop that keeps a running sum in memory, takes an
    /// ecall trap into M-mode every iteration (mtvec returns with mret),
    /// and uses FP and LR/SC on the way.
    fn machine() -> (GuestRam, Hart) {
        let ram = GuestRam::new(BASE, 1 << 20).unwrap();
        // Assembled by riscv64-unknown-elf-as -march=rv64g.
        let program: [u32; 16] = [
            0x00000297, // auipc t0, 0
            0x04028293, // addi  t0, t0, 64       (the handler)
            0x30529073, // csrw  mtvec, t0
            0x00100313, // li    t1, 1
            0x000103b7, // lui   t2, 0x10
            0x007383b3, // add   t2, t2, t2
            0x00000517, // auipc a0, 0
            0x1e850513, // addi  a0, a0, 488      (the data, at +512)
            0x100525af, // 1: lr.w a1, (a0)
            0x006585bb, // addw  a1, a1, t1
            0x18b5262f, // sc.w  a2, a1, (a0)
            0xd2030053, // fcvt.d.w ft0, t1
            0x00130313, // addi  t1, t1, 1
            0x00000073, // ecall
            0xfe7344e3, // blt   t1, t2, 1b
            0x0000006f, // j     .
        ];
        for (i, word) in program.iter().enumerate() {
            ram.write(BASE + 4 * i as u64, 4, *word as u64);
        }
        // The handler at +64: csrr t4, mepc; addi t4, t4, 4; csrw mepc, t4; mret.
        let handler: [u32; 4] = [0x34102ef3, 0x004e8e93, 0x341e9073, 0x30200073];
        for (i, word) in handler.iter().enumerate() {
            ram.write(BASE + 64 + 4 * i as u64, 4, *word as u64);
        }
        let mut hart = Hart::new(0, ram.clone());
        hart.pc = BASE;
        // FP on, so fcvt runs.
        hart.csr.mstatus |= crate::csr::MSTATUS_FS;
        (ram, hart)
    }

    #[test]
    fn a_restored_hart_goes_on_exactly_as_the_original() {
        let (ram, mut original) = machine();
        original.run(&mut NoDevices, 1000);
        let saved = original.save_state();
        let text = serde_json::to_string(&saved).unwrap();

        // A second machine: the same RAM contents, the state from text.
        let copy = GuestRam::new(BASE, 1 << 20).unwrap();
        for offset in (0..1 << 20).step_by(8) {
            copy.write(BASE + offset, 8, ram.read(BASE + offset, 8).unwrap());
        }
        let mut restored = Hart::new(0, copy.clone());
        restored
            .restore_state(&serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(restored.save_state(), saved);

        original.run(&mut NoDevices, 5000);
        restored.run(&mut NoDevices, 5000);
        assert_eq!(restored.save_state(), original.save_state());
        assert_eq!(copy.read(BASE + 512, 4), ram.read(BASE + 512, 4));
        assert!(
            original.csr.mcause == 11 && original.x[6] > 100,
            "the loop ran and trapped"
        );
    }

    #[test]
    fn impossible_states_are_refused_and_change_nothing() {
        let (_ram, mut hart) = machine();
        hart.run(&mut NoDevices, 100);
        let before = hart.save_state();
        let refused = |change: &dyn Fn(&mut HartState)| {
            let mut state = before.clone();
            change(&mut state);
            state
        };
        let cases: [(HartState, StateError); 6] = [
            (
                refused(&|s| s.csr.mhartid = 1),
                StateError::WrongHart {
                    expected: 0,
                    found: 1,
                },
            ),
            (refused(&|s| s.x[0] = 1), StateError::NonZeroX0),
            (refused(&|s| s.virt = true), StateError::VirtualMachineMode),
            (
                refused(&|s| s.reservation = Some((BASE + 2, 0))),
                StateError::MisalignedReservation,
            ),
            (
                refused(&|s| s.csr.satp = 5 << 60),
                StateError::ImpossibleCsr("an address-translation mode this hart lacks"),
            ),
            (
                refused(&|s| s.csr.mstatus |= 1 << 2),
                StateError::ImpossibleCsr("mstatus has bits this hart does not implement"),
            ),
        ];
        for (state, error) in cases {
            assert_eq!(hart.restore_state(&state), Err(error));
            assert_eq!(hart.save_state(), before);
        }
    }
}
