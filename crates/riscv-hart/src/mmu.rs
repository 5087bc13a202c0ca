//! Address translation (Bare, Sv39, Sv48), physical memory protection, and
//! the soft-TLB that turns a virtual page into a host pointer for RAM.
//!
//! A/D bits are updated by hardware (like QEMU), so Linux never takes a page
//! fault just to set them. The TLB holds only RAM pages that PMP allows as a
//! whole; everything else (device registers, partially covered pages, the
//! watched HTIF page) takes the slow path on every access.

use crate::csr::{
    HSTATUS_SPVP, MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_MPV, MSTATUS_MXR,
    MSTATUS_SUM, PMP_ENTRIES,
};
use crate::ram::{read_host, write_host};
use crate::trap::{Exception, ExceptionCause};
use crate::{Hart, Platform, Privilege, RunExit};

pub const PMP_LOCK: u8 = 0x80;
pub const PMP_TOR: u8 = 1;
const PMP_NA4: u8 = 2;
const PMP_NAPOT: u8 = 3;

const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
pub const TLB_ENTRIES: usize = 16384;

const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_U: u64 = 1 << 4;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;
/// Bits 54..=63: reserved, PBMT and N, none of which this hart implements.
const PTE_RESERVED: u64 = 0x3ff << 54;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read = 0,
    Write = 1,
    Execute = 2,
}

impl Access {
    #[cfg(any(test, feature = "fuzzing"))]
    fn from_index(i: u32) -> Access {
        match i {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::Execute,
        }
    }

    fn page_fault(self) -> ExceptionCause {
        match self {
            Access::Read => ExceptionCause::LoadPageFault,
            Access::Write => ExceptionCause::StorePageFault,
            Access::Execute => ExceptionCause::InstructionPageFault,
        }
    }

    fn access_fault(self) -> ExceptionCause {
        match self {
            Access::Read => ExceptionCause::LoadAccessFault,
            Access::Write => ExceptionCause::StoreAccessFault,
            Access::Execute => ExceptionCause::InstructionAccessFault,
        }
    }

    fn guest_page_fault(self) -> ExceptionCause {
        match self {
            Access::Read => ExceptionCause::LoadGuestPageFault,
            Access::Write => ExceptionCause::StoreGuestPageFault,
            Access::Execute => ExceptionCause::InstructionGuestPageFault,
        }
    }

    /// The pseudo-instruction `mtinst`/`htinst` hold for a guest-page
    /// fault on an implicit access to a VS-stage page table: a 64-bit load
    /// (reading the PTE) or store (writing its A/D bits back).
    fn implicit_pseudo_instruction(self) -> u64 {
        const PSEUDO_LOAD_64: u64 = 0x3000;
        const PSEUDO_STORE_64: u64 = 0x3020;
        if self == Access::Write {
            PSEUDO_STORE_64
        } else {
            PSEUDO_LOAD_64
        }
    }
}

/// Whom an access is made for: the privilege it is checked against, and
/// whether it is a guest's (V=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessMode {
    pub privilege: Privilege,
    pub virt: bool,
}

impl AccessMode {
    /// The mode's bits in a soft-TLB tag (privilege, then V).
    #[inline]
    pub const fn tag_bits(self) -> u64 {
        self.privilege as u64 | (self.virt as u64) << 2
    }
}

/// Bits of a soft-TLB tag below the virtual page number: the
/// [`AccessMode::tag_bits`] the translation was made for.
pub const TLB_TAG_MODE_BITS: u32 = 3;

/// The tag of the soft-TLB entry for `vaddr`'s page in the mode with
/// `mode_bits`; translated code computes the same (see [`DataTlb`]).
#[inline]
pub const fn tlb_tag(vaddr: u64, mode_bits: u64) -> u64 {
    (vaddr >> PAGE_SHIFT) << TLB_TAG_MODE_BITS | mode_bits
}

#[derive(Clone, Copy)]
#[repr(C)] // translated code reads entries directly (see DataTlb)
struct TlbEntry {
    /// [`tlb_tag`] of the page; `u64::MAX` when empty.
    tag: u64,
    /// Host address minus virtual address for this page.
    addend: u64,
}

/// log2 of a soft-TLB entry's size, and the offset of its addend, as
/// translated code indexes and reads entries.
pub const TLB_ENTRY_SHIFT: u32 = 4;
pub const TLB_ENTRY_ADDEND: usize = std::mem::offset_of!(TlbEntry, addend);
const _: () = assert!(std::mem::size_of::<TlbEntry>() == 1 << TLB_ENTRY_SHIFT);
const _: () = assert!(std::mem::offset_of!(TlbEntry, tag) == 0);

const EMPTY: TlbEntry = TlbEntry {
    tag: u64::MAX,
    addend: 0,
};

/// Direct-mapped translation caches, one per access type, tagged with the
/// mode the translation was made for, in one [`TableSet`] per recent
/// address space (`satp` value): a context switch to an address space used
/// lately finds its entries still there, as ASID-tagged hardware TLBs keep
/// them, instead of walking every page again.
pub struct Tlb {
    /// The tables of the current `satp`, which lookups and fills use.
    active: TableSet,
    /// Those of up to [`TLB_SETS`]` - 1` other `satp` values, by last use.
    parked: Vec<TableSet>,
    /// Full flushes so far: every set's entries from before one are gone
    /// (parked sets are emptied when next used).
    generation: u64,
    /// The last [`TableSet::stamp`] handed out.
    stamps: u64,
    /// The last page a fill found to be a device (`tag << 2 | access`), so
    /// translated code that keeps touching a device register does not walk
    /// the page tables twice per access; cleared by flushes.
    device_page: u64,
    /// G-stage translations of guest physical pages, so a guest's soft-TLB
    /// miss does not walk the G-stage for each of its VS-stage page-table
    /// reads: direct-mapped, cleared by every flush (hgatp writes, HFENCE,
    /// PMP changes), as a hardware TLB may hold them until HFENCE.GVMA.
    gstage: Box<[GStageEntry; GSTAGE_ENTRIES]>,
    /// Whether `gstage` holds an entry (a flush with none has nothing to clear).
    gstage_filled: bool,
    /// The virtual pages flushed one by one ([`Tlb::flush_page`]): the last
    /// [`PAGE_FLUSHES_LOGGED`], at `page_flushes % PAGE_FLUSHES_LOGGED`.
    flushed_pages: [u64; PAGE_FLUSHES_LOGGED],
    /// What it has done so far.
    stats: TlbStats,
}

/// Address spaces whose entries a hart keeps (a few processes taking turns).
pub const TLB_SETS: usize = 8;

/// The soft-TLB tables of one address space, and what was filled in them.
struct TableSet {
    /// Read, write and execute tables, in that order, in one allocation
    /// (translated code reaches both data tables from one base register).
    tables: Box<[[TlbEntry; TLB_ENTRIES]; 3]>,
    /// Entries filled since the last flush (`table << 16 | index`), so a
    /// flush clears those instead of all three tables; `None` once more
    /// than [`FILLS_TRACKED`] were filled.
    filled: Option<Vec<u32>>,
    /// The (VS-)stage superpages walked since the last full flush, as
    /// `(first virtual address, size - 1)`: a page flush inside one must
    /// drop every 4 KiB entry it was cached as, so it flushes everything.
    /// `None` once more than [`SUPERPAGES_TRACKED`] were walked.
    superpages: Option<Vec<(u64, u64)>>,
    /// Supervisor data entries filled while SUM was set (`table << 16 |
    /// index`, as `filled`): the ones clearing SUM may make wrong (setting
    /// it only opens more). `None` once more than [`SUM_FILLS_TRACKED`].
    sum_fills: Option<Vec<u32>>,
    /// The `satp` its entries were made under; for the active set,
    /// recorded when it is parked or fenced by ASID.
    satp: u64,
    /// [`Tlb::generation`] when it was last emptied: a parked set from
    /// before the last full flush is emptied before it is used again.
    generation: u64,
    /// Which of the hart's [`TLB_SETS`] sets it is, for an engine keeping
    /// a cache per set (see [`AddressSpace`]).
    id: usize,
    /// Unique to its contents since it was last emptied.
    stamp: u64,
    /// [`Tlb::stamps`] when it was last active (the least recent is reused).
    last_used: u64,
}

