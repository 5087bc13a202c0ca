//! A 16550A UART with a 16-byte receive FIFO and level interrupts.
//!
//! Written here rather than taken from rust-vmm's `vm-superio`: that crate
//! signals interrupts as edges through an eventfd-style trigger and does not
//! expose the interrupt level, which a level-triggered PLIC source needs.
//! Transmission completes instantly, so THR is always empty.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use vm_device::{check, DeviceStats, Persist, RestoreError};

pub const BASE: u64 = 0x1000_0000;
pub const SIZE: u64 = 0x100;
pub const IRQ: usize = 10;
/// The input clock advertised in the device tree (QEMU's value).
pub const CLOCK_HZ: u32 = 3_686_400;

const RX_FIFO: usize = 16;
/// The bits of IER, FCR and MCR this UART keeps.
const IER_BITS: u8 = 0x0f;
const FCR_BITS: u8 = 0xc9;
const MCR_BITS: u8 = 0x1f;
const IER_RDA: u8 = 1;
const IER_THRE: u8 = 2;
const LCR_DLAB: u8 = 0x80;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const MCR_LOOP: u8 = 0x10;
/// CTS, DSR and DCD asserted: a connected terminal.
const MSR_CONNECTED: u8 = 0xb0;

pub struct Uart {
    rx: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    divisor: u16,
    thre_pending: bool,
    out: Box<dyn Write>,
    stats: Arc<DeviceStats>,
}

impl Uart {
    pub fn new(out: Box<dyn Write>, stats: Arc<DeviceStats>) -> Uart {
        Uart {
            rx: VecDeque::new(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            fcr: 0,
            divisor: 1,
            thre_pending: false,
            out,
            stats,
        }
    }

    /// Room left in the receive FIFO.
    pub fn rx_space(&self) -> usize {
        RX_FIFO.saturating_sub(self.rx.len())
    }

    /// Queues a received byte; false when the FIFO is full.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.rx.len() >= RX_FIFO {
            return false;
        }
        self.rx.push_back(byte);
        self.stats.to_guest(1);
        true
    }

    /// Sends a byte to the console.
    pub fn transmit(&mut self, byte: u8) {
        // A console that went away must not stop the guest.
        let _ = self.out.write_all(&[byte]).and_then(|_| self.out.flush());
        self.stats.from_guest(1);
    }

    /// The interrupt output level.
    pub fn interrupt(&self) -> bool {
        (self.ier & IER_RDA != 0 && !self.rx.is_empty())
            || (self.ier & IER_THRE != 0 && self.thre_pending)
    }

    fn iir(&self) -> u8 {
        let fifo_bits = if self.fcr & 1 != 0 { 0xc0 } else { 0 };
        let id = if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            0x04
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            0x02
        } else {
            0x01
        };
        fifo_bits | id
    }

    pub fn read(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.divisor as u8,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => (self.divisor >> 8) as u8,
            1 => self.ier,
            2 => {
                let iir = self.iir();
                if iir & 0x0f == 0x02 {
                    self.thre_pending = false; // reading IIR acknowledges THRE
                }
                iir
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => LSR_THRE | LSR_TEMT | if self.rx.is_empty() { 0 } else { LSR_DR },
            6 => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let m = self.mcr;
                    (m & 1) << 5 | (m & 2) << 3 | (m & 4) << 4 | (m & 8) << 4
                } else {
                    MSR_CONNECTED
                }
            }
            7 => self.scr,
            _ => 0,
        }
    }

    pub fn write(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.divisor = (self.divisor & 0xff00) | value as u16,
            0 => {
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(value);
                } else {
                    self.transmit(value);
                }
                self.thre_pending = true;
            }
            1 if dlab => self.divisor = (self.divisor & 0xff) | (value as u16) << 8,
            1 => {
                let enabling_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & IER_BITS;
                if enabling_thre {
                    self.thre_pending = true; // THR is empty: the interrupt fires at once
                }
            }
            2 => {
                self.fcr = value & FCR_BITS;
                if value & 2 != 0 {
                    self.rx.clear();
                }
            }
            3 => self.lcr = value,
            4 => self.mcr = value & MCR_BITS,
            7 => self.scr = value,
            _ => {}
        }
    }
}

