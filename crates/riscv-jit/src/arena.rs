//! Executable memory for translated blocks: one region, filled densely,
//! mapped twice (W^X): an executable view that translated code runs from
//! and that is never writable, and a writable view of the same pages (a
//! memfd) that never executes, where blocks are placed and jumps patched.
//!
//! Placing a block costs a copy and no system call (per-block mappings
//! cost a page and two syscalls each, which dominated translation of a
//! Linux boot; flipping protections around every patch would cost two
//! `mprotect`s per chained jump). When it fills up the engine drops every
//! block and starts over.

use std::io;

/// Size of the arena (blocks reach each other with 32-bit displacements).
const ARENA_BYTES: usize = 64 << 20;

pub struct CodeArena {
    /// The executable view (read + execute).
    exec: *mut u8,
    /// The writable view (read + write) of the same pages.
    write: *mut u8,
    used: usize,
}

fn map(fd: libc::c_int, protection: libc::c_int) -> io::Result<*mut u8> {
    // SAFETY: a shared mapping of the whole memfd; checked for failure.
    let view = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ARENA_BYTES,
            protection,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            fd,
            0,
        )
    };
    if view == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(view.cast())
}

impl CodeArena {
    pub fn new() -> CodeArena {
        CodeArena::map_both().unwrap_or_else(|e| panic!("mapping the JIT code arena: {e}"))
    }

    fn map_both() -> io::Result<CodeArena> {
        // SAFETY: memfd_create with a NUL-terminated name; checked below.
        let fd = unsafe { libc::memfd_create(c"visor-jit".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is the memfd just created, closed once both views
        // exist (they keep its pages).
        let views = unsafe {
            let sized = libc::ftruncate(fd, ARENA_BYTES as libc::off_t) == 0;
            let views = if sized {
                map(fd, libc::PROT_READ | libc::PROT_EXEC).and_then(|exec| {
                    map(fd, libc::PROT_READ | libc::PROT_WRITE)
                        .inspect_err(|_| {
                            libc::munmap(exec.cast(), ARENA_BYTES);
                        })
                        .map(|write| (exec, write))
                })
            } else {
                Err(io::Error::last_os_error())
            };
            libc::close(fd);
            views
        };
        let (exec, write) = views?;
        Ok(CodeArena {
            exec,
            write,
            used: 0,
        })
    }

    fn aligned_end(&self) -> usize {
        (self.used + 15) & !15
    }

    /// Where the next [`CodeArena::place`] puts its code (code assembled
    /// for that address may use relative references to the arena).
    pub fn next_address(&self) -> usize {
        self.exec as usize + self.aligned_end()
    }

    /// Copies `code` in at [`CodeArena::next_address`] and returns that
    /// (executable) address; `None` when there is no room.
    pub fn place(&mut self, code: &[u8]) -> Option<*mut u8> {
        let start = self.aligned_end();
        let end = start
            .checked_add(code.len())
            .filter(|&e| e <= ARENA_BYTES)?;
        // SAFETY: [start, end) lies inside the writable view and no block uses it yet.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.write.add(start), code.len()) };
        self.used = end;
        // SAFETY: start is inside the mapping.
        Some(unsafe { self.exec.add(start) })
    }

    /// The writable alias of `exec`, an address in the executable view.
    pub fn writable(&self, exec: *const u8) -> *mut u8 {
        let offset = (exec as usize)
            .checked_sub(self.exec as usize)
            .filter(|&o| o < ARENA_BYTES)
            .expect("an address inside the code arena");
        // SAFETY: offset is inside the writable view.
        unsafe { self.write.add(offset) }
    }

    /// Forgets every placed block (the caller has dropped them all).
    pub fn reset(&mut self) {
        self.used = 0;
    }

    /// The executable view's address range (for tests).
    #[cfg(test)]
    pub fn exec_range(&self) -> std::ops::Range<usize> {
        self.exec as usize..self.exec as usize + ARENA_BYTES
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two views made in `map_both`.
        unsafe {
            libc::munmap(self.exec.cast(), ARENA_BYTES);
            libc::munmap(self.write.cast(), ARENA_BYTES);
        }
    }
}