/// The soft-TLB set in use, as an engine caching translations of its own
/// (a jump cache) keys them: [`TableSet::id`] and its stamp, which changes
/// whenever that set is emptied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    pub id: usize,
    pub stamp: u64,
}

/// Supervisor fills under SUM tracked (a kernel's copy to or from user
/// memory touches a few pages).
const SUM_FILLS_TRACKED: usize = 64;
/// Superpages tracked between full flushes (a kernel's linear map is a few).
const SUPERPAGES_TRACKED: usize = 16;
/// Page flushes an engine caching translations can catch up on without
/// dropping everything (see [`Tlb::pages_flushed_since`]).
pub const PAGE_FLUSHES_LOGGED: usize = 16;

/// Soft-TLB counters, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbStats {
    /// Pages cached (each after a page-table walk, or for RAM untranslated).
    pub fills: u64,
    /// Of those, pages of a guest (V=1): two-stage walks.
    pub guest_fills: u64,
    /// G-stage walks the G-stage leaf cache saved.
    pub gstage_hits: u64,
    /// `sfence.vma` of one address that dropped that page's entries only.
    pub page_flushes: u64,
    /// `satp` writes that changed the address space.
    pub switches: u64,
    /// Of those, the ones that found the new address space's entries kept.
    pub switches_kept: u64,
    /// `sfence.vma` of one ASID that dropped only that ASID's sets.
    pub asid_flushes: u64,
}

impl std::ops::AddAssign for TlbStats {
    fn add_assign(&mut self, other: TlbStats) {
        self.fills += other.fills;
        self.guest_fills += other.guest_fills;
        self.gstage_hits += other.gstage_hits;
        self.page_flushes += other.page_flushes;
        self.switches += other.switches;
        self.switches_kept += other.switches_kept;
        self.asid_flushes += other.asid_flushes;
    }
}

/// A cached G-stage leaf: guest physical page, its PTE (after the walk's
/// A/D update), and the physical page it maps to.
#[derive(Clone, Copy)]
struct GStageEntry {
    guest_page: u64,
    pte: u64,
    page: u64,
}

const GSTAGE_EMPTY: GStageEntry = GStageEntry {
    guest_page: u64::MAX,
    pte: 0,
    page: 0,
};
const GSTAGE_ENTRIES: usize = 256;

/// Fills tracked between flushes before a flush clears whole tables.
const FILLS_TRACKED: usize = TLB_ENTRIES / 4;

/// [`TableSet::generation`] of a set emptied on its own (it is stale).
const STALE: u64 = u64::MAX;

/// `satp.ASID`: its shift and width.
const SATP_ASID_SHIFT: u32 = 44;
const SATP_ASID_MASK: u64 = 0xffff;

impl TableSet {
    fn new(id: usize, satp: u64, generation: u64, stamp: u64) -> TableSet {
        TableSet {
            // Built on the heap (a set is too big for a thread's stack).
            tables: vec![[EMPTY; TLB_ENTRIES]; 3]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("three tables")),
            filled: Some(Vec::with_capacity(FILLS_TRACKED)),
            superpages: Some(Vec::with_capacity(SUPERPAGES_TRACKED)),
            sum_fills: Some(Vec::with_capacity(SUM_FILLS_TRACKED)),
            satp,
            generation,
            id,
            stamp,
            last_used: stamp,
        }
    }

    /// Whether a full flush emptied every set since this one was last emptied.
    fn stale(&self, generation: u64) -> bool {
        self.generation != generation
    }

    /// Empties it, as of full flush `generation`, with a new `stamp`.
    fn clear(&mut self, generation: u64, stamp: u64) {
        match self.filled.take() {
            Some(mut filled) => {
                self.clear_slots(&filled);
                filled.clear();
                self.filled = Some(filled);
            }
            None => {
                self.tables.iter_mut().for_each(|t| t.fill(EMPTY));
                self.filled = Some(Vec::with_capacity(FILLS_TRACKED));
            }
        }
        match &mut self.superpages {
            Some(superpages) => superpages.clear(),
            None => self.superpages = Some(Vec::with_capacity(SUPERPAGES_TRACKED)),
        }
        match &mut self.sum_fills {
            Some(fills) => fills.clear(),
            None => self.sum_fills = Some(Vec::with_capacity(SUM_FILLS_TRACKED)),
        }
        self.generation = generation;
        self.stamp = stamp;
    }

    /// Empties the entries `slots` name (`table << 16 | index`).
    fn clear_slots(&mut self, slots: &[u32]) {
        for &slot in slots {
            self.tables[(slot >> 16) as usize][(slot & 0xffff) as usize] = EMPTY;
        }
    }

    /// Drops `vaddr`'s page's entries (every mode); false, dropping
    /// nothing, when a superpage walked since the set was last emptied
    /// covers it (then only emptying the whole set will do).
    fn flush_page(&mut self, vaddr: u64) -> bool {
        let covered = self.superpages.as_ref().is_none_or(|superpages| {
            superpages
                .iter()
                .any(|&(start, mask)| vaddr & !mask == start)
        });
        if covered {
            return false;
        }
        let (index, page_tag) = (tlb_index(vaddr), tlb_tag(vaddr, 0));
        let mode_bits = (1 << TLB_TAG_MODE_BITS) - 1;
        for table in self.tables.iter_mut() {
            if table[index].tag & !mode_bits == page_tag {
                table[index] = EMPTY;
            }
        }
        true
    }

    /// SUM was cleared: drops the entries filled for supervisor accesses
    /// while it was set; false, dropping nothing, when too many were.
    fn flush_sum_fills(&mut self) -> bool {
        let Some(mut fills) = self.sum_fills.take() else {
            return false;
        };
        self.clear_slots(&fills);
        fills.clear();
        self.sum_fills = Some(fills);
        true
    }

    fn flush_writes(&mut self) {
        let write = Access::Write as usize;
        match &self.filled {
            Some(filled) => {
                for &f in filled {
                    if (f >> 16) as usize == write {
                        self.tables[write][(f & 0xffff) as usize] = EMPTY;
                    }
                }
            }
            None => self.tables[write].fill(EMPTY),
        }
    }

    fn asid(&self) -> u64 {
        self.satp >> SATP_ASID_SHIFT & SATP_ASID_MASK
    }
}

impl Tlb {
    pub fn new() -> Tlb {
        Tlb {
            active: TableSet::new(0, 0, 0, 0),
            parked: Vec::with_capacity(TLB_SETS - 1),
            generation: 0,
            stamps: 0,
            device_page: u64::MAX,
            gstage: Box::new([GSTAGE_EMPTY; GSTAGE_ENTRIES]),
            gstage_filled: false,
            flushed_pages: [0; PAGE_FLUSHES_LOGGED],
            stats: TlbStats::default(),
        }
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamps += 1;
        self.stamps
    }

    /// Notes that a walk found a superpage leaf covering `[start, start + mask]`.
    fn note_superpage(&mut self, start: u64, mask: u64) {
        let set = &mut self.active;
        if let Some(superpages) = &mut set.superpages {
            if !superpages.contains(&(start, mask)) {
                if superpages.len() < SUPERPAGES_TRACKED {
                    superpages.push((start, mask));
                } else {
                    set.superpages = None;
                }
            }
        }
    }

