// What the hypervisor-extension guest programs share: CSR bits, page-table
// entries, and the H instructions (the compiler's -march has no H).
#pragma once
#include "runtime.h"

#define MSTATUS_TW (1ul << 21)
#define MSTATUS_TSR (1ul << 22)
#define MSTATUS_GVA (1ul << 38)
#define MSTATUS_MPV (1ul << 39)
#define SSTATUS_SIE (1ul << 1)
#define SSTATUS_SPP (1ul << 8)
#define HSTATUS_GVA (1ul << 6)
#define HSTATUS_SPV (1ul << 7)
#define HSTATUS_SPVP (1ul << 8)
#define HSTATUS_HU (1ul << 9)
#define HSTATUS_VTVM (1ul << 20)
#define HSTATUS_VTW (1ul << 21)
#define HSTATUS_VTSR (1ul << 22)
#define MENVCFG_STCE (1ul << 63)
#define MIP_SSIP (1ul << 1)
#define MIP_VSSIP (1ul << 2)
#define MIP_STIP (1ul << 5)
#define MIP_VSTIP (1ul << 6)
#define MIP_VSEIP (1ul << 10)

#define PTE_V 1ul
#define PTE_R 2ul
#define PTE_W 4ul
#define PTE_X 8ul
#define PTE_U 16ul
#define PTE_A 64ul
#define PTE_D 128ul
// A valid leaf with A and D set (QEMU's VS-stage does not set them unless henvcfg.ADUE).
#define LEAF (PTE_V | PTE_A | PTE_D)
#define PTE(pa, flags) (((u64)(pa) >> 12) << 10 | (flags))
#define SV39 (8ul << 60)
#define SV39X4 (8ul << 60)   // hgatp's Sv39x4 has Sv39's mode number
#define VMID(n) ((u64)(n) << 44)

#define H_INSN(text) ".option push\n.option arch, +h\n" text "\n.option pop"
#define HLV(op, addr) ({ u64 v_; asm volatile(H_INSN(op " %0, (%1)") : "=r"(v_) : "r"(addr) : "memory"); v_; })
#define HSV(op, addr, v) asm volatile(H_INSN(op " %1, (%0)") :: "r"(addr), "r"((u64)(v)) : "memory")
#define HFENCE_GVMA() asm volatile(H_INSN("hfence.gvma zero, zero") ::: "memory")
#define HFENCE_VVMA() asm volatile(H_INSN("hfence.vvma zero, zero") ::: "memory")

// Runs one instruction in `mode` (VS, VU, ...); M records the trap it takes.
#define IN_MODE(mode, insn) do { clear_trap(); goto_mode(mode); asm volatile(insn ::: "t0", "memory"); back_to_m(); } while (0)
