// A guest that tries to make the host spend without limit, and checks it
// still gets architectural behaviour (the test around it bounds visor's
// peak RSS):
// - block-table floods: 2 Mi distinct PCs of an instruction the JIT does
//   not translate (a CSR read), run straight through, and 1 Mi one-
//   instruction blocks (c.jr ra) that translated code calls;
// - a virtio-console transmit chain of 2 GiB: QSIZE descriptors that all
//   point at the same 32 MiB (the device sends at most 1 MiB of it);
// - loads and stores at the last bytes of RAM, aligned, misaligned and
//   crossing its end (those fault as accesses, nothing past the end is read).
// Run with -m 64M --console virtio.
#include "runtime.h"

#define RAM_END 0x84000000ul
#define FLOOD 0x81000000ul
#define UNTRANSLATED_PCS (2ul << 20)
#define CALLED_PCS (1ul << 20)
#define CSRR_ZERO_MSCRATCH 0x34002073u
#define BUFFER 0x82000000ul
#define BUFFER_BYTES (32ul << 20)
#define C_JR_RA 0x8082

#define SLOTS 8
#define SLOT(i) ((volatile u32 *)(0x10001000ul + 0x1000ul * (i)))
enum { DEVICE_ID = 0x08, DRV_FEATURES = 0x20, DRV_FEATURES_SEL = 0x24, QUEUE_SEL = 0x30,
       QUEUE_NUM_MAX = 0x34, QUEUE_NUM = 0x38, QUEUE_READY = 0x44, QUEUE_NOTIFY = 0x50,
       INT_STATUS = 0x60, INT_ACK = 0x64, STATUS = 0x70, DESC_LO = 0x80, DESC_HI = 0x84,
       AVAIL_LO = 0x90, AVAIL_HI = 0x94, USED_LO = 0xa0, USED_HI = 0xa4 };
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };
enum { F_NEXT = 1, VIRTIO_ID_CONSOLE = 3, TRANSMITQ = 1 };
#define QSIZE 64

struct desc { u64 addr; u32 len; uint16_t flags, next; };
struct avail { uint16_t flags, idx, ring[QSIZE], used_event; };
struct used_elem { u32 id, len; };
struct used { uint16_t flags, idx; struct used_elem ring[QSIZE]; uint16_t avail_event; };

static struct desc table[QSIZE] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));

static void flood_the_block_table(void) {
  volatile u32 *csr_reads = (volatile u32 *)FLOOD;
  for (u64 i = 0; i < UNTRANSLATED_PCS; i++) csr_reads[i] = CSRR_ZERO_MSCRATCH;
  *(volatile uint16_t *)&csr_reads[UNTRANSLATED_PCS] = C_JR_RA;
  asm volatile("fence.i" ::: "memory");
  ((void (*)(void))FLOOD)();
  puts("block table flood: 2097152 untranslated PCs run\n");
  volatile uint16_t *returns = (volatile uint16_t *)FLOOD;
  for (u64 i = 0; i < CALLED_PCS; i++) returns[i] = C_JR_RA;
  asm volatile("fence.i" ::: "memory");
  for (u64 i = 0; i < CALLED_PCS; i++) ((void (*)(void))&returns[i])();
  puts("block table flood: 1048576 blocks called\n");
}

static volatile u32 *console_slot(void) {
  for (int i = 0; i < SLOTS; i++)
    if (SLOT(i)[DEVICE_ID / 4] == VIRTIO_ID_CONSOLE) return SLOT(i);
  return 0;
}