    /// `satp` changed from `from` to `satp`: parks the current set (whose
    /// entries were made under `from`) and takes the one last used for
    /// `satp` (emptied if a full flush came since), or the least recently
    /// used one, emptied, when none is. What an address space's set holds
    /// stays valid while parked: changes to its page tables are ordered by
    /// `sfence.vma`, which reaches parked sets too.
    pub fn switch_address_space(&mut self, from: u64, satp: u64) {
        self.stats.switches += 1;
        self.device_page = u64::MAX;
        self.active.satp = from;
        self.active.last_used = self.next_stamp();
        let found = self.parked.iter().position(|set| set.satp == satp);
        let next = match found {
            Some(i) => i,
            None if self.parked.len() < TLB_SETS - 1 => {
                let (id, generation) = (self.parked.len() + 1, self.generation);
                let stamp = self.next_stamp();
                self.parked.push(TableSet::new(id, satp, generation, stamp));
                self.parked.len() - 1
            }
            None => {
                let (i, _) = self
                    .parked
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, set)| set.last_used)
                    .expect("TLB_SETS > 1");
                let (generation, stamp) = (self.generation, self.next_stamp());
                self.parked[i].clear(generation, stamp);
                self.parked[i].satp = satp;
                i
            }
        };
        std::mem::swap(&mut self.active, &mut self.parked[next]);
        if self.active.stale(self.generation) {
            let (generation, stamp) = (self.generation, self.next_stamp());
            self.active.clear(generation, stamp);
        } else if found.is_some() {
            self.stats.switches_kept += 1;
        }
    }

    /// Applies `keep` to every set not emptied by a full flush since it
    /// was last used; one where it fails is emptied (a parked one when it
    /// is next used).
    fn retain_sets(&mut self, mut keep: impl FnMut(&mut TableSet) -> bool) {
        let generation = self.generation;
        if !keep(&mut self.active) {
            let stamp = self.next_stamp();
            self.active.clear(generation, stamp);
        }
        for set in self.parked.iter_mut().filter(|set| !set.stale(generation)) {
            if !keep(set) {
                set.generation = STALE;
            }
        }
        self.device_page = u64::MAX;
    }

    /// SUM was cleared: drops the entries filled for supervisor accesses
    /// while it was set (a set's every entry when too many were).
    pub fn flush_sum_fills(&mut self) {
        self.retain_sets(TableSet::flush_sum_fills);
    }

    /// `sfence.vma` of `vaddr`: drops the entries of its page (every mode,
    /// every address space), or all of a set's when a superpage walked
    /// since it was last emptied covers it. The G-stage cache stays: only
    /// HFENCE.GVMA orders G-stage changes.
    pub fn flush_page(&mut self, vaddr: u64) {
        self.retain_sets(|set| set.flush_page(vaddr));
        self.flushed_pages[self.stats.page_flushes as usize % PAGE_FLUSHES_LOGGED] =
            vaddr >> PAGE_SHIFT;
        self.stats.page_flushes += 1;
    }

    /// `sfence.vma` of every address of `asid`, `satp` being the hart's
    /// (the active set's entries were made under it, whatever set the
    /// hart's state last, a restore included): empties the sets made under
    /// that ASID only. Global mappings cached in them go too, which the
    /// spec allows (changes to those come with an `sfence.vma` of every
    /// ASID, a full flush).
    /// (Bits of `asid` above ASIDLEN are ignored, as the spec says.)
    pub fn flush_asid(&mut self, asid: u64, satp: u64) {
        let asid = asid & SATP_ASID_MASK;
        self.stats.asid_flushes += 1;
        self.active.satp = satp;
        self.retain_sets(|set| set.asid() != asid);
    }

    /// The virtual page numbers flushed one by one since the count of page
    /// flushes was `seen` (see [`TlbStats::page_flushes`]); `None` when more
    /// than the log holds were (drop every cached translation instead).
    pub fn pages_flushed_since(&self, seen: u64) -> Option<impl Iterator<Item = u64> + '_> {
        let now = self.stats.page_flushes;
        (now - seen <= PAGE_FLUSHES_LOGGED as u64)
            .then(|| (seen..now).map(|n| self.flushed_pages[n as usize % PAGE_FLUSHES_LOGGED]))
    }

    /// The cached G-stage leaf for guest physical page `guest_page`.
    fn gstage_lookup(&mut self, guest_page: u64) -> Option<GStageEntry> {
        let entry = self.gstage[guest_page as usize % GSTAGE_ENTRIES];
        let hit = entry.guest_page == guest_page;
        self.stats.gstage_hits += hit as u64;
        hit.then_some(entry)
    }

    fn gstage_fill(&mut self, entry: GStageEntry) {
        self.gstage[entry.guest_page as usize % GSTAGE_ENTRIES] = entry;
        self.gstage_filled = true;
    }

    /// Drops every entry of every address space.
    pub fn flush(&mut self) {
        if self.gstage_filled {
            self.gstage.fill(GSTAGE_EMPTY);
            self.gstage_filled = false;
        }
        self.generation += 1;
        let (generation, stamp) = (self.generation, self.next_stamp());
        // Parked sets are now stale: emptied when next used.
        self.active.clear(generation, stamp);
        self.device_page = u64::MAX;
    }

    /// Drops the cached write translations only, in every address space
    /// (a page became protected code, or dirty tracking starts a round).
    pub fn flush_writes(&mut self) {
        self.retain_sets(|set| {
            set.flush_writes();
            true
        });
    }

    /// Caches `entry` for `access` at `index`; `under_sum`: a supervisor
    /// data access with SUM set made it.
    fn fill(&mut self, access: Access, index: usize, entry: TlbEntry, under_sum: bool) {
        let set = &mut self.active;
        set.tables[access as usize][index] = entry;
        let slot = (access as u32) << 16 | index as u32;
        track(&mut set.filled, FILLS_TRACKED, slot);
        if under_sum {
            track(&mut set.sum_fills, SUM_FILLS_TRACKED, slot);
        }
    }

    /// Full flushes so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The set in use now.
    pub fn address_space(&self) -> AddressSpace {
        AddressSpace {
            id: self.active.id,
            stamp: self.active.stamp,
        }
    }

    /// The entries it holds for the current address space: `(access,
    /// index, tag, addend)`.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn entries(&self) -> Vec<(Access, usize, u64, u64)> {
        let set = &self.active;
        let slots: Vec<(usize, usize)> = match &set.filled {
            Some(filled) => filled
                .iter()
                .map(|&f| ((f >> 16) as usize, (f & 0xffff) as usize))
                .collect(),
            None => (0..3)
                .flat_map(|table| (0..TLB_ENTRIES).map(move |index| (table, index)))
                .collect(),
        };
        let mut entries: Vec<_> = slots
            .into_iter()
            .filter_map(|(table, index)| {
                let entry = set.tables[table][index];
                (entry.tag != EMPTY.tag).then(|| {
                    let access = Access::from_index(table as u32);
                    (access, index, entry.tag, entry.addend)
                })
            })
            .collect();
        entries.sort_unstable_by_key(|&(access, index, ..)| (access as u8, index));
        entries.dedup();
        entries
    }

    /// Its counters; `flushes` is [`Tlb::generation`].
    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    /// The current address space's entry for `access` at `index`.
    #[inline]
    fn entry(&self, access: Access, index: usize) -> TlbEntry {
        self.active.tables[access as usize][index]
    }
}

/// Adds `slot` to a list of filled entries bounded by `limit` (`None` once
/// it overflowed).
fn track(list: &mut Option<Vec<u32>>, limit: usize, slot: u32) {
    if let Some(slots) = list {
        if slots.len() < limit {
            slots.push(slot);
        } else {
            *list = None;
        }
    }
}

#[inline]
pub(crate) fn tlb_index(vaddr: u64) -> usize {
    (vaddr >> PAGE_SHIFT) as usize % TLB_ENTRIES
}

#[inline]
fn within_page(vaddr: u64, size: u8) -> bool {
    (vaddr & (PAGE_SIZE - 1)) + size as u64 <= PAGE_SIZE
}

/// Where translated code finds the data soft-TLB: the write table follows
/// the read table directly (`write = read + TLB_ENTRIES * 16`); each holds
/// [`TLB_ENTRIES`] 16-byte entries `{ tag: u64, addend: u64 }`, indexed by
/// `vpn % TLB_ENTRIES`, with `tag = tlb_tag(vaddr, mode)`; a hit maps the
/// whole 4 KiB page at `vaddr + addend` on the host. Pages that need the
/// slow path (devices, watched pages, PMP-split pages) never hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataTlb {
    pub read: *const u8,
    pub write: *const u8,
    /// [`AccessMode::tag_bits`] of the mode loads and stores use now (MPRV applied).
    pub mode: u64,
}

impl Tlb {
    pub(crate) fn data_tlb(&self, mode: AccessMode) -> DataTlb {
        DataTlb {
            read: self.active.tables[Access::Read as usize].as_ptr().cast(),
            write: self.active.tables[Access::Write as usize].as_ptr().cast(),
            mode: mode.tag_bits(),
        }
    }

    /// See [`Hart::code_at`].
    #[inline]
    pub(crate) fn code_at(&self, pc: u64, mode: AccessMode) -> Option<&[u8]> {
        let entry = self.entry(Access::Execute, tlb_index(pc));
        if entry.tag != tlb_tag(pc, mode.tag_bits()) {
            return None;
        }
        let left = (PAGE_SIZE - (pc & (PAGE_SIZE - 1))) as usize;
        // SAFETY: execute TLB entries only map whole RAM pages, which live as
        // long as the hart's GuestRam; the slice ends at the page's end.
        Some(unsafe {
            std::slice::from_raw_parts(pc.wrapping_add(entry.addend) as *const u8, left)
        })
    }
}

