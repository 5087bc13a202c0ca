// Runtime for visor's guest test programs.
#pragma once
#include <stdint.h>
typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef int32_t i32;

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3
// Modes with V=1 (H extension), as goto_mode and last_trap.mode name them.
#define PRV_VU 4
#define PRV_VS 5
#define MSTATUS_MPP (3ul << 11)
#define MSTATUS_SUM (1ul << 18)
#define MSTATUS_MXR (1ul << 19)

#define csr_read(csr) ({ u64 v_; asm volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_write(csr, v) asm volatile("csrw " #csr ", %0" :: "r"((u64)(v)) : "memory")
#define csr_set(csr, v) asm volatile("csrs " #csr ", %0" :: "r"((u64)(v)) : "memory")
#define csr_clear(csr, v) asm volatile("csrc " #csr ", %0" :: "r"((u64)(v)) : "memory")

struct frame { u64 x[32]; u64 epc; };

// The last trap taken, recorded by the default handlers. With the H
// extension also: tval2 (mtval2/htval), tinst (mtinst/htinst), whether the
// trap came from V=1 (mstatus.MPV/hstatus.SPV) and mstatus.GVA/hstatus.GVA.
struct trap_record { volatile u64 cause, tval, epc, mode, count, tval2, tinst, from_virt, gva; };
extern struct trap_record last_trap;

// An optional hook for interrupts; returns nonzero when it handled the trap.
extern int (*interrupt_hook)(u64 cause, int mode);

void putc(char c);
void puts(const char *s);
void print_hex(u64 v);
void print_dec(i64 v);
void print_kv(const char *key, u64 v);      // "key=0x...\n"
void check(int ok, const char *what);       // prints FAIL lines, counts failures
int failures(void);
void __attribute__((noreturn)) exit(int code);

void goto_mode(int mode);                   // from M: continue at the next line in `mode` (VS, VU too)
void back_to_m(void);                       // from S/U/VS/VU: return to M, continue at the next line
void clear_trap(void);
void pmp_allow_all(void);                   // PMP entry 15: everything, RWX, for S/U
