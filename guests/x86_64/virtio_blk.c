/* A minimal virtio-blk driver over virtio-mmio at 0xd0000000 (visor's first
   KVM virtio slot): negotiates VERSION_1, sets up one split queue, reads
   sector 1 (which the test fills with "visor-sector-1"), writes sector 2,
   reads it back and flushes. Each register access is an MMIO exit. Under a
   VMM with nothing at that address it reports that and still exits 33. */
#include "runtime.h"

#define BASE 0xd0000000ul
#define REG(off) (BASE + (off))
enum { MAGIC = 0x00, VERSION = 0x04, DEVICE_ID = 0x08, DRV_FEATURES = 0x20, DRV_FEATURES_SEL = 0x24,
       QUEUE_SEL = 0x30, QUEUE_NUM_MAX = 0x34, QUEUE_NUM = 0x38, QUEUE_READY = 0x44, QUEUE_NOTIFY = 0x50,
       INT_STATUS = 0x60, INT_ACK = 0x64, STATUS = 0x70, DESC_LO = 0x80, DESC_HI = 0x84,
       AVAIL_LO = 0x90, AVAIL_HI = 0x94, USED_LO = 0xa0, USED_HI = 0xa4 };
enum { F_NEXT = 1, F_WRITE = 2 };
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4 };
#define QSIZE 8

struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QSIZE], used_event; };
struct used { u16 flags, idx; struct { u32 id, len; } ring[QSIZE]; u16 avail_event; };
struct req { u32 type, reserved; u64 sector; };

static struct desc table[QSIZE] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));
static struct req header;
static char data[512];
static volatile u8 status;

static void reg(u32 off, u32 v) { mmio_write32(REG(off), v); }
static u32 get(u32 off) { return mmio_read32(REG(off)); }

static int request(u32 type, u64 sector) {
  header = (struct req){ type, 0, sector };
  status = 0xff;
  table[0] = (struct desc){ (u64)&header, sizeof header, F_NEXT, 1 };
  int n = 1;
  if (type != T_FLUSH) {
    table[1] = (struct desc){ (u64)data, 512, F_NEXT | (type == T_IN ? F_WRITE : 0), 2 };
    n = 2;
  } else {
    table[0].next = 2;
  }
  table[2] = (struct desc){ (u64)&status, 1, F_WRITE, 0 };
  (void)n;
  u16 before = used.idx;
  avail.ring[avail.idx % QSIZE] = 0;
  barrier();
  avail.idx++;
  barrier();
  reg(QUEUE_NOTIFY, 0);
  barrier();
  check(used.idx == (u16)(before + 1), "request completed");
  reg(INT_ACK, get(INT_STATUS));
  return status;
}

int main(void) {
  if (get(MAGIC) != 0x74726976) {
    puts("visor-x86: no virtio device at 0xd0000000\n");
    return 0x10;
  }
  check(get(VERSION) == 2 && get(DEVICE_ID) == 2, "virtio-blk, mmio version 2");
  reg(STATUS, 0);
  reg(STATUS, 1 | 2);
  reg(DRV_FEATURES_SEL, 1);
  reg(DRV_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
  reg(DRV_FEATURES_SEL, 0);
  reg(DRV_FEATURES, 0);
  reg(STATUS, 1 | 2 | 8);
  check(get(STATUS) & 8, "features accepted");
  reg(QUEUE_SEL, 0);
  check(get(QUEUE_NUM_MAX) >= QSIZE, "queue size");
  reg(QUEUE_NUM, QSIZE);
  reg(DESC_LO, (u32)(u64)table); reg(DESC_HI, 0);
  reg(AVAIL_LO, (u32)(u64)&avail); reg(AVAIL_HI, 0);
  reg(USED_LO, (u32)(u64)&used); reg(USED_HI, 0);
  reg(QUEUE_READY, 1);
  reg(STATUS, 1 | 2 | 8 | 4);

  check(request(T_IN, 1) == 0, "read sector 1");
  const char *want = "visor-sector-1";
  for (int i = 0; want[i]; i++) check(data[i] == want[i], "sector 1 content");
  for (int i = 0; i < 512; i++) data[i] = (char)(i * 7 + 3);
  check(request(T_OUT, 2) == 0, "write sector 2");
  for (int i = 0; i < 512; i++) data[i] = 0;
  check(request(T_IN, 2) == 0, "read sector 2 back");
  for (int i = 0; i < 512; i++) check(data[i] == (char)(i * 7 + 3), "sector 2 content");
  check(request(T_FLUSH, 0) == 0, "flush");
  if (failures()) return 0x01;
  puts("visor-x86: virtio-blk read, write and flush ok\n");
  return 0x10;
}
