//! Disk images are locked while a VM uses them, as QEMU and Cloud
//! Hypervisor do: an open file description lock (`F_OFD_SETLK`, so two
//! opens in one process conflict too) over the whole file, shared for a
//! read-only disk and exclusive for a writable one. A second visor (or
//! QEMU, which takes the same kind of lock) cannot mount an ext4 image
//! another one writes. A migrating VM hands its images over: the source
//! releases its locks once the disks are flushed and the guest stopped,
//! and takes them again if the migration fails.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// Takes `file`'s lock (shared when `read_only`), without waiting.
pub fn lock(file: &File, read_only: bool) -> io::Result<()> {
    let kind = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    };
    set(file, kind as libc::c_short)
}

/// Drops `file`'s lock.
pub fn unlock(file: &File) -> io::Result<()> {
    set(file, libc::F_UNLCK as libc::c_short)
}

fn set(file: &File, kind: libc::c_short) -> io::Result<()> {
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = kind;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = 0;
    range.l_len = 0; // to the end, however long the file grows
                     // SAFETY: fcntl on an open descriptor with a valid flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write-back (`fdatasync`) of an image, a failure remembered for good:
/// after one, the image may have lost data the guest was told is written,
/// and a later flush could succeed without bringing it back. So every
/// later write-back fails, and the device fails every write (QEMU's file
/// driver does the same); reads go on.
#[derive(Default)]
pub struct WriteBack {
    lost: bool,
}

impl WriteBack {
    /// `fdatasync` of `file`, unless an earlier one failed.
    pub fn sync(&mut self, file: &File) -> io::Result<()> {
        if self.lost {
            return Err(io::Error::other(
                "an earlier write-back to the image failed",
            ));
        }
        let result = file.sync_data();
        self.lost = result.is_err();
        result
    }

    /// A write-back failed: the image takes no more writes.
    pub fn lost(&self) -> bool {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_exclude_everyone_and_readers_share() {
        let path = std::env::temp_dir().join(format!("visor-lock-{}", std::process::id()));
        std::fs::write(&path, [0u8; 512]).unwrap();
        let open = || File::options().read(true).write(true).open(&path).unwrap();
        let (a, b) = (open(), open());
        lock(&a, false).unwrap();
        assert!(lock(&b, false).is_err(), "a second writer");
        assert!(lock(&b, true).is_err(), "a reader while one writes");
        unlock(&a).unwrap();
        lock(&a, true).unwrap();
        lock(&b, true).unwrap();
        assert!(lock(&open(), false).is_err(), "a writer while two read");
        std::fs::remove_file(&path).unwrap();
    }
}
