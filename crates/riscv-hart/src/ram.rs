//! Guest RAM: one contiguous host allocation mapped at a guest physical base.

use std::any::Any;
use std::cell::Cell;
use std::rc::Rc;

const PAGE_SHIFT: u64 = 12;

/// Guest physical RAM shared by the harts and devices of one machine (one
/// host thread). Cloning shares the same memory.
#[derive(Clone)]
pub struct GuestRam {
    _owner: Rc<dyn Any>,
    base: u64,
    len: u64,
    host: *mut u8,
    code: Rc<CodePages>,
    dirty: Rc<DirtyPages>,
}

/// The pages harts stored to while tracking is on, a bit per 4 KiB page,
/// for diff snapshots and live migration. Stores through a hart's slow
/// path (and the host-side writes here) mark their pages; the fast path
/// marks a page when it caches a write translation for it, which is why
/// turning tracking on, or taking the bits, must come with every hart
/// dropping its cached write translations
/// ([`crate::Hart::drop_write_translations`]): the next store to each page
/// then takes the slow path once and marks it again.
struct DirtyPages {
    tracking: Cell<bool>,
    bits: Box<[Cell<u64>]>,
}

impl DirtyPages {
    fn new(len: u64) -> DirtyPages {
        DirtyPages {
            tracking: Cell::new(false),
            bits: (0..len.div_ceil(1 << PAGE_SHIFT).div_ceil(64))
                .map(|_| Cell::new(0))
                .collect(),
        }
    }
}

/// Which parts of RAM hold code that a binary translator has translated,
/// and the code epoch: translations made before the epoch last changed must
/// be checked against the bytes in RAM again before they run.
///
/// Each page has a mask of the 64-byte chunks translated code came from; a
/// page with any is protected. A store that overlaps such a chunk (through
/// a hart's slow path, atomics or the host-side [`GuestRam::write`])
/// unprotects the page and advances the epoch; so does `fence.i`. Stores
/// elsewhere in a protected page leave translations alone (code and data
/// can share a page). Harts never cache write translations for protected
/// pages, so every store to one takes the slow path. DMA through other
/// views of RAM (virtio's) is covered by the `fence.i` software must issue
/// before running code a device wrote.
struct CodePages {
    chunks: Box<[Cell<u64>]>,
    epoch: Cell<u32>,
    /// Bumped whenever a page becomes protected: harts then drop their
    /// cached write translations.
    protections: Cell<u64>,
    stats: Cell<CodeStats>,
}

/// Why the code epoch moved, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeStats {
    /// Stores over translated code.
    pub stores: u64,
    /// `fence.i` instructions.
    pub fences: u64,
}

const CHUNK_SHIFT: u64 = 6;

/// The mask of 64-byte chunks that `[offset, offset + len)` (inside one page) touches.
fn chunk_mask(offset: u64, len: u64) -> u64 {
    let first = (offset & 0xfff) >> CHUNK_SHIFT;
    let last = ((offset & 0xfff) + len.max(1) - 1).min(0xfff) >> CHUNK_SHIFT;
    (u64::MAX >> (63 - last)) & (u64::MAX << first)
}

impl CodePages {
    fn new(len: u64) -> CodePages {
        CodePages {
            chunks: (0..len.div_ceil(1 << PAGE_SHIFT))
                .map(|_| Cell::new(0))
                .collect(),
            epoch: Cell::new(1),
            protections: Cell::new(0),
            stats: Cell::new(CodeStats::default()),
        }
    }
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
            code: Rc::new(CodePages::new(len)),
            dirty: Rc::new(DirtyPages::new(len)),
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
            code: Rc::new(CodePages::new(len)),
            dirty: Rc::new(DirtyPages::new(len)),
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

    /// The current code epoch (see [`GuestRam::protect_code`]); starts at 1.
    #[inline]
    pub fn code_epoch(&self) -> u32 {
        self.code.epoch.get()
    }

    /// Invalidates every translation made so far (`fence.i`).
    pub fn fence_code(&self) {
        let mut stats = self.code.stats.get();
        stats.fences += 1;
        self.code.stats.set(stats);
        self.advance_code_epoch();
    }

    fn advance_code_epoch(&self) {
        let epoch = &self.code.epoch;
        epoch.set(epoch.get().wrapping_add(1).max(1));
    }

    /// How often the code epoch moved, and why.
    pub fn code_stats(&self) -> CodeStats {
        self.code.stats.get()
    }

    /// How many times a page became protected; harts compare it with what
    /// they saw last and drop cached write translations when it moved.
    #[inline]
    pub fn code_protections(&self) -> u64 {
        self.code.protections.get()
    }

    /// Protects the `len` bytes of RAM at host address `code` (inside one
    /// page), which translated code now depends on: a later store to them
    /// advances the code epoch. Returns true when their page was not
    /// protected before (the caller's cached write translations must go).
    pub fn protect_code(&self, code: *const u8, len: usize) -> bool {
        let offset = (code as u64).wrapping_sub(self.host as u64);
        if offset >= self.len {
            return false;
        }
        let cell = &self.code.chunks[(offset >> PAGE_SHIFT) as usize];
        let before = cell.get();
        cell.set(before | chunk_mask(offset, len as u64));
        if before != 0 {
            return false;
        }
        let protections = &self.code.protections;
        protections.set(protections.get() + 1);
        true
    }

