//! The host side of the guest console: stdin in raw mode when it is a
//! terminal, a reader thread, and the Ctrl-A x escape to quit.

use riscv_virt::ConsoleInput;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver};

const ESCAPE: u8 = 0x01; // Ctrl-A

pub struct Console {
    input: Receiver<ConsoleInput>,
    saved_termios: Option<libc::termios>,
}

impl Console {
    /// Starts reading stdin; puts a terminal into raw mode until dropped.
    pub fn attach() -> Console {
        let saved_termios = raw_mode();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut escape = false;
            let mut buf = [0u8; 256];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    let event = match (escape, b) {
                        (false, ESCAPE) => {
                            escape = true;
                            continue;
                        }
                        (true, b'x') => ConsoleInput::Quit,
                        _ => ConsoleInput::Byte(b),
                    };
                    escape = false;
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Console {
            input: rx,
            saved_termios,
        }
    }

    pub fn input(&self) -> &Receiver<ConsoleInput> {
        &self.input
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(t) = self.saved_termios {
            // SAFETY: restoring attributes previously read from the same fd.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
        }
    }
}

/// Raw mode for an interactive terminal; returns the settings to restore.
fn raw_mode() -> Option<libc::termios> {
    // SAFETY: isatty/tcgetattr/tcsetattr on stdin with a valid termios buffer.
    unsafe {
        if libc::isatty(libc::STDIN_FILENO) != 1 {
            return None;
        }
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
            return None;
        }
        let mut raw = saved;
        libc::cfmakeraw(&mut raw);
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw);
        Some(saved)
    }
}