/// Bits of the physical page number in a PTE or an `*atp` register.
const PPN_MASK: u64 = (1 << 44) - 1;
/// `satp.MODE` values: Bare, Sv39 and Sv48.
pub(crate) const ATP_MODE_BARE: u64 = 0;
pub(crate) const ATP_MODE_SV39: u64 = 8;
pub(crate) const ATP_MODE_SV48: u64 = 9;

/// Which kind of address a translation stage takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageKind {
    /// Virtual addresses (satp): sign-extended, leaves checked against
    /// the privilege with SUM and MXR, page tables in physical memory.
    Virtual,
    /// A guest's virtual addresses (vsatp): like `Virtual`, but the page
    /// tables sit at guest physical addresses, which the G-stage translates.
    GuestVirtual,
    /// Guest physical addresses (hgatp, Sv39x4/Sv48x4): zero-extended, two
    /// more index bits at the 16 KiB root, every leaf a U page.
    GuestPhysical,
}

/// One stage of address translation, as [`Hart::walk`] needs it.
#[derive(Clone, Copy, Debug)]
struct Stage {
    /// Physical address of the root table.
    root: u64,
    /// 3 (Sv39) or 4 (Sv48).
    levels: u32,
    /// Index bits of the root table beyond the usual 9.
    root_extra_bits: u32,
    kind: StageKind,
}

impl Stage {
    /// The stage an `*atp` register describes; `None` when it is Bare.
    /// (Writes only ever leave Bare, Sv39 or Sv48 there.)
    fn from_atp(atp: u64, kind: StageKind) -> Option<Stage> {
        let levels = match atp >> 60 {
            ATP_MODE_SV39 => 3,
            ATP_MODE_SV48 => 4,
            _ => return None,
        };
        Some(Stage {
            root: (atp & PPN_MASK) << PAGE_SHIFT,
            levels,
            root_extra_bits: if kind == StageKind::GuestPhysical {
                2
            } else {
                0
            },
            kind,
        })
    }
}

/// What a leaf PTE must allow for an access.
#[derive(Clone, Copy, Debug)]
struct LeafRules {
    /// The privilege the access is checked against (U pages and SUM).
    privilege: Privilege,
    /// Supervisor accesses may reach U pages (not to execute).
    sum: bool,
    /// Loads may read execute-only pages.
    mxr: bool,
    /// HLVX: loads need execute permission instead of read permission.
    hlvx: bool,
}

impl LeafRules {
    fn allows(&self, pte: u64, access: Access) -> bool {
        let user_page = pte & PTE_U != 0;
        let privilege_ok = match self.privilege {
            Privilege::User => user_page,
            _ => !user_page || (access != Access::Execute && self.sum),
        };
        let permitted = match access {
            Access::Read if self.hlvx => pte & PTE_X != 0,
            Access::Read => pte & PTE_R != 0 || (self.mxr && pte & PTE_X != 0),
            Access::Write => pte & PTE_W != 0,
            Access::Execute => pte & PTE_X != 0,
        };
        privilege_ok && permitted
    }
}

/// An access as the slow path makes it.
#[derive(Clone, Copy, Debug)]
struct Request {
    access: Access,
    mode: AccessMode,
    /// HLVX: a load that needs execute permission.
    hlvx: bool,
}

impl Request {
    fn new(access: Access, mode: AccessMode) -> Request {
        Request {
            access,
            mode,
            hlvx: false,
        }
    }
}

/// Why a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WalkFault {
    /// An invalid, reserved or forbidding PTE, or an address out of range.
    Page,
    /// A page-table access outside RAM or forbidden by PMP.
    Access,
    /// The G-stage refused guest physical address `gpa`: the access's own,
    /// or, when `implicit` says how it was accessed, a VS-stage PTE's.
    GuestPage { gpa: u64, implicit: Option<Access> },
}

impl Hart {
    /// The mode instructions are fetched in: the hart's own.
    #[inline]
    pub fn fetch_mode(&self) -> AccessMode {
        AccessMode {
            privilege: self.privilege,
            virt: self.virt,
        }
    }

