//! Fuzz body for the hart: one instruction at a time over fuzzer-chosen
//! code, registers, CSRs and page tables, checking the soft-TLB after
//! every step. Run by `fuzz/fuzz_targets/hart_step.rs` and, on seeded
//! pseudo-random inputs, by this module's unit test.
//!
//! Invariants, after every step:
//! - every soft-TLB entry sits at its page's index and maps one whole
//!   4 KiB page inside guest RAM's host allocation;
//! - while neither page-table memory nor the translation CSRs (`satp`,
//!   `vsatp`, `hgatp`, PMP) changed since the last full flush — when a
//!   stale entry is what the privileged spec allows until the next
//!   `sfence.vma`/`hfence` — every entry agrees with a fresh page walk and
//!   with PMP for the whole page, and no write entry covers the watched
//!   page or a page holding translated code;
//! - the CSRs hold only values the hart could have produced.
//!
//! Guest RAM (64 KiB at [`RAM_BASE`]): code at the start, four page-table
//! pages at [`TABLES`] (the `satp`/`vsatp` roots and every non-leaf PTE
//! point there; the `hgatp` root is all four), data above. Virtual
//! addresses the fuzzer chooses use small indices at every level, so walks
//! reach the entries it filled.

use crate::csr::addr;
use crate::mmu::{Access, AccessMode};
use crate::{GuestRam, Hart, Platform, Privilege};
use arbitrary::Unstructured;

const RAM_BASE: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 0x1_0000;
const PAGE: u64 = 4096;
/// Offset of the page tables in RAM, and their pages.
const TABLES: u64 = 0x8000;
const TABLE_PAGES: u64 = 4;
/// Offset of the data pages (above the tables).
const DATA: u64 = TABLES + TABLE_PAGES * PAGE;
/// PTE indices the fuzzer fills and uses in each table.
const SMALL_INDICES: u64 = 16;
/// A device window the platform answers (loads return the address).
const DEVICE: u64 = 0x1000_0000;
const STEPS: usize = 128;

/// PTE bits (the walk's).
const PTE_V: u64 = 1;
const PTE_PPN_SHIFT: u32 = 10;
/// `*atp` modes.
const ATP_SV39: u64 = 8 << 60;
const ATP_SV48: u64 = 9 << 60;
/// A PTE's accessed and dirty bits, which walks set.
const ACCESSED_DIRTY: u64 = 0xc0;
/// A PMP configuration: NAPOT, read, write and execute.
const PMP_NAPOT_RWX: u64 = 0x1f;

/// A platform with one device page and a clock the fuzzer drives.
struct FuzzPlatform {
    time: u64,
}

impl Platform for FuzzPlatform {
    fn load(&mut self, _: usize, addr: u64, _: u8) -> Option<u64> {
        (addr & !(PAGE - 1) == DEVICE).then_some(addr)
    }
    fn store(&mut self, _: usize, addr: u64, _: u8, _: u64) -> bool {
        addr & !(PAGE - 1) == DEVICE
    }
    fn watched_store(&mut self, _: usize, _: u64, _: u8, _: u64) {}
    fn mtime(&mut self) -> u64 {
        self.time
    }
}

