//! The packed image of visor's Type 1 hypervisor, shared by the writer
//! (`visor hv pack`) and the reader (the hypervisor at boot): no_std, no
//! dependencies, every field read with bounds checks.
//!
//! An image is a RISC-V Linux `Image` (so visor's and QEMU's `-kernel` load
//! it at 0x8020_0000): the hypervisor's flat binary, padded to its whole
//! memory footprint (a multiple of [`PACKAGE_ALIGN`]), then the package:
//! a [`PackageHeader`], `vm_count` [`VmDescriptor`]s, and the blobs (kernels,
//! initrds) they point at. A checksum over everything after the header
//! lets the hypervisor refuse a corrupted image with a message.
#![cfg_attr(not(feature = "pack"), no_std)]

#[cfg(feature = "pack")]
pub mod pack;

/// Where firmware loads the image (RAM base + 2 MiB, as for Linux).
pub const LOAD_ADDRESS: u64 = 0x8020_0000;
/// Where each VM finds its RAM (and its kernel's first byte, its entry).
pub const GUEST_RAM_BASE: u64 = 0x8000_0000;
/// The offset of the RISC-V Linux `Image` magic "RSC\x05" in the header.
pub const IMAGE_MAGIC_OFFSET: usize = 0x38;
pub const IMAGE_MAGIC: [u8; 4] = *b"RSC\x05";
/// The package starts at a multiple of this from the image's start.
pub const PACKAGE_ALIGN: u64 = 2 << 20;
pub const PACKAGE_MAGIC: [u8; 8] = *b"VISORHV\0";
pub const VERSION: u32 = 1;
pub const MAX_VMS: usize = 8;
pub const NAME_BYTES: usize = 16;
pub const BOOTARGS_BYTES: usize = 256;
pub const MAX_DEVICES: usize = 8;

pub const HEADER_BYTES: usize = 32;
pub const DESCRIPTOR_BYTES: usize = D_BOOTARGS + BOOTARGS_BYTES;

/// What a VM does when it faults in a way no VM may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCrash {
    Stop = 0,
    Restart = 1,
}

/// A byte range of the package (offset from the package's start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blob {
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageHeader {
    pub vm_count: u32,
    /// Bytes of the whole package, header included.
    pub size: u64,
    /// [`fnv1a64`] of the package's bytes after the header.
    pub checksum: u64,
}

/// One VM as the configuration named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDescriptor {
    pub name: [u8; NAME_BYTES],
    /// Bytes of guest RAM (a multiple of 2 MiB).
    pub memory: u64,
    pub vcpus: u32,
    /// Share of CPU time relative to the other VMs (credit scheduler).
    pub weight: u32,
    /// At most this percent of one hart's time; 0 for no cap.
    pub cap: u32,
    pub on_crash: OnCrash,
    pub kernel: Blob,
    pub initrd: Blob,
    pub bootargs: [u8; BOOTARGS_BYTES],
    /// MMIO base addresses of the machine devices passed through.
    pub devices: [u64; MAX_DEVICES],
    pub device_count: u32,
    /// Where in guest RAM the kernel goes (and starts): 0 for bare-metal
    /// programs, the Image header's text_offset (2 MiB) for Linux.
    pub load_offset: u32,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// No package after the hypervisor (wrong magic).
    NoPackage,
    UnsupportedVersion(u32),
    /// The package claims more bytes than the image holds.
    Truncated,
    /// The checksum does not match: the image is corrupted.
    Checksum,
    TooManyVms(u32),
    /// A descriptor's field is out of range (VM index, what).
    BadVm(usize, &'static str),
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            ImageError::NoPackage => write!(f, "no VM package after the hypervisor"),
            ImageError::UnsupportedVersion(v) => {
                write!(f, "package version {v}, expected {VERSION}")
            }
            ImageError::Truncated => write!(f, "the package is truncated"),
            ImageError::Checksum => write!(
                f,
                "the package's checksum does not match: the image is corrupted"
            ),
            ImageError::TooManyVms(n) => write!(f, "{n} VMs, at most {MAX_VMS}"),
            ImageError::BadVm(i, what) => write!(f, "VM {i}: {what}"),
        }
    }
}

/// FNV-1a, 64 bits: enough to catch corruption, cheap without tables.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl PackageHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0; HEADER_BYTES];
        b[..8].copy_from_slice(&PACKAGE_MAGIC);
        put_u32(&mut b, 8, VERSION);
        put_u32(&mut b, 12, self.vm_count);
        put_u64(&mut b, 16, self.size);
        put_u64(&mut b, 24, self.checksum);
        b
    }
}

// Descriptor layout: name 0..16, memory 16, vcpus 24, weight 28, cap 32,
// on_crash 36, kernel 40/48, initrd 56/64, device_count 72, load_offset 76,
// devices 80..144, bootargs 144..400.
const D_DEVICES: usize = 80;
const D_BOOTARGS: usize = D_DEVICES + 8 * MAX_DEVICES;

