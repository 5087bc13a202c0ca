//! The hypervisor's console: formatted output through SBI DBCN, a line at
//! a time.

use core::fmt::{self, Write};

/// Collects a line, then writes it in one SBI call.
pub struct Console {
    buffer: [u8; 256],
    len: usize,
}

impl Console {
    pub const fn new() -> Console {
        Console {
            buffer: [0; 256],
            len: 0,
        }
    }

    pub fn flush(&mut self) {
        crate::sbi::console_write(&self.buffer[..self.len]);
        self.len = 0;
    }

    pub fn push(&mut self, b: u8) {
        if self.len == self.buffer.len() {
            self.flush();
        }
        self.buffer[self.len] = b;
        self.len += 1;
        if b == b'\n' {
            self.flush();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| self.push(b));
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let mut console = Console::new();
    let _ = console.write_fmt(args);
    console.flush();
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
