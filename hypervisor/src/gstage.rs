//! A VM's G-stage page tables (Sv39x4): guest physical to machine
//! physical, in 2 MiB megapages, every leaf a U page as the G-stage
//! requires. Anything not mapped is a guest-page fault the hypervisor
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
/// Sv39x4's root: 2048 entries, 16 KiB, 16 KiB aligned.
const ROOT_ENTRIES: usize = 2048;

/// Page-table pages for every VM, handed out once (no VM is destroyed yet).
#[repr(C, align(16384))]
struct Pool(UnsafeCell<[[u64; 512]; POOL_PAGES]>);
const POOL_PAGES: usize = 64;
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

    /// Maps `[gpa, gpa + size)` to `[pa, ...)`, all three 2 MiB aligned.
    pub fn map(
        &mut self,
        gpa: usize,
        pa: usize,
        size: usize,
        flags: u64,
    ) -> Result<(), &'static str> {
        if !(gpa | pa | size).is_multiple_of(MEGAPAGE) || gpa >> 41 != 0 {
            return Err("G-stage mappings are 2 MiB aligned, below 2^41");
        }
        for offset in (0..size).step_by(MEGAPAGE) {
            let (g, p) = (gpa + offset, pa + offset);
            // SAFETY: root has ROOT_ENTRIES entries and the index is 11 bits;
            // L1 tables are pool pages of 512 entries, indexed by 9 bits.
            unsafe {
                let entry = self.root.add(g >> 30);
                if *entry & PTE_V == 0 {
                    let table = take(1, 1)?;
                    *entry = ((table as u64) >> 12) << 10 | PTE_V;
                }
                let l1 = ((*entry >> 10) << 12) as *mut u64;
                *l1.add((g >> 21) & 511) = ((p as u64) >> 12) << 10 | flags;
            }
        }
        Ok(())
    }
}