/// Fuzz body: see the module documentation. Panics when an invariant fails.
pub fn hart_steps(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let ram = GuestRam::new(RAM_BASE, RAM_SIZE).expect("64 KiB of guest RAM");
    // At most half the input: the rest chooses the state.
    let wanted = (u.arbitrary::<u16>().unwrap_or(0) as usize).min(TABLES as usize);
    let Ok(code) = u.bytes(wanted % (u.len() / 2 + 1)) else {
        return;
    };
    ram.write_bytes(RAM_BASE, code);
    for _ in 0..u.int_in_range(0..=96u32).unwrap_or(0) {
        let slot = page_table_slot(&mut u);
        let pte = page_table_entry(&mut u);
        ram.write(RAM_BASE + TABLES + slot * 8, 8, pte);
    }
    let mut hart = Hart::new(0, ram.clone());
    hart.watch_page(RAM_BASE + DATA);
    for x in 1..32 {
        hart.x[x] = address(&mut u);
    }
    for (csr, value) in [
        (addr::MSTATUS, u.arbitrary().unwrap_or(0)),
        (addr::MEDELEG, u.arbitrary().unwrap_or(0)),
        (addr::MIDELEG, u.arbitrary().unwrap_or(0)),
        (addr::HEDELEG, u.arbitrary().unwrap_or(0)),
        (addr::HSTATUS, u.arbitrary().unwrap_or(0)),
        (addr::VSSTATUS, u.arbitrary().unwrap_or(0)),
        (addr::MENVCFG, u.arbitrary().unwrap_or(0)),
        (
            addr::MTVEC,
            RAM_BASE + 4 * u.int_in_range(0..=63u64).unwrap_or(0),
        ),
        (
            addr::STVEC,
            RAM_BASE + 4 * u.int_in_range(0..=63u64).unwrap_or(0),
        ),
        (addr::VSTVEC, address(&mut u)),
        (addr::SATP, translation_root(&mut u, 1)),
        (addr::VSATP, translation_root(&mut u, 1)),
        (addr::HGATP, translation_root(&mut u, TABLE_PAGES)),
    ] {
        hart.csr_write(csr, value);
    }
    // Mostly one NAPOT entry opening all memory to S and U (without one,
    // PMP refuses them everything), then fuzzer-chosen entries.
    let (pmpaddr, pmpcfg) = if u.ratio(3, 4).unwrap_or(true) {
        (u64::MAX, PMP_NAPOT_RWX)
    } else {
        (u.arbitrary().unwrap_or(0), u.arbitrary().unwrap_or(0))
    };
    for (csr, value) in [
        (addr::PMPADDR0 + 1, u.arbitrary().unwrap_or(0)),
        (addr::PMPADDR0 + 2, u.arbitrary().unwrap_or(0)),
        (addr::PMPADDR0 + 3, pmpaddr),
        (
            addr::PMPCFG0,
            u.arbitrary::<u32>().unwrap_or(0) as u64 | pmpcfg << 24,
        ),
    ] {
        hart.csr_write(csr, value);
    }
    hart.privilege = match u.int_in_range(0..=2u8).unwrap_or(2) {
        0 => Privilege::User,
        1 => Privilege::Supervisor,
        _ => Privilege::Machine,
    };
    hart.virt = hart.privilege != Privilege::Machine && u.arbitrary().unwrap_or(false);
    hart.pc = if u.arbitrary().unwrap_or(true) {
        RAM_BASE + 2 * u.int_in_range(0..=(code.len() as u64 / 2)).unwrap_or(0)
    } else {
        address(&mut u)
    };
    hart.flush_translations();

    let mut platform = FuzzPlatform { time: 0 };
    let mut baseline = Baseline::capture(&hart, &ram);
    for _ in 0..STEPS {
        platform.time = platform
            .time
            .wrapping_add(u.int_in_range(0..=3u64).unwrap_or(1));
        hart.waiting = false;
        hart.run(&mut platform, 1);
        if let Some(why) = hart.csr.impossible_value() {
            panic!("after a step at {:#x}: {why}", hart.pc);
        }
        if hart.tlb.generation() != baseline.generation {
            baseline = Baseline::capture(&hart, &ram);
        } else if !baseline.stale && !baseline.holds(&hart, &ram) {
            baseline.stale = true;
        }
        check_tlb(&mut hart, &ram, !baseline.stale);
    }
}

/// A page-table slot: one of the first [`SMALL_INDICES`] of a table page
/// mostly, anywhere in the tables otherwise.
fn page_table_slot(u: &mut Unstructured) -> u64 {
    let page = u.int_in_range(0..=TABLE_PAGES - 1).unwrap_or(0);
    let index = if u.ratio(7, 8).unwrap_or(true) {
        u.int_in_range(0..=SMALL_INDICES - 1).unwrap_or(0)
    } else {
        u.int_in_range(0..=511).unwrap_or(0)
    };
    page * 512 + index
}

/// A PTE: a pointer to a table page, a leaf on a RAM page (or on RAM's
/// first page as a superpage), a leaf on the device or outside RAM, or
/// raw bits.
fn page_table_entry(u: &mut Unstructured) -> u64 {
    let flags = u.arbitrary::<u8>().unwrap_or(0) as u64;
    let ppn = match u.int_in_range(0..=4u8).unwrap_or(0) {
        0 => {
            let table = RAM_BASE + TABLES + PAGE * u.int_in_range(0..=TABLE_PAGES - 1).unwrap_or(0);
            return table >> 12 << PTE_PPN_SHIFT | PTE_V;
        }
        1 => (RAM_BASE >> 12) + u.int_in_range(0..=RAM_SIZE / PAGE - 1).unwrap_or(0),
        2 => RAM_BASE >> 12,
        3 => DEVICE >> 12,
        _ => return u.arbitrary().unwrap_or(0),
    };
    ppn << PTE_PPN_SHIFT | flags
}

/// A register value: small virtual addresses that walks can resolve,
/// addresses in RAM, at the device, at RAM's last bytes, or raw bits.
fn address(u: &mut Unstructured) -> u64 {
    let offset = u.int_in_range(0..=PAGE - 1).unwrap_or(0);
    match u.int_in_range(0..=4u8).unwrap_or(0) {
        0 => {
            let mut va = 0;
            for level in 0..4 {
                va |= u.int_in_range(0..=SMALL_INDICES - 1).unwrap_or(0) << (12 + 9 * level);
            }
            va | offset
        }
        1 => RAM_BASE + u.int_in_range(0..=RAM_SIZE - 1).unwrap_or(0),
        2 => DEVICE + offset,
        3 => RAM_BASE + RAM_SIZE - u.int_in_range(1..=8u64).unwrap_or(1),
        _ => u.arbitrary().unwrap_or(0),
    }
}

