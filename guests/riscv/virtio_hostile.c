// A hostile virtio-blk driver: programs the first virtio-mmio slot directly
// and submits malformed descriptor chains (addresses outside RAM, loops,
// bogus lengths, missing status bytes, bad indirect tables, an available
// index far past the ring), checking after each that the device answered
// with an error status or a reset request -- and still serves valid reads.
// Run with a disk whose sector 1 starts with "visor-sector-1".
#include "runtime.h"

#define MMIO ((volatile u32 *)0x10001000ul)
#define REG(off) MMIO[(off) / 4]
enum { MAGIC = 0x00, VERSION = 0x04, DEVICE_ID = 0x08, DEV_FEATURES = 0x10, DEV_FEATURES_SEL = 0x14,
       DRV_FEATURES = 0x20, DRV_FEATURES_SEL = 0x24, QUEUE_SEL = 0x30, QUEUE_NUM_MAX = 0x34,
       QUEUE_NUM = 0x38, QUEUE_READY = 0x44, QUEUE_NOTIFY = 0x50, INT_STATUS = 0x60, INT_ACK = 0x64,
       STATUS = 0x70, DESC_LO = 0x80, DESC_HI = 0x84, AVAIL_LO = 0x90, AVAIL_HI = 0x94,
       USED_LO = 0xa0, USED_HI = 0xa4 };
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64 };
enum { F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4 };
enum { T_IN = 0, T_OUT = 1, BLK_OK = 0, BLK_IOERR = 1, BLK_UNSUPP = 2 };
#define QSIZE 8

struct desc { u64 addr; u32 len; uint16_t flags, next; };
struct avail { uint16_t flags, idx, ring[QSIZE], used_event; };
struct used_elem { u32 id, len; };
struct used { uint16_t flags, idx; struct used_elem ring[QSIZE]; uint16_t avail_event; };
struct req { u32 type, reserved; u64 sector; };

static struct desc table[QSIZE] __attribute__((aligned(16)));
static struct desc indirect[4] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));
static struct req header;
static char data[512];
static volatile unsigned char status;
static uint16_t last_used;

