//! The VMs to run: those of the package `visor hv pack` appended to the
//! image, each given RAM past the package, or the built-in demo VM when the
//! image carries no package. A damaged package is refused with a message.

use crate::machine::Machine;
use crate::plic::Plic;
use crate::vm::Vm;
use core::fmt;
use hv_image::{
    Blob, ImageError, OnCrash, Package, VmDescriptor, BOOTARGS_BYTES, MAX_DEVICES, MAX_VMS,
    NAME_BYTES, PACKAGE_ALIGN,
};

core::arch::global_asm!(include_str!("guest_demo.S"));

extern "C" {
    static guest_demo_start: u8;
    static guest_demo_end: u8;
    /// The end of the hypervisor's footprint: where a package starts.
    static hv_end: u8;
}

/// RAM of the demo VM.
const DEMO_RAM: usize = 2 << 20;

pub enum Error {
    Image(ImageError),
    NoRoom { vm: usize },
    Vm(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Image(e) => write!(f, "the image is not usable: {e}"),
            Error::NoRoom { vm } => write!(f, "VM {vm} does not fit in the machine's RAM"),
            Error::Vm(e) => write!(f, "cannot create a VM: {e}"),
        }
    }
}

/// Up to [`MAX_VMS`] VMs (no allocator: a fixed array, kept in a static,
/// not on the boot hart's small stack).
pub struct Vms {
    vms: [Option<Vm>; MAX_VMS],
    /// The machine's PLIC, when a VM owns devices whose interrupts it routes.
    pub plic: Option<Plic>,
}

struct VmTable(core::cell::UnsafeCell<Vms>);
// SAFETY: only the boot hart touches the table, once, in `from_image`.
unsafe impl Sync for VmTable {}
static VMS: VmTable = VmTable(core::cell::UnsafeCell::new(Vms {
    vms: [const { None }; MAX_VMS],
    plic: None,
}));

impl Vms {
    pub fn len(&self) -> usize {
        self.vms.iter().flatten().count()
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Vm> {
        self.vms.get_mut(i)?.as_mut()
    }

    pub fn get(&self, i: usize) -> Option<&Vm> {
        self.vms.get(i)?.as_ref()
    }
}

fn align_up(x: usize) -> usize {
    x.div_ceil(PACKAGE_ALIGN as usize) * PACKAGE_ALIGN as usize
}

/// The VMs of the image; called once.
pub fn from_image(machine: &Machine) -> Result<&'static mut Vms, Error> {
    // SAFETY: linker symbols; only their addresses are used.
    let package_at = unsafe { &hv_end as *const u8 as usize };
    let ram_end = machine.ram_base + machine.ram_size;
    // SAFETY: from the hypervisor's end to the end of RAM is memory the
    // firmware loaded the image into or left alone; parse checks every
    // length before trusting it.
    let bytes =
        unsafe { core::slice::from_raw_parts(package_at as *const u8, ram_end - package_at) };
    // SAFETY: called once, by the boot hart (see VmTable).
    let vms = unsafe { &mut *VMS.0.get() };
    let package = match Package::parse(bytes) {
        Err(ImageError::NoPackage) => return demo(machine, package_at, vms),
        Err(e) => return Err(Error::Image(e)),
        Ok(p) => p,
    };
    let owns_devices = (0..package.vm_count()).any(|i| package.vm(i).device_count > 0);
    if owns_devices {
        vms.plic = match (machine.plic, machine.plic_context) {
            (Some(base), Some(context)) => Some(Plic::new(base, context)),
            _ => {
                return Err(Error::Vm(
                    "VMs own devices but the machine's PLIC is not usable",
                ))
            }
        };
    }
    let mut next = align_up(package_at + package.header.size as usize);
    for i in 0..package.vm_count() {
        let d = package.vm(i);
        let size = d.memory as usize;
        let fits = next.checked_add(size).is_some_and(|end| end <= ram_end);
        if !fits {
            return Err(Error::NoRoom { vm: i });
        }
        let kernel = package.blob(d.kernel);
        let initrd = package.blob(d.initrd);
        let vm = Vm::new(&d, i + 1, next, kernel, initrd, machine, vms.plic).map_err(Error::Vm)?;
        for device in vm.devices() {
            vms.plic.unwrap().enable(device.irq);
        }
        crate::println!(
            "visor-hv: VM {} with {} MiB at {next:#x}, {} vCPU(s), weight {}",
            vm.name(),
            size >> 20,
            d.vcpus,
            d.weight
        );
        vms.vms[i] = Some(vm);
        next += size;
    }
    Ok(vms)
}

fn demo(machine: &Machine, at: usize, vms: &'static mut Vms) -> Result<&'static mut Vms, Error> {
    if at + DEMO_RAM > machine.ram_base + machine.ram_size {
        return Err(Error::NoRoom { vm: 0 });
    }
    // SAFETY: the demo guest is the bytes between these two symbols.
    let kernel: &'static [u8] = unsafe {
        let start = &guest_demo_start as *const u8;
        let end = &guest_demo_end as *const u8;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    };
    let mut name = [0; NAME_BYTES];
    name[..4].copy_from_slice(b"demo");
    let demo = VmDescriptor {
        name,
        memory: DEMO_RAM as u64,
        vcpus: 1,
        weight: 1,
        cap: 0,
        on_crash: OnCrash::Stop,
        kernel: Blob::default(),
        initrd: Blob::default(),
        bootargs: [0; BOOTARGS_BYTES],
        devices: [0; MAX_DEVICES],
        device_count: 0,
        load_offset: 0,
    };
    let vm = Vm::new(&demo, 1, at, kernel, &[], machine, None).map_err(Error::Vm)?;
    vms.vms[0] = Some(vm);
    Ok(vms)
}