    /// The mode loads and stores are made in (mstatus.MPRV applied).
    #[inline]
    pub fn data_mode(&self) -> AccessMode {
        if self.privilege == Privilege::Machine && self.csr.mstatus & MSTATUS_MPRV != 0 {
            let privilege =
                Privilege::from_bits((self.csr.mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
            AccessMode {
                privilege,
                virt: privilege != Privilege::Machine && self.csr.mstatus & MSTATUS_MPV != 0,
            }
        } else {
            self.fetch_mode()
        }
    }

    /// Loads `size` bytes from virtual `vaddr`, zero-extended.
    #[inline]
    pub(crate) fn load(
        &mut self,
        vaddr: u64,
        size: u8,
        platform: &mut dyn Platform,
    ) -> Result<u64, Exception> {
        let mode = self.data_mode();
        let entry = self.tlb.entry(Access::Read, tlb_index(vaddr));
        if entry.tag == tlb_tag(vaddr, mode.tag_bits()) && within_page(vaddr, size) {
            // SAFETY: TLB entries only map whole RAM pages; the access stays in the page.
            return Ok(unsafe { read_host(vaddr.wrapping_add(entry.addend) as *const u8, size) });
        }
        self.access_slow(vaddr, size, Request::new(Access::Read, mode), 0, platform)
    }

    /// Stores the low `size` bytes of `value` at virtual `vaddr`.
    #[inline]
    pub(crate) fn store(
        &mut self,
        vaddr: u64,
        size: u8,
        value: u64,
        platform: &mut dyn Platform,
    ) -> Result<(), Exception> {
        let mode = self.data_mode();
        let entry = self.tlb.entry(Access::Write, tlb_index(vaddr));
        if entry.tag == tlb_tag(vaddr, mode.tag_bits()) && within_page(vaddr, size) {
            // SAFETY: TLB entries only map whole RAM pages; the access stays in the page.
            unsafe { write_host(vaddr.wrapping_add(entry.addend) as *mut u8, size, value) };
            return Ok(());
        }
        self.access_slow(
            vaddr,
            size,
            Request::new(Access::Write, mode),
            value,
            platform,
        )
        .map(|_| ())
    }

    /// Fills the data TLB for a `size`-byte load (or store, when `write`)
    /// at `vaddr` without performing it, for translated code whose inline
    /// lookup missed. False when the access cannot take the fast path
    /// (a fault, a device, a page-crossing access, PMP within the page, the
    /// watched page, or a store to a page holding translated code): the
    /// interpreter then performs it.
    pub fn fill_data_tlb(&mut self, vaddr: u64, size: u8, write: bool) -> bool {
        let access = if write { Access::Write } else { Access::Read };
        self.fill_tlb(vaddr, size, access, self.data_mode())
    }

    /// Fills the execute TLB for the code at `pc`, for an engine about to
    /// translate it ([`Hart::code_at`] then sees it); false when fetching
    /// there needs the interpreter (a fault, PMP within the page).
    pub fn fill_code_tlb(&mut self, pc: u64) -> bool {
        self.fill_tlb(pc, 2, Access::Execute, self.fetch_mode())
    }

    fn fill_tlb(&mut self, vaddr: u64, size: u8, access: Access, mode: AccessMode) -> bool {
        let device_page = tlb_tag(vaddr, mode.tag_bits()) << 2 | access as u64;
        if !within_page(vaddr, size) || self.tlb.device_page == device_page {
            return false;
        }
        let Ok(paddr) = self.translate(vaddr, access, mode) else {
            return false;
        };
        if !self.ram.contains(paddr & !(PAGE_SIZE - 1), PAGE_SIZE) {
            self.tlb.device_page = device_page;
            return false;
        }
        self.cache_page(vaddr, paddr, access, mode)
    }

    /// Caches the translation of `vaddr`'s page (at `paddr`, in RAM) for
    /// `access` when every access to that page may take the fast path: not
    /// stores to the watched page or to a page holding translated code, and
    /// PMP deciding for the whole page. Returns whether it did.
    fn cache_page(&mut self, vaddr: u64, paddr: u64, access: Access, mode: AccessMode) -> bool {
        let page = paddr & !(PAGE_SIZE - 1);
        let write = access == Access::Write;
        if (write && (paddr >> PAGE_SHIFT == self.watched_page || self.ram.is_protected(page)))
            || !self.pmp_allows(page, PAGE_SIZE, access, mode.privilege)
        {
            return false;
        }
        let entry = TlbEntry {
            tag: tlb_tag(vaddr, mode.tag_bits()),
            addend: (self.ram.host_ptr(page) as u64).wrapping_sub(vaddr & !(PAGE_SIZE - 1)),
        };
        if write {
            // Stores through this entry will not be seen one by one.
            self.ram.mark_dirty(page, PAGE_SIZE);
        }
        let status = if mode.virt {
            self.csr.vsstatus
        } else {
            self.csr.mstatus
        };
        let under_sum = mode.privilege == Privilege::Supervisor
            && access != Access::Execute
            && status & MSTATUS_SUM != 0;
        self.tlb.fill(access, tlb_index(vaddr), entry, under_sum);
        self.tlb.stats.fills += 1;
        self.tlb.stats.guest_fills += mode.virt as u64;
        true
    }

    /// Fetches the raw instruction at `pc` (only 16 bits are valid when the
    /// low parcel marks a compressed instruction).
    #[inline]
    pub(crate) fn fetch(&mut self, platform: &mut dyn Platform) -> Result<u32, Exception> {
        let pc = self.pc;
        let mode = self.fetch_mode();
        let entry = self.tlb.entry(Access::Execute, tlb_index(pc));
        if entry.tag == tlb_tag(pc, mode.tag_bits()) && within_page(pc, 4) {
            // SAFETY: TLB entries only map whole RAM pages; 4 bytes stay in the page.
            return Ok(unsafe { read_host(pc.wrapping_add(entry.addend) as *const u8, 4) } as u32);
        }
        // A 32-bit instruction straddling two pages, or a TLB miss: by
        // 16-bit parcels, each through the TLB when it maps the parcel's page.
        let request = Request::new(Access::Execute, mode);
        let low = match self.cached_parcel(pc, mode) {
            Some(parcel) => parcel,
            None => self.access_slow(pc, 2, request, 0, platform)? as u32,
        };
        if low & 3 != 3 {
            return Ok(low);
        }
        let next = pc.wrapping_add(2);
        let high = match self.cached_parcel(next, mode) {
            Some(parcel) => parcel,
            None => self.access_slow(next, 2, request, 0, platform)? as u32,
        };
        Ok(low | high << 16)
    }

    /// The 16-bit instruction parcel at `pc` (2-byte aligned, so inside one
    /// page) when the execute TLB maps its page in `mode`.
    #[inline]
    fn cached_parcel(&self, pc: u64, mode: AccessMode) -> Option<u32> {
        let entry = self.tlb.entry(Access::Execute, tlb_index(pc));
        (entry.tag == tlb_tag(pc, mode.tag_bits()) && within_page(pc, 2)).then(|| {
            // SAFETY: TLB entries only map whole RAM pages; 2 bytes stay in the page.
            unsafe { read_host(pc.wrapping_add(entry.addend) as *const u8, 2) as u32 }
        })
    }

    /// HLV/HLVX (`store` None) and HSV: an access made as the guest would
    /// make it, at privilege hstatus.SPVP with V=1 (two-stage translation,
    /// vsstatus.SUM and MXR), whatever the current mode and MPRV.
    pub(crate) fn guest_access(
        &mut self,
        vaddr: u64,
        size: u8,
        store: Option<u64>,
        hlvx: bool,
        platform: &mut dyn Platform,
    ) -> Result<u64, Exception> {
        let privilege = if self.csr.hstatus & HSTATUS_SPVP != 0 {
            Privilege::Supervisor
        } else {
            Privilege::User
        };
        let request = Request {
            access: if store.is_some() {
                Access::Write
            } else {
                Access::Read
            },
            mode: AccessMode {
                privilege,
                virt: true,
            },
            hlvx,
        };
        self.access_slow(vaddr, size, request, store.unwrap_or(0), platform)
    }

    /// Physical address of the aligned `size`-byte operand of LR (`Access::Read`)
    /// or SC/AMO (`Access::Write`: their faults are store/AMO faults). Atomics
    /// only work on RAM.
    pub(crate) fn atomic_address(
        &mut self,
        vaddr: u64,
        size: u8,
        access: Access,
    ) -> Result<u64, Exception> {
        if !vaddr.is_multiple_of(size as u64) {
            let cause = if access == Access::Read {
                ExceptionCause::LoadMisaligned
            } else {
                ExceptionCause::StoreMisaligned
            };
            let mut e = Exception::new(cause, vaddr);
            e.values.gva = self.data_mode().virt;
            return Err(e);
        }
        let mode = self.data_mode();
        let paddr = self.translate(vaddr, access, mode)?;
        if !self.ram.contains(paddr, size as u64)
            || !self.pmp_allows(paddr, size as u64, access, mode.privilege)
        {
            let mut e = Exception::new(access.access_fault(), vaddr);
            e.values.gva = mode.virt;
            return Err(e);
        }
        Ok(paddr)
    }

    /// Translation, PMP, RAM or device access; fills the TLB when it may.
    #[cold]
    fn access_slow(
        &mut self,
        vaddr: u64,
        size: u8,
        request: Request,
        value: u64,
        platform: &mut dyn Platform,
    ) -> Result<u64, Exception> {
        if !within_page(vaddr, size) {
            // A misaligned access that straddles two pages: one byte at a time.
            let mut result = 0;
            for i in 0..size as u64 {
                let byte = self.access_slow(
                    vaddr.wrapping_add(i),
                    1,
                    request,
                    value >> (8 * i),
                    platform,
                )?;
                result |= (byte & 0xff) << (8 * i);
            }
            return Ok(result);
        }
        let Request { access, mode, hlvx } = request;
        let paddr = self.translate_with(vaddr, access, mode, hlvx)?;
        let privilege = mode.privilege;
        let mut fault = Exception::new(access.access_fault(), vaddr);
        fault.values.gva = mode.virt;
        if self.ram.contains(paddr, size as u64) {
            if access == Access::Write {
                // Stores to translated code invalidate it (and unprotect the page).
                self.ram.note_store(paddr, size as u64);
            }
            let watched = access == Access::Write && paddr >> PAGE_SHIFT == self.watched_page;
            // HLVX's translation (execute permission for a load) is not
            // what a load in that mode would find: it is never cached.
            if (hlvx || !self.cache_page(vaddr, paddr, access, mode))
                && !self.pmp_allows(paddr, size as u64, access, privilege)
            {
                return Err(fault);
            }
            let host = self.ram.host_ptr(paddr);
            if access == Access::Write {
                // SAFETY: contains() checked the whole access is inside RAM.
                unsafe { write_host(host, size, value) };
                if watched {
                    platform.watched_store(self.id, paddr, size, value);
                    self.request_stop(RunExit::DeviceAccess);
                }
                Ok(0)
            } else {
                // SAFETY: contains() checked the whole access is inside RAM.
                Ok(unsafe { read_host(host, size) })
            }
        } else {
            if access == Access::Execute || !self.pmp_allows(paddr, size as u64, access, privilege)
            {
                return Err(fault);
            }
            if access == Access::Write {
                if !platform.store(self.id, paddr, size, value) {
                    return Err(fault);
                }
                self.request_stop(RunExit::DeviceAccess);
                Ok(0)
            } else {
                // Device reads can change interrupt state (PLIC claim, UART RX).
                self.request_stop(RunExit::DeviceAccess);
                platform.load(self.id, paddr, size).ok_or(fault)
            }
        }
    }

    /// Virtual to physical translation for an access in `mode`.
    pub(crate) fn translate(
        &mut self,
        vaddr: u64,
        access: Access,
        mode: AccessMode,
    ) -> Result<u64, Exception> {
        self.translate_with(vaddr, access, mode, false)
    }

    /// [`Hart::translate`], for HLVX (`hlvx`: loads need execute permission)
    /// too. With V=1 the address goes through the VS-stage (vsatp) and then
    /// the G-stage (hgatp), the VS-stage's page-table accesses through the
    /// G-stage as well.
    pub(crate) fn translate_with(
        &mut self,
        vaddr: u64,
        access: Access,
        mode: AccessMode,
        hlvx: bool,
    ) -> Result<u64, Exception> {
        if mode.privilege == Privilege::Machine {
            return Ok(vaddr);
        }
        let mstatus = self.csr.mstatus;
        let (atp, kind, status) = if mode.virt {
            (self.csr.vsatp, StageKind::GuestVirtual, self.csr.vsstatus)
        } else {
            (self.csr.satp, StageKind::Virtual, mstatus)
        };
        let leaf = LeafRules {
            privilege: mode.privilege,
            sum: status & MSTATUS_SUM != 0,
            // HS-level MXR also opens the guest's execute-only pages.
            mxr: (status | mstatus) & MSTATUS_MXR != 0,
            hlvx,
        };
        let result = match Stage::from_atp(atp, kind) {
            Some(stage) => self.walk(vaddr, access, &stage, leaf).map(|(pa, _)| pa),
            None => Ok(vaddr),
        };
        let result = match result {
            Ok(gpa) if mode.virt => self.g_stage(gpa, access, hlvx),
            other => other,
        };
        result.map_err(|fault| {
            let mut e = match fault {
                WalkFault::Page => Exception::new(access.page_fault(), vaddr),
                WalkFault::Access => Exception::new(access.access_fault(), vaddr),
                WalkFault::GuestPage { gpa, implicit } => {
                    let mut e = Exception::new(access.guest_page_fault(), vaddr);
                    e.values.tval2 = gpa >> 2;
                    e.values.tinst = implicit.map_or(0, Access::implicit_pseudo_instruction);
                    e
                }
            };
            e.values.gva = mode.virt;
            e
        })
    }

    /// The G-stage: guest physical `gpa` to physical, for an `access` to
    /// it (explicit, or implicit for a VS-stage PTE).
    fn g_stage(&mut self, gpa: u64, access: Access, hlvx: bool) -> Result<u64, WalkFault> {
        let Some(stage) = Stage::from_atp(self.csr.hgatp, StageKind::GuestPhysical) else {
            return Ok(gpa);
        };
        let leaf = LeafRules {
            privilege: Privilege::User,
            sum: false,
            mxr: self.csr.mstatus & MSTATUS_MXR != 0,
            hlvx,
        };
        let guest_page = gpa >> PAGE_SHIFT;
        let page_offset = gpa & ((1 << PAGE_SHIFT) - 1);
        if let Some(cached) = self.tlb.gstage_lookup(guest_page) {
            // Only where the walk would change nothing (A, and D for a
            // store, already set) and the leaf allows this access.
            let dirty_enough = access != Access::Write || cached.pte & PTE_D != 0;
            if dirty_enough && leaf.allows(cached.pte, access) {
                return Ok(cached.page << PAGE_SHIFT | page_offset);
            }
        }
        self.walk(gpa, access, &stage, leaf)
            .map(|(pa, pte)| {
                self.tlb.gstage_fill(GStageEntry {
                    guest_page,
                    pte,
                    page: pa >> PAGE_SHIFT,
                });
                pa
            })
            .map_err(|fault| match fault {
                WalkFault::Page => WalkFault::GuestPage {
                    gpa,
                    implicit: None,
                },
                other => other,
            })
    }

    /// Walks the page tables of one translation stage for an `access` to
    /// `addr`: the one walk every stage shares, parameterised by where the
    /// root is, how wide the address and the root index are, and which
    /// rules a leaf must pass.
    fn walk(
        &mut self,
        addr: u64,
        access: Access,
        stage: &Stage,
        leaf: LeafRules,
    ) -> Result<(u64, u64), WalkFault> {
        let levels = stage.levels;
        let va_bits = PAGE_SHIFT + 9 * levels + stage.root_extra_bits;
        let in_range = match stage.kind {
            // Virtual addresses must be the sign extension of their top bit,
            StageKind::Virtual | StageKind::GuestVirtual => {
                ((addr as i64) << (64 - va_bits) >> (64 - va_bits)) as u64 == addr
            }
            // guest physical ones zero above it.
            StageKind::GuestPhysical => addr >> va_bits == 0,
        };
        if !in_range {
            return Err(WalkFault::Page);
        }
        let mut table = stage.root;
        for level in (0..levels).rev() {
            let index_bits = if level == levels - 1 {
                9 + stage.root_extra_bits
            } else {
                9
            };
            let vpn = (addr >> (PAGE_SHIFT + 9 * level)) & ((1 << index_bits) - 1);
            let pte_addr = self.pte_address(table + vpn * 8, stage.kind, Access::Read)?;
            let pte = self.read_pte(pte_addr)?;
            if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte & PTE_RESERVED != 0
            {
                return Err(WalkFault::Page);
            }
            let ppn = (pte >> 10) & PPN_MASK;
            if pte & (PTE_R | PTE_X) == 0 {
                // Pointer to the next level; A, D and U must be clear.
                if level == 0 || pte & (PTE_A | PTE_D | PTE_U) != 0 {
                    return Err(WalkFault::Page);
                }
                table = ppn << PAGE_SHIFT;
                continue;
            }
            let level_mask = (1u64 << (9 * level)) - 1;
            if !leaf.allows(pte, access) || ppn & level_mask != 0 {
                return Err(WalkFault::Page);
            }
            let mut updated = pte | PTE_A;
            if access == Access::Write {
                updated |= PTE_D;
            }
            if updated != pte {
                // Writing A/D back is an implicit store (through the G-stage).
                let pte_addr = self.pte_address(table + vpn * 8, stage.kind, Access::Write)?;
                self.write_pte(pte_addr, updated)?;
            }
            let page_offset_mask = (1u64 << (PAGE_SHIFT + 9 * level)) - 1;
            if level > 0 && stage.kind != StageKind::GuestPhysical {
                self.tlb
                    .note_superpage(addr & !page_offset_mask, page_offset_mask);
            }
            let physical = (ppn << PAGE_SHIFT) & !page_offset_mask | (addr & page_offset_mask);
            return Ok((physical, updated));
        }
        Err(WalkFault::Page)
    }

    /// The physical address of the PTE at `addr` of a stage's table: itself,
    /// or for the VS-stage its G-stage translation, where a refusal is a
    /// guest-page fault on an implicit `access`.
    fn pte_address(
        &mut self,
        addr: u64,
        kind: StageKind,
        access: Access,
    ) -> Result<u64, WalkFault> {
        if kind != StageKind::GuestVirtual {
            return Ok(addr);
        }
        self.g_stage(addr, access, false)
            .map_err(|fault| match fault {
                WalkFault::GuestPage { .. } => WalkFault::GuestPage {
                    gpa: addr,
                    implicit: Some(access),
                },
                other => other,
            })
    }

    /// Reads a page-table entry at physical `addr` (an implicit supervisor
    /// read that PMP checks).
    fn read_pte(&self, addr: u64) -> Result<u64, WalkFault> {
        if !self.pmp_allows(addr, 8, Access::Read, Privilege::Supervisor) {
            return Err(WalkFault::Access);
        }
        self.ram.read(addr, 8).ok_or(WalkFault::Access)
    }

    /// Writes back a page-table entry whose A/D bits the walk set.
    fn write_pte(&self, addr: u64, pte: u64) -> Result<(), WalkFault> {
        if !self.pmp_allows(addr, 8, Access::Write, Privilege::Supervisor)
            || !self.ram.write(addr, 8, pte)
        {
            return Err(WalkFault::Access);
        }
        Ok(())
    }

    /// Physical memory protection: may `privilege` perform `access` on all of
    /// `[addr, addr + size)`?
    pub(crate) fn pmp_allows(
        &self,
        addr: u64,
        size: u64,
        access: Access,
        privilege: Privilege,
    ) -> bool {
        let end = addr.saturating_add(size);
        let mut previous_top = 0u64;
        for i in 0..PMP_ENTRIES {
            let cfg = self.csr.pmpcfg[i];
            let pmpaddr = self.csr.pmpaddr[i];
            let this_top = pmpaddr << 2;
            let range = match (cfg >> 3) & 3 {
                PMP_TOR => Some((previous_top, this_top)),
                PMP_NA4 => Some((this_top, this_top + 4)),
                PMP_NAPOT => {
                    let ones = pmpaddr.trailing_ones();
                    let base = (pmpaddr & !((1u64 << ones) - 1)) << 2;
                    Some((base, base.saturating_add(1u64 << (ones.min(60) + 3))))
                }
                _ => None,
            };
            previous_top = this_top;
            let Some((lo, hi)) = range else { continue };
            if lo >= hi || end <= lo || addr >= hi {
                continue; // no overlap
            }
            if addr < lo || end > hi {
                return false; // only part of the access matches: it fails
            }
            if privilege == Privilege::Machine && cfg & PMP_LOCK == 0 {
                return true;
            }
            let bit = match access {
                Access::Read => 1,
                Access::Write => 2,
                Access::Execute => 4,
            };
            return cfg & bit != 0;
        }
        privilege == Privilege::Machine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestRam;

    const BASE: u64 = 0x8000_0000;
    const ROOT: u64 = BASE + 0x1000;
    const L1: u64 = BASE + 0x2000;
    const L0: u64 = BASE + 0x3000;
    const DATA: u64 = BASE + 0x10_0000;

    const S_MODE: AccessMode = AccessMode {
        privilege: Privilege::Supervisor,
        virt: false,
    };
    const U_MODE: AccessMode = AccessMode {
        privilege: Privilege::User,
        virt: false,
    };

    fn pte(pa: u64, flags: u64) -> u64 {
        (pa >> 12) << 10 | flags
    }

    /// A hart in S mode with Sv39 tables: VA 0x4000_0000 + n*4K -> DATA + n*4K.
    fn setup(leaf_flags: u64) -> Hart {
        let ram = GuestRam::new(BASE, 4 << 20).unwrap();
        ram.write(ROOT + 8, 8, pte(L1, PTE_V));
        ram.write(L1, 8, pte(L0, PTE_V));
        ram.write(L0, 8, pte(DATA, leaf_flags));
        ram.write(L0 + 8, 8, pte(DATA + 0x1000, PTE_V | PTE_R | PTE_U | PTE_A));
        let mut hart = Hart::new(0, ram);
        hart.privilege = Privilege::Supervisor;
        hart.csr.satp = 8 << 60 | ROOT >> 12;
        hart.csr.pmpcfg[0] = 0x1f; // NAPOT RWX over everything
        hart.csr.pmpaddr[0] = u64::MAX >> 10;
        hart
    }

    #[test]
    fn sv39_walk_sets_accessed_then_dirty() {
        let mut h = setup(PTE_V | PTE_R | PTE_W);
        assert_eq!(
            h.translate(0x4000_0123, Access::Read, S_MODE),
            Ok(DATA + 0x123)
        );
        assert_eq!(h.ram.read(L0, 8).unwrap() & (PTE_A | PTE_D), PTE_A);
        assert_eq!(
            h.translate(0x4000_0008, Access::Write, S_MODE),
            Ok(DATA + 8)
        );
        assert_eq!(h.ram.read(L0, 8).unwrap() & (PTE_A | PTE_D), PTE_A | PTE_D);
    }

    #[test]
    fn permission_and_privilege_faults() {
        let mut h = setup(PTE_V | PTE_R);
        let fault = |cause, addr| Err(Exception::new(cause, addr));
        assert_eq!(
            h.translate(0x4000_0000, Access::Write, S_MODE),
            fault(ExceptionCause::StorePageFault, 0x4000_0000)
        );
        assert_eq!(
            h.translate(0x4000_0000, Access::Execute, S_MODE),
            fault(ExceptionCause::InstructionPageFault, 0x4000_0000)
        );
        assert_eq!(
            h.translate(0x4000_0000, Access::Read, U_MODE),
            fault(ExceptionCause::LoadPageFault, 0x4000_0000)
        );
        // A user page: S needs SUM; U may read it.
        assert_eq!(
            h.translate(0x4000_1000, Access::Read, S_MODE),
            fault(ExceptionCause::LoadPageFault, 0x4000_1000)
        );
        h.csr.mstatus |= MSTATUS_SUM;
        assert_eq!(
            h.translate(0x4000_1000, Access::Read, S_MODE),
            Ok(DATA + 0x1000)
        );
        assert_eq!(
            h.translate(0x4000_1000, Access::Read, U_MODE),
            Ok(DATA + 0x1000)
        );
        // Unmapped and non-canonical addresses.
        assert_eq!(
            h.translate(0x4000_2000, Access::Read, S_MODE),
            fault(ExceptionCause::LoadPageFault, 0x4000_2000)
        );
        assert_eq!(
            h.translate(1 << 38, Access::Read, S_MODE),
            fault(ExceptionCause::LoadPageFault, 1 << 38)
        );
    }

    #[test]
    fn reserved_pte_encodings_fault() {
        for flags in [
            PTE_V | PTE_W,
            PTE_V | PTE_R | (1 << 61),
            PTE_V | PTE_R | (1 << 63),
        ] {
            let mut h = setup(flags);
            assert!(
                h.translate(0x4000_0000, Access::Read, S_MODE).is_err(),
                "flags {flags:#x}"
            );
        }
    }

    #[test]
    fn sv48_adds_a_level() {
        let mut h = setup(PTE_V | PTE_R | PTE_W);
        let root48 = BASE + 0x4000;
        h.ram.write(root48, 8, pte(ROOT, PTE_V));
        h.csr.satp = 9 << 60 | root48 >> 12;
        assert_eq!(
            h.translate(0x4000_0010, Access::Read, S_MODE),
            Ok(DATA + 0x10)
        );
        // Sv48 sign-extends from bit 47, so bit 38 alone is a valid address (unmapped).
        assert_eq!(
            h.translate(1 << 38, Access::Read, S_MODE),
            Err(Exception::new(ExceptionCause::LoadPageFault, 1 << 38))
        );
    }

    use crate::test_platform::NoDevices;

    #[test]
    fn tlb_follows_page_table_changes_after_flush() {
        let mut h = setup(PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
        h.ram.write(DATA, 8, 0x1111);
        h.ram.write(DATA + 0x2000, 8, 0x2222);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        // Remap the page: stale until sfence.vma (a flush), then the new mapping.
        h.ram.write(
            L0,
            8,
            pte(DATA + 0x2000, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D),
        );
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        h.flush_translations();
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x2222));
        // A store through the TLB reaches RAM.
        h.store(0x4000_0008, 4, 0xdead_beef, &mut NoDevices)
            .unwrap();
        assert_eq!(h.ram.read(DATA + 0x2008, 4), Some(0xdead_beef));
    }

    const RWAD: u64 = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;

    #[test]
    fn sfence_vma_of_one_address_drops_only_its_page() {
        let mut h = setup(RWAD);
        h.ram.write(L0 + 16, 8, pte(DATA + 0x2000, RWAD));
        h.ram.write(DATA, 8, 0x1111);
        h.ram.write(DATA + 0x2000, 8, 0x2222);
        h.ram.write(DATA + 0x3000, 8, 0x3333);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        assert_eq!(h.load(0x4000_2000, 8, &mut NoDevices), Ok(0x2222));
        // Both pages now point at DATA + 0x3000; only the first is fenced.
        h.ram.write(L0, 8, pte(DATA + 0x3000, RWAD));
        h.ram.write(L0 + 16, 8, pte(DATA + 0x3000, RWAD));
        let generation = h.translation_generation();
        h.tlb.flush_page(0x4000_0abc);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x3333));
        assert_eq!(
            h.load(0x4000_2000, 8, &mut NoDevices),
            Ok(0x2222),
            "another page's entry stays (as a hardware TLB may keep it)"
        );
        assert_eq!(h.translation_generation(), generation, "not a full flush");
        assert_eq!(h.page_flushes(), 1);
        let pages: Vec<u64> = h.pages_flushed_since(0).unwrap().collect();
        assert_eq!(pages, [0x4000_0000 >> 12]);
        for _ in 0..PAGE_FLUSHES_LOGGED {
            h.tlb.flush_page(0x4000_2000);
        }
        assert!(
            h.pages_flushed_since(0).is_none(),
            "past what the log holds"
        );
        assert_eq!(
            h.pages_flushed_since(1).unwrap().count(),
            PAGE_FLUSHES_LOGGED
        );
    }