    /// True when the page holding guest physical `addr` (inside RAM) holds translated code.
    #[inline]
    pub(crate) fn is_protected(&self, addr: u64) -> bool {
        self.code.chunks[((addr - self.base) >> PAGE_SHIFT) as usize].get() != 0
    }

    /// Starts or stops recording which pages harts store to (see
    /// [`DirtyPages`]); starting clears what was recorded.
    pub fn set_dirty_tracking(&self, on: bool) {
        self.dirty.tracking.set(on);
        if on {
            self.dirty.bits.iter().for_each(|w| w.set(0));
        }
    }

    /// The pages stored to since tracking started or this was last called,
    /// a bit per page (bit `i % 64` of word `i / 64`), and clears them.
    pub fn take_dirty(&self) -> Vec<u64> {
        self.dirty.bits.iter().map(|w| w.replace(0)).collect()
    }

    /// The pages stored to since tracking started or [`GuestRam::take_dirty`]
    /// was last called, without clearing them.
    pub fn peek_dirty(&self) -> Vec<u64> {
        self.dirty.bits.iter().map(Cell::get).collect()
    }

    /// Marks the pages of `[addr, addr + len)` (inside RAM) dirty when tracking.
    #[inline]
    pub(crate) fn mark_dirty(&self, addr: u64, len: u64) {
        if !self.dirty.tracking.get() || len == 0 {
            return;
        }
        let first = (addr - self.base) >> PAGE_SHIFT;
        let last = (addr - self.base + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            let word = &self.dirty.bits[(page / 64) as usize];
            word.set(word.get() | 1 << (page % 64));
        }
    }

    /// Notes a store to `[addr, addr + len)` (inside RAM): its pages are
    /// dirty, and a page whose translated code it overlaps becomes
    /// unprotected and the code epoch advances.
    pub(crate) fn note_store(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.mark_dirty(addr, len);
        let (start, end) = (addr - self.base, addr - self.base + len);
        let mut hit = false;
        let mut offset = start;
        while offset < end {
            let page_end = ((offset >> PAGE_SHIFT) + 1) << PAGE_SHIFT;
            let piece = page_end.min(end) - offset;
            let cell = &self.code.chunks[(offset >> PAGE_SHIFT) as usize];
            if cell.get() & chunk_mask(offset, piece) != 0 {
                cell.set(0);
                hit = true;
            }
            offset += piece;
        }
        if hit {
            let mut stats = self.code.stats.get();
            stats.stores += 1;
            self.code.stats.set(stats);
            self.advance_code_epoch();
        }
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
        self.note_store(addr, size as u64);
        // SAFETY: bounds checked above; single-threaded access through UnsafeCell.
        unsafe { write_host(self.host_ptr(addr), size, value) };
        true
    }

    /// Copies `data` into RAM at `addr`; false (and nothing written) when it does not fit.
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> bool {
        if !self.contains(addr, data.len() as u64) {
            return false;
        }
        self.note_store(addr, data.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_masks_cover_the_bytes_touched() {
        assert_eq!(chunk_mask(0, 1), 1);
        assert_eq!(chunk_mask(63, 2), 0b11);
        assert_eq!(chunk_mask(0x1040, 64), 0b10, "offsets are within the page");
        assert_eq!(chunk_mask(0xfc0, 64), 1 << 63);
        assert_eq!(chunk_mask(0, 4096), u64::MAX);
    }

    #[test]
    fn only_stores_over_protected_code_advance_the_epoch() {
        let ram = GuestRam::new(0x8000_0000, 1 << 16).unwrap();
        let code = ram.host_ptr(0x8000_1100);
        assert!(ram.protect_code(code, 8), "newly protected");
        assert!(!ram.protect_code(code, 8), "already protected");
        let epoch = ram.code_epoch();
        // Data sharing the page, and other pages: translations stay.
        assert!(ram.write(0x8000_1000, 8, 1));
        assert!(ram.write(0x8000_2100, 8, 1));
        assert_eq!(ram.code_epoch(), epoch);
        // A store reaching into the code (from the chunk before it).
        assert!(ram.write_bytes(0x8000_10f0, &[0; 0x20]));
        assert_ne!(ram.code_epoch(), epoch);
        // The page is unprotected now: further stores cost nothing.
        let epoch = ram.code_epoch();
        assert!(ram.write(0x8000_1100, 8, 1));
        assert_eq!(ram.code_epoch(), epoch);
        assert!(ram.protect_code(code, 8), "protected again");
        ram.fence_code();
        assert_ne!(ram.code_epoch(), epoch, "fence.i");
        assert_eq!(
            ram.code_stats(),
            CodeStats {
                stores: 1,
                fences: 1
            }
        );
    }
}
