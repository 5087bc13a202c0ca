//! A VM's G-stage page tables (Sv39x4): guest physical to machine
//! physical, in 2 MiB megapages for RAM and 4 KiB pages for device
//! windows, every leaf a U page as the G-stage requires. Anything not mapped is a guest-page fault the hypervisor
//! handles; the hypervisor's own memory and other VMs' are never mapped.

use core::cell::UnsafeCell;

const PAGE: usize = 4096;
const MEGAPAGE: usize = 2 << 20;
const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_U: u64 = 1 << 4;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;
/// A guest's RAM: readable, writable, executable.
pub const RAM: u64 = PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D;
/// A passed-through device's registers: readable, writable, never executed.
pub const DEVICE: u64 = PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;
/// Sv39x4's root: 2048 entries, 16 KiB, 16 KiB aligned.
const ROOT_ENTRIES: usize = 2048;

/// Page-table pages for every VM, handed out once (no VM is destroyed yet).
#[repr(C, align(16384))]
struct Pool(UnsafeCell<[[u64; 512]; POOL_PAGES]>);
const POOL_PAGES: usize = 128;
// SAFETY: the pool is only touched by the boot hart, through `take`.
unsafe impl Sync for Pool {}
static POOL: Pool = Pool(UnsafeCell::new([[0; 512]; POOL_PAGES]));
static mut POOL_NEXT: usize = 0;

/// `pages` zeroed pages from the pool, the first aligned to `align` pages.
fn take(pages: usize, align: usize) -> Result<*mut u64, &'static str> {
    // SAFETY: single-threaded use by the boot hart (see Pool).
    unsafe {
        let start = POOL_NEXT.div_ceil(align) * align;
        if start + pages > POOL_PAGES {
            return Err("out of page-table pages");
        }
        POOL_NEXT = start + pages;
        Ok((*POOL.0.get())[start].as_mut_ptr())
    }
}

pub struct GStage {
    root: *mut u64,
}

impl GStage {
    pub fn new() -> Result<GStage, &'static str> {
        Ok(GStage {
            root: take(ROOT_ENTRIES * 8 / PAGE, ROOT_ENTRIES * 8 / PAGE)?,
        })
    }

    /// The root's physical address (for hgatp).
    pub fn root(&self) -> usize {
        self.root as usize
    }

    /// Maps `[gpa, gpa + size)` to `[pa, ...)`: 2 MiB megapages where all
    /// three are 2 MiB aligned (RAM), else 4 KiB pages (a device's window).
    pub fn map(
        &mut self,
        gpa: usize,
        pa: usize,
        size: usize,
        flags: u64,
    ) -> Result<(), &'static str> {
        if !(gpa | pa | size).is_multiple_of(PAGE) || (gpa + size) >> 41 != 0 {
            return Err("G-stage mappings are 4 KiB aligned, below 2^41");
        }
        let step = if (gpa | pa | size).is_multiple_of(MEGAPAGE) {
            MEGAPAGE
        } else {
            PAGE
        };
        for offset in (0..size).step_by(step) {
            let (g, p) = (gpa + offset, pa + offset);
            let leaf = ((p as u64) >> 12) << 10 | flags;
            // SAFETY: root has ROOT_ENTRIES entries and the index is 11 bits;
            // lower tables are pool pages of 512 entries, indexed by 9 bits.
            unsafe {
                let l1 = next_level(self.root.add(g >> 30))?;
                let entry = l1.add((g >> 21) & 511);
                if step == MEGAPAGE {
                    *entry = leaf;
                } else {
                    *next_level(entry)?.add((g >> 12) & 511) = leaf;
                }
            }
        }
        Ok(())
    }
}

/// The table a non-leaf `entry` points to, made (empty) if it is invalid.
///
/// # Safety
/// `entry` is a valid pointer into one of this G-stage's tables, and not a
/// leaf (a megapage is never split).
unsafe fn next_level(entry: *mut u64) -> Result<*mut u64, &'static str> {
    if *entry & PTE_V == 0 {
        let table = take(1, 1)?;
        *entry = ((table as u64) >> 12) << 10 | PTE_V;
    } else if *entry & (PTE_R | PTE_W | PTE_X) != 0 {
        return Err("a device window overlaps a RAM megapage");
    }
    Ok(((*entry >> 10) << 12) as *mut u64)
}