/// An `*atp` value: Bare, or Sv39/Sv48 rooted at the page tables
/// (`pages`: how many pages the root spans, 4 for the G-stage's).
fn translation_root(u: &mut Unstructured, pages: u64) -> u64 {
    let root_page = u.int_in_range(0..=(TABLE_PAGES / pages) - 1).unwrap_or(0) * pages;
    let ppn = (RAM_BASE + TABLES + root_page * PAGE) >> 12;
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => 0,
        1 => ATP_SV39 | ppn,
        2 => ATP_SV48 | ppn,
        _ => u.arbitrary().unwrap_or(0),
    }
}

/// What the soft-TLB's entries were made from since its last full flush.
struct Baseline {
    generation: u64,
    /// RAM's words, A and D bits cleared.
    ram: Vec<u64>,
    /// RAM's bytes when last found equal to `ram` but for A and D bits
    /// (a byte comparison answers most checks).
    last_equal: Vec<u8>,
    atps: [u64; 3],
    pmp: (
        [u8; crate::csr::PMP_ENTRIES],
        [u64; crate::csr::PMP_ENTRIES],
    ),
    /// Set once memory or those CSRs changed: entries may be stale now.
    stale: bool,
}

impl Baseline {
    fn capture(hart: &Hart, ram: &GuestRam) -> Baseline {
        Baseline {
            generation: hart.tlb.generation(),
            last_equal: ram_bytes(ram),
            ram: (0..RAM_SIZE / 8)
                .map(|i| ram.read(RAM_BASE + 8 * i, 8).unwrap_or(0) & !ACCESSED_DIRTY)
                .collect(),
            atps: [hart.csr.satp, hart.csr.vsatp, hart.csr.hgatp],
            pmp: (hart.csr.pmpcfg, hart.csr.pmpaddr),
            stale: false,
        }
    }

    /// Whether nothing a walk depends on changed: RAM equal but for the A
    /// and D bits walks set, the same translation CSRs.
    fn holds(&mut self, hart: &Hart, ram: &GuestRam) -> bool {
        let now = ram_bytes(ram);
        if now != self.last_equal {
            let equal = now.chunks_exact(8).zip(&self.ram).all(|(bytes, &word)| {
                u64::from_le_bytes(bytes.try_into().unwrap()) & !ACCESSED_DIRTY == word
            });
            if !equal {
                return false;
            }
            self.last_equal = now;
        }
        self.atps == [hart.csr.satp, hart.csr.vsatp, hart.csr.hgatp]
            && self.pmp == (hart.csr.pmpcfg, hart.csr.pmpaddr)
    }
}

fn ram_bytes(ram: &GuestRam) -> Vec<u8> {
    let mut bytes = vec![0; RAM_SIZE as usize];
    ram.read_bytes(RAM_BASE, &mut bytes);
    bytes
}

/// Checks every soft-TLB entry (see the module documentation); `fresh`:
/// whether they must also agree with a walk made now.
fn check_tlb(hart: &mut Hart, ram: &GuestRam, fresh: bool) {
    let host_start = ram.host_ptr(RAM_BASE) as u64;
    for (access, index, tag, addend) in hart.tlb.entries() {
        let vaddr = tag >> crate::mmu::TLB_TAG_MODE_BITS << 12;
        let mode_bits = tag & ((1 << crate::mmu::TLB_TAG_MODE_BITS) - 1);
        assert_eq!(
            crate::mmu::tlb_index(vaddr),
            index,
            "{access:?} entry for {vaddr:#x} at the wrong index"
        );
        let host = vaddr.wrapping_add(addend);
        let offset = host.wrapping_sub(host_start);
        assert!(
            offset < RAM_SIZE && offset.is_multiple_of(PAGE),
            "{access:?} entry for {vaddr:#x} maps host {host:#x}, not a RAM page"
        );
        if !fresh {
            continue;
        }
        let mode = AccessMode {
            privilege: Privilege::from_bits(mode_bits & 3),
            virt: mode_bits & 4 != 0,
        };
        let paddr = RAM_BASE + offset;
        let walked = hart.translate(vaddr, access, mode);
        assert_eq!(
            walked.ok(),
            Some(paddr),
            "{access:?} entry for {vaddr:#x} in {mode:?} disagrees with a walk"
        );
        assert!(
            hart.pmp_allows(paddr, PAGE, access, mode.privilege),
            "{access:?} entry for {vaddr:#x}: PMP refuses part of the page"
        );
        if access == Access::Write {
            assert!(
                paddr >> 12 != hart.watched_page && !ram.is_protected(paddr),
                "write entry for {vaddr:#x} bypasses the watched or a protected page"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz body over seeded pseudo-random inputs; `hart_steps`
    /// panics on a broken invariant.
    #[test]
    fn hart_steps_keep_the_soft_tlb_consistent() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..200 {
            let bytes: Vec<u8> = (0..4096 + round * 37)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            super::hart_steps(&bytes);
        }
    }
}
