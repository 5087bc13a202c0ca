//! A VM's virtual 16550 UART at guest physical 0x1000_0000, emulated on
//! the guest-page faults its accesses raise (trap and emulate): writes to
//! the transmit register go to the VM's console; the line status always
//! says the transmitter is empty; keyboard bytes the hypervisor routes to
//! the VM wait in a receive FIFO. IIR reports "transmitter empty" once
//! after each write while IER asks for it. Its interrupt line (PLIC source 10, as on QEMU virt) is high while a
//! condition IER enables holds, so Linux's driver transmits on interrupts
//! rather than on a polling timer.

/// Where a VM finds its UART, as on QEMU's virt machine.
pub const BASE: usize = 0x1000_0000;
pub const SIZE: usize = 0x100;
/// Its interrupt, at the VM's PLIC (QEMU virt's number).
pub const IRQ: usize = 10;

const THR: usize = 0;
const IER: usize = 1;
const IIR_FCR: usize = 2;
const LCR: usize = 3;
const MCR: usize = 4;
const LSR: usize = 5;
const SCR: usize = 7;
/// LCR's divisor-latch access bit: registers 0 and 1 are the divisor.
const LCR_DLAB: u8 = 0x80;
/// LSR: transmitter holding register empty, transmitter empty.
const LSR_IDLE: u8 = 0x60;
/// IER: interrupt when received data is available, when the transmitter
/// holding register is empty.
const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
/// LSR: data ready.
const LSR_DR: u8 = 0x01;
/// IIR: received data available.
const IIR_RDI: u8 = 0x04;
/// Bytes of input held for the guest.
const RX_FIFO: usize = 64;
/// IIR values: none pending; transmitter empty; FIFOs enabled (top bits).
const IIR_NONE: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const IIR_FIFOS: u8 = 0xc0;
const FCR_ENABLE: u8 = 0x01;

pub struct Vuart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: [u8; 2],
    fifos: bool,
    /// A "transmitter empty" interrupt is pending (until IIR is read).
    thre_pending: bool,
    rx: [u8; RX_FIFO],
    rx_start: usize,
    rx_len: usize,
}

impl Default for Vuart {
    fn default() -> Vuart {
        Vuart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            divisor: [0; 2],
            fifos: false,
            thre_pending: false,
            rx: [0; RX_FIFO],
            rx_start: 0,
            rx_len: 0,
        }
    }
}

impl Vuart {
    /// Whether its interrupt line is high: received data, or the
    /// transmitter empty after a write, with IER asking for it.
    pub fn interrupting(&self) -> bool {
        (self.rx_len > 0 && self.ier & IER_RDI != 0)
            || (self.thre_pending && self.ier & IER_THRI != 0)
    }

    /// How many more keyboard bytes the receive FIFO holds.
    pub fn room(&self) -> usize {
        RX_FIFO - self.rx_len
    }

    /// Takes waiting keyboard bytes into `into` (the paravirtual console's
    /// read); how many.
    pub fn take(&mut self, into: &mut [u8]) -> usize {
        let n = self.rx_len.min(into.len());
        for byte in into[..n].iter_mut() {
            *byte = self.rx[self.rx_start];
            self.rx_start = (self.rx_start + 1) % RX_FIFO;
        }
        self.rx_len -= n;
        n
    }

    /// A keyboard byte for the guest; dropped when the FIFO is full.
    pub fn receive(&mut self, byte: u8) {
        if self.rx_len < RX_FIFO {
            self.rx[(self.rx_start + self.rx_len) % RX_FIFO] = byte;
            self.rx_len += 1;
        }
    }

    /// A byte read of register `offset`.
    pub fn read(&mut self, offset: usize) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR | IER if dlab => self.divisor[offset],
            THR if self.rx_len > 0 => {
                let byte = self.rx[self.rx_start];
                self.rx_start = (self.rx_start + 1) % RX_FIFO;
                self.rx_len -= 1;
                byte
            }
            IER => self.ier,
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => LSR_IDLE | if self.rx_len > 0 { LSR_DR } else { 0 },
            SCR => self.scr,
            IIR_FCR => {
                let fifos = if self.fifos { IIR_FIFOS } else { 0 };
                if self.rx_len > 0 && self.ier & IER_RDI != 0 {
                    IIR_RDI | fifos
                } else if self.thre_pending && self.ier & IER_THRI != 0 {
                    self.thre_pending = false;
                    IIR_THRI | fifos
                } else {
                    IIR_NONE | fifos
                }
            }
            // RBR (no input yet), MSR.
            _ => 0,
        }
    }

    /// A byte write of register `offset`; the byte to print, if any.
    pub fn write(&mut self, offset: usize, value: u8) -> Option<u8> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR | IER if dlab => self.divisor[offset] = value,
            THR => {
                // Sent at once: the transmitter is empty again.
                self.thre_pending = true;
                return Some(value);
            }
            IER => {
                // Enabling THRI with the transmitter empty raises it.
                self.thre_pending |= value & IER_THRI != 0 && self.ier & IER_THRI == 0;
                self.ier = value & 0x0f;
            }
            IIR_FCR => self.fifos = value & FCR_ENABLE != 0,
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1f,
            SCR => self.scr = value,
            _ => {} // the read-only registers
        }
        None
    }
}
