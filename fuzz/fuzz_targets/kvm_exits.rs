//! Synthetic port-I/O and MMIO exits through the KVM VMM's dispatcher to
//! its devices (COM1, debug exit, i8042, POST port, virtio-mmio).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kvm_vmm::fuzzing::exits(data));