impl VmDescriptor {
    pub fn encode(&self) -> [u8; DESCRIPTOR_BYTES] {
        let mut b = [0; DESCRIPTOR_BYTES];
        b[..NAME_BYTES].copy_from_slice(&self.name);
        put_u64(&mut b, 16, self.memory);
        put_u32(&mut b, 24, self.vcpus);
        put_u32(&mut b, 28, self.weight);
        put_u32(&mut b, 32, self.cap);
        put_u32(&mut b, 36, self.on_crash as u32);
        put_u64(&mut b, 40, self.kernel.offset);
        put_u64(&mut b, 48, self.kernel.size);
        put_u64(&mut b, 56, self.initrd.offset);
        put_u64(&mut b, 64, self.initrd.size);
        put_u32(&mut b, 72, self.device_count);
        put_u32(&mut b, 76, self.load_offset);
        for (i, d) in self.devices.iter().enumerate() {
            put_u64(&mut b, D_DEVICES + 8 * i, *d);
        }
        b[D_BOOTARGS..].copy_from_slice(&self.bootargs);
        b
    }

    /// The name, without its NUL padding.
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_BYTES);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }

    /// The kernel command line, without its NUL padding.
    pub fn bootargs(&self) -> &str {
        let len = self
            .bootargs
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(BOOTARGS_BYTES);
        core::str::from_utf8(&self.bootargs[..len]).unwrap_or("")
    }
}

/// A checked package: its header and the descriptors' bytes.
pub struct Package<'a> {
    pub header: PackageHeader,
    bytes: &'a [u8],
}