    #[test]
    fn sfence_vma_inside_a_superpage_empties_the_address_space() {
        const MEGA: u64 = BASE + 0x20_0000;
        let mut h = setup(RWAD);
        // VA 0x4020_0000: a 2 MiB page at MEGA.
        h.ram.write(L1 + 8, 8, pte(MEGA, RWAD));
        h.ram.write(MEGA + 0x1000, 8, 0x1111);
        assert_eq!(h.load(0x4020_1000, 8, &mut NoDevices), Ok(0x1111));
        // A superpage whose PPN is not aligned: a page fault once walked.
        h.ram.write(L1 + 8, 8, pte(MEGA + 0x1000, RWAD));
        let stamp = h.address_space().stamp;
        // A fence of another 4 KiB page of the same superpage.
        h.tlb.flush_page(0x4020_5000);
        assert_ne!(h.address_space().stamp, stamp, "the set was emptied");
        assert_eq!(
            h.load(0x4020_1000, 8, &mut NoDevices),
            Err(Exception::new(ExceptionCause::LoadPageFault, 0x4020_1000)),
            "a misaligned superpage now"
        );
    }

    #[test]
    fn clearing_sum_drops_what_was_filled_under_it() {
        use crate::csr::addr::SSTATUS;
        let mut h = setup(RWAD);
        h.ram.write(DATA, 8, 0x1111);
        h.ram.write(DATA + 0x1000, 8, 0x2222);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        let generation = h.translation_generation();
        h.csr_write(SSTATUS, h.csr.mstatus | MSTATUS_SUM);
        assert_eq!(h.load(0x4000_1000, 8, &mut NoDevices), Ok(0x2222));
        // Make the kernel page's entry stale on purpose: it must stay.
        h.ram.write(L0, 8, pte(DATA + 0x1000, RWAD));
        h.csr_write(SSTATUS, h.csr.mstatus & !MSTATUS_SUM);
        assert_eq!(h.translation_generation(), generation, "no full flush");
        assert_eq!(
            h.load(0x4000_1000, 8, &mut NoDevices),
            Err(Exception::new(ExceptionCause::LoadPageFault, 0x4000_1000)),
            "the user page is closed to S-mode again"
        );
        assert_eq!(
            h.load(0x4000_0000, 8, &mut NoDevices),
            Ok(0x1111),
            "the entry filled without SUM stays"
        );
    }

