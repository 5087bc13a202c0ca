//! The hypervisor's console: formatted output through SBI DBCN, a line at
//! a time.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Whose unfinished line is on the machine's console: a console's id
/// plus one (0: none, the console is at the start of a line).
static OPEN_LINE: AtomicUsize = AtomicUsize::new(0);

/// Collects a line, then writes it in one SBI call. A VM's console puts
/// its prefix ("[name] ") before each line; where its unfinished line
/// (a prompt) was cut by another's output, it starts a new line with the
/// prefix again, so every line on the machine's console is one source's.
pub struct Console {
    buffer: [u8; 256],
    len: usize,
    id: usize,
    prefix: [u8; PREFIX_BYTES],
    prefix_len: usize,
    /// The next byte starts a line.
    line_start: bool,
    /// Part of a line of ours is on the machine's console.
    shown_partial: bool,
}

const PREFIX_BYTES: usize = hv_image::NAME_BYTES + 3;

impl Console {
    /// The hypervisor's own console (no prefix).
    pub const fn new() -> Console {
        Console {
            buffer: [0; 256],
            len: 0,
            id: 0,
            prefix: [0; PREFIX_BYTES],
            prefix_len: 0,
            line_start: true,
            shown_partial: false,
        }
    }

    /// The console of VM `id` (non-zero), whose lines start "[name] ".
    pub fn for_vm(id: usize, name: &str) -> Console {
        let mut console = Console::new();
        console.id = id;
        let name = &name.as_bytes()[..name.len().min(hv_image::NAME_BYTES)];
        console.prefix[0] = b'[';
        console.prefix[1..=name.len()].copy_from_slice(name);
        console.prefix[name.len() + 1..name.len() + 3].copy_from_slice(b"] ");
        console.prefix_len = name.len() + 3;
        console
    }

    /// Whether part of a line waits to be written.
    pub fn holds_partial_line(&self) -> bool {
        self.len > 0
    }

    /// Whether the next byte starts a line.
    pub fn at_line_start(&self) -> bool {
        self.line_start
    }

    /// Writes what was collected.
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        let me = self.id + 1;
        let open = OPEN_LINE.load(Ordering::Acquire);
        if open != 0 && open != me {
            crate::sbi::console_write(b"\n");
        }
        if open != me && self.shown_partial {
            crate::sbi::console_write(&self.prefix[..self.prefix_len]);
        }
        crate::sbi::console_write(&self.buffer[..self.len]);
        self.shown_partial = self.buffer[self.len - 1] != b'\n';
        OPEN_LINE.store(if self.shown_partial { me } else { 0 }, Ordering::Release);
        self.len = 0;
    }

    /// Forgets a partial line (the VM starts again).
    pub fn reset(&mut self) {
        self.len = 0;
        self.line_start = true;
    }

    fn append(&mut self, b: u8) {
        if self.len == self.buffer.len() {
            self.flush();
        }
        self.buffer[self.len] = b;
        self.len += 1;
    }

    pub fn push(&mut self, b: u8) {
        if self.line_start {
            for i in 0..self.prefix_len {
                self.append(self.prefix[i]);
            }
        }
        self.append(b);
        self.line_start = b == b'\n';
        if self.line_start {
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

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!($($arg)*))
    };
}