impl<'a> Package<'a> {
    /// Checks the package at the start of `bytes`: magic, version, size,
    /// checksum, and every descriptor's fields and blobs.
    pub fn parse(bytes: &'a [u8]) -> Result<Package<'a>, ImageError> {
        if bytes.len() < HEADER_BYTES || bytes[..8] != PACKAGE_MAGIC {
            return Err(ImageError::NoPackage);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(ImageError::UnsupportedVersion(version));
        }
        let header = PackageHeader {
            vm_count: u32_at(bytes, 12),
            size: u64_at(bytes, 16),
            checksum: u64_at(bytes, 24),
        };
        let size = usize::try_from(header.size).map_err(|_| ImageError::Truncated)?;
        if size < HEADER_BYTES || size > bytes.len() {
            return Err(ImageError::Truncated);
        }
        let bytes = &bytes[..size];
        if fnv1a64(&bytes[HEADER_BYTES..]) != header.checksum {
            return Err(ImageError::Checksum);
        }
        if header.vm_count as usize > MAX_VMS {
            return Err(ImageError::TooManyVms(header.vm_count));
        }
        if HEADER_BYTES + header.vm_count as usize * DESCRIPTOR_BYTES > size {
            return Err(ImageError::Truncated);
        }
        let package = Package { header, bytes };
        for i in 0..header.vm_count as usize {
            package.check(i)?;
        }
        Ok(package)
    }

    fn check(&self, i: usize) -> Result<(), ImageError> {
        let vm = self.vm(i);
        let bad = |what| Err(ImageError::BadVm(i, what));
        if vm.memory == 0 || !vm.memory.is_multiple_of(PACKAGE_ALIGN) {
            return bad("memory is not a non-zero multiple of 2 MiB");
        }
        if vm.vcpus == 0 || vm.weight == 0 || vm.cap > 100 {
            return bad("vCPUs and weight must be non-zero, cap at most 100");
        }
        if vm.device_count as usize > MAX_DEVICES {
            return bad("too many devices");
        }
        for blob in [vm.kernel, vm.initrd] {
            let end = blob.offset.checked_add(blob.size);
            if end.is_none_or(|end| end > self.header.size) {
                return bad("a blob lies outside the package");
            }
        }
        if vm.kernel.size == 0 {
            return bad("no kernel");
        }
        let contents = (vm.load_offset as u64)
            .checked_add(vm.kernel.size)
            .and_then(|k| k.checked_add(vm.initrd.size));
        if contents.is_none_or(|c| c > vm.memory) {
            return bad("the kernel and initrd do not fit in its memory");
        }
        Ok(())
    }

    pub fn vm_count(&self) -> usize {
        self.header.vm_count as usize
    }

    /// Descriptor `i` (< `vm_count`, checked by `parse`).
    pub fn vm(&self, i: usize) -> VmDescriptor {
        let b = &self.bytes[HEADER_BYTES + i * DESCRIPTOR_BYTES..][..DESCRIPTOR_BYTES];
        let mut devices = [0; MAX_DEVICES];
        for (k, d) in devices.iter_mut().enumerate() {
            *d = u64_at(b, D_DEVICES + 8 * k);
        }
        VmDescriptor {
            name: b[..NAME_BYTES].try_into().unwrap(),
            memory: u64_at(b, 16),
            vcpus: u32_at(b, 24),
            weight: u32_at(b, 28),
            cap: u32_at(b, 32),
            on_crash: if u32_at(b, 36) == 1 {
                OnCrash::Restart
            } else {
                OnCrash::Stop
            },
            kernel: Blob {
                offset: u64_at(b, 40),
                size: u64_at(b, 48),
            },
            initrd: Blob {
                offset: u64_at(b, 56),
                size: u64_at(b, 64),
            },
            device_count: u32_at(b, 72),
            load_offset: u32_at(b, 76),
            devices,
            bootargs: b[D_BOOTARGS..].try_into().unwrap(),
        }
    }

    /// The bytes of a blob (checked by `parse`).
    pub fn blob(&self, blob: Blob) -> &'a [u8] {
        &self.bytes[blob.offset as usize..(blob.offset + blob.size) as usize]
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn vm(name: &str, kernel: Blob) -> VmDescriptor {
        let mut d = VmDescriptor {
            name: [0; NAME_BYTES],
            memory: 64 << 20,
            vcpus: 2,
            weight: 256,
            cap: 0,
            on_crash: OnCrash::Restart,
            kernel,
            initrd: Blob::default(),
            bootargs: [0; BOOTARGS_BYTES],
            devices: [0; MAX_DEVICES],
            device_count: 1,
            load_offset: 0,
        };
        d.name[..name.len()].copy_from_slice(name.as_bytes());
        d.bootargs[..13].copy_from_slice(b"console=hvc0 ");
        d.devices[0] = 0x1000_1000;
        d
    }

    /// A package with two VMs and a kernel blob for each.
    fn package() -> Vec<u8> {
        let blobs_at = (HEADER_BYTES + 2 * DESCRIPTOR_BYTES) as u64;
        let vms = [
            vm(
                "linux",
                Blob {
                    offset: blobs_at,
                    size: 8,
                },
            ),
            vm(
                "counter",
                Blob {
                    offset: blobs_at + 8,
                    size: 4,
                },
            ),
        ];
        let mut body = Vec::new();
        for v in &vms {
            body.extend_from_slice(&v.encode());
        }
        body.extend_from_slice(b"KERNEL01KRN2");
        let header = PackageHeader {
            vm_count: 2,
            size: (HEADER_BYTES + body.len()) as u64,
            checksum: fnv1a64(&body),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend(body);
        bytes
    }

    #[test]
    fn a_package_reads_back_as_written() {
        let bytes = package();
        let p = Package::parse(&bytes).unwrap();
        assert_eq!(p.vm_count(), 2);
        let linux = p.vm(0);
        assert_eq!(
            (linux.name(), linux.vcpus, linux.memory),
            ("linux", 2, 64 << 20)
        );
        assert_eq!(linux.bootargs(), "console=hvc0 ");
        assert_eq!(linux.on_crash, OnCrash::Restart);
        assert_eq!(&linux.devices[..1], &[0x1000_1000]);
        assert_eq!(p.blob(linux.kernel), b"KERNEL01");
        assert_eq!(p.blob(p.vm(1).kernel), b"KRN2");
        assert_eq!(p.vm(1).name(), "counter");
    }

    #[test]
    fn damaged_packages_are_refused() {
        let good = package();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(Package::parse(&flipped).err(), Some(ImageError::Checksum));
        assert_eq!(
            Package::parse(&good[..good.len() - 1]).err(),
            Some(ImageError::Truncated)
        );
        assert_eq!(
            Package::parse(&good[..10]).err(),
            Some(ImageError::NoPackage)
        );
        assert_eq!(Package::parse(b"").err(), Some(ImageError::NoPackage));
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(
            Package::parse(&version).err(),
            Some(ImageError::UnsupportedVersion(9))
        );
    }

    /// Rewrites descriptor 0 with `change` and fixes the checksum up, so
    /// only the field check can refuse it.
    fn with_vm0(change: impl Fn(&mut VmDescriptor)) -> Result<(), ImageError> {
        let mut bytes = package();
        let p = Package::parse(&bytes).unwrap();
        let mut d = p.vm(0);
        change(&mut d);
        bytes[HEADER_BYTES..HEADER_BYTES + DESCRIPTOR_BYTES].copy_from_slice(&d.encode());
        let checksum = fnv1a64(&bytes[HEADER_BYTES..]);
        bytes[24..32].copy_from_slice(&checksum.to_le_bytes());
        Package::parse(&bytes).map(|_| ())
    }

    #[test]
    fn descriptors_out_of_range_are_refused() {
        assert!(with_vm0(|_| {}).is_ok());
        assert!(matches!(
            with_vm0(|d| d.memory = 3 << 20),
            Err(ImageError::BadVm(0, _))
        ));
        assert!(matches!(
            with_vm0(|d| d.vcpus = 0),
            Err(ImageError::BadVm(0, _))
        ));
        assert!(matches!(
            with_vm0(|d| d.cap = 101),
            Err(ImageError::BadVm(0, _))
        ));
        assert!(matches!(
            with_vm0(|d| d.device_count = 9),
            Err(ImageError::BadVm(0, _))
        ));
        assert!(matches!(
            with_vm0(|d| d.kernel = Blob {
                offset: u64::MAX - 1,
                size: 4
            }),
            Err(ImageError::BadVm(0, _))
        ));
        assert!(matches!(
            with_vm0(|d| d.kernel.size = 0),
            Err(ImageError::BadVm(0, _))
        ));
    }
}
