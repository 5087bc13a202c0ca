/* The x86-64 test guest's init: prints a marker and the block devices the
   kernel found (virtio-blk shows up as vda), then reboots, which with
   `reboot=k` goes through the i8042 reset line and ends the VMM. */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

static void say(const char *s) {
  const char *e = s;
  while (*e) e++;
  write(1, s, e - s);
}

int main(void) {
  char buf[1024];
  say("visor-linux-x86: init running\n");
  mount("proc", "/proc", "proc", 0, 0);
  int fd = open("/proc/partitions", O_RDONLY);
  if (fd >= 0) {
    long n = read(fd, buf, sizeof buf);
    if (n > 0) write(1, buf, n);
    close(fd);
  }
  say("visor-linux-x86: powering off\n");
  sync();
  reboot(RB_AUTOBOOT);
  return 0;
}
