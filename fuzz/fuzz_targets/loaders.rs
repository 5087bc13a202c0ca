//! Boot images: the RISC-V board's ELF, Image, firmware and initrd
//! loading (with the device tree), and the KVM VMM's PVH ELF and bzImage.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    riscv_virt::fuzzing::boot_images(data);
    kvm_vmm::fuzzing::kernel_images(data);
});
