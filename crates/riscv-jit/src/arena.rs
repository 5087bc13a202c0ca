//! Executable memory for translated blocks: one mapping, filled densely.
//!
//! The mapping is readable, writable and executable at once, so placing a
//! block costs a copy and no system call (per-block mappings cost a page and
//! two syscalls each, which dominated translation of a Linux boot), and
//! chaining can patch jumps in place. When it fills up the engine drops
//! every block and starts over.

/// Size of the arena (blocks reach each other with 32-bit displacements).
const ARENA_BYTES: usize = 64 << 20;

pub struct CodeArena {
    base: *mut u8,
    used: usize,
}

impl CodeArena {
    pub fn new() -> CodeArena {
        // SAFETY: an anonymous private mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ARENA_BYTES,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(
            base != libc::MAP_FAILED,
            "mapping the JIT code arena: {}",
            std::io::Error::last_os_error()
        );
        CodeArena {
            base: base.cast(),
            used: 0,
        }
    }

    fn aligned_end(&self) -> usize {
        (self.used + 15) & !15
    }

    /// Where the next [`CodeArena::place`] puts its code (code assembled
    /// for that address may use relative references to the arena).
    pub fn next_address(&self) -> usize {
        self.base as usize + self.aligned_end()
    }

    /// Copies `code` in at [`CodeArena::next_address`]; `None` when there is no room.
    pub fn place(&mut self, code: &[u8]) -> Option<*mut u8> {
        let start = self.aligned_end();
        let end = start
            .checked_add(code.len())
            .filter(|&e| e <= ARENA_BYTES)?;
        // SAFETY: [start, end) lies inside the mapping and no block uses it yet.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.add(start), code.len()) };
        self.used = end;
        // SAFETY: start is inside the mapping.
        Some(unsafe { self.base.add(start) })
    }

    /// Forgets every placed block (the caller has dropped them all).
    pub fn reset(&mut self) {
        self.used = 0;
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), ARENA_BYTES) };
    }
}