/// What a snapshot keeps of the UART: its registers and received bytes
/// not yet read (the console it writes to is the machine's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UartState {
    pub rx: Vec<u8>,
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub scr: u8,
    pub fcr: u8,
    pub divisor: u16,
    pub thre_pending: bool,
}

impl Persist for Uart {
    type State = UartState;

    fn save(&self) -> UartState {
        UartState {
            rx: self.rx.iter().copied().collect(),
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            scr: self.scr,
            fcr: self.fcr,
            divisor: self.divisor,
            thre_pending: self.thre_pending,
        }
    }

    fn restore(&mut self, s: &UartState) -> Result<(), RestoreError> {
        check(
            s.rx.len() <= RX_FIFO,
            "UART",
            &format!("more than {RX_FIFO} bytes received"),
        )?;
        check(
            s.ier & !IER_BITS == 0 && s.fcr & !FCR_BITS == 0 && s.mcr & !MCR_BITS == 0,
            "UART",
            "register bits this UART does not have",
        )?;
        self.rx = s.rx.iter().copied().collect();
        self.ier = s.ier;
        self.lcr = s.lcr;
        self.mcr = s.mcr;
        self.scr = s.scr;
        self.fcr = s.fcr;
        self.divisor = s.divisor;
        self.thre_pending = s.thre_pending;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_and_thre_interrupt() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let mut u = Uart::new(Box::new(Shared(sink.clone())), Default::default());
        u.write(0, b'h');
        u.write(0, b'i');
        assert_eq!(&*sink.lock().unwrap(), b"hi");
        assert!(!u.interrupt(), "THRE masked");
        u.write(1, IER_THRE);
        assert!(u.interrupt());
        assert_eq!(u.read(2) & 0x0f, 0x02);
        assert!(!u.interrupt(), "IIR read acknowledges THRE");
    }

    #[test]
    fn receive_fifo_and_data_ready_interrupt() {
        let mut u = Uart::new(Box::new(std::io::sink()), Default::default());
        u.write(1, IER_RDA);
        for b in 0..20u8 {
            u.receive(b);
        }
        assert_eq!(u.rx_space(), 0);
        assert!(u.interrupt());
        assert_eq!(u.read(5) & LSR_DR, LSR_DR);
        let got: Vec<u8> = (0..16).map(|_| u.read(0)).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
        assert_eq!(u.read(5) & LSR_DR, 0);
        assert!(!u.interrupt());
    }

    #[test]
    fn state_round_trips_and_impossible_states_change_nothing() {
        let mut u = Uart::new(Box::new(std::io::sink()), Default::default());
        u.write(1, IER_RDA | IER_THRE);
        u.write(3, 0x03);
        u.write(7, 0x5a);
        for b in b"abc" {
            u.receive(*b);
        }
        assert_eq!(u.read(0), b'a');
        let text = serde_json::to_string(&u.save()).unwrap();
        let mut restored = Uart::new(Box::new(std::io::sink()), Default::default());
        restored
            .restore(&serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(restored.save(), u.save());
        assert!(restored.interrupt());
        assert_eq!([restored.read(0), restored.read(0)], *b"bc");

        let mut target = Uart::new(Box::new(std::io::sink()), Default::default());
        let before = target.save();
        let mut overfull = u.save();
        overfull.rx = vec![0; RX_FIFO + 1];
        assert_eq!(
            target.restore(&overfull).unwrap_err().to_string(),
            "UART state: more than 16 bytes received"
        );
        let mut bad_bits = u.save();
        bad_bits.ier = 0xff;
        assert!(target.restore(&bad_bits).is_err());
        assert_eq!(target.save(), before);
    }

    #[test]
    fn divisor_latch_does_not_disturb_data_path() {
        let mut u = Uart::new(Box::new(std::io::sink()), Default::default());
        u.write(3, LCR_DLAB);
        u.write(0, 0x0c);
        u.write(1, 0x00);
        u.write(3, 0x03);
        assert_eq!(u.divisor, 12);
        assert_eq!(u.read(1), 0);
    }
}