    /// Sv39 rooted at ROOT, with `asid`.
    fn satp_with_asid(asid: u64) -> u64 {
        8 << 60 | asid << SATP_ASID_SHIFT | ROOT >> 12
    }

    #[test]
    fn a_restored_hart_fences_its_own_asid() {
        // A restore sets satp without writing it: the entries made after
        // it are still the restored ASID's, and a fence of it drops them.
        let mut h = setup(RWAD);
        h.ram.write(DATA, 8, 0x1111);
        h.ram.write(DATA + 0x2000, 8, 0x2222);
        let mut state = h.save_state();
        state.csr.satp = satp_with_asid(3);
        h.restore_state(&state).unwrap();
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        h.ram.write(L0, 8, pte(DATA + 0x2000, RWAD));
        h.tlb.flush_asid(3, h.csr.satp);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x2222));
    }

    #[test]
    fn each_address_space_keeps_its_entries_until_fenced() {
        use crate::csr::addr::SATP;
        let mut h = setup(RWAD);
        h.ram.write(DATA, 8, 0x1111);
        h.ram.write(DATA + 0x2000, 8, 0x2222);
        h.csr_write(SATP, satp_with_asid(1));
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        h.ram.write(L0, 8, pte(DATA + 0x2000, RWAD));
        h.csr_write(SATP, satp_with_asid(2));
        assert_eq!(
            h.load(0x4000_0000, 8, &mut NoDevices),
            Ok(0x2222),
            "another ASID walks the tables anew"
        );
        let (generation, space) = (h.translation_generation(), h.address_space());
        h.csr_write(SATP, satp_with_asid(1));
        assert_ne!(h.address_space().id, space.id);
        assert_eq!(
            h.load(0x4000_0000, 8, &mut NoDevices),
            Ok(0x1111),
            "ASID 1's entry was kept (stale until fenced, as hardware may keep it)"
        );
        assert_eq!(h.translation_generation(), generation, "no full flush");
        assert_eq!((h.tlb.stats.switches, h.tlb.stats.switches_kept), (3, 1));
        // A fence of ASID 2 leaves ASID 1's entries; one of ASID 1 drops them.
        h.tlb.flush_asid(2, h.csr.satp);
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        let stamp = h.address_space().stamp;
        h.tlb.flush_asid(1 | 1 << 16, h.csr.satp);
        assert_ne!(
            h.address_space().stamp,
            stamp,
            "emptied: bits above ASIDLEN ignored"
        );
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x2222));
        // A page fenced while ASID 2 is parked is dropped from its set too.
        h.csr_write(SATP, satp_with_asid(2));
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x2222));
        let space = h.address_space();
        h.csr_write(SATP, satp_with_asid(1));
        h.ram.write(L0, 8, pte(DATA, RWAD));
        h.tlb.flush_page(0x4000_0000);
        h.csr_write(SATP, satp_with_asid(2));
        assert_eq!(h.address_space(), space, "ASID 2's set, not emptied");
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
    }

    #[test]
    fn parked_address_spaces_lose_entries_to_full_flushes_and_writes_to_protection() {
        use crate::csr::addr::SATP;
        let mut h = setup(RWAD);
        h.ram.write(DATA + 0x2000, 8, 0x2222);
        h.csr_write(SATP, satp_with_asid(1));
        h.store(0x4000_0000, 8, 0x1111, &mut NoDevices).unwrap();
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        assert!(h.tlb.entries().iter().any(|e| e.0 == Access::Write));
        h.csr_write(SATP, satp_with_asid(2));
        // Protecting a page drops every address space's write entries, so
        // stores to code (and to pages dirty tracking watches) are seen.
        h.drop_write_translations();
        h.csr_write(SATP, satp_with_asid(1));
        assert!(h.tlb.entries().iter().all(|e| e.0 != Access::Write));
        assert!(!h.tlb.entries().is_empty(), "the read entry stays");
        // A full flush while parked empties the set before it is used again.
        h.csr_write(SATP, satp_with_asid(2));
        h.ram.write(L0, 8, pte(DATA + 0x2000, RWAD));
        h.flush_translations();
        h.csr_write(SATP, satp_with_asid(1));
        assert!(h.tlb.entries().is_empty());
        assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x2222));
    }

    #[test]
    fn the_least_recently_used_address_space_makes_way() {
        use crate::csr::addr::SATP;
        let mut h = setup(RWAD);
        h.ram.write(DATA, 8, 0x1111);
        let asids = 1..=TLB_SETS as u64;
        for asid in asids.clone() {
            h.csr_write(SATP, satp_with_asid(asid));
            assert_eq!(h.load(0x4000_0000, 8, &mut NoDevices), Ok(0x1111));
        }
        let ids: std::collections::HashSet<usize> = asids
            .map(|asid| {
                h.csr_write(SATP, satp_with_asid(asid));
                assert_eq!(h.tlb.entries().len(), 1, "ASID {asid} kept its entry");
                h.address_space().id
            })
            .collect();
        assert_eq!(ids.len(), TLB_SETS, "one set each");
        // One more: ASID 1, the least recent, gives way (then walks anew).
        h.csr_write(SATP, satp_with_asid(TLB_SETS as u64 + 1));
        assert!(h.tlb.entries().is_empty());
        h.csr_write(SATP, satp_with_asid(2));
        assert_eq!(h.tlb.entries().len(), 1);
        h.csr_write(SATP, satp_with_asid(1));
        assert!(h.tlb.entries().is_empty());
    }

    #[test]
    fn pmp_decides_by_lowest_matching_entry() {
        let mut h = setup(PTE_V | PTE_R);
        h.csr.pmpcfg[0] = 0x18; // NAPOT, no permissions, first
        h.csr.pmpaddr[0] = (DATA >> 2) | 0x1ff; // 4 KiB at DATA
        h.csr.pmpcfg[1] = 0x1f;
        h.csr.pmpaddr[1] = u64::MAX >> 10;
        assert!(!h.pmp_allows(DATA, 8, Access::Read, Privilege::Supervisor));
        assert!(h.pmp_allows(DATA + 0x1000, 8, Access::Read, Privilege::Supervisor));
        assert!(
            h.pmp_allows(DATA, 8, Access::Read, Privilege::Machine),
            "unlocked entries do not bind M"
        );
        assert!(
            !h.pmp_allows(DATA + 0xffc, 8, Access::Read, Privilege::Machine),
            "a partial match fails even for M"
        );
        h.csr.pmpcfg[0] |= PMP_LOCK;
        assert!(
            !h.pmp_allows(DATA, 8, Access::Read, Privilege::Machine),
            "locked entries bind M"
        );
    }
}