static void a_chain_of_gigabytes(void) {
  volatile u32 *mmio = console_slot();
  check(mmio != 0, "a virtio-console slot");
  if (!mmio) return;
#define REG(off) mmio[(off) / 4]
  REG(STATUS) = 0;
  REG(STATUS) = S_ACK | S_DRIVER;
  REG(DRV_FEATURES_SEL) = 1;
  REG(DRV_FEATURES) = 1; // VIRTIO_F_VERSION_1
  REG(DRV_FEATURES_SEL) = 0;
  REG(DRV_FEATURES) = 0;
  REG(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK;
  REG(QUEUE_SEL) = TRANSMITQ;
  check(REG(QUEUE_NUM_MAX) >= QSIZE, "transmit queue big enough");
  REG(QUEUE_NUM) = QSIZE;
  REG(DESC_LO) = (u32)(u64)table;   REG(DESC_HI) = (u32)((u64)table >> 32);
  REG(AVAIL_LO) = (u32)(u64)&avail; REG(AVAIL_HI) = (u32)((u64)&avail >> 32);
  REG(USED_LO) = (u32)(u64)&used;   REG(USED_HI) = (u32)((u64)&used >> 32);
  REG(QUEUE_READY) = 1;
  REG(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
  // The same 32 MiB of 'x' QSIZE times: 2 GiB in one request.
  for (u64 i = 0; i < BUFFER_BYTES; i += 8) *(volatile u64 *)(BUFFER + i) = 0x7878787878787878ul;
  for (int i = 0; i < QSIZE; i++)
    table[i] = (struct desc){ BUFFER, BUFFER_BYTES, i + 1 < QSIZE ? F_NEXT : 0, i + 1 };
  avail.ring[0] = 0;
  asm volatile("fence rw, rw" ::: "memory");
  avail.idx = 1;
  asm volatile("fence rw, rw" ::: "memory");
  REG(QUEUE_NOTIFY) = TRANSMITQ;
  asm volatile("fence rw, rw" ::: "memory");
  check(used.idx == 1 && used.ring[0].id == 0, "the 2 GiB chain was completed");
  REG(INT_ACK) = REG(INT_STATUS);
  puts("\nconsole chain: 2 GiB submitted\n");
#undef REG
}

static u64 load(u64 addr, int size) {
  u64 v = 0;
  switch (size) {
    case 1: asm volatile("lbu %0, 0(%1)" : "=r"(v) : "r"(addr)); break;
    case 2: asm volatile("lhu %0, 0(%1)" : "=r"(v) : "r"(addr)); break;
    case 4: asm volatile("lwu %0, 0(%1)" : "=r"(v) : "r"(addr)); break;
    default: asm volatile("ld %0, 0(%1)" : "=r"(v) : "r"(addr)); break;
  }
  return v;
}

static void store(u64 addr, int size, u64 v) {
  switch (size) {
    case 1: asm volatile("sb %0, 0(%1)" :: "r"(v), "r"(addr) : "memory"); break;
    case 2: asm volatile("sh %0, 0(%1)" :: "r"(v), "r"(addr) : "memory"); break;
    case 4: asm volatile("sw %0, 0(%1)" :: "r"(v), "r"(addr) : "memory"); break;
    default: asm volatile("sd %0, 0(%1)" :: "r"(v), "r"(addr) : "memory"); break;
  }
}

static void the_last_bytes_of_ram(void) {
  const u64 pattern = 0x0807060504030201ul;
  *(volatile u64 *)(RAM_END - 8) = pattern;
  int sizes[] = { 1, 2, 4, 8 };
  for (int s = 0; s < 4; s++) {
    int size = sizes[s];
    for (u64 back = 1; back <= 8; back++) {
      u64 addr = RAM_END - back;
      int inside = back >= (u64)size;
      clear_trap();
      u64 v = load(addr, size);
      if (inside) {
        u64 mask = size == 8 ? ~0ul : (1ul << (8 * size)) - 1;
        check(last_trap.count == 0 && v == (pattern >> (8 * (8 - back)) & mask), "a load inside RAM");
      } else {
        check(last_trap.count == 1 && last_trap.cause == 5, "a load past RAM's end faults");
        check(last_trap.tval >= addr && last_trap.tval <= RAM_END, "its tval in the access");
      }
      clear_trap();
      // What is there already: a store that faults part-way (the spec lets
      // its bytes inside RAM land) leaves the bytes as they were.
      store(addr, size, pattern >> (8 * (8 - back)));
      if (inside) {
        check(last_trap.count == 0, "a store inside RAM");
      } else {
        check(last_trap.count == 1 && last_trap.cause == 7, "a store past RAM's end faults");
      }
    }
  }
  check(*(volatile u64 *)(RAM_END - 8) == pattern, "inside stores wrote what was there");
  puts("last bytes of RAM: checked\n");
}

int main(void) {
  pmp_allow_all();
  the_last_bytes_of_ram();
  flood_the_block_table();
  a_chain_of_gigabytes();
  return failures();
}
