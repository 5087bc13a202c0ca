//! Guest RAM: one contiguous host allocation mapped at a guest physical base.

use std::any::Any;
use std::rc::Rc;

/// Guest physical RAM shared by the harts and devices of one machine (one
/// host thread). Cloning shares the same memory.
#[derive(Clone)]
pub struct GuestRam {
    _owner: Rc<dyn Any>,
    base: u64,
    len: u64,
    host: *mut u8,
}

/// Owns the allocation; all access goes through raw pointers, never references.
struct RamInner {
    host: *mut u8,
    len: usize,
}

impl Drop for RamInner {
    fn drop(&mut self) {
        // SAFETY: host was returned by alloc_zeroed with exactly this layout.
        unsafe { std::alloc::dealloc(self.host, ram_layout(self.len)) };
    }
}

fn ram_layout(len: usize) -> std::alloc::Layout {
    // Alignment 16 keeps std on calloc, which maps large sizes lazily.
    std::alloc::Layout::from_size_align(len.max(1), 16).expect("RAM size fits a layout")
}

/// The host could not provide the requested guest RAM.
#[derive(Debug)]
pub struct RamAllocError(pub u64);

impl std::fmt::Display for RamAllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "cannot allocate {} MiB of guest RAM on the host",
            self.0 >> 20
        )
    }
}

impl std::error::Error for RamAllocError {}

impl GuestRam {
    /// Allocates `len` bytes of zeroed RAM at guest physical `base`. Pages
    /// are committed lazily, when the guest first touches them.
    pub fn new(base: u64, len: u64) -> Result<GuestRam, RamAllocError> {
        let size = usize::try_from(len).map_err(|_| RamAllocError(len))?;
        if size > isize::MAX as usize - 4096 {
            return Err(RamAllocError(len));
        }
        // SAFETY: the layout has a non-zero size.
        let host = unsafe { std::alloc::alloc_zeroed(ram_layout(size)) };
        if host.is_null() {
            return Err(RamAllocError(len));
        }
        let inner = Rc::new(RamInner { host, len: size });
        Ok(GuestRam {
            host: inner.host,
            _owner: inner,
            base,
            len,
        })
    }

    /// RAM at guest physical `base` over `len` bytes of host memory at
    /// `host` that someone else allocated (e.g. vm-memory's mmap, which
    /// devices share); `owner` keeps that allocation alive.
    ///
    /// # Safety
    /// `host..host + len` must be valid for reads and writes for as long as
    /// `owner` lives, and only accessed through raw pointers elsewhere.
    pub unsafe fn from_host(base: u64, host: *mut u8, len: u64, owner: Rc<dyn Any>) -> GuestRam {
        GuestRam {
            _owner: owner,
            base,
            len,
            host,
        }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The end of RAM (exclusive) as a guest physical address.
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    /// True when `[addr, addr + size)` lies inside RAM.
    #[inline]
    pub fn contains(&self, addr: u64, size: u64) -> bool {
        addr >= self.base
            && addr
                .wrapping_sub(self.base)
                .checked_add(size)
                .is_some_and(|end| end <= self.len)
    }

    /// Host address of guest physical `addr`; the caller has checked `contains`.
    #[inline]
    pub(crate) fn host_ptr(&self, addr: u64) -> *mut u8 {
        debug_assert!(self.contains(addr, 1));
        // SAFETY: addr is inside RAM, so the offset stays within the allocation.
        unsafe { self.host.add((addr - self.base) as usize) }
    }

    /// Reads `size` (1, 2, 4, 8) bytes at `addr`, little-endian; None when outside RAM.
    #[inline]
    pub fn read(&self, addr: u64, size: u8) -> Option<u64> {
        if !self.contains(addr, size as u64) {
            return None;
        }
        // SAFETY: bounds checked above; single-threaded access through UnsafeCell.
        Some(unsafe { read_host(self.host_ptr(addr), size) })
    }

    /// Writes `size` (1, 2, 4, 8) bytes at `addr`; false when outside RAM.
    #[inline]
    pub fn write(&self, addr: u64, size: u8, value: u64) -> bool {
        if !self.contains(addr, size as u64) {
            return false;
        }
        // SAFETY: bounds checked above; single-threaded access through UnsafeCell.
        unsafe { write_host(self.host_ptr(addr), size, value) };
        true
    }

    /// Copies `data` into RAM at `addr`; false (and nothing written) when it does not fit.
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> bool {
        if !self.contains(addr, data.len() as u64) {
            return false;
        }
        // SAFETY: the whole destination range is inside RAM.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.host_ptr(addr), data.len()) };
        true
    }

    /// Copies RAM at `addr` into `out`; false when the range is not inside RAM.
    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> bool {
        if !self.contains(addr, out.len() as u64) {
            return false;
        }
        // SAFETY: the whole source range is inside RAM.
        unsafe { std::ptr::copy_nonoverlapping(self.host_ptr(addr), out.as_mut_ptr(), out.len()) };
        true
    }
}

/// # Safety
/// `p` must be valid for `size` bytes.
#[inline]
pub(crate) unsafe fn read_host(p: *const u8, size: u8) -> u64 {
    match size {
        1 => *p as u64,
        2 => (p as *const u16).read_unaligned().to_le() as u64,
        4 => (p as *const u32).read_unaligned().to_le() as u64,
        _ => (p as *const u64).read_unaligned().to_le(),
    }
}

/// # Safety
/// `p` must be valid for `size` bytes.
#[inline]
pub(crate) unsafe fn write_host(p: *mut u8, size: u8, value: u64) {
    match size {
        1 => *p = value as u8,
        2 => (p as *mut u16).write_unaligned((value as u16).to_le()),
        4 => (p as *mut u32).write_unaligned((value as u32).to_le()),
        _ => (p as *mut u64).write_unaligned(value.to_le()),
    }
}
