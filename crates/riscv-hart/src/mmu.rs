//! Address translation (Bare, Sv39, Sv48), physical memory protection, and
//! the soft-TLB that turns a virtual page into a host pointer for RAM.
//!
//! A/D bits are updated by hardware (like QEMU), so Linux never takes a page
//! fault just to set them. The TLB holds only RAM pages that PMP allows as a
//! whole; everything else (device registers, partially covered pages, the
//! watched HTIF page) takes the slow path on every access.

use crate::csr::{
    MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_MXR, MSTATUS_SUM, PMP_ENTRIES,
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
const TLB_ENTRIES: usize = 256;

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
    Read,
    Write,
    Execute,
}

impl Access {
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
}

#[derive(Clone, Copy)]
struct TlbEntry {
    /// Virtual page number * 4 + privilege; `u64::MAX` when empty.
    tag: u64,
    /// Host address minus virtual address for this page.
    addend: u64,
}

const EMPTY: TlbEntry = TlbEntry {
    tag: u64::MAX,
    addend: 0,
};

/// Direct-mapped translation caches, one per access type, tagged with the
/// privilege the translation was made for.
pub struct Tlb {
    read: Box<[TlbEntry; TLB_ENTRIES]>,
    write: Box<[TlbEntry; TLB_ENTRIES]>,
    exec: Box<[TlbEntry; TLB_ENTRIES]>,
}

impl Tlb {
    pub fn new() -> Tlb {
        Tlb {
            read: Box::new([EMPTY; TLB_ENTRIES]),
            write: Box::new([EMPTY; TLB_ENTRIES]),
            exec: Box::new([EMPTY; TLB_ENTRIES]),
        }
    }

    pub fn flush(&mut self) {
        self.read.fill(EMPTY);
        self.write.fill(EMPTY);
        self.exec.fill(EMPTY);
    }

    fn table(&mut self, access: Access) -> &mut [TlbEntry; TLB_ENTRIES] {
        match access {
            Access::Read => &mut self.read,
            Access::Write => &mut self.write,
            Access::Execute => &mut self.exec,
        }
    }
}

#[inline]
fn tlb_tag(vaddr: u64, privilege: Privilege) -> u64 {
    (vaddr >> PAGE_SHIFT) << 2 | privilege as u64
}

#[inline]
fn tlb_index(vaddr: u64) -> usize {
    (vaddr >> PAGE_SHIFT) as usize % TLB_ENTRIES
}

#[inline]
fn within_page(vaddr: u64, size: u8) -> bool {
    (vaddr & (PAGE_SIZE - 1)) + size as u64 <= PAGE_SIZE
}

