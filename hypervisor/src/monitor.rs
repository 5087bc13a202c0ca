//! The hypervisor's console: a command line on the machine's console,
//! reached like a VM with Ctrl-\ (after the last running VM), that lists
//! the VMs (state, vCPUs, memory, CPU time, exits by reason) and stops or
//! restarts one. The scheduler carries the commands out.

/// A command typed at the hypervisor's console.
pub enum Command {
    /// An empty line.
    Nothing,
    List,
    Stop(usize),
    Restart(usize),
    Help,
    Unknown,
}

pub const PROMPT: &str = "visor-hv> ";
pub const HELP: &str =
    "commands: list | stop NAME | restart NAME | help (Ctrl-\\ moves the keyboard on)";

/// The line being typed.
pub struct Monitor {
    line: [u8; 64],
    len: usize,
}

impl Monitor {
    pub const fn new() -> Monitor {
        Monitor {
            line: [0; 64],
            len: 0,
        }
    }

    /// A typed byte: echoed; at the end of a line, the command it makes
    /// (`vm` finds a VM's index by name).
    pub fn input(&mut self, byte: u8, vm: impl Fn(&str) -> Option<usize>) -> Option<Command> {
        match byte {
            b'\r' | b'\n' => {
                crate::sbi::console_write(b"\n");
                let line = core::str::from_utf8(&self.line[..self.len]).unwrap_or("");
                let command = parse(line.trim(), vm);
                self.len = 0;
                Some(command)
            }
            // Backspace, delete.
            0x08 | 0x7f => {
                if self.len > 0 {
                    self.len -= 1;
                    crate::sbi::console_write(b"\x08 \x08");
                }
                None
            }
            b if b.is_ascii_graphic() || b == b' ' => {
                if self.len < self.line.len() {
                    self.line[self.len] = b;
                    self.len += 1;
                    crate::sbi::console_write(&[b]);
                }
                None
            }
            _ => None,
        }
    }
}

fn parse(line: &str, vm: impl Fn(&str) -> Option<usize>) -> Command {
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Command::Nothing,
        (Some("list"), None, _) => Command::List,
        (Some("help"), None, _) => Command::Help,
        (Some("stop"), Some(name), None) => vm(name).map_or(Command::Unknown, Command::Stop),
        (Some("restart"), Some(name), None) => vm(name).map_or(Command::Unknown, Command::Restart),
        _ => Command::Unknown,
    }
}
