//! A 16550A UART with a 16-byte receive FIFO and level interrupts.
//!
//! Written here rather than taken from rust-vmm's `vm-superio`: that crate
//! signals interrupts as edges through an eventfd-style trigger and does not
//! expose the interrupt level, which a level-triggered PLIC source needs.
//! Transmission completes instantly, so THR is always empty.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use vm_device::DeviceStats;

pub const BASE: u64 = 0x1000_0000;
pub const SIZE: u64 = 0x100;
pub const IRQ: usize = 10;
/// The input clock advertised in the device tree (QEMU's value).
pub const CLOCK_HZ: u32 = 3_686_400;

const RX_FIFO: usize = 16;
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
                self.ier = value & 0x0f;
                if enabling_thre {
                    self.thre_pending = true; // THR is empty: the interrupt fires at once
                }
            }
            2 => {
                self.fcr = value & 0xc9;
                if value & 2 != 0 {
                    self.rx.clear();
                }
            }
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1f,
            7 => self.scr = value,
            _ => {}
        }
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