impl Hart {
    /// The privilege loads and stores are checked against (mstatus.MPRV).
    #[inline]
    fn data_privilege(&self) -> Privilege {
        if self.privilege == Privilege::Machine && self.csr.mstatus & MSTATUS_MPRV != 0 {
            Privilege::from_bits((self.csr.mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT)
        } else {
            self.privilege
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
        let privilege = self.data_privilege();
        let entry = self.tlb.read[tlb_index(vaddr)];
        if entry.tag == tlb_tag(vaddr, privilege) && within_page(vaddr, size) {
            // SAFETY: TLB entries only map whole RAM pages; the access stays in the page.
            return Ok(unsafe { read_host(vaddr.wrapping_add(entry.addend) as *const u8, size) });
        }
        self.access_slow(vaddr, size, Access::Read, privilege, 0, platform)
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
        let privilege = self.data_privilege();
        let entry = self.tlb.write[tlb_index(vaddr)];
        if entry.tag == tlb_tag(vaddr, privilege) && within_page(vaddr, size) {
            // SAFETY: TLB entries only map whole RAM pages; the access stays in the page.
            unsafe { write_host(vaddr.wrapping_add(entry.addend) as *mut u8, size, value) };
            return Ok(());
        }
        self.access_slow(vaddr, size, Access::Write, privilege, value, platform)
            .map(|_| ())
    }

    /// Fetches the raw instruction at `pc` (only 16 bits are valid when the
    /// low parcel marks a compressed instruction).
    #[inline]
    pub(crate) fn fetch(&mut self, platform: &mut dyn Platform) -> Result<u32, Exception> {
        let pc = self.pc;
        let entry = self.tlb.exec[tlb_index(pc)];
        if entry.tag == tlb_tag(pc, self.privilege) && within_page(pc, 4) {
            // SAFETY: TLB entries only map whole RAM pages; 4 bytes stay in the page.
            return Ok(unsafe { read_host(pc.wrapping_add(entry.addend) as *const u8, 4) } as u32);
        }
        let privilege = self.privilege;
        let low = self.access_slow(pc, 2, Access::Execute, privilege, 0, platform)? as u32;
        if low & 3 != 3 {
            return Ok(low);
        }
        let high = self.access_slow(
            pc.wrapping_add(2),
            2,
            Access::Execute,
            privilege,
            0,
            platform,
        )? as u32;
        Ok(low | high << 16)
    }

    /// Translates `vaddr` for an atomic memory operation and returns its
    /// physical address, checking write permission (AMO faults are store faults).
    pub(crate) fn translate_amo(&mut self, vaddr: u64, size: u8) -> Result<u64, Exception> {
        let privilege = self.data_privilege();
        let paddr = self.translate(vaddr, Access::Write, privilege)?;
        if !self.ram.contains(paddr, size as u64)
            || !self.pmp_allows(paddr, size as u64, Access::Write, privilege)
        {
            return Err(Exception::new(ExceptionCause::StoreAccessFault, vaddr));
        }
        Ok(paddr)
    }

    /// Translates a load address for LR (load faults, RAM only).
    pub(crate) fn translate_lr(&mut self, vaddr: u64, size: u8) -> Result<u64, Exception> {
        let privilege = self.data_privilege();
        let paddr = self.translate(vaddr, Access::Read, privilege)?;
        if !self.ram.contains(paddr, size as u64)
            || !self.pmp_allows(paddr, size as u64, Access::Read, privilege)
        {
            return Err(Exception::new(ExceptionCause::LoadAccessFault, vaddr));
        }
        Ok(paddr)
    }

    /// Translation, PMP, RAM or device access; fills the TLB when it may.
    #[cold]
    fn access_slow(
        &mut self,
        vaddr: u64,
        size: u8,
        access: Access,
        privilege: Privilege,
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
                    access,
                    privilege,
                    value >> (8 * i),
                    platform,
                )?;
                result |= (byte & 0xff) << (8 * i);
            }
            return Ok(result);
        }
        let paddr = self.translate(vaddr, access, privilege)?;
        let fault = Exception::new(access.access_fault(), vaddr);
        if self.ram.contains(paddr, size as u64) {
            let page = paddr & !(PAGE_SIZE - 1);
            let watched = access == Access::Write && paddr >> PAGE_SHIFT == self.watched_page;
            if !watched && self.pmp_allows(page, PAGE_SIZE, access, privilege) {
                let host_page = self.ram.host_ptr(page) as u64;
                let entry = TlbEntry {
                    tag: tlb_tag(vaddr, privilege),
                    addend: host_page.wrapping_sub(vaddr & !(PAGE_SIZE - 1)),
                };
                self.tlb.table(access)[tlb_index(vaddr)] = entry;
            } else if !self.pmp_allows(paddr, size as u64, access, privilege) {
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

    /// Virtual to physical translation for an access at `privilege`.
    pub(crate) fn translate(
        &mut self,
        vaddr: u64,
        access: Access,
        privilege: Privilege,
    ) -> Result<u64, Exception> {
        let mode = self.csr.satp >> 60;
        if privilege == Privilege::Machine || mode == 0 {
            return Ok(vaddr);
        }
        let levels: u32 = if mode == 8 { 3 } else { 4 };
        let va_bits = PAGE_SHIFT + 9 * levels;
        let page_fault = Exception::new(access.page_fault(), vaddr);
        // The address must be the sign extension of its top translated bit.
        if ((vaddr as i64) << (64 - va_bits) >> (64 - va_bits)) as u64 != vaddr {
            return Err(page_fault);
        }
        let mut table = (self.csr.satp & ((1 << 44) - 1)) << PAGE_SHIFT;
        for level in (0..levels).rev() {
            let vpn = (vaddr >> (PAGE_SHIFT + 9 * level)) & 0x1ff;
            let pte_addr = table + vpn * 8;
            if !self.pmp_allows(pte_addr, 8, Access::Read, Privilege::Supervisor) {
                return Err(Exception::new(access.access_fault(), vaddr));
            }
            let Some(pte) = self.ram.read(pte_addr, 8) else {
                return Err(Exception::new(access.access_fault(), vaddr));
            };
            if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte & PTE_RESERVED != 0
            {
                return Err(page_fault);
            }
            let ppn = (pte >> 10) & ((1 << 44) - 1);
            if pte & (PTE_R | PTE_X) == 0 {
                // Pointer to the next level; A, D and U must be clear.
                if level == 0 || pte & (PTE_A | PTE_D | PTE_U) != 0 {
                    return Err(page_fault);
                }
                table = ppn << PAGE_SHIFT;
                continue;
            }
            // Leaf: privilege, permission and superpage alignment checks.
            let user_page = pte & PTE_U != 0;
            let privilege_ok = match privilege {
                Privilege::User => user_page,
                _ => {
                    !user_page || (access != Access::Execute && self.csr.mstatus & MSTATUS_SUM != 0)
                }
            };
            let permitted = match access {
                Access::Read => {
                    pte & PTE_R != 0 || (self.csr.mstatus & MSTATUS_MXR != 0 && pte & PTE_X != 0)
                }
                Access::Write => pte & PTE_W != 0,
                Access::Execute => pte & PTE_X != 0,
            };
            let level_mask = (1u64 << (9 * level)) - 1;
            if !privilege_ok || !permitted || ppn & level_mask != 0 {
                return Err(page_fault);
            }
            let mut updated = pte | PTE_A;
            if access == Access::Write {
                updated |= PTE_D;
            }
            if updated != pte
                && (!self.pmp_allows(pte_addr, 8, Access::Write, Privilege::Supervisor)
                    || !self.ram.write(pte_addr, 8, updated))
            {
                return Err(Exception::new(access.access_fault(), vaddr));
            }
            let page_offset_mask = (1u64 << (PAGE_SHIFT + 9 * level)) - 1;
            return Ok((ppn << PAGE_SHIFT) & !page_offset_mask | (vaddr & page_offset_mask));
        }
        Err(page_fault)
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