static void setup(void) {
  REG(STATUS) = 0;
  REG(STATUS) = S_ACK;
  REG(STATUS) = S_ACK | S_DRIVER;
  REG(DRV_FEATURES_SEL) = 1;
  REG(DRV_FEATURES) = 1; // VIRTIO_F_VERSION_1 only: no indirect/event-idx promises from us
  REG(DRV_FEATURES_SEL) = 0;
  REG(DRV_FEATURES) = 0;
  REG(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK;
  check(REG(STATUS) & S_FEATURES_OK, "features accepted");
  REG(QUEUE_SEL) = 0;
  check(REG(QUEUE_NUM_MAX) >= QSIZE, "queue big enough");
  REG(QUEUE_NUM) = QSIZE;
  REG(DESC_LO) = (u32)(u64)table;   REG(DESC_HI) = (u32)((u64)table >> 32);
  REG(AVAIL_LO) = (u32)(u64)&avail; REG(AVAIL_HI) = (u32)((u64)&avail >> 32);
  REG(USED_LO) = (u32)(u64)&used;   REG(USED_HI) = (u32)((u64)&used >> 32);
  avail.idx = 0; used.idx = 0; last_used = 0;
  REG(QUEUE_READY) = 1;
  check(REG(QUEUE_READY) == 1, "queue ready");
  REG(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
}

static void set(int i, void *addr, u32 len, uint16_t flags, uint16_t next) {
  table[i] = (struct desc){ (u64)addr, len, flags, next };
}

// How long submit polls for a completion (the device runs requests on a
// thread of its own): about a second.
#define SUBMIT_SPINS 100000000l

// Publishes chain `head`; returns the used length, or -1 if nothing was used.
static i64 submit(uint16_t head) {
  avail.ring[avail.idx % QSIZE] = head;
  asm volatile("fence rw, rw" ::: "memory");
  avail.idx++;
  asm volatile("fence rw, rw" ::: "memory");
  REG(QUEUE_NOTIFY) = 0;
  for (long spin = 0; spin < SUBMIT_SPINS && used.idx == last_used; spin++)
    asm volatile("fence rw, rw" ::: "memory");
  if (used.idx == last_used) return -1;
  i64 len = used.ring[last_used % QSIZE].len;
  last_used = used.idx;
  REG(INT_ACK) = REG(INT_STATUS);
  return len;
}

// A well-formed request: header, data, status.
static i64 request(u32 type, u64 sector, u32 len) {
  header = (struct req){ type, 0, sector };
  status = 0xff;
  set(0, &header, sizeof header, F_NEXT, 1);
  set(1, data, len, F_NEXT | (type == T_IN ? F_WRITE : 0), 2);
  set(2, (void *)&status, 1, F_WRITE, 0);
  return submit(0);
}

static void valid_read(const char *what) {
  for (int i = 0; i < 16; i++) data[i] = 0;
  i64 len = request(T_IN, 1, 512);
  check(len == 513 && status == BLK_OK, what);
  const char *want = "visor-sector-1";
  int same = 1;
  for (int i = 0; want[i]; i++) same &= data[i] == want[i];
  check(same, "sector 1 content");
}

int main(void) {
  check(REG(MAGIC) == 0x74726976 && REG(VERSION) == 2 && REG(DEVICE_ID) == 2, "virtio-blk in slot 0");
  setup();
  valid_read("valid read");

  check(request(T_IN, ~0ul >> 9, 512) == 1 && status == BLK_IOERR, "sector past the end: IOERR");
  check(request(T_IN, 1, 100) == 1 && status == BLK_IOERR, "partial sector: IOERR");
  check(request(99, 0, 512) >= 1 && status == BLK_UNSUPP, "unknown type: UNSUPP");
  check(request(T_OUT, 0x7fffffff, 512) == 1 && status == BLK_IOERR, "write past the end: IOERR");

  // Data buffer outside guest RAM: the device must not touch it, nor report success.
  status = 0xff;
  set(0, &header, sizeof header, F_NEXT, 1);
  set(1, (void *)0x4000000000ul, 512, F_NEXT | F_WRITE, 2);
  set(2, (void *)&status, 1, F_WRITE, 0);
  header = (struct req){ T_IN, 0, 0 };
  check(submit(0) == 0 && status == 0xff, "buffer outside RAM: used, nothing written");

  // Absurd length that wraps the address space.
  set(1, data, 0xfffffff0u, F_NEXT | F_WRITE, 2);
  check(submit(0) == 0 && status == 0xff, "bogus length: used, nothing written");

  // A descriptor loop: 0 -> 1 -> 0 -> ...
  set(0, &header, sizeof header, F_NEXT, 1);
  set(1, data, 512, F_NEXT, 0);
  check(submit(0) == 0, "descriptor loop: used with length 0");

  // No writable status byte at all.
  set(0, &header, sizeof header, 0, 0);
  check(submit(0) == 0, "no status byte: used with length 0");

  // Next index beyond the table.
  set(0, &header, sizeof header, F_NEXT, 200);
  check(submit(0) == 0, "next index out of range: used with length 0");

  // Indirect table whose length is not a whole number of descriptors, and one nested in another.
  set(0, indirect, 20, F_INDIRECT, 0);
  check(submit(0) == 0, "ragged indirect table: used with length 0");
  indirect[0] = (struct desc){ (u64)indirect, 64, F_INDIRECT, 0 };
  set(0, indirect, 64, F_INDIRECT, 0);
  check(submit(0) == 0, "nested indirect table: used with length 0");

  valid_read("valid read after bad chains");

  // An available index far past the ring: the device asks for a reset.
  avail.idx += 100;
  asm volatile("fence rw, rw" ::: "memory");
  REG(QUEUE_NOTIFY) = 0;
  check(REG(STATUS) & S_NEEDS_RESET, "runaway avail index: DEVICE_NEEDS_RESET");
  check(REG(INT_STATUS) & 2, "configuration-change interrupt raised");
  setup();
  valid_read("valid read after reset");

  puts(failures() ? "virtio_hostile: FAIL\n" : "virtio_hostile: PASS\n");
  exit(failures());
}
